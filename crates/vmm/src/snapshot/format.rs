//! The snapshot stream: a versioned, checksummed sequence of sections, written to and read from any
//! byte stream (a file, a pipe to another host) the VMM was handed as a descriptor.
//!
//! ```text
//! header   "DOMUSVM\0" (8 bytes)  version u32 LE (2; 1 is still read)
//! section  tag [u8; 4]  length u64 LE  payload[length]      (any number)
//! trailer  "END\0"      length = 4     crc32 u32 LE          (CRC-32 of every byte before it)
//! ```
//! Tags: `MACH` (the [`super::MachineSnapshot`]: bincode, standard configuration, in version 2;
//! JSON in version 1), `RAM ` (guest physical address u64 LE, then the
//! bytes at that address; pages not sent are zero). A reader refuses a wrong magic, another version, a
//! section longer than its bound, an unknown tag, a stream that ends early and a checksum mismatch,
//! each with an error naming what it found and at which byte offset.

use std::io::{Read, Write};

/// First bytes of every stream.
pub const MAGIC: [u8; 8] = *b"DOMUSVM\0";
/// The version this VMM writes (machine state in bincode).
pub const VERSION: u32 = 2;
/// The oldest version this VMM reads (1: machine state in JSON).
pub const OLDEST_VERSION: u32 = 1;
/// Tag: machine state (JSON).
pub const TAG_MACHINE: [u8; 4] = *b"MACH";
/// Tag: a run of guest RAM.
pub const TAG_RAM: [u8; 4] = *b"RAM ";
/// Tag: the trailer with the checksum.
pub const TAG_END: [u8; 4] = *b"END\0";
/// Largest non-RAM section accepted.
pub const MAX_STATE_BYTES: u64 = 64 << 20;

/// What is wrong with a stream.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading or writing failed.
    #[error("{what} at byte {offset}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Stream offset.
        offset: u64,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The stream ended before the trailer.
    #[error("the image is truncated: it ends at byte {offset}, inside {inside}")]
    Truncated {
        /// Where it ended.
        offset: u64,
        /// What was being read.
        inside: &'static str,
    },
    /// Not a snapshot.
    #[error("not a domus-vmm image (magic {found:02x?}, expected \"DOMUSVM\\0\")")]
    Magic {
        /// The first bytes.
        found: [u8; 8],
    },
    /// Another version.
    #[error(
        "image format version {found} is not supported (this domus-vmm reads versions {OLDEST_VERSION} to {VERSION})"
    )]
    Version {
        /// Version in the header.
        found: u32,
    },
    /// An unknown or out-of-bounds section.
    #[error("bad section {tag:?} of {len} bytes at byte {offset}: {why}")]
    Section {
        /// Its tag (lossy text).
        tag: String,
        /// Its stated length.
        len: u64,
        /// Where its header starts.
        offset: u64,
        /// Why refused.
        why: &'static str,
    },
    /// The checksum does not match.
    #[error("image checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the image is corrupted")]
    Checksum {
        /// In the trailer.
        stored: u32,
        /// Over the bytes read.
        computed: u32,
    },
}

/// Writes a stream; [`StreamWriter::finish`] appends the trailer.
pub struct StreamWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    offset: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream on `out` (writes the header).
    ///
    /// # Errors
    /// [`FormatError::Io`].
    pub fn new(out: W) -> Result<Self, FormatError> {
        let mut w = Self {
            out,
            crc: crc32fast::Hasher::new(),
            offset: 0,
        };
        w.put(&MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> Result<(), FormatError> {
        self.out.write_all(b).map_err(|source| FormatError::Io {
            what: "cannot write the image",
            offset: self.offset,
            source,
        })?;
        self.crc.update(b);
        self.offset += b.len() as u64;
        Ok(())
    }

    /// Appends a section whose payload is the concatenation of `parts`.
    ///
    /// # Errors
    /// [`FormatError::Io`].
    pub fn section(&mut self, tag: [u8; 4], parts: &[&[u8]]) -> Result<(), FormatError> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        self.put(&tag)?;
        self.put(&len.to_le_bytes())?;
        for p in parts {
            self.put(p)?;
        }
        Ok(())
    }

    /// Flushes what was written so far to the output (a reader on the other end sees it).
    ///
    /// # Errors
    /// [`FormatError::Io`].
    pub fn flush(&mut self) -> Result<(), FormatError> {
        self.out.flush().map_err(|source| FormatError::Io {
            what: "cannot write the image",
            offset: self.offset,
            source,
        })
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Writes the trailer and flushes; returns the output.
    ///
    /// # Errors
    /// [`FormatError::Io`].
    pub fn finish(mut self) -> Result<W, FormatError> {
        self.put(&TAG_END)?;
        self.put(&4u64.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        let offset = self.offset;
        self.out
            .write_all(&crc.to_le_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|source| FormatError::Io {
                what: "cannot write the image trailer",
                offset,
                source,
            })?;
        Ok(self.out)
    }
}

/// One section as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Section {
    /// `MACH`: its payload.
    Machine(Vec<u8>),
    /// `RAM `: guest physical address and length; the bytes follow and must be read with
    /// [`StreamReader::read_payload`] before the next section.
    Ram {
        /// Guest physical address.
        gpa: u64,
        /// Number of bytes.
        len: u64,
    },
    /// The trailer: the checksum matched.
    End,
}

/// Reads a stream, checking the header, bounds and checksum.
pub struct StreamReader<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    offset: u64,
    ram_limit: u64,
    version: u32,
}

impl<R: Read> StreamReader<R> {
    /// The stream's format version (from its header).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Reads and checks the header; RAM sections may not exceed `ram_limit` bytes each.
    ///
    /// # Errors
    /// [`FormatError`]: magic, version, truncation, I/O.
    pub fn new(input: R, ram_limit: u64) -> Result<Self, FormatError> {
        let mut r = Self {
            input,
            crc: crc32fast::Hasher::new(),
            offset: 0,
            ram_limit,
            version: VERSION,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic, "the header")?;
        if magic != MAGIC {
            return Err(FormatError::Magic { found: magic });
        }
        let mut v = [0u8; 4];
        r.take(&mut v, "the header")?;
        let found = u32::from_le_bytes(v);
        if !(OLDEST_VERSION..=VERSION).contains(&found) {
            return Err(FormatError::Version { found });
        }
        r.version = found;
        Ok(r)
    }

    fn take(&mut self, buf: &mut [u8], inside: &'static str) -> Result<(), FormatError> {
        let mut done = 0;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or_default();
            match self.input.read(rest) {
                Ok(0) => {
                    return Err(FormatError::Truncated {
                        offset: self.offset + done as u64,
                        inside,
                    })
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FormatError::Io {
                        what: "cannot read the image",
                        offset: self.offset + done as u64,
                        source,
                    })
                }
            }
        }
        self.crc.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// The next section.
    ///
    /// # Errors
    /// [`FormatError`].
    pub fn next_section(&mut self) -> Result<Section, FormatError> {
        let start = self.offset;
        let mut tag = [0u8; 4];
        self.take(&mut tag, "a section header")?;
        let mut l = [0u8; 8];
        self.take(&mut l, "a section header")?;
        let len = u64::from_le_bytes(l);
        let bad = |why| FormatError::Section {
            tag: String::from_utf8_lossy(&tag).into_owned(),
            len,
            offset: start,
            why,
        };
        match tag {
            TAG_MACHINE => {
                if len > MAX_STATE_BYTES {
                    return Err(bad("machine state larger than 64 MiB"));
                }
                let mut payload = vec![0u8; usize::try_from(len).map_err(|_| bad("too long"))?];
                self.take(&mut payload, "the machine state")?;
                Ok(Section::Machine(payload))
            }
            TAG_RAM => {
                if len < 8 || len - 8 > self.ram_limit {
                    return Err(bad(
                        "RAM run shorter than its address or larger than guest RAM",
                    ));
                }
                let mut a = [0u8; 8];
                self.take(&mut a, "a RAM run")?;
                Ok(Section::Ram {
                    gpa: u64::from_le_bytes(a),
                    len: len - 8,
                })
            }
            TAG_END => {
                if len != 4 {
                    return Err(bad("trailer must be 4 bytes"));
                }
                let computed = self.crc.clone().finalize();
                let mut c = [0u8; 4];
                self.take(&mut c, "the trailer")?;
                let stored = u32::from_le_bytes(c);
                if stored != computed {
                    return Err(FormatError::Checksum { stored, computed });
                }
                Ok(Section::End)
            }
            _ => Err(bad("unknown section tag")),
        }
    }

    /// Reads the payload of the RAM run just announced into `buf` (its full length).
    ///
    /// # Errors
    /// [`FormatError`].
    pub fn read_payload(&mut self, buf: &mut [u8]) -> Result<(), FormatError> {
        self.take(buf, "a RAM run")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new()).unwrap();
        w.section(TAG_MACHINE, &[b"{}"]).unwrap();
        w.section(TAG_RAM, &[&0x1000u64.to_le_bytes(), &[7u8; 16]])
            .unwrap();
        w.finish().unwrap()
    }

    fn read_all(b: &[u8]) -> Result<(Vec<u8>, Vec<u8>), FormatError> {
        let mut r = StreamReader::new(b, 1 << 20)?;
        let (mut mach, mut ram) = (Vec::new(), Vec::new());
        loop {
            match r.next_section()? {
                Section::Machine(m) => mach = m,
                Section::Ram { gpa, len } => {
                    ram = gpa.to_le_bytes().to_vec();
                    ram.resize(8 + usize::try_from(len).unwrap(), 0);
                    r.read_payload(&mut ram[8..])?;
                }
                Section::End => return Ok((mach, ram)),
            }
        }
    }

    #[test]
    fn round_trip() {
        let (m, r) = read_all(&image()).unwrap();
        assert_eq!(m, b"{}");
        assert_eq!(r[..8], 0x1000u64.to_le_bytes());
        assert_eq!(r[8..], [7u8; 16]);
    }

    #[test]
    fn damaged_images_are_refused() {
        let img = image();
        for cut in [0, 5, 12, 20, img.len() - 1] {
            let e = read_all(&img[..cut]).unwrap_err();
            assert!(matches!(e, FormatError::Truncated { .. }), "{cut}: {e}");
        }
        // A flipped payload byte is a checksum mismatch; any flipped byte at all is refused.
        let mut bad = img.clone();
        bad[50] ^= 1;
        let e = read_all(&bad).unwrap_err();
        assert!(matches!(e, FormatError::Checksum { .. }), "{e}");
        for i in 0..img.len() {
            let mut bad = img.clone();
            bad[i] ^= 0x10;
            assert!(read_all(&bad).is_err(), "flipped byte {i} accepted");
        }
        let mut bad = img.clone();
        bad[8] = 3;
        let e = read_all(&bad).unwrap_err();
        assert!(e.to_string().contains("version 3"), "{e}");
        let mut bad = img.clone();
        bad[0] = b'X';
        assert!(matches!(read_all(&bad), Err(FormatError::Magic { .. })));
        let mut bad = img;
        bad[12] = b'Z';
        assert!(read_all(&bad).unwrap_err().to_string().contains("unknown"));
    }
}
