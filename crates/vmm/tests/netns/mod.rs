//! Network plumbing for the NIC tests, all inside network namespaces the tests create (`ip netns
//! add`) and always delete (on drop, also after a failed assertion): TAPs (`ip tuntap add`),
//! bridges, addresses, guests started with `ip netns exec`, and host-side sockets opened from a
//! thread that joined the namespace (setns). No interface or address outside them is touched.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use super::common::{probe, vmm};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// A fresh namespace with `lo` up.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "domus-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip ARGS` inside the namespace; panics on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// A TAP `name` with `addr` (CIDR, or none), up.
    pub fn tap(&self, name: &str, addr: Option<&str>) {
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"]);
        if let Some(a) = addr {
            self.ip(&["addr", "add", a, "dev", name]);
        }
        self.ip(&["link", "set", name, "up"]);
    }

    /// Runs `f` on a thread that joined this namespace (sockets it opens live there).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on an open namespace file; it only changes this thread's namespace.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    /// Starts domus-vmm in the namespace on an xl.cfg with `body` (kernel = the probe).
    pub fn guest(&self, dir: &std::path::Path, tag: &str, body: &str) -> Guest {
        self.guest_with_env(dir, tag, body, &[])
    }

    /// As [`Self::guest`], with `env` added to the VMM's environment.
    pub fn guest_with_env(
        &self,
        dir: &std::path::Path,
        tag: &str,
        body: &str,
        env: &[(&str, &str)],
    ) -> Guest {
        let cfg = dir.join(format!("{tag}.cfg"));
        let ctl = dir.join(format!("{tag}.ctl"));
        let text = format!(
            "name = \"{tag}\"\nkernel = \"{}\"\nmemory = 64\nvcpus = 1\n{body}\n",
            probe().display()
        );
        std::fs::write(&cfg, text).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(vmm())
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "--control",
                ctl.to_str().unwrap(),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ip netns exec domus-vmm");
        let (tx, rx) = channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let s2 = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                s2.lock().unwrap().push_str(&l);
                s2.lock().unwrap().push('\n');
            }
            drop(tx2);
        });
        Guest {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
            ctl,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running guest, killed on drop.
pub struct Guest {
    child: Child,
    lines: Receiver<String>,
    /// Console lines read so far.
    pub seen: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Control socket.
    pub ctl: std::path::PathBuf,
}

impl Guest {
    /// Waits for a console line starting with `prefix` (bounded); returns it.
    pub fn wait_line(&mut self, prefix: &str, limit: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return l.clone();
        }
        let start = Instant::now();
        loop {
            let left = limit.saturating_sub(start.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let l = l.trim_end().to_owned();
                    self.seen.push(l.clone());
                    if l.starts_with(prefix) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no console line {prefix:?} within {limit:?}; console: {:#?}\nstderr: {}",
                    self.seen,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Waits for the VMM to exit (bounded), acknowledging its outcome on the control socket as
    /// domusd would (the VMM keeps the socket open until then); its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if let Ok(mut c) = std::os::unix::net::UnixStream::connect(&self.ctl) {
                use std::io::Write;
                let _ = c.write_all(b"{\"cmd\":\"ack-outcome\"}\n");
            }
            assert!(
                start.elapsed() < limit,
                "guest did not exit within {limit:?}; console: {:#?}\nstderr: {}",
                self.seen,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The VMM's process id (`ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The VMM's resident set, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// The VMM's stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` of a `PROBE` line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// One ICMP echo round trip to `dst` over a raw socket (call inside [`Netns::run`]); true if the
/// reply came within `limit`.
pub fn icmp_echo(dst: [u8; 4], seq: u16, limit: Duration) -> bool {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let mut pkt = [0u8; 64];
    pkt[0] = 8;
    pkt[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
    pkt[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in pkt[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut s: u32 = 0;
    for c in pkt.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    pkt[2..4].copy_from_slice(&(!(s as u16)).to_be_bytes());
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `pkt` and `addr` are valid for the lengths passed.
    let n = unsafe {
        libc::sendto(
            fd,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(n, 64, "sendto: {}", std::io::Error::last_os_error());
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < limit {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 28 {
            let ihl = usize::from(buf[0] & 15) * 4;
            let icmp = &buf[ihl..n as usize];
            if icmp[0] == 0
                && icmp[4..6] == 0x4242u16.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
            {
                ok = true;
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    ok
}
