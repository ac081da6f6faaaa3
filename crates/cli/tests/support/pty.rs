//! Runs a command on a pseudo-terminal, as a user's terminal would, and reads/writes its master side.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};

/// A child on a pty.
pub struct PtyChild {
    pub child: Child,
    master: File,
    pub output: Vec<u8>,
}

impl PtyChild {
    /// Spawns `cmd` with stdin, stdout and stderr on a new pty's slave side.
    pub fn spawn(mut cmd: Command) -> Self {
        let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        Self {
            child,
            master: File::from(master),
            output: Vec::new(),
        }
    }

    /// Reads until the output contains `text`; panics after `timeout`.
    pub fn expect(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !String::from_utf8_lossy(&self.output).contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {text:?} on the terminal; got {:?}",
                String::from_utf8_lossy(&self.output)
            );
            if !self.read_some(left.min(Duration::from_millis(200)))
                && self.child.try_wait().unwrap().is_some()
            {
                panic!(
                    "child exited before {text:?}; got {:?}",
                    String::from_utf8_lossy(&self.output)
                );
            }
        }
    }

    /// Reads what is available within `t`; false if nothing came.
    pub fn read_some(&mut self, t: Duration) -> bool {
        let ts = Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap(),
            tv_nsec: i64::from(t.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
        let n = poll(&mut fds, Some(&ts)).unwrap_or(0);
        if n == 0 {
            return false;
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(n) if n > 0 => {
                self.output.extend_from_slice(&buf[..n]);
                true
            }
            _ => false,
        }
    }

    /// Types bytes on the terminal.
    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Waits for the child to exit (draining output), panicking after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                while self.read_some(Duration::from_millis(10)) {}
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit; output {:?}",
                String::from_utf8_lossy(&self.output)
            );
            self.read_some(Duration::from_millis(50));
        }
    }

    pub fn master_fd(&self) -> impl AsFd + '_ {
        &self.master
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
