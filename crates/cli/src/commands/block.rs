//! `block-list DOM` (xl's columns) and `block-attach` / `block-detach`, which Domus cannot do.
//!
//! Disks are virtio-mmio devices in a fixed window announced by the DSDT at boot: virtio-mmio has no
//! hotplug (no bus to announce a new device, and the guest enumerates the window once). Hotplug would
//! take a transport that has it (virtio-pci behind an emulated PCIe root port with ACPI/native
//! hotplug, or a DSDT device with `_STA` + a GED notification that Linux's virtio-mmio ACPI driver
//! does not handle today). So attach/detach fail clearly; change the config and restart the domain.

use clap::Args as ClapArgs;

use super::Ctx;
use crate::api;

/// Options of `block-list`.
#[derive(Debug, ClapArgs)]
pub struct ListArgs {
    /// Domain names or ids.
    #[arg(required = true)]
    pub doms: Vec<String>,
}

/// Options of `block-attach` / `block-detach` (accepted as xl does, then refused).
#[derive(Debug, ClapArgs)]
pub struct HotplugArgs {
    /// Domain.
    pub dom: String,
    /// Disk spec (attach) or vdev (detach), plus xl's further arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// xl's header.
pub const HEADER: &str = "Vdev  BE  handle state evt-ch ring-ref BE-path                       ";

/// Runs `block-list`.
///
/// # Errors
/// Unknown domain (xl's message).
pub fn list(_ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let c = api::client();
    println!("{}", HEADER.trim_end());
    for dom in &args.doms {
        let d = c.get(dom)?;
        for line in rows(d.domid, d.config.as_ref()) {
            println!("{line}");
        }
    }
    Ok(())
}

/// The rows for a domain's disks: devnum, backend 0, handle = domid, state 4 (connected), `-` for
/// the event channel and ring reference (no xenbus rings under KVM), the backend path.
pub fn rows(domid: u32, config: Option<&domus_config::DomainConfig>) -> Vec<String> {
    let Some(config) = config else {
        return Vec::new();
    };
    config
        .disks
        .iter()
        .map(|d| d.devnum)
        .map(|devnum| {
            let be = format!("/local/domain/0/backend/vbd/{domid}/{devnum}");
            format!(
                "{devnum:<5} {:<3} {domid:<6} {:<5} {:<6} {:<8} {be:<30}",
                0, 4, "-", "-"
            )
            .trim_end()
            .to_owned()
        })
        .collect()
}

/// Runs `block-attach`.
///
/// # Errors
/// Always: hotplug is not supported.
pub fn attach(_ctx: &Ctx, _args: HotplugArgs) -> anyhow::Result<()> {
    super::refuse_hotplug("disk", "disk")
}

/// Runs `block-detach`.
///
/// # Errors
/// Always: hotplug is not supported.
pub fn detach(_ctx: &Ctx, _args: HotplugArgs) -> anyhow::Result<()> {
    super::refuse_hotplug("disk", "disk")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_xl_columns() {
        let cfg = domus_config::DomainConfig::from_xl(
            "t.cfg",
            "disk = [ '/a,raw,xvda', '/b,raw,xvdb' ]\n",
            &[],
        )
        .unwrap();
        let r = rows(3, Some(&cfg));
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            "51712 0   3      4     -      -        /local/domain/0/backend/vbd/3/51712"
        );
        assert!(rows(3, None).is_empty());
    }
}
