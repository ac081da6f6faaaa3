//! The conversion: a `DomainConfig` checked against what Domus supports and what the host has, with
//! every file opened, into a [`Prepared`] spec — or every problem found, each with the location of the
//! value at fault.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use domus_config::{Access, Action, DevType, DiskFormat, DomainConfig, DomainType};

use crate::boot::BootloaderOptions;
use crate::disk_lock::lock_disk;
use crate::host::HostLimits;
use crate::image::{self, ImageError};
pub use crate::names::{is_hidden_char, is_valid_name};
use crate::{
    BootProtocol, DiskSpec, NicSpec, Resource, RngSpec, TapSpec, VmSpec, DEFAULT_MTU,
    MAX_MACHINE_VCPUS, MAX_MEMORY_MIB, MAX_VIRTIO_DEVICES, MIN_MEMORY_MIB,
};

pub use crate::error::{SpecError, SpecErrorKind, SpecErrors};

/// The open files of a prepared spec, in the spec's order.
#[derive(Debug)]
pub struct PreparedFiles {
    /// The kernel, read-only.
    pub kernel: File,
    /// The kernel's bytes as read for its detection (gzip unwrapped), so a VMM that prepared its own
    /// spec does not read the file twice.
    pub kernel_image: Vec<u8>,
    /// The ramdisk, read-only.
    pub ramdisk: Option<File>,
    /// Each disk's media (`None` for an empty cdrom), opened with the disk's access.
    pub disks: Vec<Option<File>>,
}

/// A spec with its resources open.
#[derive(Debug)]
pub struct Prepared {
    /// The specification (resources as paths).
    pub spec: VmSpec,
    /// The open files.
    pub files: PreparedFiles,
    /// With `bootloader = "pygrub"`: what it chose and its warnings, one line each, for the user.
    pub boot: Vec<String>,
}

impl Prepared {
    /// Records in the spec, for each resource, the number its open file has in this process, and
    /// returns the spec with the files in hand-off order (kernel, ramdisk, each disk's media). The
    /// caller keeps the files open until the VMM is spawned and lets exactly those numbers survive its
    /// exec (see the crate docs).
    pub fn hand_over(self) -> (VmSpec, Vec<File>) {
        use std::os::fd::AsRawFd;
        let Prepared {
            mut spec, files, ..
        } = self;
        drop(files.kernel_image);
        let mut ordered: Vec<File> = vec![files.kernel];
        ordered.extend(files.ramdisk);
        ordered.extend(files.disks.into_iter().flatten());
        for (res, file) in spec.resources_mut().into_iter().zip(&ordered) {
            res.fd = Some(file.as_raw_fd());
        }
        (spec, ordered)
    }
}

/// Makes the config's kernel, ramdisk and disk paths absolute against `cwd`, as xl resolves them
/// against its current directory (the caller's, not domusd's).
pub fn resolve_paths(cfg: &mut DomainConfig, cwd: &Path) {
    let abs = |p: &mut Option<String>| {
        if let Some(s) = p.as_mut().filter(|s| !s.is_empty()) {
            *s = crate::absolute(s, cwd).to_string_lossy().into_owned();
        }
    };
    // With a bootloader, kernel and ramdisk name files on the guest's own disk: left as written.
    if cfg.bootloader.is_none() {
        abs(&mut cfg.kernel);
        abs(&mut cfg.ramdisk);
    }
    for d in &mut cfg.disks {
        abs(&mut d.target);
    }
}

/// Collects errors with their locations.
struct Check<'a> {
    cfg: &'a DomainConfig,
    errors: Vec<SpecError>,
    /// An incoming live migration: writable disks are opened without their lock (the VMM takes it).
    incoming: bool,
}

impl Check<'_> {
    fn fail(&mut self, at: Option<&String>, key: &'static str, kind: SpecErrorKind) {
        self.errors.push(SpecError {
            at: at.cloned(),
            key,
            kind,
        });
    }
}

/// Converts `cfg` into the spec a VMM runs, checking it against Domus and `host` and opening every
/// file with the access the domain needs. Relative paths are taken against the current directory.
///
/// # Errors
/// Every problem found (not just the first), each located when the config says where the value came
/// from (see `domus_config::Origins`).
pub fn prepare(cfg: &DomainConfig, host: &HostLimits) -> Result<Prepared, SpecErrors> {
    prepare_with(cfg, host, &BootloaderOptions::default())
}

/// [`prepare`], with `bootloader = "pygrub"` run as `boot` says: its kernel, ramdisk and command line
/// become the spec's (opened here, then its work directory is removed), and [`Prepared::boot`] says
/// what it chose.
///
/// # Errors
/// As [`prepare`]; a bootloader that is not pygrub or that finds nothing to boot is one more problem
/// (located at `bootloader`), reported with the others.
pub fn prepare_with(
    cfg: &DomainConfig,
    host: &HostLimits,
    boot: &BootloaderOptions,
) -> Result<Prepared, SpecErrors> {
    prepare_checked(cfg, host, boot, false)
}

/// [`prepare_with`] for the receiving end of a live migration: the source's VMM still holds the
/// exclusive locks of the writable disks while the stream comes in, so they are opened without
/// taking them, and the spec tells the VMM to take them itself once the whole stream is in (the
/// source releases them when it pauses the guest for the stop-and-copy; see
/// `domus_vmm::machine::disk_locks`). Read-only disks are locked (shared) as usual.
///
/// # Errors
/// As [`prepare_with`].
pub fn prepare_incoming(
    cfg: &DomainConfig,
    host: &HostLimits,
    boot: &BootloaderOptions,
) -> Result<Prepared, SpecErrors> {
    let mut p = prepare_checked(cfg, host, boot, true)?;
    p.spec.lock_disks_at_start = true;
    Ok(p)
}

fn prepare_checked(
    cfg: &DomainConfig,
    host: &HostLimits,
    boot: &BootloaderOptions,
    incoming: bool,
) -> Result<Prepared, SpecErrors> {
    let (booted, boot_error) = match cfg.bootloader.as_deref().filter(|b| !b.is_empty()) {
        None => (None, None),
        Some(_) => match crate::boot::run(cfg, boot) {
            Ok(b) => (b, None),
            Err(e) => (None, Some(e)),
        },
    };
    // The config the checks see: pygrub's result in place of kernel/ramdisk/cmdline; after a failed
    // pygrub, no kernel or ramdisk (they name files on the guest's disk, not the host's).
    let effective = match (&booted, &boot_error) {
        (Some(b), _) => b.apply(cfg),
        (None, Some(_)) => DomainConfig {
            kernel: None,
            ramdisk: None,
            ..cfg.clone()
        },
        (None, None) => cfg.clone(),
    };
    let mut c = Check {
        cfg: &effective,
        errors: Vec::new(),
        incoming,
    };
    let cfg = &effective;
    let o = &cfg.origins;
    if !is_valid_name(&cfg.name) {
        c.fail(None, "name", SpecErrorKind::InvalidName(cfg.name.clone()));
    }
    if cfg.domain_type == DomainType::Hvm {
        c.fail(o.domain_type.as_ref(), "type", SpecErrorKind::Hvm);
    }
    if let Some(e) = boot_error {
        c.fail(
            o.bootloader.as_ref(),
            "bootloader",
            SpecErrorKind::Bootloader(e),
        );
    }
    if !cfg.pci.is_empty() {
        c.fail(o.pci.as_ref(), "pci", SpecErrorKind::Pci);
    }
    // The one serial port (COM1) is the console: xl's serial = "pty". Anything else is refused rather
    // than accepted and ignored.
    match cfg.serial.as_slice() {
        [] => {}
        [one] if one == "pty" => {}
        [one] => c.fail(None, "serial", SpecErrorKind::Serial(one.clone())),
        more => c.fail(None, "serial", SpecErrorKind::SerialCount(more.len())),
    }
    for (key, action) in [
        ("on_poweroff", cfg.on_poweroff),
        ("on_reboot", cfg.on_reboot),
        ("on_crash", cfg.on_crash),
    ] {
        if matches!(action, Action::CoredumpDestroy | Action::CoredumpRestart) {
            c.fail(None, key, SpecErrorKind::Coredump { key, action });
        }
    }
    memory_and_vcpus(&mut c, host);
    let placement = placement(&mut c, host);
    let kernel = kernel(&mut c);
    let ramdisk = ramdisk(&mut c);
    let disks = disks(&mut c);
    let rng = rng(&mut c);
    let nics = nics(&mut c, rng.is_some());
    let balloon = balloon(&mut c, rng.is_some(), nics.len());
    if !c.errors.is_empty() {
        return Err(SpecErrors(c.errors));
    }
    let (Some((kernel, kernel_file, kernel_image, boot)), Some(ramdisk), Some(disks)) =
        (kernel, ramdisk, disks)
    else {
        // Each helper returns None only after recording an error.
        return Err(SpecErrors(c.errors));
    };
    let (ramdisk, ramdisk_file) = ramdisk.unzip();
    let (disks, disk_files) = disks.into_iter().unzip();
    Ok(Prepared {
        spec: VmSpec {
            name: cfg.name.clone(),
            uuid: cfg.uuid.to_ascii_lowercase(),
            domain_type: cfg.domain_type,
            memory_mib: cfg.memory_mib,
            maxmem_mib: cfg.maxmem_mib.max(cfg.memory_mib),
            vcpus: cfg.vcpus,
            maxvcpus: cfg.maxvcpus.max(cfg.vcpus),
            placement,
            kernel,
            boot,
            ramdisk,
            cmdline: cfg.cmdline.clone().unwrap_or_default(),
            disks,
            rng,
            nics,
            restore_fd: None,
            restore_ready_fd: None,
            lock_disks_at_start: false,
            balloon,
        },
        files: PreparedFiles {
            kernel: kernel_file,
            kernel_image,
            ramdisk: ramdisk_file,
            disks: disk_files,
        },
        // The files are open: pygrub's work directory goes when `booted` drops here.
        boot: booted.map(|b| b.lines()).unwrap_or_default(),
    })
}

fn placement(c: &mut Check<'_>, host: &HostLimits) -> crate::Placement {
    let cfg = c.cfg;
    let n = cfg.maxvcpus.max(cfg.vcpus);
    let nodes = |node| crate::affinity::host_node_cpus(node, host.nr_cpus);
    let mut one = |key: &'static str, value| {
        crate::affinity::resolve(value, n, host.nr_cpus, &nodes).unwrap_or_else(|e| {
            let kind = match e {
                crate::affinity::PlacementError::Malformed(e) => SpecErrorKind::Cpus(e),
                crate::affinity::PlacementError::Empty(m) => SpecErrorKind::CpusEmpty {
                    spec: m.spec,
                    vcpu: m.vcpu,
                    last: host.nr_cpus.saturating_sub(1),
                },
            };
            c.fail(None, key, kind);
            Vec::new()
        })
    };
    let hard = one("cpus", cfg.cpus.as_ref());
    let soft = one("cpus_soft", cfg.cpus_soft.as_ref());
    crate::Placement {
        hard,
        soft,
        weight: cfg.cpu_weight.unwrap_or(crate::affinity::DEFAULT_WEIGHT),
        cap: cfg.cpu_cap.unwrap_or(0),
    }
}

fn memory_and_vcpus(c: &mut Check<'_>, host: &HostLimits) {
    let cfg = c.cfg;
    let at = cfg.origins.memory.as_ref();
    let mib = cfg.memory_mib;
    if mib == 0 {
        c.fail(at, "memory", SpecErrorKind::MemoryZero);
    } else if mib < MIN_MEMORY_MIB {
        c.fail(
            at,
            "memory",
            SpecErrorKind::MemoryTooSmall {
                memory_mib: mib,
                min_mib: MIN_MEMORY_MIB,
            },
        );
    } else if mib > host.memory_mib.min(MAX_MEMORY_MIB) {
        c.fail(
            at,
            "memory",
            SpecErrorKind::MemoryTooLarge {
                memory_mib: mib,
                available_mib: host.memory_mib,
            },
        );
    }
    let maxmem = cfg.maxmem_mib;
    if maxmem > mib && maxmem > host.memory_mib.min(MAX_MEMORY_MIB) {
        // Admission counts maxmem: a guest without a balloon driver may touch all of it.
        c.fail(
            None,
            "maxmem",
            SpecErrorKind::MaxmemTooLarge {
                maxmem_mib: maxmem,
                available_mib: host.memory_mib,
            },
        );
    }
    let at = cfg.origins.vcpus.as_ref();
    let vcpus = cfg.vcpus;
    if vcpus == 0 {
        c.fail(at, "vcpus", SpecErrorKind::VcpusZero);
    } else if let Some(kvm) = host.kvm_max_vcpus {
        let max = kvm.min(MAX_MACHINE_VCPUS);
        if vcpus > max {
            c.fail(at, "vcpus", SpecErrorKind::VcpusOverKvm { vcpus, max });
        }
    } else if vcpus > MAX_MACHINE_VCPUS {
        c.fail(
            at,
            "vcpus",
            SpecErrorKind::VcpusOverMachine {
                vcpus,
                max: MAX_MACHINE_VCPUS,
            },
        );
    }
    // maxvcpus >= vcpus is the config crate's rule; here its ceiling: every possible vCPU is in the
    // MADT and may be hot-plugged, so it must fit KVM and the machine as vcpus must.
    let maxvcpus = cfg.maxvcpus;
    let max = host
        .kvm_max_vcpus
        .map_or(MAX_MACHINE_VCPUS, |k| k.min(MAX_MACHINE_VCPUS));
    if vcpus <= max && maxvcpus > max {
        c.fail(
            cfg.origins.maxvcpus.as_ref(),
            "maxvcpus",
            SpecErrorKind::MaxvcpusOverLimit { maxvcpus, max },
        );
    }
}

fn absolute(p: &str) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p))
}

fn kernel(c: &mut Check<'_>) -> Option<(Resource, File, Vec<u8>, BootProtocol)> {
    let cfg = c.cfg;
    let at = cfg.origins.kernel.as_ref();
    let Some(k) = cfg.kernel.as_deref().filter(|k| !k.is_empty()) else {
        if cfg.bootloader.is_none() {
            c.fail(None, "kernel", SpecErrorKind::NoKernel);
        }
        return None;
    };
    let path = absolute(k);
    let opened = File::open(&path)
        .map_err(|source| ImageError::Read {
            path: path.clone(),
            source,
        })
        .and_then(|f| {
            let bytes = image::read_kernel_file(&f, &path)?;
            let kind = image::classify(&bytes, &path)?;
            Ok((f, bytes, kind))
        });
    match opened {
        Ok((f, bytes, kind)) => Some((Resource::path(path), f, bytes, kind.protocol())),
        Err(e) => {
            c.fail(at, "kernel", SpecErrorKind::Kernel(e));
            None
        }
    }
}

/// `Some(None)`: no ramdisk; `None`: an error was recorded.
fn ramdisk(c: &mut Check<'_>) -> Option<Option<(Resource, File)>> {
    let cfg = c.cfg;
    let at = cfg.origins.ramdisk.as_ref();
    let Some(r) = cfg.ramdisk.as_deref().filter(|r| !r.is_empty()) else {
        return Some(None);
    };
    let path = absolute(r);
    let opened = File::open(&path).and_then(|f| f.metadata().map(|m| (f, m)));
    match opened {
        Ok((f, m)) if m.is_file() => Some(Some((Resource::path(path), f))),
        Ok(_) => {
            c.fail(at, "ramdisk", SpecErrorKind::RamdiskKind(path));
            None
        }
        Err(source) => {
            c.fail(at, "ramdisk", SpecErrorKind::Ramdisk { path, source });
            None
        }
    }
}

/// The entropy device from the `rng` / `rng_rate` keys (kept by domus-config among the keys it does
/// not parse itself); on by default, and it needs a virtio slot of its own after the disks.
/// A Domus on/off key (`rng`, `balloon`): absent = on.
fn switch(c: &mut Check<'_>, key: &'static str) -> bool {
    use domus_config::PlainValue;
    match c.cfg.other_keys.get(key) {
        None => true,
        Some(PlainValue::Num(n)) => *n != 0,
        Some(PlainValue::Str(s)) if s == "on" || s == "1" => true,
        Some(PlainValue::Str(s)) if s == "off" || s == "0" => false,
        Some(other) => {
            c.fail(
                None,
                key,
                SpecErrorKind::RngValue {
                    key,
                    value: format!("{other:?}"),
                    want: "0 or 1",
                },
            );
            false
        }
    }
}

fn rng(c: &mut Check<'_>) -> Option<RngSpec> {
    use domus_config::PlainValue;
    let enabled = switch(c, "rng");
    let keys = &c.cfg.other_keys;
    let mut spec = RngSpec::default();
    match keys.get("rng_rate") {
        None => {}
        Some(PlainValue::Num(n)) => spec.rate_bytes_per_sec = *n,
        Some(other) => c.fail(
            None,
            "rng_rate",
            SpecErrorKind::RngValue {
                key: "rng_rate",
                value: format!("{other:?}"),
                want: "bytes per second (a number; 0 = no limit)",
            },
        ),
    }
    let disks = c.cfg.disks.len();
    // More disks than slots is the disks' own error; exactly as many leaves none for the device.
    if enabled && disks == MAX_VIRTIO_DEVICES {
        c.fail(
            c.cfg.origins.disk.as_ref(),
            "rng",
            SpecErrorKind::NoSlotForRng {
                disks,
                needed: disks + 1,
                max: MAX_VIRTIO_DEVICES,
            },
        );
    }
    enabled.then_some(spec)
}

/// The NICs: each vif with `vifname=` (an existing TAP); the others have no host side yet and are left
/// out (the domain boots without them, as before NICs existed).
fn nics(c: &mut Check<'_>, rng: bool) -> Vec<NicSpec> {
    let cfg = c.cfg;
    let nics: Vec<NicSpec> = cfg
        .vifs
        .iter()
        .filter_map(|v| {
            let name = v.vifname.clone()?;
            Some(NicSpec {
                devid: v.devid,
                mac: v.mac,
                // domus-config accepts 68..=65535 only.
                mtu: v
                    .mtu
                    .and_then(|m| u16::try_from(m).ok())
                    .unwrap_or(DEFAULT_MTU),
                rate: v.rate,
                tap: TapSpec { name, fd: None },
            })
        })
        .collect();
    let (disks, rng) = (cfg.disks.len(), usize::from(rng));
    let needed = disks + rng + nics.len();
    if !nics.is_empty() && needed > MAX_VIRTIO_DEVICES && disks + rng <= MAX_VIRTIO_DEVICES {
        c.fail(
            None,
            "vif",
            SpecErrorKind::NoSlotForNics {
                disks,
                rng,
                nics: nics.len(),
                needed,
                max: MAX_VIRTIO_DEVICES,
            },
        );
    }
    nics
}

/// Whether the machine gets a balloon (after the NICs): whenever a slot is left, so `mem-set` works
/// on every domain, as xl's does (also with `maxmem` = `memory`: it can still shrink). `maxmem` above
/// `memory` without a slot is refused (the guest would get `maxmem` of RAM nothing can take back).
/// Domus's own key `balloon = 0` leaves it out (the guest then gets `memory` of RAM, `maxmem` is only
/// recorded, and `mem-set` cannot change it).
fn balloon(c: &mut Check<'_>, rng: bool, nics: usize) -> bool {
    if !switch(c, "balloon") {
        return false;
    }
    let cfg = c.cfg;
    let used = cfg.disks.len() + usize::from(rng) + nics;
    if used < MAX_VIRTIO_DEVICES {
        return true;
    }
    if cfg.maxmem_mib > cfg.memory_mib && used == MAX_VIRTIO_DEVICES {
        c.fail(
            cfg.origins.maxmem.as_ref(),
            "maxmem",
            SpecErrorKind::NoSlotForBalloon {
                maxmem_mib: cfg.maxmem_mib,
                memory_mib: cfg.memory_mib,
                used,
                max: MAX_VIRTIO_DEVICES,
            },
        );
    }
    false
}

fn disks(c: &mut Check<'_>) -> Option<Vec<(DiskSpec, Option<File>)>> {
    let cfg = c.cfg;
    let o = &cfg.origins;
    let before = c.errors.len();
    if cfg.disks.len() > MAX_VIRTIO_DEVICES {
        c.fail(
            o.disk.as_ref(),
            "disk",
            SpecErrorKind::TooManyDevices {
                count: cfg.disks.len(),
                max: MAX_VIRTIO_DEVICES,
            },
        );
    }
    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut out = Vec::with_capacity(cfg.disks.len());
    // One image may back several of this domain's disks: it is locked once, by its first open, as
    // strongly as its most demanding use needs (exclusive if any use writes).
    let image_id = |t: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(absolute(t))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    let mut writable_images: HashMap<(u64, u64), bool> = HashMap::new();
    for d in &cfg.disks {
        let read_only = d.access == Access::Ro || d.devtype == DevType::Cdrom;
        if let Some(id) = d.target.as_deref().and_then(image_id) {
            *writable_images.entry(id).or_default() |= !read_only;
        }
    }
    let mut locked: std::collections::HashSet<(u64, u64)> = std::collections::HashSet::new();
    for (i, d) in cfg.disks.iter().enumerate() {
        let at = o.disks.get(i).or(o.disk.as_ref());
        if let Some(&first) = seen.get(&d.devnum) {
            let first_vdev = cfg.disks[first].vdev.clone();
            c.fail(
                at,
                "disk",
                SpecErrorKind::DuplicateVdev {
                    vdev: d.vdev.clone(),
                    devnum: d.devnum,
                    first,
                    first_vdev,
                },
            );
            continue;
        }
        seen.insert(d.devnum, i);
        if let Some(script) = &d.script {
            c.fail(
                at,
                "disk",
                SpecErrorKind::DiskScript {
                    vdev: d.vdev.clone(),
                    script: script.clone(),
                },
            );
            continue;
        }
        let cdrom = d.devtype == DevType::Cdrom;
        let read_only = d.access == Access::Ro || cdrom;
        let target = d.target.as_deref().filter(|t| !t.is_empty());
        let media = match (d.format, target) {
            (DiskFormat::Empty, _) | (DiskFormat::Raw, None) if cdrom => None,
            (DiskFormat::Empty, _) | (DiskFormat::Raw, None) => {
                c.fail(at, "disk", SpecErrorKind::DiskNoTarget(d.vdev.clone()));
                continue;
            }
            (DiskFormat::Raw, Some(t)) => {
                let path = absolute(t);
                let lock = match image_id(t) {
                    Some(id) if !locked.insert(id) => None,
                    Some(id) => Some(!writable_images.get(&id).copied().unwrap_or(!read_only)),
                    None => Some(read_only),
                };
                // Incoming migration: no exclusive lock now (the source holds it until it pauses).
                let lock = if c.incoming {
                    lock.filter(|&shared| shared)
                } else {
                    lock
                };
                match open_disk(&path, read_only, d.direct_io_safe, lock) {
                    Ok(f) => Some((Resource::path(path), f)),
                    Err(kind) => {
                        c.fail(at, "disk", kind(d.vdev.clone()));
                        continue;
                    }
                }
            }
            (f, _) => {
                c.fail(
                    at,
                    "disk",
                    SpecErrorKind::DiskFormat {
                        vdev: d.vdev.clone(),
                        format: format!("{f:?}").to_lowercase(),
                    },
                );
                continue;
            }
        };
        let (media, file) = media.unzip();
        out.push((
            DiskSpec {
                vdev: d.vdev.clone(),
                devnum: d.devnum,
                media,
                read_only,
                cdrom,
                discard: d.discard && !read_only,
                direct: d.direct_io_safe,
            },
            file,
        ));
    }
    (c.errors.len() == before).then_some(out)
}

type DiskErr = Box<dyn FnOnce(String) -> SpecErrorKind>;

/// Opens a disk's image or device with the access the guest gets, and locks it (`lock_shared`: shared
/// or exclusive; `None`: this domain locked the image already).
fn open_disk(
    path: &Path,
    read_only: bool,
    direct: bool,
    lock_shared: Option<bool>,
) -> Result<File, DiskErr> {
    let mut mode = if read_only { "read-only" } else { "read-write" }.to_owned();
    let mut o = OpenOptions::new();
    o.read(true).write(!read_only);
    if direct {
        o.custom_flags(libc::O_DIRECT);
        mode.push_str(" with O_DIRECT (direct-io-safe)");
    }
    let p = path.to_path_buf();
    let file = o.open(path).map_err(|source| -> DiskErr {
        Box::new(move |vdev| SpecErrorKind::DiskOpen {
            vdev,
            path: p,
            mode,
            source,
        })
    })?;
    if lock_shared.is_some_and(|shared| !lock_disk(&file, shared)) {
        let p = path.to_path_buf();
        return Err(Box::new(move |vdev| SpecErrorKind::DiskLocked {
            vdev,
            path: p,
            held: "locked by another domain or program".to_owned(),
        }));
    }
    let p = path.to_path_buf();
    match file.metadata() {
        Ok(m) if m.is_file() || m.file_type().is_block_device() => Ok(file),
        _ => Err(Box::new(move |vdev| SpecErrorKind::DiskKind {
            vdev,
            path: p,
        })),
    }
}

#[cfg(test)]
#[path = "prepare_tests.rs"]
mod tests;
