//! domus-vmm: the virtual machine monitor that runs exactly one Domus domain on KVM.
//!
//! One process per domain. The binary (`main.rs`) only parses arguments, sets up logging and maps the
//! outcome to an exit status; everything else lives in this library:
//!
//! - [`config`]: the resolved machine configuration ([`config::VmConfig`]) and its validation.
//! - [`vstate`]: KVM itself (system, VM, vCPUs, guest memory). The only place with `unsafe` code.
//! - [`boot`]: kernel loading (PVH ELF, Linux bzImage / ELF vmlinux, gzip), zero page / `hvm_start_info`,
//!   ACPI tables and the MP table.
//! - [`devices`]: the port-I/O devices of the machine model (16550, i8042, CMOS RTC, pvpanic, ACPI PM).
//! - [`console`]: where the UART's output goes (stdio, pty, unix socket with a bounded backlog).
//! - [`control`]: the control socket (state, pause/resume, power button, reset, destroy, outcome).
//! - [`machine`]: ties them together and runs the domain until it stops.
//!
//! # Machine model
//! See the crate README section of contract 3 (in the repository's `contracts.txt`): RAM from 0 with the PC
//! holes in the e820 map, ACPI with fixed-hardware PM1a registers at 0x600, SCI on GSI 9, reset register 0xcf9,
//! 16550 at 0x3f8/IRQ 4, i8042, CMOS RTC, pvpanic at 0x505, an MP table at 0xf0000.
//!
//! # Control protocol
//! Documented in [`control`].

#![warn(missing_docs)]

pub mod boot;
pub mod config;
pub mod console;
pub mod control;
pub mod devices;
pub mod machine;
pub mod outcome;
pub mod sys;
pub mod vstate;
