//! Kernel image recognition: gzip unwrapping and classification (PVH ELF, Linux ELF vmlinux, bzImage,
//! PV-only Xen ELF), from the bytes of the file. Shared by the spec conversion (which refuses a file that
//! is no kernel before anything is allocated) and the VMM's loader (which boots what the bytes say).
//!
//! The ELF note walk is bounded by the segment size and checks every offset; the kernel file is untrusted
//! input.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Largest decompressed gzip kernel we accept (a typo or a bomb guard).
const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;

/// ELF note type carrying the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// x86-64 machine type.
const EM_X86_64: u16 = 62;
const PT_NOTE: u32 = 4;

/// What kind of kernel a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelKind {
    /// ELF with `XEN_ELFNOTE_PHYS32_ENTRY`: boot through PVH at this 32-bit entry.
    Pvh {
        /// Physical 32-bit entry point.
        entry: u32,
    },
    /// ELF without Xen notes: Linux vmlinux through the 64-bit boot protocol at `e_entry`.
    LinuxElf {
        /// ELF entry point (physical `startup_64`).
        entry: u64,
    },
    /// Linux bzImage (64-bit boot protocol).
    BzImage,
}

/// The kernel file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Missing or unreadable.
    #[error("cannot read kernel {path}")]
    Read {
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// gzip stream broken.
    #[error("kernel {path} looks gzip-compressed but does not decompress")]
    Gzip {
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Decompressed size over the limit.
    #[error("kernel {path} decompresses to more than {limit} bytes")]
    TooLarge {
        /// Path.
        path: std::path::PathBuf,
        /// Limit.
        limit: u64,
    },
    /// Neither ELF nor bzImage.
    #[error("{path} is not a kernel this VMM can boot: neither an ELF (PVH or Linux vmlinux) nor a Linux bzImage")]
    NotAKernel {
        /// Path.
        path: std::path::PathBuf,
    },
    /// ELF but not x86-64.
    #[error("{path} is an ELF file but not a 64-bit x86 kernel")]
    WrongElf {
        /// Path.
        path: std::path::PathBuf,
    },
    /// A Xen PV-only kernel.
    #[error("{path} is a Xen PV-only kernel (it has Xen ELF notes but no XEN_ELFNOTE_PHYS32_ENTRY): Domus runs domains on KVM and cannot boot PV guests; use a PVH-capable kernel instead (e.g. Linux, FreeBSD, or NetBSD's GENERIC kernel, which carry the PVH note), with type = \"pvh\"")]
    PvOnly {
        /// Path.
        path: std::path::PathBuf,
    },
}

/// Reads `path`, transparently un-gzipping it.
///
/// # Errors
/// [`ImageError::Read`], [`ImageError::Gzip`], [`ImageError::TooLarge`].
pub fn read_kernel(path: &Path) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(|source| ImageError::Read {
        path: path.to_owned(),
        source,
    })?;
    read_kernel_file(&file, path)
}

/// Reads an open kernel file from its start (whoever looked at it before may have moved the offset),
/// transparently un-gzipping it. `path` is only used in errors.
///
/// # Errors
/// As [`read_kernel`].
pub fn read_kernel_file(file: &File, path: &Path) -> Result<Vec<u8>, ImageError> {
    let read_err = |source| ImageError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = file;
    f.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let size = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    f.read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|source| ImageError::Gzip {
                path: path.to_owned(),
                source,
            })?;
        if u64::try_from(out.len()).unwrap_or(u64::MAX) > MAX_DECOMPRESSED_BYTES {
            return Err(ImageError::TooLarge {
                path: path.to_owned(),
                limit: MAX_DECOMPRESSED_BYTES,
            });
        }
        return Ok(out);
    }
    Ok(bytes)
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Classifies kernel bytes. `path` is only used in errors.
///
/// # Errors
/// [`ImageError::NotAKernel`], [`ImageError::WrongElf`], [`ImageError::PvOnly`].
pub fn classify(bytes: &[u8], path: &Path) -> Result<KernelKind, ImageError> {
    if bytes.starts_with(b"\x7fELF") {
        return classify_elf(bytes)
            .ok_or_else(|| ImageError::WrongElf {
                path: path.to_owned(),
            })?
            .map_err(|()| ImageError::PvOnly {
                path: path.to_owned(),
            });
    }
    // bzImage: "HdrS" at 0x202 and boot protocol >= 2.00.
    if u32_at(bytes, 0x202) == Some(0x5372_6448) && u16_at(bytes, 0x206).is_some_and(|v| v >= 0x200)
    {
        return Ok(KernelKind::BzImage);
    }
    Err(ImageError::NotAKernel {
        path: path.to_owned(),
    })
}

/// `None`: not a usable x86-64 ELF. `Some(Err(()))`: Xen PV-only.
fn classify_elf(b: &[u8]) -> Option<Result<KernelKind, ()>> {
    // ELFCLASS64, little endian, x86-64.
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) || u16_at(b, 18)? != EM_X86_64 {
        return None;
    }
    let entry = u64_at(b, 24)?;
    let phoff = usize::try_from(u64_at(b, 32)?).ok()?;
    let phentsize = usize::from(u16_at(b, 54)?);
    let phnum = usize::from(u16_at(b, 56)?);
    if phentsize < 56 {
        return None;
    }
    let mut has_xen_note = false;
    let mut pvh_entry = None;
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(b, ph)? != PT_NOTE {
            continue;
        }
        let off = usize::try_from(u64_at(b, ph + 8)?).ok()?;
        let size = usize::try_from(u64_at(b, ph + 32)?).ok()?;
        let seg = b.get(off..off.checked_add(size)?)?;
        for (name, ty, desc) in notes(seg) {
            if name == b"Xen" {
                has_xen_note = true;
                if ty == XEN_ELFNOTE_PHYS32_ENTRY {
                    pvh_entry = desc
                        .get(..4)
                        .and_then(|d| d.try_into().ok())
                        .map(u32::from_le_bytes);
                }
            }
        }
    }
    Some(match (pvh_entry, has_xen_note) {
        (Some(entry), _) => Ok(KernelKind::Pvh { entry }),
        (None, true) => Err(()),
        (None, false) => Ok(KernelKind::LinuxElf { entry }),
    })
}

/// Iterates the (name without NUL, type, descriptor) of each ELF note in a segment; stops at the first
/// malformed note.
fn notes(seg: &[u8]) -> impl Iterator<Item = (&[u8], u32, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let namesz = usize::try_from(u32_at(seg, pos)?).ok()?;
        let descsz = usize::try_from(u32_at(seg, pos + 4)?).ok()?;
        let ty = u32_at(seg, pos + 8)?;
        let name_off = pos.checked_add(12)?;
        let name = seg.get(name_off..name_off.checked_add(namesz)?)?;
        let desc_off = name_off.checked_add(namesz.checked_add(3)? & !3)?;
        let desc = seg.get(desc_off..desc_off.checked_add(descsz)?)?;
        pos = desc_off.checked_add(descsz.checked_add(3)? & !3)?;
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        Some((name, ty, desc))
    })
}

impl KernelKind {
    /// The boot protocol the VMM uses for this kind.
    pub fn protocol(self) -> crate::BootProtocol {
        match self {
            KernelKind::Pvh { .. } => crate::BootProtocol::Pvh,
            KernelKind::LinuxElf { .. } | KernelKind::BzImage => crate::BootProtocol::Linux64,
        }
    }
}

/// Test helpers shared with the VMM's boot tests.
#[doc(hidden)]
pub mod testing {
    use super::{EM_X86_64, PT_NOTE};

    /// A minimal ELF64 x86-64 header with one PT_NOTE segment holding `notes`.
    pub fn elf_with_notes(notes: &[(&[u8], u32, &[u8])]) -> Vec<u8> {
        let mut seg = Vec::new();
        for (name, ty, desc) in notes {
            seg.extend_from_slice(&u32::try_from(name.len() + 1).unwrap_or(0).to_le_bytes());
            seg.extend_from_slice(&u32::try_from(desc.len()).unwrap_or(0).to_le_bytes());
            seg.extend_from_slice(&ty.to_le_bytes());
            seg.extend_from_slice(name);
            seg.push(0);
            while seg.len() % 4 != 0 {
                seg.push(0);
            }
            seg.extend_from_slice(desc);
            while seg.len() % 4 != 0 {
                seg.push(0);
            }
        }
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        b[64..68].copy_from_slice(&PT_NOTE.to_le_bytes());
        b[72..80].copy_from_slice(&120u64.to_le_bytes());
        b[96..104].copy_from_slice(&u64::try_from(seg.len()).unwrap_or(0).to_le_bytes());
        b.extend_from_slice(&seg);
        b
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    pub(crate) use super::testing::elf_with_notes;

    #[test]
    fn pvh_pv_and_linux_elf() {
        let p = Path::new("k");
        let pvh = elf_with_notes(&[
            (b"Xen", 6, b"linux\0\0\0"),
            (b"Xen", 18, &0x10_0040u32.to_le_bytes()),
        ]);
        assert_eq!(
            classify(&pvh, p).unwrap(),
            KernelKind::Pvh { entry: 0x10_0040 }
        );
        let pv = elf_with_notes(&[(b"Xen", 6, b"NetBSD\0\0")]);
        let err = classify(&pv, p).unwrap_err();
        assert!(matches!(err, ImageError::PvOnly { .. }));
        assert!(err.to_string().contains("PVH-capable kernel"));
        let plain = elf_with_notes(&[(b"GNU", 3, b"abcd")]);
        assert_eq!(
            classify(&plain, p).unwrap(),
            KernelKind::LinuxElf { entry: 0x100_0000 }
        );
    }

    #[test]
    fn garbage_and_truncated_inputs() {
        let p = Path::new("k");
        assert!(matches!(
            classify(b"hello world", p),
            Err(ImageError::NotAKernel { .. })
        ));
        assert!(matches!(
            classify(b"\x7fELF", p),
            Err(ImageError::WrongElf { .. })
        ));
        let mut truncated = elf_with_notes(&[(b"Xen", 18, &[1, 2, 3, 4])]);
        truncated.truncate(130);
        assert!(classify(&truncated, p).is_err());
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        assert_eq!(classify(&bz, p).unwrap(), KernelKind::BzImage);
    }

    #[test]
    fn gzip_is_unwrapped() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("domus-vmm-gz-{}", std::process::id()));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"payload").unwrap();
        std::fs::write(&dir, enc.finish().unwrap()).unwrap();
        assert_eq!(read_kernel(&dir).unwrap(), b"payload");
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(
            read_kernel(Path::new("/nonexistent/k")),
            Err(ImageError::Read { .. })
        ));
    }
}
