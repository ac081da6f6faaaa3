//! Early writeback of a file being written (a `save` image): as the VMM reports its progress, the
//! bytes written so far are handed to the kernel's writeback (`sync_file_range(SYNC_FILE_RANGE_WRITE)`,
//! which starts it without waiting), so the `fdatasync` before the rename finds little left to write.
//! Durability still rests on that `fdatasync` alone: this only starts the disk work sooner. A VMM
//! that writes its image with `O_DIRECT` (domus-vmm's `snapshot::direct`) leaves nothing dirty but the
//! first and last 4 KiB: these calls then find nothing to do; they matter for a VMM from before that,
//! or a file system without direct I/O.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Start writeback once at least this much was written since the last start.
const STEP: u64 = 8 << 20;

/// Writeback started so far on one file.
pub struct Writeback<'a> {
    file: &'a File,
    /// Writeback was started for bytes before this offset.
    started: u64,
    /// Whether the kernel took the last request (a file system without support stops the attempts).
    works: bool,
}

impl<'a> Writeback<'a> {
    /// Writeback of `file`, starting at `offset` (what was written before is left to the final sync).
    pub fn new(file: &'a File, offset: u64) -> Self {
        Self {
            file,
            started: offset,
            works: true,
        }
    }

    /// The file holds data up to `upto`: starts writeback of what is new when there is enough.
    pub fn advance(&mut self, upto: u64) {
        if !self.works || upto < self.started.saturating_add(STEP) {
            return;
        }
        let (Ok(off), Ok(len)) = (
            libc::off64_t::try_from(self.started),
            libc::off64_t::try_from(upto - self.started),
        ) else {
            self.works = false;
            return;
        };
        // SAFETY: sync_file_range only reads its scalar arguments; the descriptor is open (borrowed
        // from `self.file`).
        let rc = unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE)
        };
        if rc == 0 {
            self.started = upto;
        } else {
            self.works = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn writeback_starts_in_steps_and_the_data_stays_intact() {
        let path = std::env::temp_dir().join(format!("domusd-wb-{}", std::process::id()));
        let f = File::create(&path).unwrap();
        let mut wb = Writeback::new(&f, 0);
        let mut w = &f;
        let block = vec![0x5au8; 1 << 20];
        for i in 1..=20u64 {
            w.write_all(&block).unwrap();
            wb.advance(i << 20);
        }
        assert!(wb.works);
        assert_eq!(wb.started, 16 << 20);
        f.sync_data().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len(), 20 << 20);
        assert!(back.iter().all(|&b| b == 0x5a));
        std::fs::remove_file(&path).unwrap();
    }
}
