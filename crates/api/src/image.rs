//! The saved-domain image as domusd writes it (`xl save`) and `xl migrate` streams it: a header carrying the domain's
//! configuration, as xl embeds it, followed by the VMM's own snapshot stream (`domus_vmm::snapshot`,
//! versioned and checksummed itself).
//!
//! ```text
//! "DOMUSIMG" (8 bytes)  version u32 LE  config length u64 LE  config (JSON DomainConfig)  crc32 u32 LE
//! ```
//! The CRC covers every header byte before it. A reader refuses another magic or version, a
//! configuration longer than [`MAX_CONFIG_BYTES`], a truncated header and a checksum mismatch, with a
//! message naming the file and what is wrong.

use std::io::{Read, Write};

use domus_config::DomainConfig;

/// First bytes of an image.
pub const MAGIC: [u8; 8] = *b"DOMUSIMG";
/// The header version written and read.
pub const VERSION: u32 = 1;
/// Largest embedded configuration accepted.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Writes the header for `config` to `out`.
///
/// # Errors
/// The write failed, or the configuration cannot be encoded.
pub fn write_header(out: &mut impl Write, config: &DomainConfig) -> std::io::Result<()> {
    let json = serde_json::to_vec(config).map_err(std::io::Error::other)?;
    let mut head = Vec::with_capacity(json.len() + 24);
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(json.len() as u64).to_le_bytes());
    head.extend_from_slice(&json);
    let crc = crc32fast::hash(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    out.write_all(&head)
}

/// Reads and checks the header; returns the embedded configuration. `input` is left at the start of
/// the VMM's stream.
///
/// # Errors
/// A message naming what is wrong with the image.
pub fn read_header(input: &mut impl Read) -> Result<DomainConfig, String> {
    let mut fixed = [0u8; 20];
    read_exact(input, &mut fixed, "the image header")?;
    let (magic, rest) = fixed.split_at(8);
    if magic != MAGIC {
        return Err(format!(
            "not a Domus saved-domain image (magic {magic:02x?}, expected \"DOMUSIMG\")"
        ));
    }
    let (v, len) = rest.split_at(4);
    let version = u32::from_le_bytes(v.try_into().unwrap_or_default());
    if version != VERSION {
        return Err(format!(
            "image format version {version} is not supported (this domusd reads version {VERSION})"
        ));
    }
    let len = u64::from_le_bytes(len.try_into().unwrap_or_default());
    if len > MAX_CONFIG_BYTES {
        return Err(format!(
            "the image's embedded configuration claims {len} bytes (at most {MAX_CONFIG_BYTES}): the image is corrupted"
        ));
    }
    let mut json = vec![0u8; usize::try_from(len).unwrap_or(0)];
    read_exact(input, &mut json, "the embedded configuration")?;
    let mut crc = [0u8; 4];
    read_exact(input, &mut crc, "the image header")?;
    let mut h = crc32fast::Hasher::new();
    h.update(&fixed);
    h.update(&json);
    let (stored, computed) = (u32::from_le_bytes(crc), h.finalize());
    if stored != computed {
        return Err(format!(
            "image header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the image is corrupted"
        ));
    }
    serde_json::from_slice(&json)
        .map_err(|e| format!("the image's embedded configuration is malformed: {e}"))
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), String> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("the image is truncated: it ends inside {what}")
        } else {
            format!("cannot read {what}: {e}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DomainConfig {
        DomainConfig::from_xl("t.cfg", "name = \"t\"\nkernel = \"/k\"\nmemory = 64\n", &[]).unwrap()
    }

    #[test]
    fn header_round_trip_and_damage() {
        let mut img = Vec::new();
        write_header(&mut img, &config()).unwrap();
        img.extend_from_slice(b"STREAM");
        let mut r = img.as_slice();
        assert_eq!(read_header(&mut r).unwrap().name, "t");
        assert_eq!(r, b"STREAM");
        let hlen = img.len() - 6;
        for cut in [0, 7, 19, hlen - 1] {
            let e = read_header(&mut &img[..cut]).unwrap_err();
            assert!(e.contains("truncated"), "{cut}: {e}");
        }
        for i in 0..hlen {
            let mut bad = img.clone();
            bad[i] ^= 0x04;
            assert!(
                read_header(&mut bad.as_slice()).is_err(),
                "byte {i} accepted"
            );
        }
        let mut bad = img.clone();
        bad[8] = 7;
        let e = read_header(&mut bad.as_slice()).unwrap_err();
        assert!(e.contains("version 7"), "{e}");
    }
}
