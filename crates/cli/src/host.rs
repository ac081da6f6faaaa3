//! Host facts `xl info` prints beyond what domusd reports: CPU topology, NUMA nodes, the CPU's feature
//! words and clock. The CLI runs on the host (Domus's dom0), so it reads them where Linux publishes them
//! (/sys/devices/system/{cpu,node}, /sys/bus/pci, /proc/cpuinfo, /dev/cpu/0/cpuid) — where Xen's xl asks
//! the hypervisor. A fact that cannot be read is left out (empty lists) or 0, never invented.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// One CPU's place: xl info -n's `cpu_topology` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlace {
    /// CPU number.
    pub cpu: u32,
    /// Core id.
    pub core: u32,
    /// Socket (physical package) id.
    pub socket: u32,
    /// NUMA node.
    pub node: u32,
}

/// One NUMA node: xl info -n's `numa_info` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaNode {
    /// Node number.
    pub node: u32,
    /// Memory, MiB.
    pub memsize_mib: u64,
    /// Free memory, MiB.
    pub memfree_mib: u64,
    /// Distances to every node, in node order.
    pub distances: Vec<u32>,
}

/// One PCI device with a known node: xl info -n's `device topology` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciPlace {
    /// `SSSS:BB:DD.F`.
    pub bdf: String,
    /// NUMA node.
    pub node: u32,
}

/// Everything `info` needs besides domusd's `HostInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalFacts {
    /// Online CPUs with their places.
    pub cpus: Vec<CpuPlace>,
    /// NUMA nodes (at least one on a machine that exposes /sys/devices/system/node).
    pub nodes: Vec<NumaNode>,
    /// PCI devices with a NUMA node.
    pub pci: Vec<PciPlace>,
    /// CPU clock, kHz.
    pub cpu_khz: u64,
    /// CPUID feature words in Xen's featureset order (1d, 1c, e1d, e1c, Da1, 7b0, 7c0, e7d).
    pub hw_caps: [u32; 8],
    /// The host kernel's command line (the "hypervisor" command line here).
    pub commandline: String,
}

impl LocalFacts {
    /// Highest CPU number.
    pub fn max_cpu_id(&self) -> u32 {
        self.cpus.iter().map(|c| c.cpu).max().unwrap_or(0)
    }

    /// Threads per core, from the first CPU's core.
    pub fn threads_per_core(&self) -> u32 {
        let Some(first) = self.cpus.first() else {
            return 1;
        };
        let n = self
            .cpus
            .iter()
            .filter(|c| c.socket == first.socket && c.core == first.core)
            .count();
        u32::try_from(n.max(1)).unwrap_or(1)
    }

    /// Cores per socket, from the first CPU's socket.
    pub fn cores_per_socket(&self) -> u32 {
        let Some(first) = self.cpus.first() else {
            return 1;
        };
        let threads = self
            .cpus
            .iter()
            .filter(|c| c.socket == first.socket)
            .count();
        u32::try_from(threads).unwrap_or(1).max(1) / self.threads_per_core()
    }
}

fn read_u32(p: &Path) -> Option<u32> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Reads the facts.
pub fn local_facts() -> LocalFacts {
    LocalFacts {
        cpus: cpus(),
        nodes: nodes(),
        pci: pci(),
        cpu_khz: cpu_khz(),
        hw_caps: hw_caps(),
        commandline: fs::read_to_string("/proc/cmdline")
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

/// Expands a sysfs CPU list ("0-3,8").
fn parse_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

fn node_of_cpu(cpu: u32) -> u32 {
    let dir = format!("/sys/devices/system/cpu/cpu{cpu}");
    fs::read_dir(dir)
        .ok()
        .and_then(|rd| {
            rd.filter_map(Result::ok).find_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_prefix("node")?
                    .parse::<u32>()
                    .ok()
            })
        })
        .unwrap_or(0)
}

fn cpus() -> Vec<CpuPlace> {
    let online = fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    parse_list(&online)
        .into_iter()
        .map(|cpu| {
            let topo = Path::new("/sys/devices/system/cpu")
                .join(format!("cpu{cpu}"))
                .join("topology");
            CpuPlace {
                cpu,
                core: read_u32(&topo.join("core_id")).unwrap_or(cpu),
                socket: read_u32(&topo.join("physical_package_id")).unwrap_or(0),
                node: node_of_cpu(cpu),
            }
        })
        .collect()
}

fn meminfo_kib(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(key)?;
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn nodes() -> Vec<NumaNode> {
    let online = fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    parse_list(&online)
        .into_iter()
        .map(|node| {
            let dir = Path::new("/sys/devices/system/node").join(format!("node{node}"));
            let mem = fs::read_to_string(dir.join("meminfo")).unwrap_or_default();
            NumaNode {
                node,
                memsize_mib: meminfo_kib(&mem, "MemTotal") / 1024,
                memfree_mib: meminfo_kib(&mem, "MemFree") / 1024,
                distances: fs::read_to_string(dir.join("distance"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|d| d.parse().ok())
                    .collect(),
            }
        })
        .collect()
}

fn pci() -> Vec<PciPlace> {
    let Ok(rd) = fs::read_dir("/sys/bus/pci/devices") else {
        return Vec::new();
    };
    let mut out: Vec<PciPlace> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let node: i64 = fs::read_to_string(e.path().join("numa_node"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some(PciPlace {
                bdf: e.file_name().to_str()?.to_owned(),
                node: u32::try_from(node).ok()?,
            })
        })
        .collect();
    out.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    out
}

fn cpu_khz() -> u64 {
    let text = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "cpu MHz").then(|| v.trim().parse::<f64>().ok())?
        })
        .map_or(0, |mhz| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a clock in kHz
            let khz = (mhz * 1000.0).round() as u64;
            khz
        })
}

/// One CPUID leaf through Linux's cpuid driver (`/dev/cpu/0/cpuid`: offset = leaf | subleaf << 32).
fn cpuid(f: &fs::File, leaf: u32, subleaf: u32) -> Option<[u32; 4]> {
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, u64::from(leaf) | (u64::from(subleaf) << 32))
        .ok()?;
    let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some([w(0), w(4), w(8), w(12)])
}

/// Xen's `hw_caps` words; zeros when /dev/cpu/0/cpuid is missing (the `cpuid` module not loaded).
fn hw_caps() -> [u32; 8] {
    let Ok(f) = fs::File::open("/dev/cpu/0/cpuid") else {
        return [0; 8];
    };
    let get = |leaf, sub, reg: usize| cpuid(&f, leaf, sub).map_or(0, |r| r[reg]);
    let max_ext = get(0x8000_0000, 0, 0);
    let ext = |leaf: u32, reg| {
        if max_ext >= leaf {
            get(leaf, 0, reg)
        } else {
            0
        }
    };
    let (eax, ebx, ecx, edx) = (0, 1, 2, 3);
    [
        get(1, 0, edx),
        get(1, 0, ecx),
        ext(0x8000_0001, edx),
        ext(0x8000_0001, ecx),
        get(0xd, 1, eax),
        get(7, 0, ebx),
        get(7, 0, ecx),
        ext(0x8000_0007, edx),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_expand() {
        assert_eq!(parse_list("0-3,8\n"), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_list("0"), vec![0]);
        assert!(parse_list("").is_empty());
    }

    #[test]
    fn topology_counts() {
        let place = |cpu, core, socket| CpuPlace {
            cpu,
            core,
            socket,
            node: 0,
        };
        let f = LocalFacts {
            cpus: vec![
                place(0, 0, 0),
                place(1, 0, 0),
                place(2, 1, 0),
                place(3, 1, 0),
            ],
            ..LocalFacts::default()
        };
        assert_eq!((f.threads_per_core(), f.cores_per_socket()), (2, 2));
        assert_eq!(f.max_cpu_id(), 3);
    }
}
