//! Console logging: each domain's watcher keeps one client connection to its VMM's console socket and
//! appends what arrives to `$DOMUS_LOG_DIR/console/guest-NAME.log`. When the file would pass the size cap it
//! is rotated to `guest-NAME.log.1` (one old generation kept), so a guest flooding its console costs bounded
//! disk.
//!
//! After a domusd restart the VMM replays its backlog (its last 64 KiB of output) to the new connection.
//! Most of it is usually in the log already, so the re-attached logger holds what arrives until the stream
//! goes quiet, finds the longest prefix of it that the log already ends with (the log's tail, read back
//! from the file), and appends only the rest. (The VMM's console protocol carries no offsets, so comparing
//! is what is left; a guest whose output repeats exactly across the whole overlap could lose a repeat.)
//! When nothing overlaps although the log has content, output was lost while domusd was away (the ring
//! wrapped), and a marker line says so.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

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
        let file = std::os::unix::fs::OpenOptionsExt::mode(
            OpenOptions::new().create(true).append(true),
            0o600,
        )
        .open(path)?;
        // Readable by the door's group (users read their guests' consoles): see `door.rs`.
        super::door::share(path, 0o640, 0o600)?;
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
            self.file = std::os::unix::fs::OpenOptionsExt::mode(
                OpenOptions::new().create(true).append(true),
                0o600,
            )
            .open(&self.path)?;
            super::door::share(&self.path, 0o640, 0o600)?;
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

/// How much of the log's end is compared with a replayed backlog (the VMM's ring is 64 KiB).
const TAIL_BYTES: u64 = 64 * 1024;
/// The replayed backlog is taken as complete once the stream has been quiet this long ...
const REPLAY_QUIET: Duration = Duration::from_millis(150);
/// ... or once this much arrived.
const REPLAY_MAX: usize = 2 * 64 * 1024;

/// The longest `k` such that `data[..k]` is what `tail` ends with (Knuth-Morris-Pratt over `tail`).
pub fn overlap(tail: &[u8], data: &[u8]) -> usize {
    let pat = &data[..data.len().min(tail.len())];
    if pat.is_empty() {
        return 0;
    }
    // pi[i]: length of the longest proper prefix of pat[..=i] that is also its suffix.
    let mut pi = vec![0usize; pat.len()];
    let mut k = 0;
    for i in 1..pat.len() {
        while k > 0 && pat[i] != pat[k] {
            k = pi[k - 1];
        }
        if pat[i] == pat[k] {
            k += 1;
        }
        pi[i] = k;
    }
    let mut q = 0;
    for &b in tail {
        while q > 0 && (q == pat.len() || pat[q] != b) {
            q = pi[q - 1];
        }
        if q < pat.len() && pat[q] == b {
            q += 1;
        }
    }
    q
}

/// The last `n` bytes of the log at `path`, continuing into its rotated generation when it is short.
fn read_tail(path: &Path, n: u64) -> Vec<u8> {
    fn last(path: &Path, n: u64) -> Vec<u8> {
        let Ok(mut f) = File::open(path) else {
            return Vec::new();
        };
        let len = f.metadata().map_or(0, |m| m.len());
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(len.saturating_sub(n))).is_ok() {
            let _ = f.take(n).read_to_end(&mut buf);
        }
        buf
    }
    let cur = last(path, n);
    let short = n.saturating_sub(cur.len() as u64);
    if short == 0 {
        return cur;
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    let mut all = last(Path::new(&old), short);
    all.extend_from_slice(&cur);
    all
}

/// A backlog being received after a re-attach, not yet written.
#[derive(Debug)]
struct Replay {
    pending: Vec<u8>,
    last_data: Instant,
}

/// Writes one domain instance's console bytes to the log named after the domain's current name.
pub struct ConsoleLogger {
    daemon: Arc<Daemon>,
    domid: u32,
    generation: u64,
    log: Option<CappedLog>,
    replay: Option<Replay>,
}

impl ConsoleLogger {
    /// A logger for the instance; `reattached` (after a domusd restart) makes it skip the part of the
    /// replayed backlog the log already holds.
    pub fn new(daemon: Arc<Daemon>, domid: u32, generation: u64, reattached: bool) -> Self {
        Self {
            daemon,
            domid,
            generation,
            log: None,
            replay: reattached.then(|| Replay {
                pending: Vec::new(),
                last_data: Instant::now(),
            }),
        }
    }

    /// Opens the log named after the domain's current name (following renames).
    fn open_log(&mut self) -> Option<&mut CappedLog> {
        if let Some(want) = self.daemon.console_log_path(self.domid, self.generation) {
            if self.log.as_ref().is_none_or(|l| l.path() != want) {
                match CappedLog::open(&want, self.daemon.opts.console_log_max_bytes) {
                    Ok(l) => self.log = Some(l),
                    Err(e) => {
                        warn!(domid = self.domid, error = %e, path = %want.display(), "cannot open console log")
                    }
                }
            }
        }
        self.log.as_mut()
    }

    fn append(&mut self, data: &[u8]) {
        let domid = self.domid;
        let Some(l) = self.open_log() else { return };
        if let Err(e) = l.write(data) {
            warn!(domid, error = %e, "console log write failed");
        }
    }

    /// Appends console bytes.
    pub fn write(&mut self, data: &[u8]) {
        if self.replay.is_some() {
            // Open now, while the domain exists, so the backlog can be written even if it stops at once.
            let _ = self.open_log();
        }
        if let Some(r) = self.replay.as_mut() {
            r.pending.extend_from_slice(data);
            r.last_data = Instant::now();
            if r.pending.len() >= REPLAY_MAX {
                self.finish_replay();
            }
            return;
        }
        self.append(data);
    }

    /// Called when no bytes came for a while: ends a replay that has gone quiet.
    pub fn idle(&mut self) {
        if self
            .replay
            .as_ref()
            .is_some_and(|r| !r.pending.is_empty() && r.last_data.elapsed() >= REPLAY_QUIET)
        {
            self.finish_replay();
        }
    }

    /// Writes the part of the replayed backlog the log does not hold yet.
    fn finish_replay(&mut self) {
        let Some(r) = self.replay.take() else { return };
        let tail = self
            .open_log()
            .map(|l| read_tail(l.path(), TAIL_BYTES))
            .unwrap_or_default();
        let skip = overlap(&tail, &r.pending);
        info!(
            domid = self.domid,
            replayed = r.pending.len(),
            already_logged = skip,
            "console backlog replayed after re-attach"
        );
        if skip == 0 && !tail.is_empty() {
            self.append(
                b"\n[domusd re-attached; console output may be missing before this point]\n",
            );
        }
        self.append(&r.pending[skip..]);
    }
}

impl Drop for ConsoleLogger {
    fn drop(&mut self) {
        self.finish_replay();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_finds_the_longest_logged_prefix() {
        assert_eq!(overlap(b"", b"abc"), 0);
        assert_eq!(overlap(b"abc", b""), 0);
        assert_eq!(overlap(b"xxabc", b"abcdef"), 3);
        assert_eq!(overlap(b"abc", b"abc"), 3);
        assert_eq!(overlap(b"abc", b"xyz"), 0);
        // Repeats: the longest candidate wins.
        assert_eq!(overlap(b"r\nr\nr\n", b"r\nr\nr\nnew\n"), 6);
        assert_eq!(overlap(b"aab", b"aabaab"), 3);
        assert_eq!(overlap(b"abab", b"ababx"), 4);
        assert_eq!(overlap(b"zabcab", b"abcabd"), 5);
        // A pattern that occurs in the middle but not at the end does not count.
        assert_eq!(overlap(b"abcz", b"abc"), 0);
    }

    #[test]
    fn tail_continues_into_the_rotated_log() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("guest-a.log");
        fs::write(dir.path().join("guest-a.log.1"), b"0123456789").unwrap();
        fs::write(&p, b"abc").unwrap();
        assert_eq!(read_tail(&p, 2), b"bc");
        assert_eq!(read_tail(&p, 6), b"789abc");
        assert_eq!(read_tail(&dir.path().join("none.log"), 6), b"");
    }

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
