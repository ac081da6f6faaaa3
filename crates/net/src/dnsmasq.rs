//! dnsmasq (Debian's `dnsmasq-base`) for the NAT network: DHCP and DNS on the NAT bridge.
//! domusd writes the configuration into its state directory, starts dnsmasq in the foreground as
//! its child, and keeps the lease file and the static leases (`ip=`: one `MAC,IP` line each in a
//! `dhcp-hostsfile`, which dnsmasq re-reads on SIGHUP) there too. The pid file lets a restarted
//! domusd adopt the running dnsmasq instead of starting a second one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What went wrong with dnsmasq.
#[derive(Debug, thiserror::Error)]
pub enum DnsmasqError {
    /// A file in the state directory.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// dnsmasq could not be started.
    #[error("starting dnsmasq (Debian package `dnsmasq-base`): {0}")]
    Spawn(std::io::Error),
    /// dnsmasq exited during start-up.
    #[error("dnsmasq exited at start-up ({status}): {stderr}")]
    Exited {
        /// Its exit status.
        status: String,
        /// What it printed.
        stderr: String,
    },
    /// The subnet has no room for the host address and a DHCP range.
    #[error("the NAT subnet {0}/{1} is too small")]
    Subnet(Ipv4Addr, u8),
}

/// The NAT network's DHCP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpNet {
    /// The bridge dnsmasq serves.
    pub bridge: String,
    /// The subnet's network address.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
}

impl DhcpNet {
    /// The host's address on the bridge (the subnet's first address), the guests' gateway and DNS.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The dynamic DHCP range: the second address to the last before broadcast.
    pub fn range(&self) -> Result<(Ipv4Addr, Ipv4Addr), DnsmasqError> {
        if !(8..=29).contains(&self.prefix) {
            return Err(DnsmasqError::Subnet(self.network, self.prefix));
        }
        let size = 1u32 << (32 - self.prefix);
        let base = u32::from(self.network);
        Ok((Ipv4Addr::from(base + 2), Ipv4Addr::from(base + size - 2)))
    }

    /// The netmask.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.prefix)))
    }
}

/// Files of one dnsmasq instance inside the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqFiles {
    /// `dnsmasq.conf`.
    pub conf: PathBuf,
    /// `dnsmasq.leases` (dnsmasq's lease database).
    pub leases: PathBuf,
    /// `dnsmasq.hosts` (static leases).
    pub hosts: PathBuf,
    /// `dnsmasq.pid`.
    pub pid: PathBuf,
}

impl DnsmasqFiles {
    /// The files under `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            conf: dir.join("dnsmasq.conf"),
            leases: dir.join("dnsmasq.leases"),
            hosts: dir.join("dnsmasq.hosts"),
            pid: dir.join("dnsmasq.pid"),
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), DnsmasqError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| DnsmasqError::Io {
            path: path.to_owned(),
            source,
        })
}

/// The configuration text.
pub fn config_text(net: &DhcpNet, files: &DnsmasqFiles) -> Result<String, DnsmasqError> {
    let (lo, hi) = net.range()?;
    Ok(format!(
        "# Written by domusd for the NAT network; rewritten at each start.\n\
         interface={bridge}\n\
         bind-interfaces\n\
         except-interface=lo\n\
         listen-address={host}\n\
         dhcp-range={lo},{hi},{mask},1h\n\
         dhcp-option=option:router,{host}\n\
         dhcp-option=option:dns-server,{host}\n\
         dhcp-authoritative\n\
         dhcp-leasefile={leases}\n\
         dhcp-hostsfile={hosts}\n\
         pid-file={pid}\n\
         log-facility=-\n",
        bridge = net.bridge,
        host = net.host_addr(),
        mask = net.netmask(),
        leases = files.leases.display(),
        hosts = files.hosts.display(),
        pid = files.pid.display(),
    ))
}

/// Writes the static leases (`ip=` vifs): `MAC,IP` lines.
pub fn write_static_leases(
    files: &DnsmasqFiles,
    leases: &[([u8; 6], Ipv4Addr)],
) -> Result<(), DnsmasqError> {
    let text: String = leases
        .iter()
        .map(|(m, ip)| format!("{},{ip}\n", crate::mac::format(*m)))
        .collect();
    write(&files.hosts, &text)
}

/// A running dnsmasq.
#[derive(Debug)]
pub struct Dnsmasq {
    pid: i32,
    child: Option<std::process::Child>,
    files: DnsmasqFiles,
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn cmdline_mentions(pid: i32, conf: &Path) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let s = String::from_utf8_lossy(&c);
            s.contains("dnsmasq") && s.contains(&*conf.to_string_lossy())
        })
        .unwrap_or(false)
}

impl Dnsmasq {
    /// Writes the configuration into `dir` and starts dnsmasq, or adopts the one its pid file
    /// names if that one still runs with this configuration.
    pub fn start(dir: &Path, net: &DhcpNet) -> Result<Self, DnsmasqError> {
        let files = DnsmasqFiles::in_dir(dir);
        if let Some(d) = Self::adopt(dir) {
            return Ok(d);
        }
        write(&files.conf, &config_text(net, &files)?)?;
        if !files.hosts.exists() {
            write(&files.hosts, "")?;
        }
        let _ = std::fs::remove_file(&files.pid);
        let mut child = Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", files.conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(DnsmasqError::Spawn)?;
        let pid = i32::try_from(child.id())
            .map_err(|_| DnsmasqError::Spawn(std::io::Error::other("pid out of range")))?;
        // Wait until it has bound its sockets and written the pid file, or has exited.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = child.try_wait().map_err(DnsmasqError::Spawn)? {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                return Err(DnsmasqError::Exited {
                    status: status.to_string(),
                    stderr: stderr.trim().to_owned(),
                });
            }
            let written = std::fs::read_to_string(&files.pid)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok());
            if written == Some(pid) {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: kill(2) of the child we just started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = child.wait();
                return Err(DnsmasqError::Exited {
                    status: "no pid file within 5 s, killed".into(),
                    stderr: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Its log goes to stderr; drain it so that dnsmasq never blocks on a full pipe.
        if let Some(e) = child.stderr.take() {
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(e).lines().map_while(Result::ok) {
                    tracing::debug!(target: "dnsmasq", "{line}");
                }
            });
        }
        Ok(Self {
            pid,
            child: Some(child),
            files,
        })
    }

    /// The dnsmasq a previous domusd started for `dir`, if it still runs.
    pub fn adopt(dir: &Path) -> Option<Self> {
        let files = DnsmasqFiles::in_dir(dir);
        let pid: i32 = std::fs::read_to_string(&files.pid)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (pid > 0 && alive(pid) && cmdline_mentions(pid, &files.conf)).then_some(Self {
            pid,
            child: None,
            files,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its files.
    pub fn files(&self) -> &DnsmasqFiles {
        &self.files
    }

    /// Whether it still runs (a supervisor restarts it when not).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => alive(self.pid) && cmdline_mentions(self.pid, &self.files.conf),
        }
    }

    /// Rewrites the static leases and tells dnsmasq to re-read them (SIGHUP).
    pub fn set_static_leases(&self, leases: &[([u8; 6], Ipv4Addr)]) -> Result<(), DnsmasqError> {
        write_static_leases(&self.files, leases)?;
        // SAFETY: plain kill(2) on the pid we started or adopted.
        unsafe { libc::kill(self.pid, libc::SIGHUP) };
        Ok(())
    }

    /// Stops it (SIGTERM, then SIGKILL after a second) and removes its pid file.
    pub fn stop(mut self) {
        // SAFETY: plain kill(2) on the pid we started or adopted.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let gone = match &mut self.child {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => !alive(self.pid),
            };
            if gone {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                if let Some(c) = &mut self.child {
                    let _ = c.wait();
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_file(&self.files.pid);
    }
}

/// Reads dnsmasq's lease file: `(mac, ip)` of each current lease.
pub fn leases(files: &DnsmasqFiles) -> Vec<([u8; 6], Ipv4Addr)> {
    std::fs::read_to_string(&files.leases)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _expiry = f.next()?;
            let mac = crate::mac::parse(f.next()?)?;
            let ip = f.next()?.parse().ok()?;
            Some((mac, ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_bridge_range_and_files() {
        let net = DhcpNet {
            bridge: "domusnat0".into(),
            network: Ipv4Addr::new(192, 168, 122, 0),
            prefix: 24,
        };
        let files = DnsmasqFiles::in_dir(Path::new("/var/lib/domus/net"));
        let c = config_text(&net, &files).expect("config");
        assert!(c.contains("interface=domusnat0\n"), "{c}");
        assert!(
            c.contains("dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0,1h\n"),
            "{c}"
        );
        assert!(
            c.contains("dhcp-leasefile=/var/lib/domus/net/dnsmasq.leases\n"),
            "{c}"
        );
        assert!(c.contains("option:router,192.168.122.1\n"), "{c}");
        let tiny = DhcpNet { prefix: 30, ..net };
        assert!(config_text(&tiny, &files).is_err());
    }
}
