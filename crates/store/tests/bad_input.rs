//! Hostile and broken clients: each gets an error or loses its own connection; the server and every other
//! client carry on, and nothing committed is lost.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use domus_store::client::{Client, TxId};
use domus_store::server::{self, ServerConfig, ServerHandle};
use domus_store::wire::{self, MsgType, XsError};
use domus_store::{DomId, Quotas};

struct Env {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    dom4: PathBuf,
    handle: Option<ServerHandle>,
}

fn start(tune: impl FnOnce(&mut ServerConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dom0.sock");
    let dom4 = dir.path().join("dom4.sock");
    let mut config = ServerConfig::new(dir.path().join("state"), vec![sock.clone()]);
    config.domain_sockets = vec![(DomId(4), dom4.clone())];
    tune(&mut config);
    let handle = server::spawn(config).unwrap();
    let mut c = Client::connect(&sock).unwrap();
    c.mkdir(TxId::NONE, "/local/domain/4").unwrap();
    c.set_perms(TxId::NONE, "/local/domain/4", &"n4".parse_perms())
        .unwrap();
    Env {
        _dir: dir,
        sock,
        dom4,
        handle: Some(handle),
    }
}

trait ParsePerms {
    fn parse_perms(&self) -> domus_store::perms::Perms;
}

impl ParsePerms for str {
    fn parse_perms(&self) -> domus_store::perms::Perms {
        let fields: Vec<&[u8]> = self.split(' ').map(str::as_bytes).collect();
        domus_store::perms::Perms::parse(&fields).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().unwrap();
        }
    }
}

/// Reads until EOF (or error); returns bytes read. Panics if the server keeps the connection open.
fn read_until_closed(s: &mut UnixStream) -> usize {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut total = 0;
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("connection was not closed: {e}"),
        }
    }
}

fn healthy(sock: &Path) {
    let mut c = Client::connect(sock).unwrap();
    c.write(TxId::NONE, "/health", b"ok").unwrap();
    assert_eq!(c.read(TxId::NONE, "/health").unwrap(), b"ok");
}

#[test]
fn oversized_length_closes_only_that_connection() {
    let env = start(|_| {});
    let mut other = Client::connect(&env.sock).unwrap();
    other.write(TxId::NONE, "/kept", b"1").unwrap();
    let mut bad = UnixStream::connect(&env.sock).unwrap();
    let mut msg = wire::encode(MsgType::Read, 1, 0, b"/kept\0");
    msg[12..16].copy_from_slice(&4097u32.to_le_bytes());
    bad.write_all(&msg).unwrap();
    assert_eq!(
        read_until_closed(&mut bad),
        0,
        "no reply, connection closed"
    );
    assert_eq!(other.read(TxId::NONE, "/kept").unwrap(), b"1");
    healthy(&env.sock);
}

#[test]
fn garbage_and_split_messages() {
    let env = start(|_| {});
    let mut s = UnixStream::connect(&env.sock).unwrap();
    // Unknown type with a valid length: ENOSYS, connection stays.
    s.write_all(&wire::encode(MsgType::Unknown(0xdead), 5, 0, b"junk"))
        .unwrap();
    // A valid request delivered one byte at a time.
    for b in wire::encode(MsgType::Write, 6, 0, b"/split\0value") {
        s.write_all(&[b]).unwrap();
    }
    let mut c = Client::connect(&env.sock).unwrap();
    let mut buf = vec![0u8; 16 + 7 + 16 + 3];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[0..4], &16u32.to_le_bytes());
    assert_eq!(&buf[16..23], b"ENOSYS\0");
    assert_eq!(&buf[23 + 4..23 + 8], &6u32.to_le_bytes());
    assert_eq!(&buf[39..42], b"OK\0");
    assert_eq!(c.read(TxId::NONE, "/split").unwrap(), b"value");
    for bad in [
        &b"/a\0b\0"[..],
        b"/caf\xc3\xa9\0",
        b"/a b\0",
        b"//\0",
        b"/x/\0",
        b"\0",
    ] {
        let err = c.request(MsgType::Read, TxId::NONE, bad).unwrap_err();
        assert_eq!(
            err.xs_error(),
            Some(XsError::Inval),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let err = c
        .request(MsgType::Write, TxId::NONE, b"/nul\xffpath\0v")
        .unwrap_err();
    assert_eq!(err.xs_error(), Some(XsError::Inval));
    healthy(&env.sock);
}

#[test]
fn domain_sockets_enforce_permissions_and_quotas() {
    let env = start(|c| {
        c.quotas = Quotas {
            nodes: 50,
            ..Quotas::default()
        }
    });
    let mut dom0 = Client::connect(&env.sock).unwrap();
    dom0.write(TxId::NONE, "/secret", b"s").unwrap();
    let mut d4 = Client::connect(&env.dom4).unwrap();
    assert_eq!(
        d4.read(TxId::NONE, "/secret").unwrap_err().xs_error(),
        Some(XsError::Acces)
    );
    assert_eq!(d4.get_domain_path(DomId(4)).unwrap(), "/local/domain/4");
    let mut written = 0;
    let err = loop {
        match d4.write(TxId::NONE, &format!("data/k{written}"), b"v") {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "quota never hit");
    };
    assert_eq!(err.xs_error(), Some(XsError::NoSpc));
    assert!(
        (45..50).contains(&written),
        "stopped near the 50-node quota after {written}"
    );
    // Relative read works; dom0 is not limited and the domain's data is intact.
    assert_eq!(d4.read(TxId::NONE, "data/k0").unwrap(), b"v");
    for i in 0..100 {
        dom0.write(TxId::NONE, &format!("/free/{i}"), b"x").unwrap();
    }
    assert_eq!(
        dom0.directory(TxId::NONE, "/local/domain/4/data")
            .unwrap()
            .len(),
        written
    );
}

#[test]
fn a_client_that_never_reads_does_not_block_others() {
    let env = start(|_| {});
    let hog = UnixStream::connect(&env.sock).unwrap();
    let hog_writer = hog.try_clone().unwrap();
    let spam = std::thread::spawn(move || {
        let mut w = hog_writer;
        let msg = wire::encode(MsgType::Read, 1, 0, b"/tool\0");
        for _ in 0..200_000 {
            if w.write_all(&msg).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let mut c = Client::connect(&env.sock).unwrap();
    for i in 0..500 {
        c.write(TxId::NONE, &format!("/busy/{i}"), b"x").unwrap();
    }
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "others were held up: {:?}",
        t0.elapsed()
    );
    hog.shutdown(std::net::Shutdown::Both).unwrap();
    spam.join().unwrap();
    healthy(&env.sock);
}

#[test]
fn watch_storm_drops_the_watcher_that_never_reads() {
    let env = start(|c| c.max_output_bytes = 16 * 1024);
    let mut watcher = UnixStream::connect(&env.sock).unwrap();
    let token = "t".repeat(300);
    watcher
        .write_all(&wire::encode(
            MsgType::Watch,
            1,
            0,
            format!("/storm\0{token}\0").as_bytes(),
        ))
        .unwrap();
    let mut good = Client::connect(&env.sock).unwrap();
    good.watch("/storm", "good").unwrap();
    let mut writer = Client::connect(&env.sock).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..5_000 {
        writer
            .write(TxId::NONE, "/storm/x", format!("{i}").as_bytes())
            .unwrap();
        if i % 50 == 0 {
            // The reading watcher keeps up and gets every event.
            while good
                .next_event(Some(Duration::from_millis(1)))
                .unwrap()
                .is_some()
            {}
        }
    }
    let got = read_until_closed(&mut watcher);
    assert!(
        got < 5_000 * 300,
        "the non-reading watcher was dropped after {got} bytes"
    );
    assert_eq!(writer.read(TxId::NONE, "/storm/x").unwrap(), b"4999");
    let mut last = None;
    while let Some(ev) = good.next_event(Some(Duration::from_millis(200))).unwrap() {
        last = Some(ev);
    }
    assert_eq!(last.map(|e| e.path), Some("/storm/x".to_owned()));
    healthy(&env.sock);
}

#[test]
fn connection_limit() {
    let env = start(|c| c.max_connections = 4);
    // Let the server notice that start()'s setup client has gone.
    std::thread::sleep(Duration::from_millis(200));
    let held: Vec<Client> = (0..3)
        .map(|_| Client::connect(&env.sock).unwrap())
        .collect();
    let mut c4 = Client::connect(&env.sock).unwrap();
    c4.write(TxId::NONE, "/n", b"4").unwrap();
    let mut extra = UnixStream::connect(&env.sock).unwrap();
    extra
        .write_all(&wire::encode(MsgType::Read, 1, 0, b"/n\0"))
        .ok();
    assert_eq!(
        read_until_closed(&mut extra),
        0,
        "fifth connection closed without a reply"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(100));
    healthy(&env.sock);
}
