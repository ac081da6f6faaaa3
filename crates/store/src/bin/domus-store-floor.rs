//! `domus-store-floor`: the client-and-kernel floor of a xenstore round trip, for benchmarks.
//!
//! A xenstore client's round trip costs its own work (libxenstore's syscalls), the kernel's (socket
//! copies, wake-ups, the switches between processes) and the server's. This binary removes the last: it
//! answers every request with a reply prepared in advance, so a benchmark run against it measures what
//! no server can go below. Replies must still be right (Xen's `test-xenstore` checks values and
//! EAGAIN), so they are recorded first from a real run and replayed in order:
//!
//! - `domus-store-floor record --socket S --out FILE`: serves with the in-memory store engine (no
//!   journal), writes each connection's replies to FILE when it closes;
//! - `domus-store-floor replay --socket S --from FILE`: the k-th connection gets the k-th recorded
//!   sequence; each request is answered with the next recorded reply (its req_id and tx_id copied from
//!   the request). It does the socket I/O the store server does, and nothing else: one epoll loop
//!   (edge-triggered), read(2) until a short read, one write(2) of every reply due.
//!
//! The same deterministic client command must be run for both (e.g. `test-xenstore -t NAME -i 1000`).
//! Runs until killed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use domus_store::wire::{self, Decoded, HEADER_LEN};
use domus_store::{DomId, Quotas, Store};

#[derive(Debug, Parser)]
#[command(name = "domus-store-floor", version)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Serve with the real engine and record every reply.
    Record {
        /// Listening socket.
        #[arg(long)]
        socket: PathBuf,
        /// Where the replies go (appended, one sequence per connection).
        #[arg(long)]
        out: PathBuf,
    },
    /// Answer with recorded replies.
    Replay {
        /// Listening socket.
        #[arg(long)]
        socket: PathBuf,
        /// A file `record` wrote.
        #[arg(long)]
        from: PathBuf,
    },
}

/// Complete messages at the start of `buf` and the bytes they take.
fn messages(buf: &[u8]) -> anyhow::Result<(Vec<(usize, usize)>, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        match wire::decode(&buf[pos..]).context("malformed request")? {
            Decoded::Incomplete => return Ok((out, pos)),
            Decoded::Message { consumed, .. } => {
                out.push((pos, consumed));
                pos += consumed;
            }
        }
    }
}

/// Reads requests from `s` and calls `answer(request, out)` for each complete one; one write per read.
fn serve(mut s: UnixStream, mut answer: impl FnMut(&[u8], &mut Vec<u8>)) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    let mut out = Vec::with_capacity(64 * 1024);
    loop {
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let (msgs, used) = messages(&buf[..have])?;
        out.clear();
        for (at, len) in msgs {
            answer(&buf[at..at + len], &mut out);
        }
        if !out.is_empty() {
            s.write_all(&out)?;
        }
        buf.copy_within(used..have, 0);
        have -= used;
    }
}

fn record(socket: PathBuf, out: PathBuf) -> anyhow::Result<()> {
    let listener = UnixListener::bind(&socket).with_context(|| format!("binding {socket:?}"))?;
    let store = Arc::new(Mutex::new(Store::in_memory(Quotas::default())));
    let file = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .with_context(|| format!("opening {out:?}"))?,
    ));
    for s in listener.incoming() {
        let s = s?;
        let (store, file) = (store.clone(), file.clone());
        std::thread::spawn(move || {
            let conn = lock(&store).connect(DomId(0));
            let mut replies: Vec<Vec<u8>> = Vec::new();
            let served = serve(s, |req, out| {
                let (h, payload) = match wire::decode(req) {
                    Ok(Decoded::Message {
                        header, payload, ..
                    }) => (header, payload),
                    _ => return,
                };
                let reply = lock(&store).handle(conn, &h, payload);
                out.extend_from_slice(&reply);
                replies.push(reply);
            });
            lock(&store).disconnect(conn);
            if let Err(e) = served {
                eprintln!("domus-store-floor: connection: {e:#}");
            }
            let mut rec = Vec::new();
            rec.extend_from_slice(&(replies.len() as u32).to_le_bytes());
            for r in &replies {
                rec.extend_from_slice(&(r.len() as u32).to_le_bytes());
                rec.extend_from_slice(r);
            }
            if let Err(e) = lock(&file).write_all(&rec) {
                eprintln!("domus-store-floor: writing the recording: {e}");
            }
        });
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn load(from: &PathBuf) -> anyhow::Result<Vec<Vec<Vec<u8>>>> {
    let mut data = Vec::new();
    BufReader::new(File::open(from).with_context(|| format!("opening {from:?}"))?)
        .read_to_end(&mut data)?;
    let mut pos = 0;
    let u32_at = |pos: &mut usize| -> anyhow::Result<usize> {
        let b = data
            .get(*pos..*pos + 4)
            .with_context(|| format!("{from:?} is cut short at byte {pos}"))?;
        *pos += 4;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let mut seqs = Vec::new();
    while pos < data.len() {
        let n = u32_at(&mut pos)?;
        let mut seq = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_at(&mut pos)?;
            let Some(r) = data.get(pos..pos + len) else {
                bail!("{from:?} is cut short at byte {pos}");
            };
            if len < HEADER_LEN {
                bail!("{from:?}: a reply at byte {pos} is shorter than a header");
            }
            seq.push(r.to_vec());
            pos += len;
        }
        seqs.push(seq);
    }
    Ok(seqs)
}

/// One replaying connection.
struct Conn {
    stream: mio::net::UnixStream,
    seq: usize,
    next: usize,
    buf: Vec<u8>,
    have: usize,
    out: Vec<u8>,
}

fn replay(socket: PathBuf, from: PathBuf) -> anyhow::Result<()> {
    use mio::{Events, Interest, Poll, Token};
    let seqs = load(&from)?;
    if seqs.is_empty() {
        bail!("{from:?} holds no recorded connection");
    }
    let mut listener =
        mio::net::UnixListener::bind(&socket).with_context(|| format!("binding {socket:?}"))?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, Token(0), Interest::READABLE)?;
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut accepted = 0;
    let mut events = Events::with_capacity(64);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for ev in events.iter() {
            if ev.token() == Token(0) {
                while let Ok((mut stream, _)) = listener.accept() {
                    accepted += 1;
                    poll.registry()
                        .register(&mut stream, Token(accepted), Interest::READABLE)?;
                    conns.insert(
                        accepted,
                        Conn {
                            stream,
                            seq: (accepted - 1) % seqs.len(),
                            next: 0,
                            buf: vec![0; 64 * 1024],
                            have: 0,
                            out: Vec::with_capacity(64 * 1024),
                        },
                    );
                }
                continue;
            }
            let t = ev.token().0;
            let Some(c) = conns.get_mut(&t) else { continue };
            if !serve_ready(c, &seqs[c.seq]) {
                let Some(mut c) = conns.remove(&t) else {
                    continue;
                };
                poll.registry().deregister(&mut c.stream)?;
                if c.next != seqs[c.seq].len() {
                    eprintln!(
                        "domus-store-floor: connection {t} made {} requests, {} recorded",
                        c.next,
                        seqs[c.seq].len()
                    );
                }
            }
        }
    }
}

/// Reads until the socket is drained (a short read), answers every complete request with one write;
/// false when the connection is gone.
fn serve_ready(c: &mut Conn, seq: &[Vec<u8>]) -> bool {
    loop {
        let n = match c.stream.read(&mut c.buf[c.have..]) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let room = c.buf.len() - c.have;
        c.have += n;
        let Ok((msgs, used)) = messages(&c.buf[..c.have]) else {
            return false;
        };
        c.out.clear();
        for (at, _) in msgs {
            let start = c.out.len();
            match seq.get(c.next) {
                Some(r) => c.out.extend_from_slice(r),
                // Past the recording: the client ran something else.
                None => {
                    c.out
                        .extend_from_slice(&wire::encode(wire::MsgType::Error, 0, 0, b"EINVAL\0"))
                }
            }
            c.next += 1;
            c.out[start + 4..start + 12].copy_from_slice(&c.buf[at + 4..at + 12]);
        }
        if !c.out.is_empty() && c.stream.write_all(&c.out).is_err() {
            return false;
        }
        c.buf.copy_within(used..c.have, 0);
        c.have -= used;
        if n < room {
            return true;
        }
    }
}

fn main() -> anyhow::Result<()> {
    match Args::parse().mode {
        Mode::Record { socket, out } => record(socket, out),
        Mode::Replay { socket, from } => replay(socket, from),
    }
}
