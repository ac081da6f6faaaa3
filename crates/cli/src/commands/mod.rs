//! The list of subcommands: one variant per xl command, each wrapping `<name>::Args` and dispatched to
//! `<name>::run(&Ctx, Args)`. This is the only place that lists them.

pub mod autostart;
pub mod block;
pub mod config_update;
pub mod console;
pub mod create;
pub mod destroy;
pub mod disk;
pub mod dmesg;
pub mod domid;
pub mod domname;
pub mod dump_core;
pub mod info;
pub mod list;
pub mod mem_max;
pub mod mem_set;
pub mod migrate;
pub mod migrate_link;
pub mod migrate_receive;
pub mod network;
pub mod pause;
pub mod progress;
pub mod reboot;
pub mod rename;
pub mod restore;
pub mod save;
pub mod sched;
pub mod shutdown;
pub mod sysrq;
pub mod top;
pub mod trigger;
pub mod unpause;
pub mod uptime;
pub mod vcpu_list;
pub mod vcpu_pin;
pub mod vcpu_set;
pub mod vm_list;

use clap::Subcommand;

/// The name the binary was invoked by: `domus`, or `xl`/`xm` through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prog {
    /// `domus`
    Domus,
    /// `xl`
    Xl,
    /// `xm`
    Xm,
    /// `xentop` (every argument belongs to `top`)
    Xentop,
}

impl Prog {
    /// The program name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Prog::Domus => "domus",
            Prog::Xl => "xl",
            Prog::Xm => "xm",
            Prog::Xentop => "xentop",
        }
    }
}

/// What every command gets from `main`: the global flags.
#[derive(Debug)]
pub struct Ctx {
    /// The name the binary was invoked by.
    pub prog: Prog,
    /// xl's global `-N`: dry run.
    pub dry_run: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a domain from a config file (xl create).
    Create(create::Args),
    /// Start every domain configured in `<config dir>/auto/` that is not running (like xendomains).
    Autostart(autostart::Args),
    /// Replace a domain's configuration from its next restart (xl config-update).
    ConfigUpdate(config_update::Args),
    /// Attach to a domain's console; Ctrl-] detaches (xl console).
    Console(console::Args),
    /// List a domain's virtual disks (xl block-list).
    BlockList(block::ListArgs),
    /// Attach a disk at run time: not supported (virtio-mmio has no hotplug).
    BlockAttach(block::HotplugArgs),
    /// Detach a disk at run time: not supported (virtio-mmio has no hotplug).
    BlockDetach(block::HotplugArgs),
    /// List a domain's virtual NICs (xl network-list).
    NetworkList(network::ListArgs),
    /// Attach a NIC at run time: not supported (virtio-mmio has no hotplug).
    NetworkAttach(network::HotplugArgs),
    /// Detach a NIC at run time: not supported (virtio-mmio has no hotplug).
    NetworkDetach(network::HotplugArgs),
    /// Disk images: `disk create PATH SIZE [--sparse] [--force]`.
    Disk(disk::Args),
    /// Press a domain's ACPI power (or sleep) button (xl button-press).
    ButtonPress(trigger::ButtonArgs),
    /// Terminate a domain immediately (xl destroy).
    Destroy(destroy::Args),
    /// Show domusd's recent log (xl dmesg).
    Dmesg(dmesg::Args),
    /// Write an ELF core of a domain's memory and vCPUs (xl dump-core).
    DumpCore(dump_core::Args),
    /// Print the domid of a domain name (xl domid).
    Domid(domid::Args),
    /// Print the name of a domid (xl domname).
    Domname(domname::Args),
    /// Show host information (xl info).
    Info(info::Args),
    /// List domains (xl list).
    List(list::Args),
    /// Set a domain's maximum memory (xl mem-max).
    MemMax(mem_max::Args),
    /// Set a domain's memory target within its maxmem (xl mem-set).
    MemSet(mem_set::Args),
    /// Move a running domain to another host (xl migrate).
    Migrate(migrate::Args),
    /// Receive a domain sent by `migrate` (xl migrate-receive; started by `migrate` over ssh).
    MigrateReceive(migrate_receive::Args),
    /// Save a domain's state to a file (xl save).
    Save(save::Args),
    /// Restore a domain from a saved file (xl restore).
    Restore(restore::Args),
    /// Pause a domain (xl pause).
    Pause(pause::Args),
    /// Reboot a domain (xl reboot).
    Reboot(reboot::Args),
    /// Rename a domain (xl rename).
    Rename(rename::Args),
    /// Show or set domains' credit-scheduler weight and cap (xl sched-credit).
    SchedCredit(sched::Args),
    /// The same for credit2 (xl sched-credit2).
    SchedCredit2(sched::Args),
    /// Real-time (RTDS) scheduling: not supported (xl sched-rtds).
    SchedRtds(sched::RtdsArgs),
    /// Shut a domain down through its ACPI power button (xl shutdown).
    Shutdown(shutdown::Args),
    /// Send a serial BREAK and a SysRq letter to a domain's console (xl sysrq).
    Sysrq(sysrq::Args),
    /// Send a trigger (power, reset, init, ...) to a domain (xl trigger).
    Trigger(trigger::Args),
    /// Live view of the domains, as xentop (xl top); `-b` for batch output.
    Top(top::Args),
    /// Unpause a domain (xl unpause).
    Unpause(unpause::Args),
    /// Show domains' uptime (xl uptime).
    Uptime(uptime::Args),
    /// List vCPUs (xl vcpu-list).
    VcpuList(vcpu_list::Args),
    /// Pin vCPUs to host CPUs (xl vcpu-pin).
    VcpuPin(vcpu_pin::Args),
    /// Set how many vCPUs are online (xl vcpu-set).
    VcpuSet(vcpu_set::Args),
    /// List UUID, domid and name of every domain (xl vm-list).
    VmList(vm_list::Args),
}

impl Command {
    /// The subcommand's xl name, for messages and the `cmd` log field.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Create(_) => "create",
            Command::Autostart(_) => "autostart",
            Command::ConfigUpdate(_) => "config-update",
            Command::Console(_) => "console",
            Command::BlockList(_) => "block-list",
            Command::BlockAttach(_) => "block-attach",
            Command::BlockDetach(_) => "block-detach",
            Command::NetworkList(_) => "network-list",
            Command::NetworkAttach(_) => "network-attach",
            Command::NetworkDetach(_) => "network-detach",
            Command::Disk(_) => "disk",
            Command::ButtonPress(_) => "button-press",
            Command::Destroy(_) => "destroy",
            Command::Dmesg(_) => "dmesg",
            Command::DumpCore(_) => "dump-core",
            Command::Domid(_) => "domid",
            Command::Domname(_) => "domname",
            Command::Info(_) => "info",
            Command::List(_) => "list",
            Command::MemMax(_) => "mem-max",
            Command::MemSet(_) => "mem-set",
            Command::Migrate(_) => "migrate",
            Command::MigrateReceive(_) => "migrate-receive",
            Command::Save(_) => "save",
            Command::Restore(_) => "restore",
            Command::Pause(_) => "pause",
            Command::Reboot(_) => "reboot",
            Command::Rename(_) => "rename",
            Command::SchedCredit(_) => "sched-credit",
            Command::SchedCredit2(_) => "sched-credit2",
            Command::SchedRtds(_) => "sched-rtds",
            Command::Shutdown(_) => "shutdown",
            Command::Sysrq(_) => "sysrq",
            Command::Trigger(_) => "trigger",
            Command::Top(_) => "top",
            Command::Unpause(_) => "unpause",
            Command::Uptime(_) => "uptime",
            Command::VcpuList(_) => "vcpu-list",
            Command::VcpuPin(_) => "vcpu-pin",
            Command::VcpuSet(_) => "vcpu-set",
            Command::VmList(_) => "vm-list",
        }
    }
}

/// The refusal of `block-attach`/`-detach` and `network-attach`/`-detach`: devices are fixed at
/// start (virtio-mmio has no hotplug); `what` is the device ("disk", "vif"), `key` its config key.
///
/// # Errors
/// Always.
pub(crate) fn refuse_hotplug(what: &str, key: &str) -> anyhow::Result<()> {
    anyhow::bail!(
        "not supported: virtio-mmio has no hotplug; add the {what} to the domain's config \
         (`{key} = [...]`) and restart the domain"
    )
}

/// Runs `command`.
///
/// # Errors
/// Whatever the command reports; `main` prints it and exits 1.
pub fn run(ctx: &Ctx, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create(args) => create::run(ctx, args),
        Command::Autostart(args) => autostart::run(ctx, args),
        Command::ConfigUpdate(args) => config_update::run(ctx, args),
        Command::Console(args) => console::run(ctx, args),
        Command::BlockList(args) => block::list(ctx, args),
        Command::BlockAttach(args) => block::attach(ctx, args),
        Command::BlockDetach(args) => block::detach(ctx, args),
        Command::NetworkList(args) => network::list(ctx, args),
        Command::NetworkAttach(args) => network::attach(ctx, args),
        Command::NetworkDetach(args) => network::detach(ctx, args),
        Command::Disk(args) => disk::run(ctx, args),
        Command::ButtonPress(args) => trigger::button_press(ctx, args),
        Command::Destroy(args) => destroy::run(ctx, args),
        Command::Dmesg(args) => dmesg::run(ctx, args),
        Command::DumpCore(args) => dump_core::run(ctx, args),
        Command::Domid(args) => domid::run(ctx, args),
        Command::Domname(args) => domname::run(ctx, args),
        Command::Info(args) => info::run(ctx, args),
        Command::List(args) => list::run(ctx, args),
        Command::MemMax(args) => mem_max::run(ctx, args),
        Command::MemSet(args) => mem_set::run(ctx, args),
        Command::Migrate(args) => migrate::run(ctx, args),
        Command::MigrateReceive(args) => migrate_receive::run(ctx, args),
        Command::Save(args) => save::run(ctx, args),
        Command::Restore(args) => restore::run(ctx, args),
        Command::Pause(args) => pause::run(ctx, args),
        Command::Reboot(args) => reboot::run(ctx, args),
        Command::Rename(args) => rename::run(ctx, args),
        Command::SchedCredit(args) => sched::run(ctx, args, false),
        Command::SchedCredit2(args) => sched::run(ctx, args, true),
        Command::SchedRtds(args) => sched::rtds(ctx, args),
        Command::Shutdown(args) => shutdown::run(ctx, args),
        Command::Sysrq(args) => sysrq::run(ctx, args),
        Command::Trigger(args) => trigger::run(ctx, args),
        Command::Top(args) => top::run(ctx, args),
        Command::Unpause(args) => unpause::run(ctx, args),
        Command::Uptime(args) => uptime::run(ctx, args),
        Command::VcpuList(args) => vcpu_list::run(ctx, args),
        Command::VcpuPin(args) => vcpu_pin::run(ctx, args),
        Command::VcpuSet(args) => vcpu_set::run(ctx, args),
        Command::VmList(args) => vm_list::run(ctx, args),
    }
}
