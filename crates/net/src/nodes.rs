//! Xen's store nodes for a vif, as libxl writes them, and guest MAC checks across domains.
//!
//! Backend `/local/domain/0/backend/vif/D/N/...` (owned by dom0, readable by the guest) and
//! frontend `/local/domain/D/device/vif/N/...` (owned by the guest, readable by dom0): libxl's
//! permissions for a device pair. `vifname` is written only when the config sets `vifname=`,
//! because Xen's scripts rename the device to that node's value when it exists. `hotplug-status`
//! is written `connected` once the vif is wired (by the built-in modes; a Xen script writes it
//! itself).

use crate::hotplug::Mode;
use crate::mac;
use crate::vif::VifPlan;

/// libxl's `XenbusStateInitialising`.
pub const STATE_INITIALISING: &str = "1";
/// libxl's `XenbusStateConnected`.
pub const STATE_CONNECTED: &str = "4";

/// One node: absolute path and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Absolute path.
    pub path: String,
    /// Value.
    pub value: String,
}

/// The nodes of one vif and who owns each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifNodes {
    /// The backend directory (owner dom0, guest may read).
    pub backend_dir: String,
    /// The frontend directory (owner the guest, dom0 may read).
    pub frontend_dir: String,
    /// Backend nodes.
    pub backend: Vec<Node>,
    /// Frontend nodes.
    pub frontend: Vec<Node>,
}

/// The store nodes of `plan` for guest MAC `guest_mac`; `rate` is xl's `rate=` text if set.
pub fn vif_nodes(plan: &VifPlan, guest_mac: [u8; 6], rate: Option<&str>, mtu: u32) -> VifNodes {
    let (d, n) = (plan.domid, plan.devid);
    let backend_dir = format!("/local/domain/0/backend/vif/{d}/{n}");
    let frontend_dir = format!("/local/domain/{d}/device/vif/{n}");
    let mac = mac::format(guest_mac);
    let mut b: Vec<(&str, String)> = vec![
        ("frontend", frontend_dir.clone()),
        ("frontend-id", d.to_string()),
        ("online", "1".into()),
        ("state", STATE_INITIALISING.into()),
        ("script", plan.script.clone()),
        ("mac", mac.clone()),
        ("handle", n.to_string()),
        ("type", "vif".into()),
        ("mtu", mtu.to_string()),
    ];
    if plan.mode != Mode::Route {
        b.push(("bridge", plan.bridge.clone()));
    }
    if !plan.ips.is_empty() {
        let ips: Vec<String> = plan.ips.iter().map(ToString::to_string).collect();
        b.push(("ip", ips.join(" ")));
    }
    if plan.vifname_set {
        b.push(("vifname", plan.ifname.clone()));
    }
    if let Some(r) = rate {
        b.push(("rate", r.to_owned()));
    }
    let f: Vec<(&str, String)> = vec![
        ("backend", backend_dir.clone()),
        ("backend-id", "0".into()),
        ("handle", n.to_string()),
        ("mac", mac),
        ("mtu", mtu.to_string()),
        ("state", STATE_INITIALISING.into()),
    ];
    let abs = |dir: &str, v: Vec<(&str, String)>| {
        v.into_iter()
            .map(|(k, value)| Node {
                path: format!("{dir}/{k}"),
                value,
            })
            .collect()
    };
    VifNodes {
        backend: abs(&backend_dir, b),
        frontend: abs(&frontend_dir, f),
        backend_dir,
        frontend_dir,
    }
}

/// Why a guest MAC is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// A group address.
    #[error("vif {devid}: mac={mac} is a multicast address (the first byte's low bit is set); a NIC needs a unicast MAC")]
    Multicast {
        /// The vif.
        devid: u32,
        /// The MAC.
        mac: String,
    },
    /// In use by another running domain (or twice in this one).
    #[error("vif {devid}: mac={mac} is already used by domain '{other}'")]
    Duplicate {
        /// The vif.
        devid: u32,
        /// The MAC.
        mac: String,
        /// The domain that has it.
        other: String,
    },
}

/// Checks a new domain's guest MACs (`(devid, mac)`) against each other and against those of
/// the running domains (`(domain name, mac)`).
pub fn check_macs(
    name: &str,
    new: &[(u32, [u8; 6])],
    running: &[(String, [u8; 6])],
) -> Result<(), MacError> {
    for (i, (devid, m)) in new.iter().enumerate() {
        if mac::is_multicast(*m) {
            return Err(MacError::Multicast {
                devid: *devid,
                mac: mac::format(*m),
            });
        }
        let other = running
            .iter()
            .find(|(_, o)| o == m)
            .map(|(n, _)| n.clone())
            .or_else(|| {
                new[..i]
                    .iter()
                    .any(|(_, o)| o == m)
                    .then(|| name.to_owned())
            });
        if let Some(other) = other {
            return Err(MacError::Duplicate {
                devid: *devid,
                mac: mac::format(*m),
                other,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::globalconf::NetDefaults;
    use crate::vif::VifRequest;

    #[test]
    fn nodes_match_xens_layout() {
        let p = VifPlan::resolve(
            7,
            1,
            &VifRequest {
                bridge: Some("bridge0"),
                ..Default::default()
            },
            &NetDefaults::default(),
            &[],
        )
        .expect("plan");
        let n = vif_nodes(&p, [0xaa, 0, 0, 0xd1, 0, 9], None, 1500);
        assert_eq!(n.backend_dir, "/local/domain/0/backend/vif/7/1");
        assert_eq!(n.frontend_dir, "/local/domain/7/device/vif/1");
        let get = |v: &[Node], k: &str| {
            v.iter()
                .find(|x| x.path.ends_with(&format!("/{k}")))
                .map(|x| x.value.clone())
        };
        assert_eq!(
            get(&n.backend, "frontend").as_deref(),
            Some("/local/domain/7/device/vif/1")
        );
        assert_eq!(get(&n.backend, "mac").as_deref(), Some("aa:00:00:d1:00:09"));
        assert_eq!(get(&n.backend, "bridge").as_deref(), Some("bridge0"));
        assert_eq!(get(&n.backend, "script").as_deref(), Some("vif-bridge"));
        assert_eq!(get(&n.backend, "vifname"), None, "only with vifname=");
        assert_eq!(
            get(&n.frontend, "backend").as_deref(),
            Some("/local/domain/0/backend/vif/7/1")
        );
        assert_eq!(get(&n.frontend, "backend-id").as_deref(), Some("0"));
        assert_eq!(get(&n.frontend, "state").as_deref(), Some("1"));
    }

    #[test]
    fn multicast_and_duplicate_macs_are_refused_naming_the_domain() {
        let a = [0x00, 0x16, 0x3e, 1, 2, 3];
        let running = vec![("foo".to_owned(), a)];
        let e = check_macs("nbsd", &[(0, a)], &running).expect_err("dup");
        assert_eq!(
            e.to_string(),
            "vif 0: mac=00:16:3e:01:02:03 is already used by domain 'foo'"
        );
        let b = [0x00, 0x16, 0x3e, 1, 2, 4];
        let e = check_macs("nbsd", &[(0, b), (1, b)], &running).expect_err("twice");
        assert!(
            e.to_string().contains("vif 1") && e.to_string().contains("'nbsd'"),
            "{e}"
        );
        let e = check_macs("nbsd", &[(0, [0x01, 0, 0x5e, 0, 0, 1])], &[]).expect_err("multicast");
        assert!(e.to_string().contains("multicast"), "{e}");
        check_macs("nbsd", &[(0, b)], &running).expect("fine");
    }
}
