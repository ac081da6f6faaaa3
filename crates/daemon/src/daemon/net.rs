//! Host networking for domains, on top of `domus-net`: each `vif` gets a TAP `vifDOMID.DEVID` (or
//! `vifname=`) wired by `script=` (defaults from the xl.conf-compatible global file), handed to the
//! VMM as an inherited descriptor.
//!
//! - Before a domid is allocated, every vif is resolved ([`resolve_vifs`]): the config the record
//!   keeps then names the script, bridge and gateway device actually used (what `list -l` shows),
//!   so a restart, a domusd restart and the teardown use the same, whatever the global file says
//!   later. The guest MAC is the config's (`mac=`, or the random `00:16:3e` one chosen when the
//!   config was read, which the record keeps).
//! - MACs are checked against the other domains under the table lock, with the domid allocation.
//! - The vifs are set up after the `creating` record is written (a domusd killed from there on
//!   undoes them in recovery) and torn down with the domain's record ([`Daemon::net_teardown`]),
//!   idempotently: a TAP already gone is fine.
//! - The `domus` nftables table (anti-spoofing for `ip=`, NAT masquerade) and the NAT network are
//!   reconciled from the table after each change, so a restarted domusd never duplicates rules.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use domus_config::VifConfig;
use domus_net::domain::{DomainVif, Plumbed, ScriptEnv};
use domus_net::globalconf::NetDefaults;
use domus_net::hotplug::{Mode, DEFAULT_TIMEOUT, SCRIPT_DIRS};
use domus_net::natnet::{NatNetwork, NatVif};
use domus_net::netlink::Netlink;
use domus_net::nft::AntiSpoof;
use domus_net::vif::{VifPlan, VifRequest};
use tracing::warn;

use super::domain::{DomainConfig, Table};
use super::store::Node;
use super::{ApiError, Daemon};

/// The NAT network, created on first use.
#[derive(Default)]
pub(super) struct NetState {
    nat: Mutex<Option<NatNetwork>>,
}

fn request(v: &VifConfig) -> VifRequest<'_> {
    VifRequest {
        bridge: v.bridge.as_deref(),
        ip: v.ip.as_deref(),
        script: v.script.as_deref(),
        vifname: v.vifname.as_deref(),
        mtu: v.mtu,
        gatewaydev: v.gatewaydev.as_deref(),
    }
}

fn dirs() -> Vec<&'static Path> {
    SCRIPT_DIRS.iter().map(Path::new).collect()
}

/// The global defaults (`/etc/domus/xl.conf`, then `/etc/xen/xl.conf`, else xl's).
pub(super) fn defaults() -> Result<NetDefaults, ApiError> {
    NetDefaults::load().map_err(|e| ApiError::bad_request(format!("global config: {e}")))
}

/// The plan of vif `v` of domain `domid` (its config already resolved).
fn plan(domid: u32, v: &VifConfig, d: &NetDefaults) -> Option<VifPlan> {
    VifPlan::resolve(domid, v.devid, &request(v), d, &dirs()).ok()
}

/// Resolves every vif against the defaults, writing the script, bridge and gateway device used
/// into the config (see the module docs); 400 naming the vif when one cannot be set up.
pub(super) fn resolve_vifs(config: &mut DomainConfig, d: &NetDefaults) -> Result<(), ApiError> {
    for v in &mut config.vifs {
        let p = VifPlan::resolve(0, v.devid, &request(v), d, &dirs()).map_err(|e| {
            ApiError::bad_request(format!("cannot start domain '{}': {e}", config.name))
        })?;
        v.script = Some(p.script);
        if p.mode != Mode::Route && p.mode != Mode::Nat {
            v.bridge = Some(p.bridge);
        }
        v.gatewaydev = p.gatewaydev;
    }
    Ok(())
}

/// Refuses a multicast MAC or one another domain in `t` uses (409, naming it).
pub(super) fn check_macs(t: &Table, config: &DomainConfig) -> Result<(), ApiError> {
    let running: Vec<(String, [u8; 6])> = t
        .iter()
        .filter(|d| d.rec.stopped.is_none())
        .flat_map(|d| {
            d.rec
                .config
                .vifs
                .iter()
                .map(|v| (d.rec.name.clone(), v.mac.0))
        })
        .collect();
    let new: Vec<(u32, [u8; 6])> = config.vifs.iter().map(|v| (v.devid, v.mac.0)).collect();
    domus_net::nodes::check_macs(&config.name, &new, &running)
        .map_err(|e| ApiError::conflict(format!("cannot start domain '{}': {e}", config.name)))
}

/// The vif store nodes of domain `domid` (libxl's layout and permissions); `wired`: the vifs are
/// set up (`hotplug-status` is `connected`: domusd writes it for every mode, as Xen's scripts
/// write it only for netback vifs, not for `type_if=tap`).
pub(super) fn store_nodes(domid: u32, vifs: &[VifConfig], wired: bool) -> Vec<Node> {
    let d = NetDefaults::load().unwrap_or_default();
    let back = vec!["n0".to_owned(), format!("r{domid}")];
    let front = vec![format!("n{domid}"), "r0".to_owned()];
    let mut out = Vec::new();
    for v in vifs {
        let Some(p) = plan(domid, v, &d) else {
            continue;
        };
        let rate = v.rate.map(|r| r.to_string());
        let n = domus_net::nodes::vif_nodes(
            &p,
            v.mac.0,
            rate.as_deref(),
            v.mtu.unwrap_or(u32::from(domus_spec::DEFAULT_MTU)),
        );
        // No xenbus handshake under KVM: the device is served from the start, as the vbds.
        let fix = |n: domus_net::nodes::Node| {
            let value = if n.path.ends_with("/state") {
                domus_net::nodes::STATE_CONNECTED.to_owned()
            } else {
                n.value
            };
            (n.path, value)
        };
        out.push(Node {
            path: n.backend_dir.clone(),
            value: String::new(),
            perms: back.clone(),
        });
        out.extend(n.backend.into_iter().map(fix).map(|(path, value)| Node {
            path,
            value,
            perms: back.clone(),
        }));
        if wired {
            out.push(Node {
                path: format!("{}/hotplug-status", n.backend_dir),
                value: "connected".into(),
                perms: back.clone(),
            });
        }
        out.push(Node {
            path: n.frontend_dir.clone(),
            value: String::new(),
            perms: front.clone(),
        });
        out.extend(n.frontend.into_iter().map(fix).map(|(path, value)| Node {
            path,
            value,
            perms: front.clone(),
        }));
    }
    out
}

/// The backend directory of a domain's vifs.
pub fn backend_dir(domid: u32) -> String {
    format!("/local/domain/0/backend/vif/{domid}")
}

fn nat_or_ip(vifs: &[VifConfig]) -> bool {
    vifs.iter()
        .any(|v| v.ip.is_some() || v.script.as_deref() == Some("vif-nat"))
}

impl Daemon {
    fn script_env<'a>(&'a self, dirs: &'a [&'a Path], sock: &'a Path) -> ScriptEnv<'a> {
        ScriptEnv {
            dirs,
            xenstored_path: Some(sock),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets up domain `domid`'s vifs (all or nothing); the NAT network first when a vif needs it.
    pub(super) fn net_setup(
        &self,
        domid: u32,
        config: &DomainConfig,
    ) -> Result<Vec<Plumbed>, ApiError> {
        if config.vifs.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |e: String| {
            ApiError::bad_request(format!("cannot start domain '{}': {e}", config.name))
        };
        let d = defaults()?;
        let mut nl = Netlink::open().map_err(|e| fail(e.to_string()))?;
        if config
            .vifs
            .iter()
            .any(|v| v.script.as_deref() == Some("vif-nat"))
        {
            self.net_reconcile_with(&mut nl, Some((domid, &config.vifs)))
                .map_err(fail)?;
        }
        let vifs: Vec<DomainVif<'_>> = config
            .vifs
            .iter()
            .map(|v| DomainVif {
                devid: v.devid,
                mac: v.mac.0,
                req: request(v),
            })
            .collect();
        let dirs = dirs();
        let sock = self.opts.paths.xenstored_socket();
        let plumbed = domus_net::domain::setup(
            &mut nl,
            domid,
            &config.name,
            &vifs,
            &[],
            &d,
            self.script_env(&dirs, &sock),
        )
        .map_err(|e| fail(e.to_string()))?;
        if nat_or_ip(&config.vifs) {
            if let Err(e) = self.net_reconcile_with(&mut nl, Some((domid, &config.vifs))) {
                let plans: Vec<VifPlan> = plumbed.into_iter().map(|p| p.plan).collect();
                domus_net::domain::teardown(&mut nl, &plans, self.script_env(&dirs, &sock));
                return Err(fail(e));
            }
        }
        Ok(plumbed)
    }

    /// Undoes domain `domid`'s vifs (idempotent); call with the domain out of the table, then
    /// [`Daemon::net_reconcile`].
    pub(super) fn net_teardown(&self, domid: u32, vifs: &[VifConfig]) {
        if vifs.is_empty() {
            return;
        }
        let d = NetDefaults::load().unwrap_or_default();
        let plans: Vec<VifPlan> = vifs.iter().filter_map(|v| plan(domid, v, &d)).collect();
        let mut nl = match Netlink::open() {
            Ok(nl) => nl,
            Err(e) => {
                warn!(domid, error = %e, "cannot tear down the domain's vifs");
                return;
            }
        };
        let dirs = dirs();
        let sock = self.opts.paths.xenstored_socket();
        domus_net::domain::teardown(&mut nl, &plans, self.script_env(&dirs, &sock));
    }

    /// Deletes TAPs named `vifD.N` (with Xen's host-side MAC) whose domain `D` is in neither the
    /// table nor the records: a domusd killed between a destroy's record removal and its teardown
    /// leaves them. Call from recovery, after the table is loaded.
    pub(super) fn net_sweep(&self, t: &Table) {
        let Ok(mut nl) = Netlink::open() else { return };
        let Ok(links) = nl.links() else { return };
        for l in links {
            let domid = l
                .name
                .strip_prefix("vif")
                .and_then(|r| r.split_once('.'))
                .filter(|(_, n)| n.parse::<u32>().is_ok())
                .and_then(|(d, _)| d.parse::<u32>().ok());
            let Some(domid) = domid else { continue };
            if l.mac != Some(domus_net::tap::HOST_SIDE_MAC)
                || t.get(domid).is_some()
                || self.records.exists(domid)
            {
                continue;
            }
            tracing::info!(ifname = %l.name, "removing a vif no domain claims");
            if let Err(e) = nl.delete_link_if_exists(&l.name) {
                warn!(ifname = %l.name, error = %e, "cannot remove a stale vif");
            }
        }
    }

    /// Makes the nftables table and the NAT network match the domains in the table, when `vifs`
    /// (a removed domain's) or any domain needs them.
    pub(super) fn net_reconcile(&self, t: &Table, vifs: &[VifConfig]) {
        let any = nat_or_ip(vifs) || t.iter().any(|d| nat_or_ip(&d.rec.config.vifs));
        if !any {
            return;
        }
        let (nat, spoof) = Self::net_wanted(t, None);
        let mut nl = match Netlink::open() {
            Ok(nl) => nl,
            Err(e) => {
                warn!(error = %e, "cannot reconcile the host network");
                return;
            }
        };
        if let Err(e) = self.apply_net(&mut nl, &nat, &spoof) {
            warn!(error = %e, "cannot reconcile the host network");
        }
    }

    fn net_reconcile_with(
        &self,
        nl: &mut Netlink,
        extra: Option<(u32, &[VifConfig])>,
    ) -> Result<(), String> {
        let (nat, spoof) = {
            let t = self.lock();
            Self::net_wanted(&t, extra)
        };
        self.apply_net(nl, &nat, &spoof)
    }

    fn apply_net(
        &self,
        nl: &mut Netlink,
        nat: &[NatVif],
        spoof: &[AntiSpoof],
    ) -> Result<(), String> {
        let mut g = self.net.nat.lock().unwrap_or_else(PoisonError::into_inner);
        if g.is_none() {
            use std::os::unix::fs::DirBuilderExt;
            let dir = self.opts.paths.state_dir.join("nat");
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("NAT network: creating {}: {e}", dir.display()))?;
            *g = Some(NatNetwork::new(
                NetDefaults::load().unwrap_or_default(),
                dir,
            ));
        }
        match g.as_mut() {
            Some(n) => n.reconcile(nl, nat, spoof).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// NAT vifs and anti-spoofing rules of the domains in `t` with a VMM (or starting), plus `extra`.
    fn net_wanted(t: &Table, extra: Option<(u32, &[VifConfig])>) -> (Vec<NatVif>, Vec<AntiSpoof>) {
        let d = NetDefaults::load().unwrap_or_default();
        let mut nat = Vec::new();
        let mut spoof = Vec::new();
        let doms = t
            .iter()
            .filter(|x| x.rec.vmm.is_some() || x.starting)
            .filter(|x| extra.is_none_or(|(id, _)| id != x.rec.domid))
            .map(|x| (x.rec.domid, x.rec.config.vifs.as_slice()));
        for (domid, vifs) in doms.chain(extra) {
            for v in vifs {
                let Some(p) = plan(domid, v, &d) else {
                    continue;
                };
                if p.mode == Mode::Nat {
                    nat.push(NatVif {
                        mac: v.mac.0,
                        ips: p.ips.clone(),
                    });
                }
                if !p.ips.is_empty() {
                    spoof.push(AntiSpoof {
                        ifname: p.ifname.clone(),
                        addrs: p.ips.clone(),
                    });
                }
            }
        }
        nat.dedup();
        spoof.dedup();
        (nat, spoof)
    }
}

/// Puts the plumbed TAPs in the spec's NICs as inherited descriptors (after `files`, which take
/// ownership of them until the VMM is spawned).
pub(super) fn hand_over_taps(
    spec: &mut domus_spec::VmSpec,
    files: &mut Vec<std::fs::File>,
    vifs: &[VifConfig],
    plumbed: Vec<Plumbed>,
) {
    spec.nics.clear();
    for p in plumbed {
        let Some(v) = vifs.iter().find(|v| v.devid == p.plan.devid) else {
            continue;
        };
        let file = std::fs::File::from(p.fd);
        spec.nics.push(domus_spec::NicSpec {
            devid: v.devid,
            mac: v.mac,
            mtu: v
                .mtu
                .and_then(|m| u16::try_from(m).ok())
                .unwrap_or(domus_spec::DEFAULT_MTU),
            rate: v.rate,
            tap: domus_spec::TapSpec {
                name: p.plan.ifname.clone(),
                fd: Some(file.as_raw_fd()),
            },
        });
        files.push(file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vif: &str) -> DomainConfig {
        domus_config::DomainConfig::from_xl(
            "t.cfg",
            &format!("name = \"t\"\nvif = [ {vif} ]\n"),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn resolved_vifs_name_what_is_used() {
        let d = NetDefaults::default();
        let mut c =
            cfg("'mac=aa:00:00:d1:00:09', 'script=vif-route,ip=10.0.0.2', 'script=vif-nat'");
        resolve_vifs(&mut c, &d).unwrap();
        assert_eq!(c.vifs[0].script.as_deref(), Some("vif-bridge"));
        assert_eq!(c.vifs[0].bridge.as_deref(), Some("xenbr0"));
        assert_eq!(c.vifs[1].bridge, None, "no bridge for a routed vif");
        assert_eq!(
            c.vifs[2].bridge, None,
            "the NAT bridge comes from the defaults"
        );
        let again = c.clone();
        resolve_vifs(&mut c, &d).unwrap();
        assert_eq!(c, again, "resolving a resolved config changes nothing");
        let mut bad = cfg("'script=vif-route'");
        let e = resolve_vifs(&mut bad, &d).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("cannot start domain 't'") && e.message.contains("needs ip="),
            "{}",
            e.message
        );
    }

    #[test]
    fn store_nodes_have_libxls_permissions_and_hotplug_status_once_wired() {
        let mut c = cfg("'mac=aa:00:00:d1:00:09,bridge=bridge0'");
        resolve_vifs(&mut c, &NetDefaults::default()).unwrap();
        let n = store_nodes(4, &c.vifs, false);
        let get = |n: &[Node], p: &str| n.iter().find(|x| x.path == p).cloned();
        let be = "/local/domain/0/backend/vif/4/0";
        let mac = get(&n, &format!("{be}/mac")).unwrap();
        assert_eq!(mac.value, "aa:00:00:d1:00:09");
        assert_eq!(mac.perms, ["n0", "r4"]);
        let fe = get(&n, "/local/domain/4/device/vif/0/state").unwrap();
        assert_eq!(
            (fe.value.as_str(), fe.perms.clone()),
            ("4", vec!["n4".to_owned(), "r0".to_owned()])
        );
        assert!(get(&n, &format!("{be}/hotplug-status")).is_none());
        let n = store_nodes(4, &c.vifs, true);
        assert_eq!(
            get(&n, &format!("{be}/hotplug-status")).unwrap().value,
            "connected"
        );
        assert!(n.iter().all(|x| !x.path.ends_with("/vifname")));
    }
}
