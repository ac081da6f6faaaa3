//! The Domus parent cgroup and the per-domain cgroups under it, v1 and v2 behind one interface.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::detect::{parse_mounts, parse_self_cgroup, v2_controllers, Mounts};
use crate::{
    cap_quota_us, check_sched, v1_shares, v2_weight, CgroupError, Limits, Version, CAP_PERIOD_US,
};

/// The v1 controllers Domus uses, each in its own tree.
const V1_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// What a v2 cgroup must offer.
const V2_CONTROLLERS: &str = "+cpu +memory +pids";

/// Where per-domain cgroups go.
#[derive(Debug, Clone)]
enum Dirs {
    /// One directory per v1 controller: cpu, memory, pids.
    V1([PathBuf; 3]),
    /// One unified directory.
    V2(PathBuf),
}

impl Dirs {
    fn join(&self, leaf: &str) -> Dirs {
        match self {
            Dirs::V1(d) => Dirs::V1([d[0].join(leaf), d[1].join(leaf), d[2].join(leaf)]),
            Dirs::V2(d) => Dirs::V2(d.join(leaf)),
        }
    }

    fn all(&self) -> Vec<&Path> {
        match self {
            Dirs::V1(d) => d.iter().map(PathBuf::as_path).collect(),
            Dirs::V2(d) => vec![d.as_path()],
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { what, path, source }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err("write", path))
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(io_err("create cgroup", path))
}

/// The Domus parent cgroup of this host.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: Version,
    parent: Dirs,
}

impl Cgroups {
    /// Detects the host's hierarchy from `/proc/self/mountinfo` and `/proc/self/cgroup` and creates
    /// the Domus parent `name` inside this process's own cgroup.
    ///
    /// # Errors
    /// [`CgroupError::Unavailable`] when neither a v2 mount with the cpu, memory and pids controllers
    /// nor v1 mounts of all three exist; [`CgroupError::Io`] when the parent cannot be made.
    pub fn detect(name: &str) -> Result<Self, CgroupError> {
        let read = |p: &str| fs::read_to_string(p).map_err(io_err("read", Path::new(p)));
        let mounts = parse_mounts(&read("/proc/self/mountinfo")?);
        let own = parse_self_cgroup(&read("/proc/self/cgroup")?);
        Self::with_layout(&mounts, &own, name, std::process::id())
    }

    /// As [`Cgroups::detect`], from given mount and membership tables (tests use a temporary tree);
    /// `self_pid` is the process that moves into a `supervisor` leaf on v2 when its cgroup must stay
    /// free of processes.
    ///
    /// # Errors
    /// As [`Cgroups::detect`].
    pub fn with_layout(
        mounts: &Mounts,
        own: &BTreeMap<String, String>,
        name: &str,
        self_pid: u32,
    ) -> Result<Self, CgroupError> {
        if let Some(m) = &mounts.v2 {
            let dir = Mounts::dir(m, own.get("").map_or("/", String::as_str));
            let have = v2_controllers(&dir);
            if ["cpu", "memory", "pids"]
                .iter()
                .all(|c| have.iter().any(|h| h == c))
            {
                return Self::prepare_v2(&dir, name, self_pid);
            }
        }
        let mut dirs = Vec::new();
        for c in V1_CONTROLLERS {
            let Some(m) = mounts.v1.get(c) else {
                return Err(CgroupError::Unavailable {
                    why: format!(
                        "no cgroup v2 mount offers cpu, memory and pids, and the v1 `{c}` controller is not mounted"
                    ),
                });
            };
            let d = Mounts::dir(m, own.get(c).map_or("/", String::as_str)).join(name);
            mkdir(&d)?;
            dirs.push(d);
        }
        let [cpu, memory, pids]: [PathBuf; 3] =
            dirs.try_into().map_err(|_| CgroupError::Unavailable {
                why: "v1 controllers missing".into(),
            })?;
        Ok(Self {
            version: Version::V1,
            parent: Dirs::V1([cpu, memory, pids]),
        })
    }

    /// v2: the parent inside `own`, with the controllers enabled for its children. The kernel only
    /// enables controllers in a cgroup's children when the cgroup itself holds no process, so if
    /// `own` refuses (EBUSY), this process moves into `own/supervisor` first.
    fn prepare_v2(own: &Path, name: &str, self_pid: u32) -> Result<Self, CgroupError> {
        let parent = own.join(name);
        mkdir(&parent)?;
        let control = own.join("cgroup.subtree_control");
        if fs::write(&control, V2_CONTROLLERS).is_err() {
            let leaf = own.join("supervisor");
            mkdir(&leaf)?;
            write(&leaf.join("cgroup.procs"), &self_pid.to_string())?;
            write(&control, V2_CONTROLLERS)?;
        }
        write(&parent.join("cgroup.subtree_control"), V2_CONTROLLERS)?;
        Ok(Self {
            version: Version::V2,
            parent: Dirs::V2(parent),
        })
    }

    /// The hierarchy in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The directories of the Domus parent (one per v1 controller, or the one v2 directory).
    pub fn parent_dirs(&self) -> Vec<&Path> {
        self.parent.all()
    }

    /// The cgroup `leaf` under the parent, created if missing (an existing one is reused: a
    /// re-adopted domain keeps its cgroup).
    ///
    /// # Errors
    /// [`CgroupError::Io`].
    pub fn domain(&self, leaf: &str) -> Result<DomainCgroup, CgroupError> {
        let dirs = self.parent.join(leaf);
        // Another daemon may remove the (empty) parent between our mkdirs: try again.
        let mut attempt = 0;
        loop {
            match self.make(&dirs) {
                Ok(()) => break,
                Err(e) if attempt >= 2 => return Err(e),
                Err(_) => attempt += 1,
            }
        }
        Ok(DomainCgroup {
            version: self.version,
            dirs,
        })
    }

    fn make(&self, dirs: &Dirs) -> Result<(), CgroupError> {
        if let Dirs::V2(parent) = &self.parent {
            if !parent.exists() {
                mkdir(parent)?;
                write(&parent.join("cgroup.subtree_control"), V2_CONTROLLERS)?;
            }
        }
        for d in dirs.all() {
            mkdir(d)?;
        }
        Ok(())
    }

    /// The cgroup `leaf` under the parent as a handle, without touching the filesystem (to remove
    /// one that may or may not exist).
    pub fn existing(&self, leaf: &str) -> DomainCgroup {
        DomainCgroup {
            version: self.version,
            dirs: self.parent.join(leaf),
        }
    }

    /// The names of the domain cgroups under the parent (in any of its directories).
    pub fn leaves(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .parent
            .all()
            .into_iter()
            .filter_map(|d| fs::read_dir(d).ok())
            .flat_map(|rd| rd.filter_map(Result::ok))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Removes the parent if no domain cgroup is left in it (best effort: a parent still in use
    /// cannot be removed, and [`Cgroups::domain`] makes it again when needed).
    pub fn remove_parent_if_unused(&self) {
        for d in self.parent.all() {
            let _ = fs::remove_dir(d);
        }
    }
}

/// One domain's cgroup.
#[derive(Debug, Clone)]
pub struct DomainCgroup {
    version: Version,
    dirs: Dirs,
}

impl DomainCgroup {
    /// Whether no process is in it (a cgroup already gone counts as empty).
    pub fn is_empty(&self) -> bool {
        self.dirs.all().iter().all(|d| {
            fs::read_to_string(d.join("cgroup.procs")).map_or(true, |procs| procs.trim().is_empty())
        })
    }

    /// The hierarchy it lives in.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Its directories (one per v1 controller: cpu, memory, pids; or the one v2 directory).
    pub fn dirs(&self) -> Vec<&Path> {
        self.dirs.all()
    }

    fn cpu_dir(&self) -> &Path {
        match &self.dirs {
            Dirs::V1(d) => &d[0],
            Dirs::V2(d) => d,
        }
    }

    fn memory_dir(&self) -> &Path {
        match &self.dirs {
            Dirs::V1(d) => &d[1],
            Dirs::V2(d) => d,
        }
    }

    fn pids_dir(&self) -> &Path {
        match &self.dirs {
            Dirs::V1(d) => &d[2],
            Dirs::V2(d) => d,
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    ///
    /// # Errors
    /// [`CgroupError::Io`].
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        for d in self.dirs.all() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Sets the CPU weight and cap (xl's numbers: see the crate docs).
    ///
    /// # Errors
    /// [`CgroupError::Range`] for values xl refuses, [`CgroupError::Io`].
    pub fn set_cpu(&self, weight: u32, cap: u32) -> Result<(), CgroupError> {
        check_sched(weight, cap)?;
        let d = self.cpu_dir();
        match self.version {
            Version::V1 => {
                write(&d.join("cpu.shares"), &v1_shares(weight).to_string())?;
                write(&d.join("cpu.cfs_period_us"), &CAP_PERIOD_US.to_string())?;
                let quota = cap_quota_us(cap).map_or_else(|| "-1".to_owned(), |q| q.to_string());
                write(&d.join("cpu.cfs_quota_us"), &quota)
            }
            Version::V2 => {
                write(&d.join("cpu.weight"), &v2_weight(weight).to_string())?;
                let quota = cap_quota_us(cap).map_or_else(|| "max".to_owned(), |q| q.to_string());
                write(&d.join("cpu.max"), &format!("{quota} {CAP_PERIOD_US}"))
            }
        }
    }

    /// Sets the memory limit of the whole process, bytes.
    ///
    /// # Errors
    /// [`CgroupError::Io`] (e.g. the process already uses more).
    pub fn set_memory_max(&self, bytes: u64) -> Result<(), CgroupError> {
        let file = match self.version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        write(&self.memory_dir().join(file), &bytes.to_string())
    }

    /// Sets the task limit.
    ///
    /// # Errors
    /// [`CgroupError::Io`].
    pub fn set_pids_max(&self, n: u64) -> Result<(), CgroupError> {
        write(&self.pids_dir().join("pids.max"), &n.to_string())
    }

    /// Applies all of `limits`.
    ///
    /// # Errors
    /// As the setters.
    pub fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.set_cpu(limits.weight, limits.cap)?;
        self.set_memory_max(limits.memory_max_bytes)?;
        self.set_pids_max(limits.pids_max)
    }

    /// Removes the cgroup (its processes must have exited); a cgroup already gone is fine.
    ///
    /// # Errors
    /// [`CgroupError::Io`].
    pub fn remove(&self) -> Result<(), CgroupError> {
        for d in self.dirs.all() {
            match fs::remove_dir(d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("remove cgroup", d)(e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap().trim().to_owned()
    }

    fn limits() -> Limits {
        Limits {
            weight: 512,
            cap: 25,
            memory_max_bytes: 192 << 20,
            pids_max: 300,
        }
    }

    #[test]
    fn leaves_lists_domain_cgroups_and_is_empty_reads_their_processes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().display().to_string();
        let info = format!(
            "1 0 0:1 / {root}/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
             2 0 0:2 / {root}/memory rw - cgroup cgroup rw,memory\n\
             3 0 0:3 / {root}/pids rw - cgroup cgroup rw,pids\n"
        );
        let own = parse_self_cgroup("3:pids:/\n2:memory:/\n1:cpu,cpuacct:/\n");
        let cg = Cgroups::with_layout(&parse_mounts(&info), &own, "domus", 1).unwrap();
        assert!(cg.leaves().is_empty(), "no parent yet");
        let a = cg.domain("domain-2-b").unwrap();
        cg.domain("domain-1-a").unwrap();
        // Only in one controller (a half-removed leaf) still counts.
        fs::create_dir_all(t.path().join("pids/domus/domain-3-c")).unwrap();
        assert_eq!(cg.leaves(), ["domain-1-a", "domain-2-b", "domain-3-c"]);
        assert!(a.is_empty(), "no cgroup.procs file: nothing in it");
        fs::write(
            t.path().join("memory/domus/domain-2-b/cgroup.procs"),
            "42\n",
        )
        .unwrap();
        assert!(!a.is_empty());
        assert!(cg.existing("domain-9-gone").is_empty());
    }

    #[test]
    fn v1_tree_gets_v1_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().display().to_string();
        let info = format!(
            "1 0 0:1 / {root}/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
             2 0 0:2 / {root}/memory rw - cgroup cgroup rw,memory\n\
             3 0 0:3 / {root}/pids rw - cgroup cgroup rw,pids\n\
             4 0 0:4 / {root}/unified rw - cgroup2 cgroup2 rw\n"
        );
        let own = parse_self_cgroup("3:pids:/\n2:memory:/sess/x\n1:cpu,cpuacct:/\n0::/\n");
        let cg = Cgroups::with_layout(&parse_mounts(&info), &own, "domus", 1).unwrap();
        assert_eq!(cg.version(), Version::V1);
        assert_eq!(cg.parent_dirs()[1], t.path().join("memory/sess/x/domus"));
        let d = cg.domain("dom1").unwrap();
        d.apply(&limits()).unwrap();
        assert_eq!(read(&t.path().join("cpu/domus/dom1/cpu.shares")), "2048");
        assert_eq!(
            read(&t.path().join("cpu/domus/dom1/cpu.cfs_quota_us")),
            "25000"
        );
        assert_eq!(
            read(&t.path().join("cpu/domus/dom1/cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(
            read(
                &t.path()
                    .join("memory/sess/x/domus/dom1/memory.limit_in_bytes")
            ),
            (192u64 << 20).to_string()
        );
        assert_eq!(read(&t.path().join("pids/domus/dom1/pids.max")), "300");
        d.set_cpu(256, 0).unwrap();
        assert_eq!(
            read(&t.path().join("cpu/domus/dom1/cpu.cfs_quota_us")),
            "-1"
        );
        assert!(d.set_cpu(0, 0).is_err());
    }

    #[test]
    fn v2_tree_gets_v2_files_and_missing_controllers_fall_back() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().display().to_string();
        let own = t.path().join("svc");
        fs::create_dir_all(&own).unwrap();
        fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let info = format!("1 0 0:1 / {root} rw - cgroup2 cgroup2 rw\n");
        let map = parse_self_cgroup("0::/svc\n");
        let cg = Cgroups::with_layout(&parse_mounts(&info), &map, "domus", 1).unwrap();
        assert_eq!(cg.version(), Version::V2);
        assert_eq!(
            read(&own.join("domus/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        let d = cg.domain("dom1").unwrap();
        d.apply(&limits()).unwrap();
        let dir = own.join("domus/dom1");
        assert_eq!(read(&dir.join("cpu.weight")), "200");
        assert_eq!(read(&dir.join("cpu.max")), "25000 100000");
        assert_eq!(read(&dir.join("memory.max")), (192u64 << 20).to_string());
        assert_eq!(read(&dir.join("pids.max")), "300");
        d.set_cpu(256, 0).unwrap();
        assert_eq!(read(&dir.join("cpu.max")), "max 100000");
        // A v2 mount without controllers and no v1 mounts: unavailable, and the message says why.
        fs::write(own.join("cgroup.controllers"), "\n").unwrap();
        let err = Cgroups::with_layout(&parse_mounts(&info), &map, "domus", 1).unwrap_err();
        assert!(
            err.to_string()
                .contains("v1 `cpu` controller is not mounted"),
            "{err}"
        );
    }
}
