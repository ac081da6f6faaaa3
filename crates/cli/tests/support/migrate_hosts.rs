//! Two Domus "hosts" on this machine for live-migration tests: each a domusd in its own network
//! namespace with its own directories; the "ssh" of `migrate -s` is a script that runs `domus
//! migrate-receive` in the other host's namespace and environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::netns::Netns;
use super::Host;

/// A host in its own namespace; without `cgroups` its domusd runs with `--no-cgroups` (each host
/// has its own Domus parent cgroup otherwise).
pub fn host(tag: &str, cgroups: bool) -> (Netns, Host) {
    host_with_env(tag, cgroups, Vec::new())
}

/// [`host`] with extra environment for its domusd.
pub fn host_with_env(tag: &str, cgroups: bool, env: Vec<(String, String)>) -> (Netns, Host) {
    let ns = Netns::new(tag);
    let mut h = Host::start_in(Some(&ns.name), env);
    if !cgroups {
        h.term_domusd();
        h.start_domusd_with(None, &["--no-cgroups"]);
    }
    (ns, h)
}

/// An "ssh" from `from` to `to` (in namespace `ns`): drops HOST and the program name, runs `domus`
/// there with the rest of the arguments.
pub fn ssh_script(from: &Host, to: &Host, ns: &Netns, name: &str) -> PathBuf {
    ssh_script_with(from, to, ns, name, "")
}

/// [`ssh_script`] with `filter` in front of the receiver (e.g. `head -c N |` to cut the stream).
pub fn ssh_script_with(from: &Host, to: &Host, ns: &Netns, name: &str, filter: &str) -> PathBuf {
    let p = from.path(name);
    let env = |k: &str, d: &str| format!("{k}={}", to.path(d).display());
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\n# args: HOST PROG migrate-receive ...\nshift 2\n{filter} exec ip netns exec {} env {} {} {} {} {} \"$@\"\n",
            ns.name,
            env("DOMUS_RUNTIME_DIR", "run"),
            env("DOMUS_STATE_DIR", "state"),
            env("DOMUS_LOG_DIR", "log"),
            env("DOMUS_CONFIG_DIR", "cfg"),
            to.bins.domus.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Writes `cfg/NAME.cfg` on `h`: a one-vCPU `mem-soak mib=MIB` domain of `memory` MiB.
pub fn soak_cfg(h: &Host, name: &str, mib: u32, memory: u32) {
    soak_cfg_with(h, name, mib, memory, "");
}

/// [`soak_cfg`] with `extra` config lines.
pub fn soak_cfg_with(h: &Host, name: &str, mib: u32, memory: u32, extra: &str) {
    std::fs::write(
        h.path(&format!("cfg/{name}.cfg")),
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"{}\"\nextra = \"probe=mem-soak mib={mib}\"\nmemory = {memory}\nvcpus = 1\n{extra}",
            h.bins.probe.display()
        ),
    )
    .unwrap();
}

/// Whether creating another domain on `h` with `disk` writable is refused as locked.
pub fn locked_against(h: &Host, disk: &Path) -> bool {
    h.probe_cfg(
        "other.cfg",
        "other",
        "idle",
        &format!("disk = ['{},raw,xvda,rw']\n", disk.display()),
    );
    let out = h.domus(&["create", "other.cfg"]);
    if out.status.success() {
        h.ok(&["destroy", "other"]);
        return false;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lock"), "{err}");
    true
}
