//! Pure parsers for what the probe guest reads at boot: ACPI tables (FADT, MADT, AML patterns),
//! the command line and the memory map; and the pure bookkeeping of its drivers: the device
//! registry (`registry`), the event loop's hook table (`hooks`) and the balloon's page pool (`pagepool`). They take byte slices and strings, never touch
//! hardware, and run on the host in unit tests and fuzz targets; the `domus-probe` binary
//! (`main.rs`) applies them to guest memory.
//!
//! All input is untrusted (firmware tables and boot data come from the VMM): every parser is
//! bounds-checked and total — malformed input yields "absent" or an error value, never a panic.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod aml;
pub mod bytes;
pub mod cmdline;
pub mod dhcp;
pub mod fadt;
pub mod hooks;
pub mod inet;
pub mod ipv4;
pub mod madt;
pub mod memmap;
pub mod pagepool;
pub mod registry;
pub mod sha256;
