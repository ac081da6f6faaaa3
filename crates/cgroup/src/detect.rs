//! Where the cgroup hierarchies are mounted (`/proc/self/mountinfo`) and where this process sits in
//! them (`/proc/self/cgroup`): pure parsers, so detection is tested on both layouts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One cgroup mount: where it is, and which cgroup its root shows (not `/` inside a cgroup namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount point.
    pub point: PathBuf,
    /// The cgroup path the mount's root is.
    pub root: String,
}

/// The cgroup mounts of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// v1 mounts by controller name (`cpu`, `memory`, `pids`, ...).
    pub v1: BTreeMap<String, Mount>,
    /// The unified (v2) mount, if any.
    pub v2: Option<Mount>,
}

impl Mounts {
    /// The directory of cgroup `path` (as `/proc/self/cgroup` gives it) under mount `m`.
    pub fn dir(m: &Mount, path: &str) -> PathBuf {
        let rel = path
            .strip_prefix(m.root.as_str())
            .unwrap_or(path)
            .trim_start_matches('/');
        if rel.is_empty() {
            m.point.clone()
        } else {
            m.point.join(rel)
        }
    }
}

/// Parses `/proc/self/mountinfo` (proc(5)) for `cgroup` and `cgroup2` mounts.
pub fn parse_mounts(mountinfo: &str) -> Mounts {
    let mut out = Mounts::default();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        let m = Mount {
            point: PathBuf::from(unescape(point)),
            root: unescape(root),
        };
        match *fstype {
            "cgroup2" => out.v2 = Some(m),
            "cgroup" => {
                for opt in post.get(2).copied().unwrap_or("").split(',') {
                    if matches!(opt, "cpu" | "memory" | "pids" | "cpuacct" | "cpuset") {
                        out.v1.entry(opt.to_owned()).or_insert_with(|| m.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses `/proc/self/cgroup`: the cgroup path per v1 controller, and the v2 path (under `""`).
pub fn parse_self_cgroup(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            out.insert(String::new(), path.to_owned());
        }
        for c in ctrls.split(',').filter(|c| !c.is_empty()) {
            out.insert(c.to_owned(), path.to_owned());
        }
    }
    out
}

/// The controllers a v2 cgroup directory offers (its `cgroup.controllers`).
pub(crate) fn v2_controllers(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V2: &str = "30 23 0:26 /ctr /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn both_layouts_parse() {
        let m = parse_mounts(V1);
        assert_eq!(m.v1["cpu"].point, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(m.v1["memory"].point, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(m.v1["pids"].point, Path::new("/sys/fs/cgroup/pids"));
        assert_eq!(
            m.v2.as_ref().unwrap().point,
            Path::new("/sys/fs/cgroup/unified")
        );
        let m = parse_mounts(V2);
        assert!(m.v1.is_empty());
        let v2 = m.v2.unwrap();
        assert_eq!(
            Mounts::dir(&v2, "/ctr/system.slice/domusd.service"),
            Path::new("/sys/fs/cgroup/system.slice/domusd.service")
        );
        assert_eq!(Mounts::dir(&v2, "/ctr"), Path::new("/sys/fs/cgroup"));
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(parse_mounts("garbage\n1 2 3\n"), Mounts::default());
    }

    #[test]
    fn self_cgroup_parses() {
        let t = "9:name=systemd:/\n4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/init.scope\n";
        let m = parse_self_cgroup(t);
        assert_eq!(m["memory"], "/process_api/x");
        assert_eq!(m["cpu"], "/");
        assert_eq!(m["cpuacct"], "/");
        assert_eq!(m[""], "/init.scope");
    }
}
