//! `/local/domain/N/control/shutdown` as Xen tools use it: a store client writes `poweroff`, `halt`,
//! `reboot` or `suspend` there and a PV guest's drivers act on it. A KVM guest does not watch the store,
//! so domusd does, on its behalf: `poweroff`/`halt` press the ACPI power button (as `xl shutdown`),
//! `reboot` reboots (as `xl reboot`), `suspend` is refused with an error in the log until save/restore
//! exists. Then domusd clears the node, as a guest acknowledges the request. Tools that drive Xen
//! domains through the store thus work unchanged.
//!
//! One thread with its own store connection watches `/local/domain` (the store's watches fire for any
//! descendant) and reconnects when the store goes away.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use domus_store::client::{Client, TxId};
use tracing::{error, info, warn};

use super::Daemon;

/// The watch token.
const TOKEN: &str = "domusd-control";

/// The domid whose `control/shutdown` node `path` is, if it is one (Domain-0's excluded).
fn shutdown_node_domid(path: &str) -> Option<u32> {
    let rest = path.strip_prefix("/local/domain/")?;
    let (id, tail) = rest.split_once('/')?;
    let domid: u32 = id.parse().ok()?;
    (tail == "control/shutdown" && domid != 0).then_some(domid)
}

/// What a value written to `control/shutdown` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Poweroff,
    Reboot,
    Suspend,
}

fn parse_ask(value: &str) -> Option<Ask> {
    match value {
        "poweroff" | "halt" => Some(Ask::Poweroff),
        "reboot" => Some(Ask::Reboot),
        "suspend" => Some(Ask::Suspend),
        _ => None,
    }
}

/// Starts the watcher thread.
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn(daemon: Arc<Daemon>, socket: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("control-watch".into())
        .spawn(move || loop {
            if let Err(e) = watch(&daemon, &socket) {
                warn!(error = %e, "control/shutdown watch lost; reconnecting");
            }
            std::thread::sleep(Duration::from_secs(1));
        })
        .map(drop)
}

fn watch(daemon: &Arc<Daemon>, socket: &PathBuf) -> Result<(), domus_store::client::ClientError> {
    let mut c = Client::connect(socket)?;
    c.watch("/local/domain", TOKEN)?;
    loop {
        let Some(ev) = c.next_event(None)? else {
            continue;
        };
        let Some(domid) = shutdown_node_domid(&ev.path) else {
            continue;
        };
        let value = match c.read(TxId::NONE, &ev.path) {
            Ok(v) => String::from_utf8_lossy(&v).into_owned(),
            // Removed with its domain.
            Err(e) if e.xs_error().is_some() => continue,
            Err(e) => return Err(e),
        };
        if value.is_empty() {
            continue;
        }
        act(daemon, domid, &value);
        // Acknowledge as a guest does: clear the request.
        match c.write(TxId::NONE, &ev.path, b"") {
            Err(e) if e.xs_error().is_none() => return Err(e),
            _ => {}
        }
    }
}

fn act(daemon: &Arc<Daemon>, domid: u32, value: &str) {
    let spec = domid.to_string();
    let result = match parse_ask(value) {
        Some(Ask::Poweroff) => {
            info!(
                domid,
                request = value,
                "control/shutdown written: shutting down"
            );
            daemon.shutdown(&spec)
        }
        Some(Ask::Reboot) => {
            info!(domid, "control/shutdown written: rebooting");
            daemon.reboot(&spec, false)
        }
        Some(Ask::Suspend) => {
            error!(domid, "control/shutdown = suspend refused: Domus cannot suspend domains yet (no save/restore)");
            return;
        }
        None => {
            // Values are guest-writable: log the length, not the bytes.
            warn!(domid, len = value.len(), "control/shutdown written with an unknown request: ignored (expected poweroff, halt, reboot or suspend)");
            return;
        }
    };
    if let Err(e) = result {
        warn!(domid, error = %e, "control/shutdown request failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_guest_shutdown_nodes_are_taken() {
        assert_eq!(
            shutdown_node_domid("/local/domain/7/control/shutdown"),
            Some(7)
        );
        assert_eq!(
            shutdown_node_domid("/local/domain/0/control/shutdown"),
            None
        );
        assert_eq!(shutdown_node_domid("/local/domain/7/control/sysrq"), None);
        assert_eq!(
            shutdown_node_domid("/local/domain/7/control/shutdown/x"),
            None
        );
        assert_eq!(
            shutdown_node_domid("/local/domain/x/control/shutdown"),
            None
        );
        assert_eq!(shutdown_node_domid("/local/domain"), None);
    }

    #[test]
    fn requests_as_xen_spells_them() {
        assert_eq!(parse_ask("poweroff"), Some(Ask::Poweroff));
        assert_eq!(parse_ask("halt"), Some(Ask::Poweroff));
        assert_eq!(parse_ask("reboot"), Some(Ask::Reboot));
        assert_eq!(parse_ask("suspend"), Some(Ask::Suspend));
        assert_eq!(parse_ask("crash"), None);
    }
}
