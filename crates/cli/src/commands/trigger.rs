//! `xl trigger DOMAIN nmi|reset|init|power|sleep|s3resume [VCPU]` and `xl button-press DOMAIN
//! power|sleep`: `power` presses the ACPI power button; `reset` and `init` reset the machine (without
//! firmware both restart the guest, so the domain's on_reboot action shows); `nmi` injects an NMI into
//! the vCPU (0 unless given); `sleep` and `s3resume` are refused (no S3 here). domusd decides; this only
//! passes the request on.

use clap::Args as ClapArgs;
use domus_api::messages::TriggerRequest;

use super::Ctx;
use crate::api;

/// The triggers xl knows (libxl_trigger's names).
const TRIGGERS: [&str; 6] = ["nmi", "reset", "init", "power", "sleep", "s3resume"];

/// Arguments of `trigger`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The domain (name or domid).
    pub domain: String,
    /// nmi, reset, init, power, sleep or s3resume.
    pub trigger: String,
    /// The vCPU (nmi, init).
    pub vcpu: Option<u32>,
}

/// Arguments of `button-press`.
#[derive(Debug, ClapArgs)]
pub struct ButtonArgs {
    /// The domain (name or domid).
    pub domain: String,
    /// power or sleep.
    pub button: String,
}

fn send(domain: &str, trigger: &str, vcpu: Option<u32>) -> anyhow::Result<()> {
    api::client().action(
        domain,
        "trigger",
        Some(&TriggerRequest {
            trigger: trigger.to_owned(),
            vcpu,
        }),
    )?;
    Ok(())
}

/// Runs `trigger`.
///
/// # Errors
/// An unknown trigger, one Domus cannot deliver, or the domain missing or not running.
pub fn run(_ctx: &Ctx, args: Args) -> anyhow::Result<()> {
    if !TRIGGERS.contains(&args.trigger.as_str()) {
        anyhow::bail!(
            "Invalid trigger \"{}\": expected one of {}",
            args.trigger,
            TRIGGERS.join(", ")
        );
    }
    send(&args.domain, &args.trigger, args.vcpu)
}

/// Runs `button-press`.
///
/// # Errors
/// A button other than power/sleep, or as [`run`].
pub fn button_press(_ctx: &Ctx, args: ButtonArgs) -> anyhow::Result<()> {
    if args.button != "power" && args.button != "sleep" {
        anyhow::bail!("{} is an invalid button identifier", args.button);
    }
    send(&args.domain, &args.button, None)
}
