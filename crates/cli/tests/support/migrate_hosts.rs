//! Two Domus "hosts" on this machine for live-migration tests: each a domusd in its own network
//! namespace with its own directories; the "ssh" of `migrate -s` is a script that runs `domus
//! migrate-receive` in the other host's namespace and environment.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::netns::Netns;
use super::Host;

/// A host in its own namespace; without `cgroups` its domusd runs with `--no-cgroups` (both domusd
/// share this machine's cgroup tree, and a migrating domain exists on both for a moment).
pub fn host(tag: &str, cgroups: bool) -> (Netns, Host) {
    let ns = Netns::new(tag);
    let mut h = Host::start_in(Some(&ns.name), Vec::new());
    if !cgroups {
        h.term_domusd();
        h.start_domusd_with(None, &["--no-cgroups"]);
    }
    (ns, h)
}

/// An "ssh" from `from` to `to` (in namespace `ns`): drops HOST and the program name, runs `domus`
/// there with the rest of the arguments.
pub fn ssh_script(from: &Host, to: &Host, ns: &Netns, name: &str) -> PathBuf {
    let p = from.path(name);
    let env = |k: &str, d: &str| format!("{k}={}", to.path(d).display());
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nshift 2\nexec ip netns exec {} env {} {} {} {} {} \"$@\"\n",
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
