//! domusd's door: who may reach the API, and who may read what domusd writes.
//!
//! - The API socket is the only way in for users: mode 0660, owned by root and the `domus` group
//!   (`--api-group`, `DOMUS_GROUP`; created by the package, like libvirt's group). Its directory (the
//!   runtime directory) is 0750 root:domus, so members can reach it and nothing else there: the store
//!   socket stays 0600 root (Xen's dom0-only xenstored semantics), each domain's directory (spec,
//!   control and console sockets, outcome, jail) 0700 root. Without the group, the API socket is
//!   root-only (0600), and domusd says so at start.
//! - Every state-changing request (anything but GET) is logged with its client's credentials
//!   (SO_PEERCRED: pid, uid, gid), read from the connection, not from anything the client says.
//! - Console logs are 0640 root:domus (members read their guests' consoles); VMM logs, records and the
//!   store's journal stay root-only.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::OnceLock;

use tracing::info;

static GROUP: OnceLock<Option<u32>> = OnceLock::new();

/// Resolves `spec` (a group name from /etc/group, or a number) to a gid.
pub fn resolve_group(spec: &str) -> Option<u32> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Some(gid);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(spec))
            .then(|| f.nth(1).and_then(|g| g.parse().ok()))
            .flatten()
    })
}

/// Records the door's group (once, at start).
pub fn set_group(gid: Option<u32>) {
    let _already = GROUP.set(gid);
}

/// The door's group, if there is one.
pub fn group() -> Option<u32> {
    GROUP.get().copied().flatten()
}

/// Gives `path` to root and the door's group with `group_mode`, or root-only `root_mode` without a
/// group.
///
/// # Errors
/// chown/chmod failed.
pub fn share(path: &Path, group_mode: u32, root_mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match group() {
        Some(gid) => {
            std::os::unix::fs::chown(path, Some(0), Some(gid))?;
            group_mode
        }
        None => root_mode,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Logs a state-changing request with its client's credentials.
pub fn log_request(stream: &UnixStream, method: &str, path: &str) {
    if method == "GET" {
        return;
    }
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(c) => info!(
            method,
            path,
            peer_pid = c.pid.as_raw_nonzero().get(),
            peer_uid = c.uid.as_raw(),
            peer_gid = c.gid.as_raw(),
            "API request"
        ),
        Err(e) => info!(method, path, error = %e, "API request (peer credentials unavailable)"),
    }
}
