//! Test helper for domus-sandbox's integration tests: `domus-sandbox-selftest ROOT UID GID ACTION [ARG]`
//! enters the jail at ROOT as UID/GID with a filter of the base syscalls (plus what ACTION needs to show the
//! layer under test), then tries ACTION and prints what happened on stdout.

use std::io::Write;
use std::time::Duration;

use domus_sandbox::{filter, sys, Jail};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: domus-sandbox-selftest ROOT UID GID ACTION [ARG]");
        std::process::exit(2);
    }
    let jail = Jail {
        root: args[1].clone().into(),
        uid: args[2].parse().unwrap_or(0),
        gid: args[3].parse().unwrap_or(0),
    };
    let action = args[4].as_str();
    let arg: u64 = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut allowed = filter::BASE_SYSCALLS.to_vec();
    allowed.extend([
        libc::SYS_getuid,
        libc::SYS_getgid,
        libc::SYS_capget,
        libc::SYS_prctl,
        libc::SYS_fcntl,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
    ]);
    match action {
        // The layer under test is the empty root, not the filter: let open through.
        "open-host" => allowed.extend([
            libc::SYS_openat,
            libc::SYS_open,
            libc::SYS_mkdirat,
            libc::SYS_mkdir,
        ]),
        // The layer under test is the network namespace, not the filter.
        "inet" => allowed.extend([libc::SYS_socket, libc::SYS_connect]),
        _ => {}
    }
    let prog = match filter::allow_list(&allowed) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = jail.enter(&prog) {
        let _ = writeln!(
            std::io::stdout(),
            "jail error: {e}: {:?}",
            std::error::Error::source(&e)
        );
        std::process::exit(3);
    }
    let out = &mut std::io::stdout();
    match action {
        "status" => {
            let (uid, gid) = sys::ids();
            let caps = sys::effective_capabilities().unwrap_or(u64::MAX);
            let nnp = sys::prctl(libc::PR_GET_NO_NEW_PRIVS, 0).unwrap_or(-1);
            let seccomp = sys::prctl(libc::PR_GET_SECCOMP, 0).unwrap_or(-1);
            let _ = writeln!(
                out,
                "uid={uid} gid={gid} caps={caps:x} nnp={nnp} seccomp={seccomp}"
            );
        }
        "fds" => {
            let open: Vec<String> = (0..64)
                .filter(|fd| sys::is_fd_open(*fd))
                .map(|fd| fd.to_string())
                .collect();
            let _ = writeln!(out, "open={}", open.join(","));
        }
        "open-host" => {
            for path in ["/etc/passwd", "/proc/self/status", "/bin/sh"] {
                let r = std::fs::File::open(path);
                let _ = writeln!(
                    out,
                    "open {path}: {}",
                    r.map(|_| "ok".to_string())
                        .unwrap_or_else(|e| e.to_string())
                );
            }
            let r = std::fs::create_dir("/new");
            let _ = writeln!(
                out,
                "mkdir /new: {}",
                r.map(|_| "ok".to_string())
                    .unwrap_or_else(|e| e.to_string())
            );
        }
        "open-denied" => {
            let _ = std::fs::File::open("/etc/passwd");
            let _ = writeln!(out, "open returned");
        }
        "inet" => {
            let r = std::net::TcpStream::connect(std::net::SocketAddr::from(([192, 0, 2, 1], 80)));
            let _ = writeln!(
                out,
                "connect: {}",
                r.map(|_| "ok".to_string())
                    .unwrap_or_else(|e| e.to_string())
            );
        }
        "inet-denied" => {
            let _ = sys::socket(libc::AF_INET);
            let _ = writeln!(out, "socket returned");
        }
        "spin" => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "sleep" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "alloc" => {
            let mut v: Vec<u8> = Vec::new();
            let bytes = usize::try_from(arg << 20).unwrap_or(usize::MAX);
            match v.try_reserve_exact(bytes) {
                Ok(()) => {
                    v.resize(bytes, 1);
                    let _ = writeln!(out, "alloc ok");
                }
                Err(e) => {
                    let _ = writeln!(out, "alloc failed: {e}");
                    std::process::exit(4);
                }
            }
        }
        "write-big" => {
            // stderr (fd 2) is the file under test, so stdout can report.
            let chunk = vec![0u8; 1 << 20];
            let mut err = std::io::stderr();
            for i in 0..arg {
                if let Err(e) = err.write_all(&chunk) {
                    let _ = writeln!(out, "write failed after {i} MiB: {e}");
                    std::process::exit(5);
                }
            }
            let _ = writeln!(out, "write ok");
        }
        _ => {
            let _ = writeln!(out, "unknown action {action}");
            std::process::exit(2);
        }
    }
}
