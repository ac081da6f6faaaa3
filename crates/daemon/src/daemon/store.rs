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
    /// vCPUs.
    pub vcpus: u32,
    /// Start time, seconds since the epoch.
    pub start_time: f64,
    /// Console socket (written as console/tty: where a console client connects).
    pub console: Option<String>,
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
#[allow(dead_code)] // used once the store is hosted (domus-store)
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
            (d.maxmem_mib * 1024).to_string(),
            &ro,
        ),
        node(
            format!("{dom}/memory/target"),
            (d.memory_mib * 1024).to_string(),
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
        node(format!("{dom}/control/shutdown"), String::new(), &rw),
        node(
            format!("{dom}/control/feature-poweroff"),
            String::new(),
            &rw,
        ),
        node(format!("{dom}/control/feature-reboot"), String::new(), &rw),
        node(
            format!("{dom}/control/platform-feature-multiprocessor-suspend"),
            "1".into(),
            &ro,
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
    for k in 0..d.vcpus {
        v.push(node(
            format!("{dom}/cpu/{k}/availability"),
            "online".into(),
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
}

/// No store (tests that only exercise the supervisor).
#[derive(Debug, Default)]
pub struct NoStore;

impl DomainStore for NoStore {
    fn publish(&self, _: &StoreDomain) {}
    fn update(&self, _: &StoreDomain) {}
    fn release(&self, _: u32, _: &str) {}
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
            start_time: 1700000000.5,
            console: Some("/run/domus/domains/3/console.sock".into()),
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
        assert_eq!(get("/local/domain/3/cpu/2/availability"), None);
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
    }
}
