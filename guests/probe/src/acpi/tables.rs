//! Locating and validating ACPI tables (ACPI 6.5 §5.2): RSDP, RSDT/XSDT, and table headers.
//!
//! Firmware data is untrusted input: every table's length is bounded and its checksum checked
//! before a field is read; a bad table is skipped, never followed.

use crate::io::{phys_read8, phys_slice};
use domus_probe::bytes::{checksum_ok, le32, le64, HEADER_LEN};

/// Largest table the probe accepts.
const MAX_TABLE_LEN: usize = 1 << 20;

/// The RSDP and the root table it points to.
#[derive(Clone, Copy)]
pub struct Root {
    /// Where the RSDP was found.
    pub rsdp: u64,
    /// RSDP revision (0 = ACPI 1.0 with an RSDT only).
    pub revision: u8,
    /// The root table (an XSDT when present, else the RSDT).
    pub table: &'static [u8],
    /// Width of the root table's entries: 8 for an XSDT, 4 for an RSDT.
    pub entry_size: usize,
}

/// The validated table at `addr` (header length bounded, checksum correct), if any.
pub fn table_at(addr: u64) -> Option<&'static [u8]> {
    let header = phys_slice(addr, HEADER_LEN)?;
    let len = le32(header, 4) as usize;
    if !(HEADER_LEN..=MAX_TABLE_LEN).contains(&len) {
        return None;
    }
    let table = phys_slice(addr, len)?;
    checksum_ok(table).then_some(table)
}

fn rsdp_at(addr: u64) -> Option<Root> {
    let v1 = phys_slice(addr, 20)?;
    if &v1[..8] != b"RSD PTR " || !checksum_ok(v1) {
        return None;
    }
    let revision = v1[15];
    if revision >= 2 {
        let v2 = phys_slice(addr, 36)?;
        let len = le32(v2, 20) as usize;
        let xsdt = le64(v2, 24);
        if len >= 36 && phys_slice(addr, len).is_some_and(checksum_ok) && xsdt != 0 {
            if let Some(table) = table_at(xsdt).filter(|t| &t[..4] == b"XSDT") {
                return Some(Root {
                    rsdp: addr,
                    revision,
                    table,
                    entry_size: 8,
                });
            }
        }
    }
    let table = table_at(u64::from(le32(v1, 16))).filter(|t| &t[..4] == b"RSDT")?;
    Some(Root {
        rsdp: addr,
        revision,
        table,
        entry_size: 4,
    })
}

/// Finds the RSDP: at `hint` (start_info's rsdp_paddr) if valid, else by scanning the first KiB
/// of the EBDA and 0xe0000-0xfffff on 16-byte boundaries (ACPI 6.5 §5.2.5.1).
pub fn find_root(hint: u64) -> Option<Root> {
    if hint != 0 {
        if let Some(root) = rsdp_at(hint) {
            return Some(root);
        }
    }
    let ebda = (u64::from(phys_read8(0x40e)) | (u64::from(phys_read8(0x40f)) << 8)) << 4;
    let ebda_scan = (0x80000..0xa0000)
        .contains(&ebda)
        .then_some((ebda, ebda + 1024));
    ebda_scan
        .into_iter()
        .chain(core::iter::once((0xe0000, 0x100000)))
        .find_map(|(start, end)| (start..end).step_by(16).find_map(rsdp_at))
}

impl Root {
    /// Every valid table the root table lists.
    pub fn tables(&self) -> impl Iterator<Item = &'static [u8]> + '_ {
        let body = &self.table[HEADER_LEN..];
        body.chunks_exact(self.entry_size).filter_map(move |entry| {
            let addr = if self.entry_size == 8 {
                le64(entry, 0)
            } else {
                u64::from(le32(entry, 0))
            };
            table_at(addr)
        })
    }

    /// The first valid table with `signature`.
    pub fn find(&self, signature: &[u8; 4]) -> Option<&'static [u8]> {
        self.tables().find(|t| &t[..4] == signature)
    }
}
