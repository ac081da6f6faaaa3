//! A domain's configuration resolved against the host: [`prepare`] turns a `domus_config::DomainConfig`
//! into the [`VmSpec`] a `domus-vmm` runs — every value the machine needs filled in, every device listed,
//! every file checked and opened — or into [`SpecErrors`] naming each problem and, when the value came
//! from a config file, its `FILE:LINE:COLUMN`.
//!
//! One conversion, linked by every side: `domus create` and `domus create -N` (through domusd, or locally
//! for the dry run), domusd (before it allocates a domid, so a refused create leaves nothing behind) and
//! `domus-vmm --config FILE` (which runs one domain without a daemon). Layers, each in its own module:
//! - [`image`]: what a kernel file is (PVH ELF note, Linux ELF or bzImage, gzip-wrapped or not);
//! - [`host`]: what the host can give (memory, KVM's vCPU limit);
//! - `prepare`: the checks and the opening of files;
//! - `boot`: `bootloader = "pygrub"`, whose kernel, ramdisk and command line become the spec's;
//! - this module: the specification's types.
//!
//! # Resources and their hand-off
//! Each external resource of a spec (the kernel, the ramdisk, each disk's image or device) is a
//! [`Resource`]: a path, and optionally the number of a file descriptor the VMM inherits. A NIC's TAP
//! ([`TapSpec`]) is named by its interface and may likewise carry an inherited descriptor (domusd does
//! not hand TAPs over yet: that comes with its host networking).
//! [`prepare`] opens every resource with the access the domain needs (disks read-write unless `ro` or a
//! cdrom, with `O_DIRECT` when `direct-io-safe`) and returns the open files in a [`Prepared`].
//!
//! domusd hands them over: [`Prepared::hand_over`] records in each resource's `fd` the number its open
//! file has in domusd (numbers are not renumbered: the files stay open in domusd until the spawn, so
//! no other descriptor — std's own exec-error pipe included — can take those numbers), and between
//! fork and exec domusd clears `FD_CLOEXEC` on exactly those numbers; every other descriptor of
//! domusd's is close-on-exec and does not reach the VMM. The order is kernel, ramdisk (if any), then
//! each disk with media in `disks` order, but the VMM relies only on the numbers the spec names: it
//! takes each such descriptor once, marks it close-on-exec again, and opens nothing itself, so it can
//! later run without file access. A resource without `fd` (standalone `domus-vmm --config FILE`, which
//! runs [`prepare`] itself, or a spec written by hand) is opened from its path.
#![warn(missing_docs)]
#![deny(unsafe_code)] // one exception: the OFD disk lock in `disk_lock.rs`

pub mod affinity;
mod boot;
mod disk_lock;
mod error;
pub mod host;
pub mod image;
mod names;
mod prepare;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use affinity::Placement;
pub use boot::BootloaderOptions;
pub use domus_config::{Action, DomainType};
pub use host::HostLimits;
pub use prepare::{
    is_hidden_char, is_valid_name, prepare, prepare_incoming, prepare_with, resolve_paths,
    Prepared, PreparedFiles, SpecError, SpecErrorKind, SpecErrors,
};

/// How many virtio devices the machine model can wire to interrupts: one GSI each, 10 to 23 (the
/// IOAPIC's 24 pins minus the 10 the legacy devices and the SCI use).
pub const MAX_VIRTIO_DEVICES: usize = 14;

/// Most vCPUs the machine model describes (xAPIC ids 0-253 in the MADT and MP table).
pub const MAX_MACHINE_VCPUS: u32 = 254;

/// Least guest RAM the fixed low-memory layout plus a kernel needs, MiB.
pub const MIN_MEMORY_MIB: u64 = 4;

/// Largest guest RAM accepted whatever the host says (1 TiB): a typo guard.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;

/// The name of the host's own row in `xl list`; no domain may take it.
pub const DOMAIN0_NAME: &str = "Domain-0";

/// An external resource of a domain: where it lives, and the descriptor the VMM inherits it at, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Absolute path (also used in messages and the store's vbd nodes).
    pub path: PathBuf,
    /// The inherited descriptor holding it, opened with the right access; `None`: open `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
}

impl Resource {
    /// A resource at `path`, not handed over.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            fd: None,
        }
    }
}

/// How the VMM enters the kernel, from what the kernel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootProtocol {
    /// PVH: the ELF note `XEN_ELFNOTE_PHYS32_ENTRY`, `hvm_start_info`.
    Pvh,
    /// The Linux 64-bit boot protocol (bzImage or ELF vmlinux): zero page, long mode.
    Linux64,
}

impl BootProtocol {
    /// Human name for the one line that says how a domain boots.
    pub fn describe(self) -> &'static str {
        match self {
            BootProtocol::Pvh => "PVH (the kernel's XEN_ELFNOTE_PHYS32_ENTRY note)",
            BootProtocol::Linux64 => {
                "the Linux 64-bit boot protocol (the kernel's Linux boot header)"
            }
        }
    }
}

/// Default entropy rate limit per domain, bytes per second (1 MiB/s; burst: one second's worth).
pub const DEFAULT_RNG_RATE_BYTES_PER_SEC: u64 = 1 << 20;

/// The entropy device (virtio-rng), in the virtio-mmio slot after the disks. xl.cfg keys (Domus's
/// own; xl has none): `rng = 0|1` (default 1) and `rng_rate = BYTES_PER_SECOND` (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RngSpec {
    /// Bytes per second the guest may draw from the host's entropy source (0 = no limit).
    pub rate_bytes_per_sec: u64,
}

impl Default for RngSpec {
    fn default() -> Self {
        Self {
            rate_bytes_per_sec: DEFAULT_RNG_RATE_BYTES_PER_SEC,
        }
    }
}

/// What a spec without an `rng` field gets: the entropy device is on by default.
fn default_rng() -> Option<RngSpec> {
    Some(RngSpec::default())
}

/// One NIC (virtio-net) as the machine has it, in the virtio-mmio slots after the entropy device, in
/// `vif` order. Only vifs with a host side become NICs: `vifname=NAME` names an existing TAP
/// (domus-vmm never creates host interfaces; making TAPs, bridges and NAT is the host-networking
/// side's job, which will hand the TAP over as an inherited descriptor in `tap.fd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// The vif's devid.
    pub devid: u32,
    /// The guest-side MAC (`mac=`, or generated under 00:16:3e).
    pub mac: domus_config::MacAddr,
    /// The MTU the guest is told (`mtu=`, default 1500).
    pub mtu: u16,
    /// Transmit limit (`rate=`), if any.
    pub rate: Option<domus_config::VifRate>,
    /// The TAP.
    pub tap: TapSpec,
}

/// The host side of a NIC: a TAP device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapSpec {
    /// Interface name (in messages; opened by name when there is no `fd`).
    pub name: String,
    /// An inherited descriptor already attached to the TAP (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).
    #[serde(default)]
    pub fd: Option<i32>,
}

/// The MTU of a vif without `mtu=`.
pub const DEFAULT_MTU: u16 = 1500;

/// One disk as the machine has it: virtio-mmio slot i is disk i.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// The vdev as configured (`xvda`, ...): the device's serial (GET_ID) and its name in messages.
    pub vdev: String,
    /// Its xen-vbd-interface number (the store's vbd node).
    pub devnum: u32,
    /// The raw image or block device; `None` for an empty cdrom drive.
    pub media: Option<Resource>,
    /// The guest may not write (`ro`, or a cdrom).
    pub read_only: bool,
    /// A cdrom drive.
    pub cdrom: bool,
    /// DISCARD and WRITE_ZEROES are offered (writable disks only).
    pub discard: bool,
    /// Opened with `O_DIRECT` (`direct-io-safe`).
    pub direct: bool,
}

/// What a `domus-vmm` needs to build and boot one domain: no value left to default, every device listed.
///
/// Its JSON is what domusd passes with `domus-vmm --spec-json FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Domain name.
    pub name: String,
    /// Domain UUID, lowercase.
    pub uuid: String,
    /// The type as configured (`pv` or `pvh`; both boot what the kernel carries).
    pub domain_type: DomainType,
    /// The memory the guest keeps at boot, MiB: the balloon's first target (without a balloon, the
    /// guest's RAM).
    pub memory_mib: u64,
    /// Maximum memory, MiB: with a balloon the guest's RAM (`mem-set` moves between the floor and
    /// this, as Xen's populate-on-demand does), else recorded only.
    pub maxmem_mib: u64,
    /// vCPUs online at boot.
    pub vcpus: u32,
    /// Possible vCPUs (`maxvcpus`, at least `vcpus`; recorded: no vCPU hotplug yet).
    #[serde(default)]
    pub maxvcpus: u32,
    /// Where the vCPU threads run and their share of the host (applied by domusd).
    #[serde(default)]
    pub placement: Placement,
    /// The kernel image.
    pub kernel: Resource,
    /// How the kernel is entered (detected from the file).
    pub boot: BootProtocol,
    /// The initial ramdisk, if any.
    pub ramdisk: Option<Resource>,
    /// The kernel command line, composed (`cmdline`, or `root=` and `extra`).
    pub cmdline: String,
    /// Disks in config order.
    pub disks: Vec<DiskSpec>,
    /// The entropy device (`null`: none; absent: the default device).
    #[serde(default = "default_rng")]
    pub rng: Option<RngSpec>,
    /// NICs in `vif` order (only vifs with a TAP; absent: none).
    #[serde(default)]
    pub nics: Vec<NicSpec>,
    /// Restore the machine from the snapshot stream on this inherited descriptor instead of booting
    /// (`xl restore`, `migrate-receive`); the stream must describe this very machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_fd: Option<i32>,
    /// With `restore_fd`: an inherited descriptor the VMM writes one byte to once it starts reading
    /// the stream, then closes (`migrate-receive` passes it: the source pauses the guest only then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_ready_fd: Option<i32>,
    /// Writable disks were opened without their lock (the receiving end of a live migration: the
    /// source held it): the VMM takes each exclusive lock once the restore stream is in, and refuses
    /// to run the guest when one is still held elsewhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lock_disks_at_start: bool,
    /// A virtio-balloon device after the NICs (absent: none, as in specs from before ballooning).
    #[serde(default)]
    pub balloon: bool,
}

impl VmSpec {
    /// The guest's RAM, MiB: `maxmem` with a balloon, else `memory`.
    pub fn ram_mib(&self) -> u64 {
        if self.balloon {
            self.maxmem_mib.max(self.memory_mib)
        } else {
            self.memory_mib
        }
    }
}

impl VmSpec {
    /// The one line that says how this domain boots (the VMM logs it at start).
    pub fn boot_line(&self) -> String {
        let ty = match self.domain_type {
            DomainType::Pv => {
                " (type = \"pv\": Domus runs no PV guests; it boots the kernel's own entry)"
            }
            _ => "",
        };
        format!(
            "booting {} through {}{ty}",
            self.kernel.path.display(),
            self.boot.describe()
        )
    }

    /// The resources in hand-off order: kernel, ramdisk, then each disk's media.
    pub fn resources_mut(&mut self) -> Vec<&mut Resource> {
        let mut v = vec![&mut self.kernel];
        if let Some(r) = self.ramdisk.as_mut() {
            v.push(r);
        }
        v.extend(self.disks.iter_mut().filter_map(|d| d.media.as_mut()));
        v
    }
}

/// Paths relative to a directory become absolute against it (xl resolves them against its cwd).
pub fn absolute(p: &str, cwd: &std::path::Path) -> PathBuf {
    let path = std::path::Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}
