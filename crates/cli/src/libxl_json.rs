//! libxl's JSON for a domain, as `xl list -l` prints it (`printf_info` in tools/xl/xl_info.c): one object
//! `{"domid": N, "config": <libxl_domain_config>}` per domain, the config's field names and value
//! spellings as libxl_types.idl declares them (`c_info`, `b_info`, `disks`, `nics`, `on_reboot`, ...;
//! enumerations in lower case, defbools as "True"/"False", memory in KiB). Like libxl's generator, fields
//! at their default are left out (`on_poweroff: "destroy"`, empty device lists, unset strings).
//!
//! Built from the domain's typed [`DomainConfig`]. The networking and resources issues add their fields
//! (`cpumap`, `sched_params` values, `vcpu_soft_affinity`, ...) here.

use domus_config::disk::BackendType;
use domus_config::{Access, Action, DevType, DiskConfig, DomainConfig, VifConfig};
use serde::Serialize;

/// One domain: `{"domid": N|null, "config": {...}}`.
#[derive(Debug, Serialize)]
pub struct DomainJson {
    /// The domid; `None` (JSON null) for `create -N`, which creates nothing.
    pub domid: Option<u32>,
    /// libxl_domain_config.
    pub config: Config,
}

/// libxl_domain_config.
#[derive(Debug, Serialize)]
pub struct Config {
    c_info: CInfo,
    b_info: BInfo,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    disks: Vec<Disk>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nics: Vec<Nic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_poweroff: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_reboot: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_watchdog: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_crash: Option<&'static str>,
    on_soft_reset: &'static str,
}

/// libxl_domain_create_info.
#[derive(Debug, Serialize)]
struct CInfo {
    #[serde(rename = "type")]
    domain_type: &'static str,
    name: String,
    uuid: String,
    run_hotplug_scripts: &'static str,
}

/// libxl_domain_build_info (the fields Domus has).
#[derive(Debug, Serialize)]
struct BInfo {
    max_vcpus: u32,
    avail_vcpus: Vec<u32>,
    numa_placement: &'static str,
    max_memkb: u64,
    target_memkb: u64,
    sched_params: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmdline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ramdisk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bootloader: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bootloader_args: Vec<String>,
    /// The keyed union `u` is written as `"type.<kind>": {...}` by libxl's generator.
    #[serde(rename = "type.pv", skip_serializing_if = "Option::is_none")]
    type_pv: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "type.pvh", skip_serializing_if = "Option::is_none")]
    type_pvh: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "type.hvm", skip_serializing_if = "Option::is_none")]
    type_hvm: Option<serde_json::Map<String, serde_json::Value>>,
    arch_arm: serde_json::Map<String, serde_json::Value>,
    arch_x86: serde_json::Map<String, serde_json::Value>,
}

/// libxl_device_disk.
#[derive(Debug, Serialize)]
struct Disk {
    #[serde(skip_serializing_if = "Option::is_none")]
    pdev_path: Option<String>,
    vdev: String,
    backend: &'static str,
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    removable: u32,
    #[serde(skip_serializing_if = "is_zero")]
    readwrite: u32,
    #[serde(skip_serializing_if = "is_zero")]
    is_cdrom: u32,
    #[serde(skip_serializing_if = "is_false")]
    direct_io_safe: bool,
    discard_enable: &'static str,
}

/// libxl_device_nic.
#[derive(Debug, Serialize)]
struct Nic {
    devid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    script: Option<String>,
    nictype: &'static str,
    #[serde(skip_serializing_if = "is_zero64")]
    rate_bytes_per_interval: u64,
    #[serde(skip_serializing_if = "is_zero64")]
    rate_interval_usecs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    gatewaydev: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero64(v: &u64) -> bool {
    *v == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(v: &bool) -> bool {
    !*v
}

fn defbool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// libxl_action_on_shutdown's spelling; `None` for its default (destroy), which libxl leaves out.
fn action(a: Action) -> Option<&'static str> {
    match a {
        Action::Destroy => None,
        Action::Restart => Some("restart"),
        Action::RenameRestart => Some("restart_rename"),
        Action::Preserve => Some("preserve"),
        Action::CoredumpDestroy => Some("coredump_destroy"),
        Action::CoredumpRestart => Some("coredump_restart"),
    }
}

fn disk(d: &DiskConfig) -> Disk {
    let cdrom = d.devtype == DevType::Cdrom;
    // libxl picks phy for block devices and qdisk for image files when no backendtype is given.
    let backend = match d.backendtype {
        Some(BackendType::Phy) => "phy",
        Some(BackendType::Tap) => "tap",
        Some(BackendType::Qdisk) => "qdisk",
        Some(BackendType::Standalone) => "standalone",
        None if d.target.as_deref().is_some_and(|t| t.starts_with("/dev/")) => "phy",
        None => "qdisk",
    };
    Disk {
        pdev_path: d.target.clone().filter(|t| !t.is_empty()),
        vdev: d.vdev.clone(),
        backend,
        format: d.format.as_str(),
        script: d.script.clone(),
        removable: u32::from(cdrom),
        readwrite: u32::from(d.access == Access::Rw),
        is_cdrom: u32::from(cdrom),
        direct_io_safe: d.direct_io_safe,
        discard_enable: defbool(d.discard),
    }
}

fn nic(v: &VifConfig) -> Nic {
    let (rate_bytes_per_interval, rate_interval_usecs) = v.rate.map_or((0, 0), |r| {
        (
            r.bytes_per_second.saturating_mul(r.interval_us) / 1_000_000,
            r.interval_us,
        )
    });
    Nic {
        devid: v.devid,
        mtu: v.mtu,
        model: v.model.clone(),
        mac: v.mac.to_string(),
        ip: v.ip.clone(),
        bridge: v.bridge.clone(),
        ifname: v.vifname.clone(),
        script: v.script.clone(),
        nictype: "vif",
        rate_bytes_per_interval,
        rate_interval_usecs,
        gatewaydev: v.gatewaydev.clone(),
    }
}

/// libxl_domain_sched_params as xl fills it from `cpu_weight`/`cpu_cap` (unset ones left out).
fn sched_params(config: &DomainConfig) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(w) = config.cpu_weight {
        m.insert("weight".into(), w.into());
    }
    if let Some(c) = config.cpu_cap {
        m.insert("cap".into(), c.into());
    }
    m
}

/// libxl's JSON for `config` running as `domid` (`None`: `create -N`).
pub fn domain(domid: Option<u32>, config: &DomainConfig) -> DomainJson {
    let empty = serde_json::Map::new;
    let t = config.domain_type.as_str();
    let b_info = BInfo {
        max_vcpus: config.maxvcpus.max(config.vcpus),
        avail_vcpus: (0..config.vcpus).collect(),
        numa_placement: defbool(config.cpus.is_none()),
        max_memkb: config.maxmem_mib.max(config.memory_mib) * 1024,
        target_memkb: config.memory_mib * 1024,
        sched_params: sched_params(config),
        kernel: config.kernel.clone(),
        cmdline: config.cmdline.clone(),
        ramdisk: config.ramdisk.clone(),
        bootloader: config.bootloader.clone(),
        bootloader_args: config.bootloader_args.clone(),
        type_pv: (t == "pv").then(empty),
        type_pvh: (t == "pvh").then(empty),
        type_hvm: (t == "hvm").then(empty),
        arch_arm: empty(),
        arch_x86: empty(),
    };
    DomainJson {
        domid,
        config: Config {
            c_info: CInfo {
                domain_type: t,
                name: config.name.clone(),
                uuid: config.uuid.clone(),
                run_hotplug_scripts: "True",
            },
            b_info,
            disks: config.disks.iter().map(disk).collect(),
            nics: config.vifs.iter().map(nic).collect(),
            on_poweroff: action(config.on_poweroff),
            on_reboot: action(config.on_reboot),
            on_watchdog: action(config.on_watchdog),
            on_crash: action(config.on_crash),
            on_soft_reset: "soft_reset",
        },
    }
}

/// Pretty-prints as libxl's yajl generator does (4-space indentation).
pub fn to_string<T: Serialize>(v: &T) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    if v.serialize(&mut ser).is_err() {
        return "null".to_owned();
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libxl_names_spellings_and_defaults() {
        let text = "name = \"web\"\ntype = \"pvh\"\nkernel = \"/k\"\nmemory = 256\nmaxmem = 512\nvcpus = 2\non_reboot = \"rename-restart\"\non_crash = \"preserve\"\ndisk = ['/img/web.raw,raw,xvda,rw', 'format=raw, vdev=xvdb, access=ro, devtype=cdrom, target=/dev/sr0']\nvif = ['mac=00:16:3e:00:00:01, bridge=br0']\n";
        let cfg = DomainConfig::from_xl("web.cfg", text, &[]).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&to_string(&domain(Some(3), &cfg))).unwrap();
        assert_eq!(v["domid"], 3);
        let c = &v["config"];
        assert_eq!(c["c_info"]["type"], "pvh");
        assert_eq!(c["c_info"]["name"], "web");
        assert_eq!(c["b_info"]["max_memkb"], 512 * 1024);
        assert_eq!(c["b_info"]["target_memkb"], 256 * 1024);
        assert_eq!(c["b_info"]["avail_vcpus"], serde_json::json!([0, 1]));
        assert_eq!(c["b_info"]["sched_params"], serde_json::json!({}));
        let weighted =
            DomainConfig::from_xl("w.cfg", "cpu_weight = 512\ncpu_cap = 25\n", &[]).unwrap();
        let w: serde_json::Value =
            serde_json::from_str(&to_string(&domain(None, &weighted))).unwrap();
        assert_eq!(
            w["config"]["b_info"]["sched_params"],
            serde_json::json!({"weight": 512, "cap": 25})
        );
        assert!(c["b_info"]["type.pvh"].is_object());
        assert_eq!(c["disks"][0]["pdev_path"], "/img/web.raw");
        assert_eq!(c["disks"][0]["backend"], "qdisk");
        assert_eq!(c["disks"][0]["readwrite"], 1);
        assert_eq!(c["disks"][1]["is_cdrom"], 1);
        assert_eq!(c["disks"][1]["backend"], "phy");
        assert!(c["disks"][1].get("readwrite").is_none(), "0 is left out");
        assert_eq!(c["nics"][0]["mac"], "00:16:3e:00:00:01");
        assert_eq!(c["nics"][0]["nictype"], "vif");
        assert!(c.get("on_poweroff").is_none(), "destroy is libxl's default");
        assert_eq!(c["on_reboot"], "restart_rename");
        assert_eq!(c["on_crash"], "preserve");
        let none: serde_json::Value =
            serde_json::from_str(&to_string(&domain(None, &cfg))).unwrap();
        assert!(none["domid"].is_null());
        assert!(to_string(&domain(None, &cfg)).contains("\n    \"config\": {\n        \"c_info\""));
    }
}
