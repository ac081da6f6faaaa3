//! `network-list DOM...` (xl's columns) and `network-attach` / `network-detach`, which Domus cannot
//! do: a NIC is a virtio-mmio device, and virtio-mmio has no hotplug (see `block.rs`).

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `network-list`.
#[derive(Debug, ClapArgs)]
pub struct ListArgs {
    /// Domain names or ids.
    #[arg(required = true)]
    pub doms: Vec<String>,
}

/// Options of `network-attach` / `network-detach` (accepted as xl does, then refused).
#[derive(Debug, ClapArgs)]
pub struct HotplugArgs {
    /// Domain.
    pub dom: String,
    /// vif spec (attach) or devid/MAC (detach).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// xl's header.
pub fn header() -> String {
    format!(
        "{:<3} {:<2} {:<17} {:<6} {:<5} {:<6} {:>5}/{:<5} {:<30}",
        "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path"
    )
    .trim_end()
    .to_owned()
}

/// Runs `network-list`.
///
/// # Errors
/// Unknown domain (xl's message).
pub fn list(_ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let c = api::client();
    println!("{}", header());
    for dom in &args.doms {
        let d = c.get(dom)?;
        for line in rows(d.domid, d.config.as_ref()) {
            println!("{line}");
        }
    }
    Ok(())
}

/// The rows for a domain's vifs: devid, backend 0, the guest MAC, handle = devid, state 4
/// (connected), `-` for the event channel and ring references (no xenbus rings under KVM), the
/// backend path.
pub fn rows(domid: u32, config: Option<&domus_config::DomainConfig>) -> Vec<String> {
    let Some(config) = config else {
        return Vec::new();
    };
    config
        .vifs
        .iter()
        .map(|v| {
            let n = v.devid;
            let be = format!("/local/domain/0/backend/vif/{domid}/{n}");
            format!(
                "{n:<3} {:<2} {:<17} {n:>6} {:>5} {:>6} {:>5}/{:<11} {be:<30}",
                0,
                v.mac.to_string(),
                4,
                "-",
                "-",
                "-"
            )
            .trim_end()
            .to_owned()
        })
        .collect()
}

/// Runs `network-attach`.
///
/// # Errors
/// Always: hotplug is not supported.
pub fn attach(_ctx: &Ctx, _args: HotplugArgs) -> anyhow::Result<()> {
    super::refuse_hotplug("vif", "vif")
}

/// Runs `network-detach`.
///
/// # Errors
/// Always: hotplug is not supported.
pub fn detach(_ctx: &Ctx, _args: HotplugArgs) -> anyhow::Result<()> {
    super::refuse_hotplug("vif", "vif")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_xl_columns() {
        assert_eq!(
            header(),
            "Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path"
        );
        let cfg = domus_config::DomainConfig::from_xl(
            "t.cfg",
            "vif = [ 'mac=aa:00:00:d1:00:09,bridge=bridge0' ]\n",
            &[],
        )
        .unwrap();
        let r = rows(1, Some(&cfg));
        assert_eq!(
            r,
            ["0   0  aa:00:00:d1:00:09      0     4      -     -/-           /local/domain/0/backend/vif/1/0"]
        );
        assert!(rows(1, None).is_empty());
    }
}
