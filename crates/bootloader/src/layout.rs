//! Disk layouts: a filesystem on the whole disk, or an MBR or GPT partition table (gptman, mbrman).
//!
//! Only MBR primary partitions are considered (as pygrub does): boot partitions are primary, and skipping
//! the extended-partition chain leaves nothing for a hostile image to loop in. Volumes come back with the
//! active one (MBR boot flag, GPT "legacy BIOS bootable" attribute) first, then in table order; the caller
//! tries each until one holds a boot configuration.

use std::io::{Seek, SeekFrom};

use crate::disk::Region;
use crate::fs;

/// The most GPT entries looked at (the specification's minimum array holds 128; no real disk has more
/// than a few hundred).
const MAX_GPT_ENTRIES: u32 = 1024;

/// How the disk is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One filesystem on the whole disk (or no recognisable structure at all).
    Whole,
    /// An MBR (DOS) partition table.
    Mbr,
    /// A GUID partition table.
    Gpt,
}

/// One place a filesystem may be: the whole disk or a partition.
#[derive(Debug, Clone)]
pub struct Volume {
    /// For messages: "the whole disk", "MBR partition 1", "GPT partition 2 'boot'".
    pub name: String,
    /// Its bytes.
    pub region: Region,
    /// Marked active/bootable in the partition table.
    pub active: bool,
}

/// The partition table is unusable.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// gptman rejected the GPT.
    #[error("the GPT partition table is invalid")]
    Gpt(#[source] gptman::Error),
    /// Too many GPT entries announced.
    #[error(
        "the GPT header announces {0} partition entries (at most {MAX_GPT_ENTRIES} are accepted)"
    )]
    GptTooManyEntries(u32),
    /// mbrman rejected the MBR.
    #[error("the MBR partition table is invalid")]
    Mbr(#[source] mbrman::Error),
    /// A partition table without any usable partition.
    #[error("the {0:?} partition table has no usable partition")]
    Empty(Layout),
}

/// Finds the volumes of `disk`.
///
/// # Errors
/// [`LayoutError`] for a partition table that is present but unusable.
pub fn volumes(disk: &Region) -> Result<(Layout, Vec<Volume>), LayoutError> {
    if fs::probe(disk).is_some() {
        return Ok((Layout::Whole, vec![whole(disk)]));
    }
    let mut sig = [0u8; 8];
    let has_gpt = [512u64, 4096]
        .iter()
        .any(|lba1| disk.read_exact_at(*lba1, &mut sig).is_ok() && &sig == b"EFI PART");
    if has_gpt {
        return gpt(disk).map(|v| (Layout::Gpt, v));
    }
    let mut boot_sig = [0u8; 2];
    if disk.read_exact_at(510, &mut boot_sig).is_ok() && boot_sig == [0x55, 0xaa] {
        return mbr(disk).map(|v| (Layout::Mbr, v));
    }
    Ok((Layout::Whole, vec![whole(disk)]))
}

fn whole(disk: &Region) -> Volume {
    Volume {
        name: "the whole disk".into(),
        region: disk.clone(),
        active: false,
    }
}

fn ordered(mut v: Vec<Volume>, layout: Layout) -> Result<Vec<Volume>, LayoutError> {
    if v.is_empty() {
        return Err(LayoutError::Empty(layout));
    }
    // Stable: active first, table order otherwise.
    v.sort_by_key(|vol| !vol.active);
    Ok(v)
}

fn mbr(disk: &Region) -> Result<Vec<Volume>, LayoutError> {
    let mut r = disk.clone();
    let _ = r.seek(SeekFrom::Start(0));
    let header = mbrman::MBRHeader::read_from(&mut r).map_err(LayoutError::Mbr)?;
    let mut vols = Vec::new();
    for (i, p) in header.iter() {
        if p.is_unused() || p.is_extended() || p.sys == 0xee {
            continue;
        }
        let start = u64::from(p.starting_lba) * 512;
        let len = u64::from(p.sectors) * 512;
        vols.push(Volume {
            name: format!("MBR partition {i}"),
            region: disk.slice(start, len),
            active: p.is_active(),
        });
    }
    ordered(vols, Layout::Mbr)
}

fn gpt(disk: &Region) -> Result<Vec<Volume>, LayoutError> {
    for sector in [512u64, 4096] {
        let mut n = [0u8; 4];
        if disk.read_exact_at(sector + 80, &mut n).is_ok() {
            let entries = u32::from_le_bytes(n);
            let mut sig = [0u8; 8];
            let _ = disk.read_exact_at(sector, &mut sig);
            if &sig == b"EFI PART" && entries > MAX_GPT_ENTRIES {
                return Err(LayoutError::GptTooManyEntries(entries));
            }
        }
    }
    let mut r = disk.clone();
    let table = gptman::GPT::find_from(&mut r).map_err(LayoutError::Gpt)?;
    let sector = table.sector_size;
    let mut vols = Vec::new();
    for (i, p) in table.iter() {
        if !p.is_used() || p.ending_lba < p.starting_lba {
            continue;
        }
        let (Some(start), Some(len)) = (
            p.starting_lba.checked_mul(sector),
            (p.ending_lba - p.starting_lba)
                .checked_add(1)
                .and_then(|n| n.checked_mul(sector)),
        ) else {
            continue;
        };
        let label = p.partition_name.as_str();
        let name = if label.is_empty() {
            format!("GPT partition {i}")
        } else {
            format!("GPT partition {i} '{label}'")
        };
        vols.push(Volume {
            name,
            region: disk.slice(start, len),
            active: p.attribute_bits & (1 << 2) != 0,
        });
    }
    ordered(vols, Layout::Gpt)
}
