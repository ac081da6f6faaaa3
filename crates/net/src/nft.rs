//! The nftables table `domus` (family `inet`), generated whole from the desired state and loaded
//! through `nft -f -` as one transaction that first creates the table if missing, then deletes
//! and re-adds it. Loading the same state twice gives the same ruleset (a restarted domusd never
//! duplicates rules), and an empty state removes the table (the last NAT vif and the last `ip=`
//! vif gone). Nothing outside the table is touched.
//!
//! - NAT: `masquerade` in a `postrouting` nat chain for traffic from the NAT subnet leaving it,
//!   optionally only toward the uplink (`vif.default.gatewaydev`).
//! - Anti-spoofing, as Xen's vif-common does with iptables for `ip=`: an `ingress` chain bound to
//!   each such TAP drops IPv4 from any source but the vif's addresses (DHCP's unconfigured
//!   `0.0.0.0` → broadcast discovery stays allowed) and all IPv6. The ingress hook sees the
//!   guest's frames before the bridge or the routing decision, so one rule covers all modes.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The table's name.
pub const TABLE: &str = "domus";

/// The NAT part of the ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masquerade {
    /// The NAT subnet's network address.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// Only masquerade toward this interface (None: any interface but the NAT bridge).
    pub uplink: Option<String>,
    /// The NAT bridge.
    pub bridge: String,
}

/// One vif's anti-spoofing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntiSpoof {
    /// The TAP's name.
    pub ifname: String,
    /// The addresses the guest may send from.
    pub addrs: Vec<Ipv4Addr>,
}

/// The desired content of table `domus`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// NAT, while at least one NAT vif exists.
    pub masquerade: Option<Masquerade>,
    /// Vifs with `ip=`.
    pub antispoof: Vec<AntiSpoof>,
}

/// What went wrong loading rules.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be run.
    #[error("running nft (Debian package `nftables`): {0}")]
    Spawn(std::io::Error),
    /// `nft` refused the ruleset.
    #[error("nft refused the `domus` table: {0}")]
    Refused(String),
}

/// nft string literal quoting for interface names (validated names contain no quotes).
fn q(s: &str) -> String {
    format!("\"{}\"", s.replace(['"', '\\'], ""))
}

impl Ruleset {
    /// Nothing to install.
    pub fn is_empty(&self) -> bool {
        self.masquerade.is_none() && self.antispoof.is_empty()
    }

    /// The `nft -f` script that makes table `inet domus` exactly this ruleset.
    pub fn script(&self) -> String {
        let mut s = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
        if self.is_empty() {
            return s;
        }
        s.push_str(&format!("table inet {TABLE} {{\n"));
        if let Some(m) = &self.masquerade {
            let net = format!("{}/{}", m.network, m.prefix);
            s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
            let out = match &m.uplink {
                Some(u) => format!("oifname {}", q(u)),
                None => format!("oifname != {}", q(&m.bridge)),
            };
            s.push_str(&format!(
                "    ip saddr {net} ip daddr != {net} {out} masquerade\n  }}\n"
            ));
        }
        for (i, a) in self.antispoof.iter().enumerate() {
            let allowed = a
                .addrs
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!(
                "  chain antispoof{i} {{\n    type filter hook ingress device {} priority -500; policy accept;\n",
                q(&a.ifname)
            ));
            s.push_str("    ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp dport 67 accept\n");
            if !allowed.is_empty() {
                s.push_str(&format!("    ip saddr != {{ {allowed} }} drop\n"));
            } else {
                s.push_str("    meta nfproto ipv4 drop\n");
            }
            s.push_str("    meta nfproto ipv6 drop\n  }\n");
        }
        s.push_str("}\n");
        s
    }

    /// Loads the ruleset with `nft -f -` (one transaction).
    pub fn apply(&self) -> Result<(), NftError> {
        run_nft(&self.script())
    }
}

/// Runs `nft -f -` with `script` on stdin.
pub fn run_nft(script: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Whether table `inet domus` exists (`nft list table`).
pub fn table_exists() -> Result<bool, NftError> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(NftError::Spawn)?;
    Ok(out.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ruleset_only_removes_the_table() {
        let s = Ruleset::default().script();
        assert_eq!(s, "table inet domus {}\ndelete table inet domus\n");
    }

    #[test]
    fn script_has_masquerade_and_antispoof() {
        let r = Ruleset {
            masquerade: Some(Masquerade {
                network: Ipv4Addr::new(192, 168, 122, 0),
                prefix: 24,
                uplink: None,
                bridge: "domusnat0".into(),
            }),
            antispoof: vec![AntiSpoof {
                ifname: "vif3.0".into(),
                addrs: vec![Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)],
            }],
        };
        let s = r.script();
        assert!(s.contains("ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 oifname != \"domusnat0\" masquerade"), "{s}");
        assert!(s.contains("hook ingress device \"vif3.0\""), "{s}");
        assert!(s.contains("ip saddr != { 10.0.0.5, 10.0.0.6 } drop"), "{s}");
    }
}
