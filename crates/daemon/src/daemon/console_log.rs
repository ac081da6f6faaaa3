//! Console logging: each domain's watcher keeps one client connection to its VMM's console socket and
//! appends what arrives to `$DOMUS_LOG_DIR/console/guest-NAME.log`. When the file would pass the size cap it
//! is rotated to `guest-NAME.log.1` (one old generation kept), so a guest flooding its console costs bounded
//! disk.
//!
//! After a domusd restart the VMM replays its backlog to the new connection; a marker line in the log says
//! so, since those bytes may already be in the file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::warn;

use super::Daemon;

/// An append-only log file with a size cap and one rotated generation.
#[derive(Debug)]
pub struct CappedLog {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

impl CappedLog {
    /// Opens (creating) `path` for appending.
    ///
    /// # Errors
    /// File system errors.
    pub fn open(path: &Path, cap: u64) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            cap,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends, rotating first when the cap would be passed.
    ///
    /// # Errors
    /// File system errors.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.cap {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            fs::rename(&self.path, &old)?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        // A single chunk larger than the cap keeps only its tail.
        let cap = usize::try_from(self.cap).unwrap_or(usize::MAX);
        let data = if data.len() > cap {
            &data[data.len() - cap..]
        } else {
            data
        };
        self.file.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }
}

/// Writes one domain instance's console bytes to the log named after the domain's current name.
#[derive(Debug)]
pub struct ConsoleLogger {
    domid: u32,
    generation: u64,
    log: Option<CappedLog>,
    reattached: bool,
}

impl ConsoleLogger {
    /// A logger for the instance; `reattached` marks a log continued after a domusd restart.
    pub fn new(domid: u32, generation: u64, reattached: bool) -> Self {
        Self {
            domid,
            generation,
            log: None,
            reattached,
        }
    }

    /// Appends console bytes.
    pub fn write(&mut self, daemon: &Arc<Daemon>, data: &[u8]) {
        // Follow renames: the log is named after the domain's current name.
        if let Some(want) = daemon.console_log_path(self.domid, self.generation) {
            if self.log.as_ref().is_none_or(|l| l.path() != want) {
                match CappedLog::open(&want, daemon.opts.console_log_max_bytes) {
                    Ok(l) => self.log = Some(l),
                    Err(e) => {
                        warn!(domid = self.domid, error = %e, path = %want.display(), "cannot open console log")
                    }
                }
            }
        }
        let Some(l) = self.log.as_mut() else { return };
        if self.reattached {
            self.reattached = false;
            let _ = l.write(b"\n[domusd re-attached; the VMM's console backlog follows]\n");
        }
        if let Err(e) = l.write(data) {
            warn!(domid = self.domid, error = %e, "console log write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_at_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("console/guest-a.log");
        let mut l = CappedLog::open(&p, 10).unwrap();
        l.write(b"123456").unwrap();
        l.write(b"789").unwrap();
        l.write(b"abcdef").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"abcdef");
        assert_eq!(
            fs::read(dir.path().join("console/guest-a.log.1")).unwrap(),
            b"123456789"
        );
        l.write(b"0123456789ABCDEF").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"6789ABCDEF");
        let l2 = CappedLog::open(&p, 10).unwrap();
        assert_eq!(l2.size, 10);
    }
}
