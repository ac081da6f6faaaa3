//! domus-bootloader: `bootloader = "pygrub"` done safely. It finds the kernel a guest's own disk would
//! boot — whole-disk filesystem or MBR/GPT partitions; ext2/3/4, FAT or ISO 9660; GRUB 2, GRUB legacy or
//! syslinux configs — and hands back only that kernel, its ramdisk and command line.
//!
//! Everything that reads guest-controlled bytes runs in a separate process, `domus-bootloader`
//! ([`child`]), launched by [`launch::Launcher`] through domus-sandbox: own namespaces (no network), an
//! empty read-only root, uid/gid 65534, no capabilities, a seccomp allow-list without `open`, `socket` or
//! `execve`, CPU-time, memory and file-size limits, a wall-clock deadline, and two descriptors: the disk
//! (read-only) and a memfd for its report ([`protocol`]). The parent parses that report strictly and
//! writes the kernel and ramdisk into a per-domain directory removed when [`launch::BootFiles`] drops.
//!
//! Layers, bottom up: [`disk`] (a bounded window onto the disk) → [`layout`] (partitions) → [`fs`]
//! (filesystems) → [`config`] (boot menus) → [`find`] (choosing, as pygrub does, per [`request`]) →
//! [`protocol`] → [`child`] / [`launch`].
//!
//! This crate must not: run guest-derived code or parsing in the caller's process (only [`protocol`]
//! parsing runs there), follow anything outside the disk it was given, or guess at entries it does not
//! understand.

#![warn(missing_docs)]

pub mod child;
pub mod config;
pub mod disk;
pub mod domain;
pub mod find;
pub mod fs;
pub mod launch;
pub mod layout;
pub mod protocol;
pub mod request;
mod sys;

pub use launch::{BootFiles, BootloaderError, Launcher};
pub use request::{is_pygrub, ArgsError, BootRequest};
