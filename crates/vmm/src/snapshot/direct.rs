//! A save image written past the page cache (`O_DIRECT`), with the disk writes on a thread of their
//! own: the stream is copied into page-aligned buffers of [`BUF`] bytes, and while the disk takes one
//! the save goes on filling the next. Through the page cache, the same image cost a copy into cache
//! pages, competed with its own writeback (started as it grew) and with every other writer's dirty
//! pages (a 512 MiB image was throttled to 0.4-2 GB/s on the development host), and left most of the
//! data for the `fdatasync` before the rename; written directly, the disk is busy from the first
//! buffer on and the final sync has a page or two and the metadata left to write.
//!
//! The stream is unchanged (same bytes, same format): only how they reach the file differs. The
//! descriptor's offset when the save starts (after domusd's image header) need not be aligned: the
//! bytes up to the next 4 KiB boundary are written through the page cache first, then `O_DIRECT` is
//! set on the descriptor, whole buffers go to aligned offsets, and the last partial 4 KiB block is
//! written through the cache again once `O_DIRECT` is cleared. A file system without direct I/O (it
//! refuses the flag or an aligned write) gets every write through the cache instead. Durability is
//! the caller's `fdatasync`, as before.

use std::alloc::Layout;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::mpsc;

/// Alignment of `O_DIRECT` buffers, offsets and lengths (the page size; any block size up to it).
pub const ALIGN: usize = 4096;
/// Size of one buffer (one disk write).
pub const BUF: usize = 4 << 20;
/// Buffers in flight at most: one being filled, the others queued for or written by the disk thread.
const BUFFERS: usize = 3;

/// A zeroed, [`ALIGN`]-aligned heap buffer.
pub(super) struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its allocation exclusively (no aliasing pointer is kept elsewhere).
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn layout(len: usize) -> io::Result<Layout> {
        Layout::from_size_align(len, ALIGN).map_err(io::Error::other)
    }

    pub(super) fn new(len: usize) -> io::Result<Self> {
        let layout = Self::layout(len)?;
        if len == 0 {
            return Err(io::Error::other("empty direct-I/O buffer"));
        }
        // SAFETY: the layout has a non-zero size (checked above).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p)
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "direct-I/O buffer"))?;
        Ok(Self { ptr, len })
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live, initialised (zeroed) allocation of `len` bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: allocated in `new` with this very layout, freed once.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
        }
    }
}

/// Sets or clears `O_DIRECT` on `file`'s open file description.
pub(super) fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL takes no argument and touches no memory of ours.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: F_SETFL takes an int argument and touches no memory of ours.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One buffer for the disk thread: the buffer, its length to write, the file offset.
type Job = (AlignedBuf, usize, u64);

/// The disk thread: writes each job at its offset and hands the buffer back (or the error).
/// An aligned write the file system refuses (EINVAL) turns `O_DIRECT` off and is written again
/// through the page cache, as is everything after it.
fn disk_thread(
    file: &File,
    jobs: &mpsc::Receiver<Job>,
    done: &mpsc::Sender<io::Result<AlignedBuf>>,
) {
    while let Ok((buf, len, at)) = jobs.recv() {
        let data = buf.as_slice().get(..len).unwrap_or_default();
        let mut r = file.write_all_at(data, at);
        if matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
            tracing::debug!(
                "direct write refused; the rest of the image goes through the page cache"
            );
            r = set_direct(file, false).and_then(|()| file.write_all_at(data, at));
        }
        if done.send(r.map(|()| buf)).is_err() {
            return;
        }
    }
}

/// Writes a stream to a regular file with `O_DIRECT` (see the module docs). Made by [`run`].
pub struct DirectFile<'f> {
    file: &'f File,
    /// Where the stream started in the file.
    start: u64,
    /// Bytes of the unaligned head still to collect (written through the cache when complete).
    head_left: usize,
    head: Vec<u8>,
    /// The buffer being filled and how far; it goes to the file at `at` (aligned).
    buf: Option<AlignedBuf>,
    fill: usize,
    at: u64,
    /// Buffers handed to the disk thread and not back yet; free ones, and how many exist.
    in_flight: usize,
    free: Vec<AlignedBuf>,
    made: usize,
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<io::Result<AlignedBuf>>,
}

/// Runs `f` with a [`DirectFile`] on `file` (its disk thread lives as long as `f` runs) and finishes
/// the file: the tail written, `O_DIRECT` cleared, the descriptor's offset at the end of the stream.
/// Returns what `f` returned.
///
/// # Errors
/// `f`'s error, or an I/O error of any write (the file is then incomplete).
pub fn run<T, E: From<io::Error>>(
    file: &File,
    f: impl FnOnce(&mut DirectFile<'_>) -> Result<T, E>,
) -> Result<T, E> {
    let start = (&*file).stream_position()?;
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(BUFFERS);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("save-disk".into())
            .spawn_scoped(s, move || disk_thread(file, &jobs_rx, &done_tx))?;
        let head_left = usize::try_from((ALIGN as u64 - start % ALIGN as u64) % ALIGN as u64)
            .map_err(io::Error::other)?;
        let mut d = DirectFile {
            file,
            start,
            head_left,
            head: Vec::with_capacity(head_left),
            buf: None,
            fill: 0,
            at: start + head_left as u64,
            in_flight: 0,
            free: Vec::new(),
            made: 0,
            jobs: Some(jobs_tx),
            done: done_rx,
        };
        if head_left == 0 {
            d.go_direct();
        }
        let out = f(&mut d);
        // Whatever `f` did, the disk thread ends (its channel closes) and O_DIRECT is cleared.
        let end = d.finish();
        let out = out?;
        end?;
        Ok(out)
    })
}

impl DirectFile<'_> {
    /// The head is written: from here on, aligned buffers (through the cache if the flag is refused).
    fn go_direct(&mut self) {
        if let Err(e) = set_direct(self.file, true) {
            tracing::debug!(error = %e, "no O_DIRECT on the image; writing it through the page cache");
        }
    }

    /// A buffer to fill: a free one, a new one while fewer than [`BUFFERS`] exist, else the next one
    /// the disk thread hands back.
    fn take_buffer(&mut self) -> io::Result<AlignedBuf> {
        while let Ok(r) = self.done.try_recv() {
            self.in_flight -= 1;
            self.free.push(r?);
        }
        if let Some(b) = self.free.pop() {
            return Ok(b);
        }
        if self.made < BUFFERS {
            self.made += 1;
            return AlignedBuf::new(BUF);
        }
        self.wait_one()
    }

    fn wait_one(&mut self) -> io::Result<AlignedBuf> {
        let r = self
            .done
            .recv()
            .map_err(|_| io::Error::other("the image's disk thread ended"))?;
        self.in_flight -= 1;
        r
    }

    /// Hands the current buffer's first `len` bytes to the disk thread.
    fn submit(&mut self, len: usize) -> io::Result<()> {
        let Some(buf) = self.buf.take() else {
            return Ok(());
        };
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("the image is finished"))?;
        jobs.send((buf, len, self.at))
            .map_err(|_| io::Error::other("the image's disk thread ended"))?;
        self.in_flight += 1;
        self.at += len as u64;
        self.fill = 0;
        Ok(())
    }

    /// Writes what is left, clears `O_DIRECT`, leaves the offset at the end of the stream.
    fn finish(&mut self) -> io::Result<()> {
        let mut first_err = None;
        let mut tail = Vec::new();
        let mut tail_at = self.at;
        if self.head_left > 0 {
            // The stream ended inside the head: all of it through the cache.
            tail = std::mem::take(&mut self.head);
            tail_at = self.start;
        } else if let Some(buf) = &self.buf {
            let whole = self.fill / ALIGN * ALIGN;
            tail = buf
                .as_slice()
                .get(whole..self.fill)
                .unwrap_or_default()
                .to_vec();
            tail_at = self.at + whole as u64;
            if whole > 0 {
                if let Err(e) = self.submit(whole) {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.buf = None;
        self.jobs = None;
        // The disk thread writes what is queued, then ends (its channel closed): every result comes.
        while self.in_flight > 0 {
            let Ok(r) = self.done.recv() else { break };
            self.in_flight -= 1;
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        self.free.clear();
        if let Err(e) = set_direct(self.file, false) {
            first_err.get_or_insert(e);
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        self.file.write_all_at(&tail, tail_at)?;
        (&*self.file).seek(SeekFrom::Start(tail_at + tail.len() as u64))?;
        Ok(())
    }
}

impl Write for DirectFile<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.head_left > 0 {
            let n = self.head_left.min(data.len());
            self.head
                .extend_from_slice(data.get(..n).unwrap_or_default());
            self.head_left -= n;
            if self.head_left == 0 {
                self.file.write_all_at(&self.head, self.start)?;
                self.go_direct();
            }
            return Ok(n);
        }
        if self.buf.is_none() {
            self.buf = Some(self.take_buffer()?);
        }
        let fill = self.fill;
        let buf = self
            .buf
            .as_mut()
            .ok_or_else(|| io::Error::other("no buffer"))?;
        let room = buf.as_mut_slice().get_mut(fill..).unwrap_or_default();
        let n = room.len().min(data.len());
        room.get_mut(..n)
            .unwrap_or_default()
            .copy_from_slice(data.get(..n).unwrap_or_default());
        self.fill += n;
        if self.fill == BUF {
            self.submit(BUF)?;
        }
        Ok(n)
    }

    /// Nothing to do: the buffers go to the disk as they fill, the rest at the end ([`run`]).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `data` after a `prefix` through a DirectFile in `chunks`-sized writes; returns the file.
    fn round_trip(prefix: usize, data: &[u8], chunk: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("image");
        let mut f = File::create(&p).unwrap();
        f.write_all(&vec![0xee; prefix]).unwrap();
        run::<_, io::Error>(&f, |d| {
            for c in data.chunks(chunk) {
                d.write_all(c)?;
            }
            d.flush()
        })
        .unwrap();
        assert_eq!(
            f.stream_position().unwrap(),
            (prefix + data.len()) as u64,
            "the offset is left at the end"
        );
        // O_DIRECT is off again.
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_DIRECT, 0);
        f.write_all(b"after").unwrap();
        let back = std::fs::read(&p).unwrap();
        assert_eq!(&back[prefix + data.len()..], b"after");
        back[..prefix + data.len()].to_vec()
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| u8::try_from((i * 7 + i / 4096) % 251).unwrap())
            .collect()
    }

    #[test]
    fn every_byte_lands_where_a_plain_write_would_put_it() {
        for (prefix, len, chunk) in [
            (0, 0, 1),
            (0, 100, 7),
            (100, 50, 3),
            (100, 4000, 4096),
            (4095, 5, 1),
            (1234, 3 * BUF + 12345, 1 << 20),
            (0, 2 * BUF, BUF),
            (513, BUF * 5 + 4096, 3 << 20),
            (10, BUF + ALIGN * 3 + 17, 12),
        ] {
            let data = pattern(len);
            let back = round_trip(prefix, &data, chunk);
            assert_eq!(back.len(), prefix + len, "{prefix}/{len}");
            assert!(back[..prefix].iter().all(|&b| b == 0xee), "{prefix}/{len}");
            assert!(back[prefix..] == data[..], "{prefix}/{len}/{chunk}");
        }
    }

    #[test]
    fn an_error_of_the_caller_still_finishes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("image")).unwrap();
        let r: Result<(), io::Error> = run(&f, |d| {
            d.write_all(&pattern(BUF + 10))?;
            Err(io::Error::other("the snapshot failed"))
        });
        assert_eq!(r.unwrap_err().to_string(), "the snapshot failed");
        // SAFETY: F_GETFL on an open descriptor.
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_DIRECT, 0);
    }

    #[test]
    fn a_descriptor_that_cannot_seek_is_an_error_not_a_panic() {
        let (r, w) = std::io::pipe().unwrap();
        let w = File::from(std::os::fd::OwnedFd::from(w));
        let e = run::<(), io::Error>(&w, |_| Ok(())).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESPIPE), "{e}");
        drop(r);
    }
}
