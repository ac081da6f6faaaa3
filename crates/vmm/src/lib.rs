//! domus-vmm: the virtual machine monitor that runs exactly one Domus domain on KVM.
//!
//! One process per domain. The binary (`main.rs`) only parses arguments, sets up logging and maps the
//! outcome to an exit status; everything else lives in this library:
//!
//! - [`config`]: the machine configuration ([`config::VmConfig`]): a `domus_spec::VmSpec` with its
//!   resources open — taken from inherited descriptors when domusd starts the VMM (`--spec-json`), or
//!   opened by `domus_spec::prepare` for the standalone `--config FILE` (see `domus_spec` for the
//!   hand-off) — and its validation against KVM.
//! - [`vstate`]: KVM itself (system, VM, vCPUs, guest memory). The only place with `unsafe` code.
//! - [`boot`]: kernel loading (PVH ELF, Linux bzImage / ELF vmlinux, gzip; recognition shared with the
//!   spec conversion as `domus_spec::image`), zero page / `hvm_start_info`, ACPI tables and the MP table.
//! - [`devices`]: the port-I/O devices of the machine model (16550, i8042, CMOS RTC, pvpanic, ACPI PM)
//!   and the virtio devices (virtio-blk, virtio-rng, virtio-net, virtio-balloon) behind the device
//!   manager.
//! - [`console`]: where the UART's output goes (stdio, pty, unix socket with a bounded backlog).
//! - [`control`]: serves the control socket (state, pause/resume, power button, reset, destroy, outcome,
//!   the balloon's target, vCPU hotplug, save, migrate).
//! - [`machine`]: ties them together and runs the domain until it stops (or restores it from a
//!   snapshot instead of booting; `save`, and `migrate`'s pre-copy, in `machine::save`/`machine::migrate`).
//! - [`snapshot`]: the versioned, checksummed snapshot stream and what it holds.
//! - [`sandbox`] and [`seccomp`]: the jail a VMM locks itself into (empty root, own namespaces,
//!   non-root uid, no capabilities) and the per-thread seccomp filters.
//! - [`threads`]: the one spawn point per kind of thread, and the pause/resume/stop/save-state events
//!   with acknowledgements every vCPU and device thread is controlled through.
//!
//! The library reads neither `/proc` nor the environment: host facts come from system calls
//! ([`sys`]), options from the binary.
//!
//! # Machine model (what a guest sees)
//! - PVH boot (`hvm_start_info`: command line, e820 memmap, RSDP) for ELF kernels with
//!   `XEN_ELFNOTE_PHYS32_ENTRY`; the Linux 64-bit boot protocol for bzImage and plain ELF vmlinux.
//! - RAM from 0; e820: `[0, 0x9fc00)` RAM, `[0x9fc00, 0x100000)` reserved, `[1 MiB, min(mem, 3 GiB))` RAM,
//!   the rest above 4 GiB.
//! - ACPI RSDP v2 -> XSDT -> FADT (+FACS, DSDT with `\_S5_` = 5 and COM1), MADT (one LAPIC per possible
//!   vCPU: the `vcpus` online at boot Enabled, the rest up to `maxvcpus` Online Capable; IOAPIC id
//!   `maxvcpus` at 0xfec00000, ISA IRQ 9 -> GSI 9 level/high). Not hardware-reduced: PM1a event block 0x600,
//!   PM1a control 0x604, PM timer 0x608, SCI 9 (pulsed), fixed power button, reset register 0xcf9 = 6.
//! - ACPI CPU hotplug ([`devices::cpu_hotplug`], [`boot::acpi_cpus`]): a GED (`ACPI0013`, event selector
//!   at 0xfeb00000, GSI 5 edge/high, pulsed) and the CPU hotplug register block at 0xfeb01000; the DSDT
//!   has one `ACPI0007` device per possible vCPU. `set-vcpus` ([`machine::hotplug`]) plugs vCPUs in and
//!   out; an ejected vCPU's thread is parked and reused (KVM cannot destroy a vCPU).
//! - MP table (MP spec 1.4) at 0xf0000. In-kernel LAPIC/IOAPIC/PIC and PIT; APs wait for INIT-SIPI-SIPI.
//! - 16550 at 0x3f8 / IRQ 4 (the console), i8042 (0xfe to 0x64 resets), CMOS RTC at 0x70/0x71, pvpanic
//!   at 0x505. The virtio-mmio window at 0xd0000000: slot i (4 KiB) on GSI 10 + i, the disks in config
//!   order, then the entropy device (on by default), then the NICs (vifs with `vifname=`, each on a
//!   TAP; see [`devices::virtio::net`]), then the balloon (on by default; see
//!   [`devices::virtio::balloon`]); empty slots read as ones.
//! - RAM: the domain's `maxmem` when it has a balloon, which starts with a target of `maxmem - memory`
//!   (the guest's driver settles at `memory`; `mem-set` moves it); else `memory`.
//!
//! # Outcomes
//! Guest stops become an [`outcome::Outcome`]: poweroff (ACPI S5, `destroy`, SIGTERM/SIGINT: exit 0),
//! reboot (i8042, reset register, triple fault, `reset`: exit 2), crash (pvpanic, emulation failure, any
//! other fatal exit: exit 3). Errors before the guest runs are exit 1.
//!
//! # Control protocol
//! Defined once, for domus-vmm and domusd alike, in the `domus-vmm-api` crate (requests, replies, machine
//! and vCPU states, outcomes, exit statuses); [`control`] serves it.

#![warn(missing_docs)]
// STYLE.md §6: no silent truncation, wrap or sign loss in `as` casts.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

pub mod boot;
pub mod config;
pub mod console;
pub mod control;
pub mod devices;
pub mod machine;
pub mod outcome;
pub mod sandbox;
pub mod seccomp;
pub mod snapshot;
pub mod sys;
pub mod threads;
pub mod vstate;
pub mod warm;
