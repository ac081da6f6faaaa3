//! The xenstore side of each domain: the node layout Xen's toolstack writes (`/local/domain/N/...`,
//! `/vm/UUID/...`) and the introduce/release calls, behind [`DomainStore`] so the supervisor does not
//! depend on how the store is hosted.

/// What the store needs to know about a domain.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreDomain {
    /// Domain id.
    pub domid: u32,
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Maximum memory, MiB.
    pub maxmem_mib: u64,
    /// vCPUs online.
    pub vcpus: u32,
    /// Possible vCPUs (`maxvcpus`): each has a `cpu/N/availability` node, `online` or `offline`.
    pub maxvcpus: u32,
    /// Start time, seconds since the epoch.
    pub start_time: f64,
    /// Console socket (written as console/tty: where a console client connects).
    pub console: Option<String>,
    /// The config's disks, for the vbd nodes (`vbd.rs`).
    pub disks: Vec<domus_config::DiskConfig>,
    /// The config's vifs (resolved), for the vif nodes (`net.rs`).
    pub vifs: Vec<domus_config::VifConfig>,
    /// Whether the vifs are set up (the domain is past `creating`).
    pub vifs_wired: bool,
    /// The domain's domus-vmm process (libxl's `image/device-model-pid`).
    pub vmm_pid: Option<u32>,
    /// `pv`, `pvh` or `hvm` (libxl's `/libxl/DOMID/type`).
    pub domain_type: String,
}

/// Who may access a node: Xen's permission strings, owner first (`n0` = dom0 owns, others none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Absolute path.
    pub path: String,
    /// Value.
    pub value: String,
    /// Permission list as xenstore-chmod spells it (`n0`, `r5`, ...).
    pub perms: Vec<String>,
}

/// The nodes Xen's toolstack writes for a domain (libxl's layout, as Xen's docs/misc/xenstore-paths.pandoc
/// describe it). Owner dom0 with read access for the domain itself, except the nodes the guest writes.
pub fn layout(d: &StoreDomain) -> Vec<Node> {
    let dom = format!("/local/domain/{}", d.domid);
    let vm = format!("/vm/{}", d.uuid);
    let ro = vec!["n0".to_owned(), format!("r{}", d.domid)];
    let rw = vec![format!("n{}", d.domid)];
    let node = |path: String, value: String, perms: &Vec<String>| Node {
        path,
        value,
        perms: perms.clone(),
    };
    let mut v = vec![
        node(dom.clone(), String::new(), &ro),
        node(format!("{dom}/name"), d.name.clone(), &ro),
        node(format!("{dom}/domid"), d.domid.to_string(), &ro),
        node(format!("{dom}/vm"), vm.clone(), &ro),
        node(
            format!("{dom}/memory/static-max"),
            d.maxmem_mib.saturating_mul(1024).to_string(),
            &ro,
        ),
        node(
            format!("{dom}/memory/target"),
            d.memory_mib.saturating_mul(1024).to_string(),
            &ro,
        ),
        node(format!("{dom}/memory/videoram"), "-1".into(), &ro),
        node(format!("{dom}/console/type"), "domus".into(), &ro),
        node(format!("{dom}/console/limit"), "1048576".into(), &ro),
        node(
            format!("{dom}/console/tty"),
            d.console.clone().unwrap_or_default(),
            &ro,
        ),
        // Writes of poweroff/halt/reboot here act (`control_watch.rs`), so the features are on, as a
        // guest's PV drivers would announce them.
        node(format!("{dom}/control/shutdown"), String::new(), &rw),
        node(format!("{dom}/control/feature-poweroff"), "1".into(), &rw),
        node(format!("{dom}/control/feature-reboot"), "1".into(), &rw),
        node(format!("{dom}/control/sysrq"), String::new(), &rw),
        node(
            format!("{dom}/control/platform-feature-multiprocessor-suspend"),
            "1".into(),
            &ro,
        ),
        node(
            format!("{dom}/control/platform-feature-xs_reset_watches"),
            "1".into(),
            &ro,
        ),
        node(
            format!("/libxl/{}/type", d.domid),
            d.domain_type.clone(),
            &vec!["n0".to_owned()],
        ),
        node(format!("{dom}/data"), String::new(), &rw),
        node(format!("{dom}/device"), String::new(), &ro),
        node(vm.clone(), String::new(), &ro),
        node(format!("{vm}/uuid"), d.uuid.clone(), &ro),
        node(format!("{vm}/name"), d.name.clone(), &ro),
        node(
            format!("{vm}/start_time"),
            format!("{:.2}", d.start_time),
            &ro,
        ),
    ];
    if let Some(pid) = d.vmm_pid {
        v.push(node(
            format!("{dom}/image/device-model-pid"),
            pid.to_string(),
            &ro,
        ));
    }
    v.extend(super::vbd::nodes(d.domid, &d.disks));
    v.extend(super::net::store_nodes(d.domid, &d.vifs, d.vifs_wired));
    for k in 0..d.maxvcpus.max(d.vcpus) {
        let state = if k < d.vcpus { "online" } else { "offline" };
        v.push(node(
            format!("{dom}/cpu/{k}/availability"),
            state.into(),
            &ro,
        ));
    }
    v
}

/// The store as the supervisor uses it. Implementations log their own failures: a store hiccup must never
/// stop a domain from starting or being destroyed.
pub trait DomainStore: Send + Sync {
    /// Writes the domain's nodes and introduces it.
    fn publish(&self, d: &StoreDomain);
    /// Rewrites the nodes that change on rename or mem-max.
    fn update(&self, d: &StoreDomain);
    /// Removes the domain's nodes and releases it.
    fn release(&self, domid: u32, uuid: &str);
    /// Writes Domain-0's own nodes (`/local/domain/0/{name,domid}`), once at start.
    fn publish_host(&self) {}
}

/// Domain-0's nodes, as Xen's dom0 has them.
pub fn host_layout() -> Vec<Node> {
    let n0 = vec!["n0".to_owned()];
    vec![
        Node {
            path: "/local/domain/0/name".into(),
            value: domus_api::messages::DOMAIN0_NAME.into(),
            perms: n0.clone(),
        },
        Node {
            path: "/local/domain/0/domid".into(),
            value: "0".into(),
            perms: n0,
        },
    ]
}

/// The in-process domus-store, reached through its own client on its dom0 socket.
pub struct XenStore {
    socket: std::path::PathBuf,
    client: std::sync::Mutex<Option<domus_store::client::Client>>,
}

impl XenStore {
    /// A store client for the server listening on `socket`.
    pub fn new(socket: std::path::PathBuf) -> Self {
        Self {
            socket,
            client: std::sync::Mutex::new(None),
        }
    }

    /// Runs `f` on a connected client, reconnecting once if the connection broke.
    fn with_client(
        &self,
        what: &str,
        domid: u32,
        f: impl Fn(&mut domus_store::client::Client) -> Result<(), domus_store::client::ClientError>,
    ) {
        let mut guard = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for attempt in 0..2 {
            if guard.is_none() {
                match domus_store::client::Client::connect(&self.socket) {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        tracing::warn!(domid, error = %e, socket = %self.socket.display(), "cannot reach the store");
                        return;
                    }
                }
            }
            let Some(c) = guard.as_mut() else { return };
            match f(c) {
                Ok(()) => return,
                Err(e) if attempt == 0 && e.xs_error().is_none() => *guard = None,
                Err(e) => {
                    tracing::warn!(domid, error = %e, "store {what} failed");
                    return;
                }
            }
        }
    }
}

fn perms_of(list: &[String]) -> Option<domus_store::perms::Perms> {
    let parsed: Option<Vec<_>> = list
        .iter()
        .map(|p| domus_store::perms::Perm::parse(p.as_bytes()).ok())
        .collect();
    domus_store::perms::Perms::new(parsed?)
}

fn write_nodes(
    c: &mut domus_store::client::Client,
    nodes: &[Node],
) -> Result<(), domus_store::client::ClientError> {
    use domus_store::client::TxId;
    for n in nodes {
        c.write(TxId::NONE, &n.path, n.value.as_bytes())?;
        if let Some(p) = perms_of(&n.perms) {
            c.set_perms(TxId::NONE, &n.path, &p)?;
        }
    }
    Ok(())
}

impl DomainStore for XenStore {
    fn publish_host(&self) {
        let nodes = host_layout();
        self.with_client("publish Domain-0", 0, |c| write_nodes(c, &nodes));
    }

    fn publish(&self, d: &StoreDomain) {
        let nodes = layout(d);
        self.with_client("publish", d.domid, |c| {
            match c.introduce(domus_store::DomId(d.domid), 0, 0) {
                Ok(()) => {}
                Err(e) if e.xs_error().is_some() => {
                    tracing::debug!(domid = d.domid, error = %e, "introduce refused")
                }
                Err(e) => return Err(e),
            }
            write_nodes(c, &nodes)
        });
    }

    fn update(&self, d: &StoreDomain) {
        let wanted = [
            "/name",
            "/memory/static-max",
            "/memory/target",
            "/console/tty",
            "/availability",
        ];
        let nodes: Vec<Node> = layout(d)
            .into_iter()
            .filter(|n| wanted.iter().any(|w| n.path.ends_with(w)) || n.path.starts_with("/vm/"))
            .collect();
        self.with_client("update", d.domid, |c| write_nodes(c, &nodes));
    }

    fn release(&self, domid: u32, uuid: &str) {
        use domus_store::client::TxId;
        self.with_client("release", domid, |c| {
            for p in [
                format!("/local/domain/{domid}"),
                format!("/vm/{uuid}"),
                format!("/libxl/{domid}"),
                super::vbd::backend_dir(domid),
                super::net::backend_dir(domid),
            ] {
                match c.rm(TxId::NONE, &p) {
                    Err(e) if e.xs_error().is_none() => return Err(e),
                    _ => {}
                }
            }
            match c.release(domus_store::DomId(domid)) {
                Err(e) if e.xs_error().is_none() => Err(e),
                _ => Ok(()),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_xen() {
        let d = StoreDomain {
            domid: 3,
            name: "web".into(),
            uuid: "11111111-2222-4333-8444-555555555555".into(),
            memory_mib: 16,
            maxmem_mib: 32,
            vcpus: 2,
            maxvcpus: 3,
            start_time: 1700000000.5,
            console: Some("/run/domus/domains/3/console.sock".into()),
            disks: Vec::new(),
            vifs: Vec::new(),
            vifs_wired: false,
            vmm_pid: Some(4242),
            domain_type: "pvh".into(),
        };
        let l = layout(&d);
        let get = |p: &str| l.iter().find(|n| n.path == p).map(|n| n.value.as_str());
        assert_eq!(get("/local/domain/3/name"), Some("web"));
        assert_eq!(get("/local/domain/3/domid"), Some("3"));
        assert_eq!(
            get("/local/domain/3/vm"),
            Some("/vm/11111111-2222-4333-8444-555555555555")
        );
        assert_eq!(get("/local/domain/3/memory/target"), Some("16384"));
        assert_eq!(get("/local/domain/3/memory/static-max"), Some("32768"));
        assert_eq!(get("/local/domain/3/cpu/1/availability"), Some("online"));
        // One node per possible vCPU (maxvcpus 3): the third is offline.
        assert_eq!(get("/local/domain/3/cpu/2/availability"), Some("offline"));
        assert_eq!(get("/local/domain/3/cpu/3/availability"), None);
        assert_eq!(
            get("/vm/11111111-2222-4333-8444-555555555555/start_time"),
            Some("1700000000.50")
        );
        let shutdown = l
            .iter()
            .find(|n| n.path == "/local/domain/3/control/shutdown")
            .unwrap();
        assert_eq!(shutdown.perms, vec!["n3"]);
        let name = l.iter().find(|n| n.path == "/local/domain/3/name").unwrap();
        assert_eq!(name.perms, vec!["n0", "r3"]);
        assert_eq!(get("/local/domain/3/image/device-model-pid"), Some("4242"));
        assert_eq!(get("/libxl/3/type"), Some("pvh"));
        assert_eq!(get("/local/domain/3/control/feature-poweroff"), Some("1"));
        let host = host_layout();
        assert_eq!(host[0].path, "/local/domain/0/name");
        assert_eq!(host[0].value, "Domain-0");
    }
}
