//! Config keys Domus knows about but does not use.
//!
//! Real configs carry keys for other Xen versions and for features Domus lacks (graphics, USB, device
//! model tuning, ...). Those are kept in [`crate::DomainConfig::other_keys`] and warned about, never
//! silently dropped; the warning differs for xl keys (listed here) and keys xl does not know either.

/// How a key Domus does not use is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    /// A Domus key that is not an xl.cfg(5) key, kept in `other_keys` for the layer that reads it
    /// (`domus-spec`): no warning.
    Domus,
    /// An xl.cfg(5) key Domus does not implement.
    NotImplemented,
    /// Not an xl.cfg(5) key at all (a typo, or another tool's).
    Unknown,
}

/// Domus's own keys without a typed field here: the entropy device (`rng = 0|1`, `rng_rate = BYTES`)
/// and the memory balloon (`balloon = 0|1`), read by `domus-spec`.
pub const DOMUS_KEYS: &[&str] = &["rng", "rng_rate", "balloon"];

/// xl.cfg(5) keys that Domus accepts and ignores.
pub const NOT_IMPLEMENTED: &[&str] = &[
    "acpi",
    "acpi_firmware",
    "acpi_s3",
    "acpi_s4",
    "altp2m",
    "apic",
    "bios",
    "bios_path_override",
    "blkdev_start",
    "boot",
    "channel",
    "claim_mode",
    "connectors",
    "cpuid",
    "device_model_args",
    "device_model_args_hvm",
    "device_model_args_pv",
    "device_model_override",
    "device_model_stubdomain_override",
    "device_model_user",
    "device_model_version",
    "device_tree",
    "driver_domain",
    "dt_passthrough_nodes",
    "dtdev",
    "e820_host",
    "event_channels",
    "firmware",
    "firmware_override",
    "gfx_passthru",
    "hap",
    "hdtype",
    "hpet",
    "iomem",
    "ioports",
    "irqs",
    "keymap",
    "localtime",
    "max_event_channels",
    "max_grant_frames",
    "max_grant_version",
    "max_maptrack_frames",
    "mca_caps",
    "migration_channel",
    "msr_relaxed",
    "nestedhvm",
    "nodes",
    "nographic",
    "nomigrate",
    "on_soft_reset",
    "opengl",
    "p2m_mem_sharing",
    "pae",
    "passthrough",
    "pci_msitranslate",
    "pci_permissive",
    "pci_power_mgmt",
    "pci_seize",
    "pool",
    "pvshim",
    "pvshim_cmdline",
    "pvshim_path",
    "rdm",
    "rdm_mem_boundary",
    "rtc_timeoffset",
    "sdl",
    "seclabel",
    "init_seclabel",
    "device_model_stubdomain_seclabel",
    "shadow_memory",
    "smbios_firmware",
    "soundhw",
    "spice",
    "spiceagent_mouse",
    "spicedisable_ticketing",
    "spicehost",
    "spiceport",
    "spicepasswd",
    "spicetls_port",
    "spicevdagent",
    "spice_clipboard_sharing",
    "spiceusbredirection",
    "stdvga",
    "suppress_vmdesc",
    "tee",
    "timer_mode",
    "trap_unmapped_accesses",
    "tsc_mode",
    "usb",
    "usbctrl",
    "usbdev",
    "usbdevice",
    "usbversion",
    "vcpu_hard_affinity",
    "vcpu_soft_affinity",
    "vdispl",
    "vfb",
    "vga",
    "videoram",
    "viridian",
    "vkb",
    "vnc",
    "vncconsole",
    "vncdisplay",
    "vnclisten",
    "vncpasswd",
    "vncunused",
    "vpmu",
    "vsnd",
    "vtpm",
    "vuart",
    "xen_platform_pci",
    "xendev",
    "p9",
    "pvcalls",
    "vcpu_soft_affinity",
    "virtio",
    "gic_version",
    "llc_colors",
    "nr_spis",
    "sve",
    "xenstore_feature_mask",
    "max_altp2m",
    "ssidref",
    "description",
    "vmtrace_buf_kb",
];

/// xl.cfg(5) keys Domus reads (each has a handler in the config builder).
pub const IMPLEMENTED: &[&str] = &[
    "name",
    "uuid",
    "type",
    "builder",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "cpus",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "bootloader",
    "bootloader_args",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_watchdog",
    "disk",
    "vif",
    "pci",
    "serial",
];

/// One line on what Domus does with an honoured key, for `domus.cfg(5)` (generated from this table);
/// keys without an entry get a pointer to xl.cfg(5).
pub fn describe(key: &str) -> &'static str {
    match key {
        "name" => "Domain name (required, unique among running domains).",
        "uuid" => "Domain UUID; a random one when absent.",
        "type" | "builder" => {
            "pvh or pv: the kernel is booted directly (its PVH entry or the Linux boot protocol); hvm is refused (no firmware)."
        }
        "memory" => "Guest RAM in MiB.",
        "maxmem" => "Maximum RAM in MiB the domain may be ballooned up to (at least memory).",
        "vcpus" => "Number of vCPUs online at boot.",
        "maxvcpus" => "Number of vCPUs the domain has (at least vcpus).",
        "cpus" => "Host CPUs the vCPU threads may run on (0-3, all,^1).",
        "kernel" => "Kernel image loaded by domus-vmm (ELF with a PVH note, or bzImage).",
        "ramdisk" => "Initial ramdisk.",
        "cmdline" => "Kernel command line (replaces root and extra).",
        "root" => "Appended to the kernel command line as root=VALUE.",
        "extra" => "Appended to the kernel command line.",
        "bootloader" => "pygrub: the kernel is read from the first disk by the sandboxed domus-bootloader.",
        "bootloader_args" => "Arguments for the bootloader (pygrub's --entry, --kernel, ...).",
        "on_poweroff" | "on_reboot" | "on_crash" | "on_watchdog" => {
            "As in xl; the coredump-destroy and coredump-restart actions are refused."
        }
        "disk" => "Disk specifications (xl-disk-configuration syntax), served as virtio-blk devices; script= is refused.",
        "vif" => "Network interfaces (xl-network-configuration syntax), served as virtio-net devices.",
        "pci" => "Refused: PCI passthrough is not supported yet.",
        "serial" => "Only pty (the console, reached with domus console); other values are refused.",
        _ => "As in xl.cfg(5).",
    }
}

/// The known key (read by Domus, or an xl key it does not implement) nearest to a misspelt `key`, when
/// close enough to be the likely intent: `memroy` -> `memory`, `vcpu` -> `vcpus`. Optimal string
/// alignment distance (a transposition counts once), at most 1 for keys up to 4 characters, else 2.
pub fn suggest(key: &str) -> Option<&'static str> {
    let limit = if key.chars().count() <= 4 { 1 } else { 2 };
    IMPLEMENTED
        .iter()
        .chain(NOT_IMPLEMENTED.iter())
        .chain(DOMUS_KEYS.iter())
        .map(|k| (strsim::osa_distance(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Classifies a key that no handler took.
pub fn classify(key: &str) -> KeyClass {
    if DOMUS_KEYS.contains(&key) {
        KeyClass::Domus
    } else if NOT_IMPLEMENTED.contains(&key) {
        KeyClass::NotImplemented
    } else {
        KeyClass::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify("sdl"), KeyClass::NotImplemented);
        assert_eq!(classify("vnc"), KeyClass::NotImplemented);
        assert_eq!(classify("frobnicate"), KeyClass::Unknown);
    }

    #[test]
    fn near_misses_get_a_suggestion() {
        assert_eq!(suggest("memroy"), Some("memory"));
        assert_eq!(suggest("vcpu"), Some("vcpus"));
        assert_eq!(suggest("kernal"), Some("kernel"));
        assert_eq!(suggest("on_poweof"), Some("on_poweroff"));
        assert_eq!(suggest("vnclisen"), Some("vnclisten"));
        assert_eq!(suggest("frobnicate"), None);
        assert_eq!(suggest("xy"), None);
    }
}
