//! A saved image read past the page cache (`O_DIRECT`), by a thread of its own that keeps the next
//! [`BUF`]-sized chunks coming while the restore copies the current one into guest memory. An image
//! `save` wrote is not in the page cache ([`super::direct`]); read through it, every page of the
//! image was first allocated in the cache (slow on the development host: a 1 GiB guest's restore
//! took 0.6-1.2 s instead of ~0.3 s from an image still cached), then copied twice.
//!
//! The reads start at the 4 KiB block holding the descriptor's offset (after domusd's image header)
//! and the bytes before the offset are skipped; the last read returns what is left before the end of
//! the file. A file system without direct I/O (it refuses the flag or an aligned read) is read through
//! the page cache instead, by the same thread. The stream's bytes are the same either way.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::sync::mpsc;

use super::direct::{set_direct, AlignedBuf, ALIGN};

/// One read.
pub const BUF: usize = 4 << 20;
/// Chunks read ahead at most (besides the one being consumed).
const AHEAD: usize = 2;

/// What the read thread hands over: a chunk and how many bytes of it hold data (0: the end).
type Chunk = io::Result<(AlignedBuf, usize)>;

/// Reads `file` from `at` (aligned) in chunks until its end or an error, sending each; takes
/// emptied buffers back on `free`.
fn read_thread(
    file: &File,
    mut at: u64,
    chunks: &mpsc::SyncSender<Chunk>,
    free: &mpsc::Receiver<AlignedBuf>,
) {
    let mut spare = Vec::new();
    loop {
        while let Ok(b) = free.try_recv() {
            spare.push(b);
        }
        let mut buf = match spare.pop().map_or_else(|| AlignedBuf::new(BUF), Ok) {
            Ok(b) => b,
            Err(e) => {
                let _ = chunks.send(Err(e));
                return;
            }
        };
        let r = read_full(file, buf.as_mut_slice(), at);
        let last = !matches!(r, Ok(n) if n == BUF);
        let sent = match r {
            Ok(n) => {
                at += n as u64;
                chunks.send(Ok((buf, n)))
            }
            Err(e) => chunks.send(Err(e)),
        };
        if sent.is_err() || last {
            return;
        }
    }
}

/// Reads up to `buf.len()` bytes at `at`, fewer only at the end of the file. An aligned read the
/// file system refuses (EINVAL) turns `O_DIRECT` off and is read again through the page cache.
fn read_full(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or_default();
        match file.read_at(rest, at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!("direct read refused; the image is read through the page cache");
                set_direct(file, false)?;
            }
            Err(e) => return Err(e),
        }
        // A short direct read is the end of the file; through the cache, read on to be sure.
        if done % ALIGN != 0 {
            break;
        }
    }
    Ok(done)
}

/// A [`Read`] of a regular file from its descriptor's offset on, past the page cache.
pub struct DirectReader {
    chunks: mpsc::Receiver<Chunk>,
    free: mpsc::SyncSender<AlignedBuf>,
    /// The chunk being consumed, its data length and how far it was read.
    cur: Option<(AlignedBuf, usize)>,
    pos: usize,
    ended: bool,
    file: File,
}

impl DirectReader {
    /// Starts reading `file` (a regular file) from its offset on; `None` for anything else or when
    /// the thread cannot start (read it through a buffer then).
    pub fn new(file: &File) -> Option<Self> {
        if !file.metadata().is_ok_and(|m| m.file_type().is_file()) {
            return None;
        }
        let offset = (&*file).stream_position().ok()?;
        let own = file.try_clone().ok()?;
        let reader = own.try_clone().ok()?;
        let start = offset / ALIGN as u64 * ALIGN as u64;
        if let Err(e) = set_direct(&own, true) {
            tracing::debug!(error = %e, "no O_DIRECT on the image; reading it through the page cache");
        }
        let (chunk_tx, chunk_rx) = mpsc::sync_channel(AHEAD);
        let (free_tx, free_rx) = mpsc::sync_channel(AHEAD + 2);
        std::thread::Builder::new()
            .name("restore-disk".into())
            .spawn(move || read_thread(&reader, start, &chunk_tx, &free_rx))
            .ok()?;
        let skip = usize::try_from(offset - start).unwrap_or(0);
        Some(Self {
            chunks: chunk_rx,
            free: free_tx,
            cur: None,
            pos: skip,
            ended: false,
            file: own,
        })
    }

    /// The next chunk; false at the end.
    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        let skip = if self.cur.is_none() { self.pos } else { 0 };
        if let Some((buf, _)) = self.cur.take() {
            let _ = self.free.try_send(buf);
        }
        let (buf, len) = self
            .chunks
            .recv()
            .map_err(|_| io::Error::other("the image's read thread ended"))??;
        if len == 0 {
            self.ended = true;
            return Ok(false);
        }
        self.ended = len < BUF;
        self.cur = Some((buf, len));
        self.pos = skip;
        Ok(true)
    }
}

impl Read for DirectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some((buf, len)) = &self.cur {
                if self.pos < *len {
                    let data = buf.as_slice().get(self.pos..*len).unwrap_or_default();
                    let n = data.len().min(out.len());
                    out.get_mut(..n)
                        .unwrap_or_default()
                        .copy_from_slice(data.get(..n).unwrap_or_default());
                    self.pos += n;
                    return Ok(n);
                }
                if self.ended {
                    return Ok(0);
                }
            }
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
    }
}

impl Drop for DirectReader {
    fn drop(&mut self) {
        // The descriptor is domusd's too: leave it as it came.
        let _ = set_direct(&self.file, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{SeekFrom, Write};

    fn pattern(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| u8::try_from((i * 13 + i / 4096) % 251).unwrap())
            .collect()
    }

    #[test]
    fn every_byte_comes_back_from_any_offset_in_any_read_size() {
        for (prefix, len, chunk) in [
            (0, 0, 1),
            (0, 10, 3),
            (100, 5000, 7),
            (4095, 1, 1),
            (4096, BUF, 1 << 20),
            (1234, 3 * BUF + 12345, 1 << 20),
            (513, BUF - 513, 4096),
            (10, 2 * BUF + 17, 100_000),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("image");
            let data = pattern(prefix + len);
            std::fs::File::create(&p).unwrap().write_all(&data).unwrap();
            let f = File::open(&p).unwrap();
            (&f).seek(SeekFrom::Start(prefix as u64)).unwrap();
            let mut r = DirectReader::new(&f).unwrap();
            let mut back = Vec::new();
            let mut piece = vec![0u8; chunk];
            loop {
                let n = r.read(&mut piece).unwrap();
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&piece[..n]);
            }
            assert!(
                back == data[prefix..],
                "{prefix}/{len}/{chunk}: {}",
                back.len()
            );
            drop(r);
            // SAFETY: F_GETFL on an open descriptor.
            let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_GETFL) };
            assert_eq!(flags & libc::O_DIRECT, 0, "O_DIRECT is cleared again");
        }
    }

    #[test]
    fn a_pipe_is_not_read_this_way() {
        let (r, _w) = std::io::pipe().unwrap();
        let r = File::from(std::os::fd::OwnedFd::from(r));
        assert!(DirectReader::new(&r).is_none());
    }
}
