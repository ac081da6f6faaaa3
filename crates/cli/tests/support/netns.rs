//! Network namespaces the networking tests create (`ip netns add`) and always delete (on drop,
//! also after a failed assertion; deleting one destroys every interface made in it), commands run
//! inside them, and ICMP echo sent from a thread that joined one (setns changes only that thread).
//! No interface outside them is touched.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A namespace that is deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace with `lo` up.
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "dcli-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add")
            .success();
        assert!(ok, "ip netns add {name}");
        let ns = Self { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace; panics on failure, returns stdout.
    pub fn sh(&self, cmd: &str) -> String {
        let out = self.try_sh(cmd);
        assert!(out.0, "{cmd}: {}", out.2);
        out.1
    }

    /// Runs a shell command inside the namespace: (success, stdout, stderr).
    pub fn try_sh(&self, cmd: &str) -> (bool, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .expect("ip netns exec");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Names of the links in the namespace.
    pub fn links(&self) -> Vec<String> {
        self.sh("ip -o link show")
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
            .collect()
    }

    /// A link's MAC address.
    pub fn mac(&self, dev: &str) -> String {
        let out = self.sh(&format!("cat /sys/class/net/{dev}/address"));
        out.trim().to_owned()
    }

    /// A link's bridge (master), if any.
    pub fn master(&self, dev: &str) -> Option<String> {
        let out = self.sh(&format!("ip -o link show dev {dev}"));
        let mut it = out.split_whitespace();
        it.find(|w| *w == "master")?;
        it.next().map(str::to_owned)
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            // SAFETY: setns(2) with a namespace descriptor just opened; it changes only this
            // thread's network namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// Whether `dst` answers one of `tries` ICMP echo requests (each waited for up to 1 s),
    /// sent from inside the namespace.
    pub fn ping(&self, dst: [u8; 4], tries: u16) -> bool {
        self.run(move || (1..=tries).any(|seq| icmp_echo(dst, seq, Duration::from_secs(1))))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// One ICMP echo to `dst` over a raw socket (the test runs as root); true when the reply came
/// within `limit`.
pub fn icmp_echo(dst: [u8; 4], seq: u16, limit: Duration) -> bool {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let mut pkt = [0u8; 64];
    pkt[0] = 8;
    pkt[4..6].copy_from_slice(&0x4343u16.to_be_bytes());
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
    let mut ok = false;
    let start = Instant::now();
    while n == 64 && start.elapsed() < limit {
        let mut buf = [0u8; 256];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 28 {
            let ihl = usize::from(buf[0] & 15) * 4;
            let icmp = &buf[ihl..n as usize];
            if icmp[0] == 0
                && icmp[4..6] == 0x4343u16.to_be_bytes()
                && icmp[6..8] == seq.to_be_bytes()
                && buf[12..16] == dst
            {
                ok = true;
                break;
            }
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // SAFETY: closing the socket opened above.
    unsafe { libc::close(fd) };
    ok
}
