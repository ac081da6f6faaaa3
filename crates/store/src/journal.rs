//! Persistence: an append-only journal of committed changes plus a snapshot that bounds it.
//!
//! Files in the state directory:
//! - `snapshot`: `DOMUSSNP` + epoch (u64 LE), framed [`Record`]s of the whole state, an `End` record.
//!   Written to `snapshot.tmp`, fsync'ed, renamed, directory fsync'ed — it is either whole or absent.
//! - `journal`: `DOMUSJNL` + epoch, then framed records of every change since that snapshot.
//!
//! A frame is `len: u32 LE`, `crc32(payload): u32 LE`, `payload`. Every committed change is handed to
//! write(2) before its reply is sent ([`Journal::flush`]); a background thread fdatasyncs the journal at
//! least once a second ([`Syncer`]), and [`Journal::sync`] does it on shutdown. On open, a frame that is cut
//! short or fails its checksum ends the journal: it and anything after it are dropped with a warning and the
//! file is truncated there, so earlier records are never touched. Compaction writes a snapshot of epoch
//! `E+1` and then a fresh journal of epoch `E+1`; a journal whose epoch is older than the snapshot's is
//! stale (a crash between the two steps) and is ignored.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::perms::{Access, Perm, Perms};
use crate::{DomId, StoreError};

const SNAP_MAGIC: &[u8; 8] = b"DOMUSSNP";
const JNL_MAGIC: &[u8; 8] = b"DOMUSJNL";
const FILE_HEADER: usize = 16;
const FRAME_HEADER: usize = 8;
/// Largest record accepted when reading (a node is at most a 4 KiB message plus its permissions).
const RECORD_MAX: usize = 1 << 20;

/// One persisted change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Node created or updated.
    Put {
        /// Absolute path.
        path: String,
        /// Value.
        value: Vec<u8>,
        /// Permissions.
        perms: Perms,
    },
    /// Node and descendants removed.
    Del {
        /// Absolute path.
        path: String,
    },
    /// Domain introduced.
    Introduce {
        /// Domain.
        domid: DomId,
        /// Its store page frame.
        mfn: u64,
        /// Its event channel.
        port: u32,
    },
    /// Domain released.
    Release {
        /// Domain.
        domid: DomId,
    },
    /// SET_TARGET.
    SetTarget {
        /// The domain that gets rights.
        domid: DomId,
        /// Whose rights it gets.
        target: DomId,
    },
    /// Permissions of a special node (`@introduceDomain`, `@releaseDomain`).
    SpecialPerms {
        /// The special name.
        name: String,
        /// Permissions.
        perms: Perms,
    },
    /// A quota set by SET_QUOTA: global (`domid` None) or one domain's own limit.
    Quota {
        /// The domain whose limit it is; None for the global limit.
        domid: Option<DomId>,
        /// The quota's name ([`crate::quota::NAMES`]).
        name: String,
        /// Its value.
        value: u32,
    },
    /// End of a snapshot.
    End,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("record fields are bounded by the message size");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

impl Record {
    /// Appends the record's payload encoding.
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Put { path, value, perms } => {
                out.push(1);
                put_bytes(out, path.as_bytes());
                put_bytes(out, value);
                let n = u16::try_from(perms.entries().len()).expect("permission lists are bounded");
                out.extend_from_slice(&n.to_le_bytes());
                for p in perms.entries() {
                    out.extend_from_slice(&p.domid.0.to_le_bytes());
                    out.push(match p.access {
                        Access::None => 0,
                        Access::Read => 1,
                        Access::Write => 2,
                        Access::Both => 3,
                    });
                }
            }
            Record::Del { path } => {
                out.push(2);
                put_bytes(out, path.as_bytes());
            }
            Record::Introduce { domid, mfn, port } => {
                out.push(3);
                out.extend_from_slice(&domid.0.to_le_bytes());
                out.extend_from_slice(&mfn.to_le_bytes());
                out.extend_from_slice(&port.to_le_bytes());
            }
            Record::Release { domid } => {
                out.push(4);
                out.extend_from_slice(&domid.0.to_le_bytes());
            }
            Record::SetTarget { domid, target } => {
                out.push(5);
                out.extend_from_slice(&domid.0.to_le_bytes());
                out.extend_from_slice(&target.0.to_le_bytes());
            }
            Record::SpecialPerms { name, perms } => {
                let tmp = Record::Put {
                    path: name.clone(),
                    value: Vec::new(),
                    perms: perms.clone(),
                };
                let start = out.len();
                tmp.encode(out);
                out[start] = 6;
            }
            Record::End => out.push(7),
            Record::Quota { domid, name, value } => {
                out.push(8);
                out.push(u8::from(domid.is_some()));
                out.extend_from_slice(&domid.map_or(0, |d| d.0).to_le_bytes());
                put_bytes(out, name.as_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }

    /// Decodes one record payload; `None` if it is not a valid record.
    fn decode(buf: &[u8]) -> Option<Record> {
        let mut r = Reader { buf, pos: 0 };
        let rec = match r.u8()? {
            tag @ (1 | 6) => {
                let path = String::from_utf8(r.bytes()?.to_vec()).ok()?;
                let value = r.bytes()?.to_vec();
                let n = r.u16()?;
                let mut list = Vec::with_capacity(usize::from(n).min(64));
                for _ in 0..n {
                    let domid = DomId(r.u32()?);
                    let access = match r.u8()? {
                        0 => Access::None,
                        1 => Access::Read,
                        2 => Access::Write,
                        3 => Access::Both,
                        _ => return None,
                    };
                    list.push(Perm { domid, access });
                }
                let perms = Perms::new(list)?;
                if tag == 1 {
                    Record::Put { path, value, perms }
                } else {
                    Record::SpecialPerms { name: path, perms }
                }
            }
            2 => Record::Del {
                path: String::from_utf8(r.bytes()?.to_vec()).ok()?,
            },
            3 => Record::Introduce {
                domid: DomId(r.u32()?),
                mfn: r.u64()?,
                port: r.u32()?,
            },
            4 => Record::Release {
                domid: DomId(r.u32()?),
            },
            5 => Record::SetTarget {
                domid: DomId(r.u32()?),
                target: DomId(r.u32()?),
            },
            7 => Record::End,
            8 => {
                let scoped = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                let domid = DomId(r.u32()?);
                Record::Quota {
                    domid: scoped.then_some(domid),
                    name: String::from_utf8(r.bytes()?.to_vec()).ok()?,
                    value: r.u32()?,
                }
            }
            _ => return None,
        };
        (r.pos == buf.len()).then_some(rec)
    }

    /// Appends one framed record.
    pub fn frame_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        self.encode(out);
        let payload = &out[start + FRAME_HEADER..];
        let len = u32::try_from(payload.len()).expect("records are bounded");
        let crc = crc32fast::hash(payload);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)?.try_into().ok().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

/// Parses framed records from `buf`; returns them and the offset where valid data ends.
pub fn parse_frames(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(head) = buf.get(pos..pos + FRAME_HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Ok(len) = usize::try_from(len) else { break };
        if len > RECORD_MAX {
            break;
        }
        let Some(payload) = buf.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(rec) = Record::decode(payload) else {
            break;
        };
        out.push(rec);
        pos += FRAME_HEADER + len;
    }
    (out, pos)
}

fn file_header(magic: &[u8; 8], epoch: u64) -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&epoch.to_le_bytes());
    h
}

fn read_header(buf: &[u8], magic: &[u8; 8]) -> Option<u64> {
    if buf.get(..8)? != magic {
        return None;
    }
    buf.get(8..16)?.try_into().ok().map(u64::from_le_bytes)
}

/// What [`Journal::open`] found on disk.
#[derive(Debug)]
pub struct Loaded {
    /// Snapshot records followed by journal records, in order.
    pub records: Vec<Record>,
    /// Bytes of torn tail dropped from the journal (0: none).
    pub dropped_bytes: u64,
    /// Whether a snapshot was found (it then holds the whole tree, initial nodes included).
    pub from_snapshot: bool,
}

/// Shared with the [`Syncer`] thread: the journal file and whether it has unsynced data.
#[derive(Debug)]
struct SyncShared {
    file: Mutex<File>,
    dirty: AtomicBool,
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    pending: Vec<u8>,
    epoch: u64,
    len: u64,
    snapshot_len: u64,
    compact_min: u64,
    shared: Arc<SyncShared>,
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "syncing state directory"))
}

impl Journal {
    /// Opens (or creates) the state in `dir`, returning the journal and the records to replay.
    ///
    /// # Errors
    /// I/O errors, and a snapshot that is not whole (it is written atomically, so that means outside damage).
    pub fn open(dir: &Path, compact_min: u64) -> Result<(Journal, Loaded), StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "creating state directory"))?;
        let snap_path = dir.join("snapshot");
        let mut records = Vec::new();
        let mut epoch = 0;
        let mut snapshot_len = 0;
        match fs::read(&snap_path) {
            Ok(buf) => {
                epoch = read_header(&buf, SNAP_MAGIC).ok_or_else(|| StoreError::Corrupt {
                    path: snap_path.clone(),
                    offset: 0,
                })?;
                let (recs, end) = parse_frames(&buf[FILE_HEADER..]);
                if recs.last() != Some(&Record::End) || FILE_HEADER + end != buf.len() {
                    return Err(StoreError::Corrupt {
                        path: snap_path,
                        offset: (FILE_HEADER + end) as u64,
                    });
                }
                records.extend(recs.into_iter().filter(|r| *r != Record::End));
                snapshot_len = buf.len() as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&snap_path, "reading snapshot")(e)),
        }
        let jpath = dir.join("journal");
        let mut dropped_bytes = 0;
        let mut valid_len = None;
        match fs::read(&jpath) {
            Ok(buf) => match read_header(&buf, JNL_MAGIC) {
                Some(e) if e == epoch => {
                    let (recs, end) = parse_frames(&buf[FILE_HEADER..]);
                    let end = FILE_HEADER + end;
                    if end < buf.len() {
                        dropped_bytes = (buf.len() - end) as u64;
                        tracing::warn!(
                            path = %jpath.display(), offset = end, dropped_bytes,
                            "journal ends in a torn or corrupt record; dropping it and everything after it"
                        );
                    }
                    records.extend(recs);
                    valid_len = Some(end as u64);
                }
                Some(e) if e < epoch => {
                    tracing::info!(path = %jpath.display(), "journal predates the snapshot; starting a new one");
                }
                _ => {
                    tracing::warn!(path = %jpath.display(), "journal header is unreadable or from a lost snapshot; starting a new one");
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&jpath, "reading journal")(e)),
        }
        let (file, len) = match valid_len {
            Some(len) => {
                let f = OpenOptions::new()
                    .write(true)
                    .open(&jpath)
                    .map_err(io_err(&jpath, "opening journal"))?;
                f.set_len(len)
                    .map_err(io_err(&jpath, "truncating torn journal tail"))?;
                f.sync_data().map_err(io_err(&jpath, "syncing journal"))?;
                drop(f);
                let f = OpenOptions::new()
                    .append(true)
                    .open(&jpath)
                    .map_err(io_err(&jpath, "opening journal"))?;
                (f, len)
            }
            None => (Self::create_journal(dir, epoch)?, FILE_HEADER as u64),
        };
        let shared = Arc::new(SyncShared {
            file: Mutex::new(
                file.try_clone()
                    .map_err(io_err(&jpath, "duplicating journal fd"))?,
            ),
            dirty: AtomicBool::new(false),
        });
        let j = Journal {
            dir: dir.to_owned(),
            file,
            pending: Vec::new(),
            epoch,
            len,
            snapshot_len,
            compact_min,
            shared,
        };
        Ok((
            j,
            Loaded {
                records,
                dropped_bytes,
                from_snapshot: snapshot_len > 0,
            },
        ))
    }

    fn create_journal(dir: &Path, epoch: u64) -> Result<File, StoreError> {
        let tmp = dir.join("journal.tmp");
        let path = dir.join("journal");
        let mut f = File::create(&tmp).map_err(io_err(&tmp, "creating journal"))?;
        f.write_all(&file_header(JNL_MAGIC, epoch))
            .map_err(io_err(&tmp, "writing journal header"))?;
        f.sync_all().map_err(io_err(&tmp, "syncing journal"))?;
        fs::rename(&tmp, &path).map_err(io_err(&path, "installing journal"))?;
        sync_dir(dir)?;
        OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path, "opening journal"))
    }

    /// Queues a record; it reaches the file at the next [`Journal::flush`].
    pub fn append(&mut self, rec: &Record) {
        rec.frame_into(&mut self.pending);
    }

    /// Hands queued records to write(2). Called before any reply of the batch is sent.
    ///
    /// # Errors
    /// The write failed; the caller must not acknowledge the batch.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("journal");
        if let Err(e) = self.file.write_all(&self.pending) {
            // Full or read-only: cut off whatever part did reach the file (the journal ends at its
            // last whole record again) and keep the records queued, so a later flush, once there is
            // room, writes them whole.
            let _ = self.file.set_len(self.len);
            return Err(io_err(&path, "appending to journal")(e));
        }
        self.len += self.pending.len() as u64;
        self.pending.clear();
        self.shared.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Bytes queued and not yet handed to write(2).
    pub fn unflushed_bytes(&self) -> usize {
        self.pending.len()
    }

    /// fdatasyncs the journal now.
    ///
    /// # Errors
    /// The sync failed.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        self.shared.dirty.store(false, Ordering::Release);
        self.file
            .sync_data()
            .map_err(io_err(&self.dir.join("journal"), "syncing journal"))
    }

    /// Whether the journal has grown enough to be folded into a new snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.len > self.compact_min.max(self.snapshot_len.saturating_mul(2))
    }

    /// Writes `state` as the new snapshot and starts an empty journal.
    ///
    /// # Errors
    /// I/O errors; the previous snapshot and journal stay valid in that case.
    pub fn compact(&mut self, state: &[Record]) -> Result<(), StoreError> {
        self.flush()?;
        let next = self.epoch + 1;
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(&file_header(SNAP_MAGIC, next));
        for r in state {
            r.frame_into(&mut buf);
        }
        Record::End.frame_into(&mut buf);
        let tmp = self.dir.join("snapshot.tmp");
        let path = self.dir.join("snapshot");
        let mut f = File::create(&tmp).map_err(io_err(&tmp, "creating snapshot"))?;
        f.write_all(&buf)
            .map_err(io_err(&tmp, "writing snapshot"))?;
        f.sync_all().map_err(io_err(&tmp, "syncing snapshot"))?;
        fs::rename(&tmp, &path).map_err(io_err(&path, "installing snapshot"))?;
        sync_dir(&self.dir)?;
        self.file = Self::create_journal(&self.dir, next)?;
        let clone = self
            .file
            .try_clone()
            .map_err(io_err(&self.dir, "duplicating journal fd"))?;
        *self.shared.file.lock().unwrap_or_else(|p| p.into_inner()) = clone;
        self.epoch = next;
        self.len = FILE_HEADER as u64;
        self.snapshot_len = buf.len() as u64;
        tracing::info!(
            bytes = buf.len(),
            records = state.len(),
            "journal compacted into a new snapshot"
        );
        Ok(())
    }

    /// Current journal size in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Starts the thread that fdatasyncs the journal once a second when it has new data.
    pub fn start_syncer(&self) -> Syncer {
        let shared = self.shared.clone();
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-fdatasync".into())
            .spawn(move || loop {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                if shared.dirty.swap(false, Ordering::AcqRel) {
                    let f = shared.file.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = f.sync_data() {
                        tracing::error!(error = %e, "fdatasync of the journal failed");
                    }
                }
            })
            .ok();
        Syncer {
            stop: Some(stop),
            thread,
        }
    }
}

/// The background fdatasync thread; stops when dropped.
#[derive(Debug)]
pub struct Syncer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
