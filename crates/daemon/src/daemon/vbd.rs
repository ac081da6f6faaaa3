//! Xen's virtual block device nodes for a domain's disks, as libxl writes them, so `xenstore-ls` shows
//! the disks where Xen's tools expect them:
//!
//! - backend `/local/domain/0/backend/vbd/<domid>/<devnum>/{frontend,frontend-id,params,mode,type,dev,
//!   device-type,removable,bootable,online,state,discard-enable,direct-io-safe,format}` (owned by dom0,
//!   readable by the domain);
//! - frontend `/local/domain/<domid>/device/vbd/<devnum>/{backend,backend-id,virtual-device,
//!   device-type,state}` (owned by the domain, readable by dom0).
//!
//! `state` is 4 (XenbusStateConnected) on both sides: the disk is served by domus-vmm's virtio-blk from
//! the start (there is no xenbus handshake under KVM). The disks come from the domain's configuration.

use domus_config::{Access, DevType, DiskConfig};

use super::store::Node;

/// The backend directory of a domain's vbds.
pub fn backend_dir(domid: u32) -> String {
    format!("/local/domain/0/backend/vbd/{domid}")
}

/// The nodes for a domain's `disks`.
pub fn nodes(domid: u32, disks: &[DiskConfig]) -> Vec<Node> {
    let mut out = Vec::new();
    let back_perms = vec!["n0".to_owned(), format!("r{domid}")];
    let front_perms = vec![format!("n{domid}"), "r0".to_owned()];
    for d in disks {
        let devnum = d.devnum;
        let be = format!("{}/{devnum}", backend_dir(domid));
        let fe = format!("/local/domain/{domid}/device/vbd/{devnum}");
        let devtype = match d.devtype {
            DevType::Disk => "disk",
            DevType::Cdrom => "cdrom",
        };
        let mode = if d.access == Access::Ro || d.devtype == DevType::Cdrom {
            "r"
        } else {
            "w"
        };
        let kind = d.backendtype.map_or("phy", |b| b.as_str());
        let flag = |on: bool| if on { "1" } else { "0" };
        let b = |k: &str, v: String| Node {
            path: format!("{be}/{k}"),
            value: v,
            perms: back_perms.clone(),
        };
        out.extend([
            b("frontend", fe.clone()),
            b("frontend-id", domid.to_string()),
            b("params", d.target.clone().unwrap_or_default()),
            b("mode", mode.to_owned()),
            b("type", kind.to_owned()),
            b("dev", d.vdev.clone()),
            b("device-type", devtype.to_owned()),
            b("format", d.format.as_str().to_owned()),
            b(
                "removable",
                if devtype == "cdrom" { "1" } else { "0" }.to_owned(),
            ),
            b("bootable", "1".to_owned()),
            b("online", "1".to_owned()),
            b("state", "4".to_owned()),
            b("discard-enable", flag(d.discard).to_owned()),
            b("direct-io-safe", flag(d.direct_io_safe).to_owned()),
        ]);
        let f = |k: &str, v: String| Node {
            path: format!("{fe}/{k}"),
            value: v,
            perms: front_perms.clone(),
        };
        out.extend([
            f("backend", be.clone()),
            f("backend-id", "0".to_owned()),
            f("virtual-device", devnum.to_string()),
            f("device-type", devtype.to_owned()),
            f("state", "4".to_owned()),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_vbd_layout() {
        let disks: Vec<DiskConfig> = serde_json::from_value(serde_json::json!([
            {"target": "/img/a.img", "format": "raw", "vdev": "xvda", "devnum": 51712,
             "access": "rw", "devtype": "disk", "backendtype": null, "script": null,
             "discard": true, "direct_io_safe": false},
            {"target": null, "format": "empty", "vdev": "hdc", "devnum": 5632,
             "access": "ro", "devtype": "cdrom", "backendtype": "phy", "script": null}
        ]))
        .unwrap();
        let n = nodes(7, &disks);
        let get = |p: &str| n.iter().find(|x| x.path == p).map(|x| x.value.as_str());
        let be = "/local/domain/0/backend/vbd/7/51712";
        assert_eq!(get(&format!("{be}/params")), Some("/img/a.img"));
        assert_eq!(get(&format!("{be}/mode")), Some("w"));
        assert_eq!(get(&format!("{be}/dev")), Some("xvda"));
        assert_eq!(get(&format!("{be}/type")), Some("phy"));
        assert_eq!(
            get(&format!("{be}/frontend")),
            Some("/local/domain/7/device/vbd/51712")
        );
        assert_eq!(get(&format!("{be}/state")), Some("4"));
        assert_eq!(get("/local/domain/7/device/vbd/51712/backend"), Some(be));
        assert_eq!(
            get("/local/domain/7/device/vbd/51712/virtual-device"),
            Some("51712")
        );
        assert_eq!(get("/local/domain/0/backend/vbd/7/5632/mode"), Some("r"));
        assert_eq!(
            get("/local/domain/0/backend/vbd/7/5632/device-type"),
            Some("cdrom")
        );
        assert_eq!(
            get("/local/domain/0/backend/vbd/7/5632/removable"),
            Some("1")
        );
        let fe = n
            .iter()
            .find(|x| x.path.ends_with("51712/backend-id"))
            .unwrap();
        assert_eq!(fe.perms, vec!["n7".to_owned(), "r0".to_owned()]);
        assert!(nodes(7, &[]).is_empty());
    }
}
