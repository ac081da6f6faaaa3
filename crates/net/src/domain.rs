//! All of one domain's vifs at once, the unit domusd works in: check the guest MACs, resolve each
//! vif against the defaults, plumb them in order, and on any failure unplumb the ones already done,
//! so a failed create leaves no TAP, route or script state behind. [`teardown`] undoes a domain's
//! vifs (destroy, or after a failed start) and is safe to repeat.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use crate::globalconf::NetDefaults;
use crate::netlink::Netlink;
use crate::nodes::{check_macs, MacError};
use crate::vif::{VifError, VifPlan, VifRequest};

/// What went wrong setting up a domain's vifs.
#[derive(Debug, thiserror::Error)]
pub enum DomainNetError {
    /// A guest MAC is refused.
    #[error("{0}")]
    Mac(#[from] MacError),
    /// A vif could not be set up (the ones before it were removed again).
    #[error("{0}")]
    Vif(#[from] VifError),
}

/// One vif of the domain: its devid, guest MAC (already chosen: `mac=` or a random one the
/// record keeps) and entry fields.
#[derive(Debug, Clone)]
pub struct DomainVif<'a> {
    /// devid.
    pub devid: u32,
    /// Guest MAC.
    pub mac: [u8; 6],
    /// The entry's fields.
    pub req: VifRequest<'a>,
}

/// A plumbed vif: its plan (for records, store nodes, teardown) and the TAP descriptor for the VMM.
#[derive(Debug)]
pub struct Plumbed {
    /// The resolved vif.
    pub plan: VifPlan,
    /// The guest MAC.
    pub mac: [u8; 6],
    /// The TAP descriptor (hand it to the VMM, then drop it).
    pub fd: OwnedFd,
}

/// How scripts are run.
#[derive(Debug, Clone, Copy)]
pub struct ScriptEnv<'a> {
    /// Where relative script names are looked for.
    pub dirs: &'a [&'a Path],
    /// `XENSTORED_PATH` for scripts.
    pub xenstored_path: Option<&'a Path>,
    /// Script timeout.
    pub timeout: Duration,
}

/// Sets up domain `domid` (`name`)'s vifs; `running` are the other running domains' guest MACs
/// with their names.
pub fn setup(
    nl: &mut Netlink,
    domid: u32,
    name: &str,
    vifs: &[DomainVif<'_>],
    running: &[(String, [u8; 6])],
    defaults: &NetDefaults,
    env: ScriptEnv<'_>,
) -> Result<Vec<Plumbed>, DomainNetError> {
    let macs: Vec<(u32, [u8; 6])> = vifs.iter().map(|v| (v.devid, v.mac)).collect();
    check_macs(name, &macs, running)?;
    let plans = vifs
        .iter()
        .map(|v| VifPlan::resolve(domid, v.devid, &v.req, defaults, env.dirs).map(|p| (p, v.mac)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut done: Vec<Plumbed> = Vec::with_capacity(plans.len());
    for (plan, mac) in plans {
        match plan.plumb(nl, env.xenstored_path, env.timeout) {
            Ok(fd) => done.push(Plumbed { plan, mac, fd }),
            Err(e) => {
                let plans: Vec<VifPlan> = done.into_iter().map(|p| p.plan).collect();
                teardown(nl, &plans, env);
                return Err(e.into());
            }
        }
    }
    Ok(done)
}

/// Undoes the vifs of `plans` (in reverse order); errors are logged, the rest goes on.
pub fn teardown(nl: &mut Netlink, plans: &[VifPlan], env: ScriptEnv<'_>) {
    for p in plans.iter().rev() {
        if let Err(e) = p.unplumb(nl, env.xenstored_path, env.timeout) {
            tracing::warn!(domid = p.domid, devid = p.devid, error = %e, "vif teardown");
        }
    }
}
