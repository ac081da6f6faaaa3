//! What a conversion reports: each problem with the location of the value at fault ([`SpecError`]),
//! and all of them together ([`SpecErrors`]).

use std::fmt;
use std::path::PathBuf;

use domus_config::Action;

use crate::image::ImageError;

/// Why a configuration cannot run on this host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecErrorKind {
    /// Not a usable domain name.
    #[error("invalid domain name {0:?}: use 1-64 bytes without '/', whitespace, control, format or bidirectional characters; not all digits, not '.' or '..', not Domain-0")]
    InvalidName(String),
    /// HVM needs firmware.
    #[error("type = \"hvm\" needs firmware this VMM does not have: boot the kernel directly with type = \"pvh\" (or \"pv\") and kernel = \"...\"")]
    Hvm,
    /// The bootloader is not pygrub, or pygrub found nothing to boot (its explanation).
    #[error(transparent)]
    Bootloader(domus_bootloader::domain::DomainBootError),
    /// No kernel at all.
    #[error("no kernel given: set `kernel = \"PATH\"` to a PVH or Linux kernel image")]
    NoKernel,
    /// PCI passthrough.
    #[error("pci passthrough is not supported yet (remove the 'pci' entries)")]
    Pci,
    /// A serial port other than the console.
    #[error("serial = \"{0}\" is not supported: the serial port is the domain's console (serial = \"pty\", reached with `console` and logged under the console log directory); remove the setting or write \"pty\"")]
    Serial(String),
    /// More than one serial port.
    #[error("{0} serial ports given, but a domain has one (COM1, its console): keep serial = \"pty\" only")]
    SerialCount(usize),
    /// A block hotplug script.
    #[error("disk `{vdev}`: script={script} is not supported: Domus does not run block hotplug scripts yet; remove script= and give the image or device path as target=")]
    DiskScript {
        /// vdev.
        vdev: String,
        /// The script.
        script: String,
    },
    /// A coredump action.
    #[error("{key}=\"{action}\" is not supported: domus cannot dump guest memory yet (use \"destroy\", \"restart\" or \"preserve\")")]
    Coredump {
        /// `on_crash`, ...
        key: &'static str,
        /// The action.
        action: Action,
    },
    /// The kernel file is missing, unreadable or no kernel.
    #[error(transparent)]
    Kernel(ImageError),
    /// The ramdisk cannot be opened.
    #[error("cannot read ramdisk {path}")]
    Ramdisk {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The ramdisk is a directory or a device.
    #[error("ramdisk {0} is not a regular file")]
    RamdiskKind(PathBuf),
    /// A disk cannot be opened with the access it needs.
    #[error("disk `{vdev}`: cannot open disk image {path} {mode}")]
    DiskOpen {
        /// vdev.
        vdev: String,
        /// Path.
        path: PathBuf,
        /// "read-only" or "read-write" (and "with O_DIRECT").
        mode: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Another domain (or another program honouring the locks) holds the disk: exclusively, or shared
    /// while this one needs it writable.
    #[error("disk `{vdev}`: {path} is in use ({held}): a disk is used writable by one domain at a time, read-only by any number")]
    DiskLocked {
        /// vdev.
        vdev: String,
        /// Path.
        path: PathBuf,
        /// Who holds it, as far as this process knows ("locked by another domain or program" here;
        /// domusd names the domain).
        held: String,
    },
    /// A disk is neither a regular file nor a block device.
    #[error("disk `{vdev}`: {path} is neither a regular file nor a block device")]
    DiskKind {
        /// vdev.
        vdev: String,
        /// Path.
        path: PathBuf,
    },
    /// A disk format other than raw.
    #[error("disk `{vdev}`: format {format} is not supported (only raw images and block devices; convert with `qemu-img convert -O raw`)")]
    DiskFormat {
        /// vdev.
        vdev: String,
        /// The format.
        format: String,
    },
    /// A disk without a target that is not an empty cdrom.
    #[error("disk `{0}`: no target given (only a cdrom drive may be empty)")]
    DiskNoTarget(String),
    /// Two disks on one vdev.
    #[error("vdev `{vdev}` (device number {devnum}) is already used by disk {first} (`{first_vdev}`): expected a unique vdev per disk")]
    DuplicateVdev {
        /// The second disk's vdev.
        vdev: String,
        /// The number.
        devnum: u32,
        /// Index of the first disk.
        first: usize,
        /// Its vdev.
        first_vdev: String,
    },
    /// More devices than interrupt lines.
    #[error("{count} disks, but the machine model has interrupt lines for at most {max} virtio devices (GSIs 10-23)")]
    TooManyDevices {
        /// Devices asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The disks leave no interrupt line for the entropy device.
    #[error("{disks} disks and the entropy device need {needed} virtio devices, but the machine model has interrupt lines for at most {max} (GSIs 10-23): set `rng = 0` or use fewer disks")]
    NoSlotForRng {
        /// Disks.
        disks: usize,
        /// Disks + 1.
        needed: usize,
        /// The limit.
        max: usize,
    },
    /// `maxmem` above `memory` needs the balloon, which needs a slot the other devices took.
    #[error("maxmem = {maxmem_mib} MiB above memory = {memory_mib} MiB needs the balloon device, but {used} virtio devices (disks, entropy device, NICs) already take all {max} interrupt lines: set maxmem = memory, `rng = 0`, or use fewer disks or vifs")]
    NoSlotForBalloon {
        /// `maxmem`.
        maxmem_mib: u64,
        /// `memory`.
        memory_mib: u64,
        /// Devices before the balloon.
        used: usize,
        /// The limit.
        max: usize,
    },
    /// Disks, the entropy device and the NICs need more slots than there are interrupt lines.
    #[error("{disks} disks, {rng} entropy device and {nics} NICs need {needed} virtio devices, but the machine model has interrupt lines for at most {max} (GSIs 10-23): set `rng = 0` or use fewer disks or vifs")]
    NoSlotForNics {
        /// Disks.
        disks: usize,
        /// Entropy devices (0 or 1).
        rng: usize,
        /// NICs.
        nics: usize,
        /// The sum.
        needed: usize,
        /// The limit.
        max: usize,
    },
    /// `rng` or `rng_rate` has a value of the wrong kind.
    #[error("{key} = {value}: expected {want}")]
    RngValue {
        /// The key.
        key: &'static str,
        /// What was given.
        value: String,
        /// What is expected.
        want: &'static str,
    },
    /// memory below the machine's minimum.
    #[error("memory = {memory_mib} MiB is too small: the machine needs at least {min_mib} MiB")]
    MemoryTooSmall {
        /// Requested.
        memory_mib: u64,
        /// Minimum.
        min_mib: u64,
    },
    /// memory = 0 (only from JSON; xl.cfg refuses it earlier).
    #[error("memory must be at least 1 MiB (got 0)")]
    MemoryZero,
    /// More than the host can give.
    #[error("memory = {memory_mib} MiB is more than this host can give ({available_mib} MiB of RAM + swap)")]
    MemoryTooLarge {
        /// Requested.
        memory_mib: u64,
        /// Host RAM + swap.
        available_mib: u64,
    },
    /// A `cpus`/`cpus_soft` spec selects no host CPU for a vCPU.
    #[error("`{spec}` selects no CPU of this host for vCPU {vcpu} (it has CPUs 0-{last})")]
    CpusEmpty {
        /// The spec.
        spec: String,
        /// The vCPU.
        vcpu: u32,
        /// The host's last CPU.
        last: u32,
    },
    /// A malformed `cpus`/`cpus_soft` spec (hand-written JSON).
    #[error("invalid CPU list")]
    Cpus(#[source] domus_config::CpusError),
    /// maxmem (what the guest may reach through the balloon) is more than the host can give.
    #[error("maxmem = {maxmem_mib} MiB is more than this host can give ({available_mib} MiB of RAM + swap)")]
    MaxmemTooLarge {
        /// Requested.
        maxmem_mib: u64,
        /// Host RAM + swap.
        available_mib: u64,
    },
    /// vcpus = 0.
    #[error("vcpus must be at least 1 (got 0)")]
    VcpusZero,
    /// maxvcpus over KVM's (or the machine model's) limit.
    #[error("maxvcpus = {maxvcpus} is over the limit of {max} vCPUs per VM on this host (KVM and the machine's 254 APIC ids)")]
    MaxvcpusOverLimit {
        /// Requested.
        maxvcpus: u32,
        /// The limit.
        max: u32,
    },
    /// Over KVM's limit.
    #[error("vcpus = {vcpus} is over KVM's limit of {max} vCPUs per VM on this host")]
    VcpusOverKvm {
        /// Requested.
        vcpus: u32,
        /// The limit (KVM's, at most the machine model's).
        max: u32,
    },
    /// Over the machine model's limit (KVM not asked).
    #[error(
        "vcpus = {vcpus} is over the machine model's limit of {max} vCPUs (xAPIC ids in the MADT)"
    )]
    VcpusOverMachine {
        /// Requested.
        vcpus: u32,
        /// The limit.
        max: u32,
    },
}

/// One problem: where the value was written (`FILE:LINE:COLUMN`, when known), the key, and what is wrong.
///
/// Displayed on one line, causes included: `FILE:LINE:COLUMN: KEY: MESSAGE: CAUSE`.
#[derive(Debug)]
pub struct SpecError {
    /// Where the value was written, when it came from a file or the command line.
    pub at: Option<String>,
    /// The config key concerned.
    pub key: &'static str,
    /// What is wrong.
    pub kind: SpecErrorKind,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "{}: {}", self.key, self.kind)?;
        let mut cause = match &self.kind {
            SpecErrorKind::Kernel(e) => std::error::Error::source(e),
            SpecErrorKind::Bootloader(e) => std::error::Error::source(e),
            SpecErrorKind::Ramdisk { source, .. } | SpecErrorKind::DiskOpen { source, .. } => {
                Some(source as &(dyn std::error::Error + 'static))
            }
            _ => None,
        };
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Every problem a configuration has, in config order (at least one). Displayed one per line.
#[derive(Debug)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}
