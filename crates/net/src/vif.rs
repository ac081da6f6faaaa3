//! One vif's host side, from its `vif` entry to a wired TAP descriptor and back: resolve the
//! mode (`script=` or `vif.default.script`), the bridge, MTU and addresses; then create the TAP
//! `vifDOMID.DEVID` (or `vifname=`) with Xen's host-side MAC and wire it:
//!
//! - bridge: port of the bridge (which must exist), the bridge's MTU unless `mtu=`;
//! - route: host route per `ip=` address through the TAP, proxy ARP on the TAP and the gateway
//!   device, forwarding on, the gateway device's address on the TAP (as Xen's vif-route);
//! - nat: port of the NAT bridge ([`crate::natnet`] runs the bridge, dnsmasq and masquerade);
//! - script: the TAP is created and brought up, then the script is run with `add`.
//!
//! A failure part-way removes what was made, so a failed create leaves no TAP behind.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::globalconf::NetDefaults;
use crate::hotplug::{self, HotplugError, Invocation, Mode};
use crate::netlink::{Netlink, NetlinkError};
use crate::tap::{self, TapError, HOST_SIDE_MAC};

/// What went wrong setting up a vif.
#[derive(Debug, thiserror::Error)]
pub enum VifError {
    /// The bridge does not exist.
    #[error("vif {devid}: bridge `{bridge}` does not exist: create it (e.g. `ip link add {bridge} type bridge` or the distribution's network configuration), name another with `bridge=` or `vif.default.bridge`, or use `script=vif-nat`")]
    NoBridge {
        /// The vif's devid.
        devid: u32,
        /// The bridge.
        bridge: String,
    },
    /// `ip=` is missing or malformed.
    #[error("vif {devid}: {detail}")]
    Ip {
        /// The vif's devid.
        devid: u32,
        /// What is wrong.
        detail: String,
    },
    /// The interface name is not usable.
    #[error("vif {devid}: `{name}` is not a valid interface name (at most 15 characters)")]
    Name {
        /// The vif's devid.
        devid: u32,
        /// The name.
        name: String,
    },
    /// TAP creation failed.
    #[error("vif {devid}: {source}")]
    Tap {
        /// The vif's devid.
        devid: u32,
        /// The error.
        source: TapError,
    },
    /// A netlink operation failed.
    #[error("vif {devid}: {source}")]
    Netlink {
        /// The vif's devid.
        devid: u32,
        /// The error.
        source: NetlinkError,
    },
    /// A sysctl write failed.
    #[error("vif {devid}: {what}: {source}")]
    Sysctl {
        /// The vif's devid.
        devid: u32,
        /// The setting.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The hotplug script.
    #[error("vif {devid}: {source}")]
    Script {
        /// The vif's devid.
        devid: u32,
        /// The error.
        source: HotplugError,
    },
}

/// A vif's resolved host side (what the domain record keeps, and what `network-list`, `list -l`
/// and the store nodes show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifPlan {
    /// The domain.
    pub domid: u32,
    /// The devid.
    pub devid: u32,
    /// The TAP's name.
    pub ifname: String,
    /// Whether the name came from `vifname=` (Xen writes the `vifname` node only then).
    pub vifname_set: bool,
    /// How it is wired.
    pub mode: Mode,
    /// The `script` as written or defaulted (`vif-bridge`, a path, ...).
    pub script: String,
    /// The bridge (bridge mode and scripts; the NAT bridge in NAT mode).
    pub bridge: String,
    /// `mtu=`.
    pub mtu: Option<u32>,
    /// `ip=` addresses.
    pub ips: Vec<Ipv4Addr>,
    /// `gatewaydev=` or `vif.default.gatewaydev`.
    pub gatewaydev: Option<String>,
}

/// The vif entry's fields this module needs (from domus-config's `VifSpec`).
#[derive(Debug, Clone, Default)]
pub struct VifRequest<'a> {
    /// `bridge=`.
    pub bridge: Option<&'a str>,
    /// `ip=` as written.
    pub ip: Option<&'a str>,
    /// `script=`.
    pub script: Option<&'a str>,
    /// `vifname=`.
    pub vifname: Option<&'a str>,
    /// `mtu=`.
    pub mtu: Option<u32>,
    /// `gatewaydev=`.
    pub gatewaydev: Option<&'a str>,
}

/// Parses `ip=` (space-separated IPv4 addresses, optionally with `/N`, as Xen accepts).
pub fn parse_ips(devid: u32, ip: &str) -> Result<Vec<Ipv4Addr>, VifError> {
    ip.split_whitespace()
        .map(|a| {
            let addr = a.split_once('/').map_or(a, |(x, _)| x);
            addr.parse::<Ipv4Addr>().map_err(|_| VifError::Ip {
                devid,
                detail: format!("ip=`{ip}`: `{a}` is not an IPv4 address"),
            })
        })
        .collect()
}

impl VifPlan {
    /// Resolves a vif entry against the global defaults; `script_dirs` is normally
    /// [`hotplug::SCRIPT_DIRS`].
    pub fn resolve(
        domid: u32,
        devid: u32,
        req: &VifRequest<'_>,
        defaults: &NetDefaults,
        script_dirs: &[&Path],
    ) -> Result<Self, VifError> {
        let script = req.script.unwrap_or(&defaults.script).to_owned();
        let mode = hotplug::resolve(&script, script_dirs)
            .map_err(|source| VifError::Script { devid, source })?;
        let ifname = req
            .vifname
            .map_or_else(|| format!("vif{domid}.{devid}"), str::to_owned);
        if !tap::valid_ifname(&ifname) {
            return Err(VifError::Name {
                devid,
                name: ifname,
            });
        }
        let ips = match req.ip {
            Some(ip) => parse_ips(devid, ip)?,
            None => Vec::new(),
        };
        if mode == Mode::Route && ips.is_empty() {
            return Err(VifError::Ip {
                devid,
                detail: "script=vif-route needs ip= (the guest's address, routed to it)".into(),
            });
        }
        let bridge = match mode {
            Mode::Nat => defaults.nat_bridge.clone(),
            _ => req.bridge.unwrap_or(&defaults.bridge).to_owned(),
        };
        Ok(Self {
            domid,
            devid,
            vifname_set: req.vifname.is_some(),
            ifname,
            mode,
            script,
            bridge,
            mtu: req.mtu,
            ips,
            gatewaydev: req
                .gatewaydev
                .map(str::to_owned)
                .or_else(|| defaults.gatewaydev.clone()),
        })
    }

    fn nl<T>(&self, r: Result<T, NetlinkError>) -> Result<T, VifError> {
        r.map_err(|source| VifError::Netlink {
            devid: self.devid,
            source,
        })
    }

    fn sysctl(&self, r: std::io::Result<()>, what: String) -> Result<(), VifError> {
        r.map_err(|source| VifError::Sysctl {
            devid: self.devid,
            what,
            source,
        })
    }

    /// Creates and wires the TAP and returns its descriptor for the VMM. On error, whatever was
    /// made is removed again. `xenstored_path` is passed to scripts as `XENSTORED_PATH`.
    pub fn plumb(
        &self,
        nl: &mut Netlink,
        xenstored_path: Option<&Path>,
        timeout: Duration,
    ) -> Result<OwnedFd, VifError> {
        if matches!(self.mode, Mode::Bridge | Mode::Nat)
            && self.nl(nl.link(&self.bridge))?.is_none()
        {
            return Err(VifError::NoBridge {
                devid: self.devid,
                bridge: self.bridge.clone(),
            });
        }
        let fd = tap::create_tap(&self.ifname).map_err(|source| VifError::Tap {
            devid: self.devid,
            source,
        })?;
        match self.wire(nl, xenstored_path, timeout) {
            Ok(()) => Ok(fd),
            Err(e) => {
                drop(fd);
                self.unwire_routes(nl);
                let _ = nl.delete_link_if_exists(&self.ifname);
                Err(e)
            }
        }
    }

    fn wire(
        &self,
        nl: &mut Netlink,
        xenstored_path: Option<&Path>,
        timeout: Duration,
    ) -> Result<(), VifError> {
        let name = self.ifname.as_str();
        self.nl(nl.set_mac(name, HOST_SIDE_MAC))?;
        match &self.mode {
            Mode::Bridge | Mode::Nat => {
                let mtu = match self.mtu {
                    Some(m) => Some(m),
                    None => self.nl(nl.link(&self.bridge))?.and_then(|b| b.mtu),
                };
                if let Some(m) = mtu {
                    self.nl(nl.set_mtu(name, m))?;
                }
                self.nl(nl.set_master(name, Some(&self.bridge)))?;
                self.nl(nl.set_up(name, true))?;
            }
            Mode::Route => {
                if let Some(m) = self.mtu {
                    self.nl(nl.set_mtu(name, m))?;
                }
                self.nl(nl.set_up(name, true))?;
                if let Some(gw) = &self.gatewaydev {
                    let addrs = self.nl(nl.addresses(gw))?;
                    if let Some((a, _)) = addrs.first() {
                        self.nl(nl.add_address(name, *a, 32))?;
                    }
                    self.sysctl(
                        crate::netlink::set_ipv4_conf(gw, "proxy_arp", "1"),
                        format!("proxy_arp on {gw}"),
                    )?;
                }
                self.sysctl(
                    crate::netlink::set_ipv4_conf(name, "proxy_arp", "1"),
                    format!("proxy_arp on {name}"),
                )?;
                self.sysctl(
                    crate::netlink::enable_ipv4_forwarding(),
                    "ip_forward".into(),
                )?;
                for ip in &self.ips {
                    self.nl(nl.add_host_route(name, *ip))?;
                }
            }
            Mode::Script(path) => {
                if let Some(m) = self.mtu {
                    self.nl(nl.set_mtu(name, m))?;
                }
                hotplug::run(&self.invocation(path, xenstored_path, timeout), "add").map_err(
                    |source| VifError::Script {
                        devid: self.devid,
                        source,
                    },
                )?;
            }
        }
        Ok(())
    }

    fn invocation<'a>(
        &'a self,
        path: &'a PathBuf,
        xenstored_path: Option<&'a Path>,
        timeout: Duration,
    ) -> Invocation<'a> {
        Invocation {
            path,
            domid: self.domid,
            devid: self.devid,
            ifname: &self.ifname,
            gatewaydev: self.gatewaydev.as_deref(),
            xenstored_path,
            timeout,
        }
    }

    fn unwire_routes(&self, nl: &mut Netlink) {
        if self.mode == Mode::Route {
            for ip in &self.ips {
                let _ = nl.del_host_route(&self.ifname, *ip);
            }
        }
    }

    /// Undoes [`VifPlan::plumb`]: runs a script's `remove`, removes routes, deletes the TAP.
    /// Idempotent (a restarted domusd may run it for a vif half gone); the script's failure is
    /// returned after the TAP is gone anyway.
    pub fn unplumb(
        &self,
        nl: &mut Netlink,
        xenstored_path: Option<&Path>,
        timeout: Duration,
    ) -> Result<(), VifError> {
        let mut result = Ok(());
        if let Mode::Script(path) = &self.mode {
            if let Err(source) =
                hotplug::run(&self.invocation(path, xenstored_path, timeout), "remove")
            {
                result = Err(VifError::Script {
                    devid: self.devid,
                    source,
                });
            }
        }
        self.unwire_routes(nl);
        self.nl(nl.delete_link_if_exists(&self.ifname))?;
        result
    }
}
