//! The CLI's side of domusd's API: where the socket is (the same `DOMUS_*` variables domusd honours) and
//! small helpers shared by the commands. The message types, their HTTP framing and the client live in the
//! `domus-api` crate, shared with the daemon; the CLI links neither domusd nor the store.

use std::time::{Duration, Instant};

use domus_api::client::{ApiClient, ClientError};
use domus_api::messages::{DomainInfo, DomainState};
use domus_api::paths::Paths;

/// The directories, from the environment.
pub fn paths() -> Paths {
    Paths::from_lookup(|k| std::env::var(k).ok())
}

/// A client for the running domusd.
pub fn client() -> ApiClient {
    ApiClient::new(paths().api_socket())
}

/// Whether a domain stopped for good: gone, or kept in a shut-down/crashed state.
pub fn is_stopped(c: &ApiClient, domid: u32) -> Result<bool, ClientError> {
    match c.get(&domid.to_string()) {
        Ok(d) => Ok(matches!(
            d.state,
            DomainState::Shutdown | DomainState::Crashed
        )),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) => Err(e),
    }
}

/// Waits until every domain in `domids` stopped, or `timeout` passes; returns those still up.
///
/// # Errors
/// When domusd stops answering.
pub fn wait_stopped(
    c: &ApiClient,
    domids: &[u32],
    timeout: Option<Duration>,
) -> Result<Vec<u32>, ClientError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut pending: Vec<u32> = domids.to_vec();
    loop {
        let mut still = Vec::new();
        for &id in &pending {
            if !is_stopped(c, id)? {
                still.push(id);
            }
        }
        pending = still;
        if pending.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(pending);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The domains other than Domain-0.
///
/// # Errors
/// When domusd is unreachable.
pub fn guests(c: &ApiClient) -> Result<Vec<DomainInfo>, ClientError> {
    Ok(c.list()?.into_iter().filter(|d| d.domid != 0).collect())
}

/// The named domains (names or domids) in the order given, or every domain (Domain-0 included) when
/// `names` is empty.
///
/// # Errors
/// When domusd is unreachable or a named domain does not exist.
pub fn named_or_all(c: &ApiClient, names: &[String]) -> Result<Vec<DomainInfo>, ClientError> {
    if names.is_empty() {
        c.list()
    } else {
        names.iter().map(|d| c.get(d)).collect()
    }
}

/// The `(domid, name)` targets of a `-a`-capable command such as `shutdown`: every running guest with
/// `all`, else the one `domain` named. `prog` (the name domus was invoked by) and `cmd` (the command) are
/// quoted in the messages.
///
/// # Errors
/// `-a` together with a domain, neither of them, a domain that does not exist, or domusd unreachable.
pub fn running_or_named(
    c: &ApiClient,
    prog: &str,
    cmd: &str,
    all: bool,
    domain: Option<&str>,
) -> anyhow::Result<Vec<(u32, String)>> {
    if all {
        if domain.is_some() {
            anyhow::bail!("-a takes no domain argument");
        }
        Ok(guests(c)?
            .into_iter()
            .filter(|d| d.pid.is_some())
            .map(|d| (d.domid, d.name))
            .collect())
    } else {
        let Some(dom) = domain else {
            anyhow::bail!("'{prog} {cmd}' requires at least one argument (a domain), or -a")
        };
        let d = c.get(dom)?;
        Ok(vec![(d.domid, d.name)])
    }
}

/// Prepares a parsed config for domusd: relative kernel, ramdisk and disk paths resolved against the
/// current directory (as xl resolves them: domusd's directory is not the user's). Whether the domain can run is domusd's to say (it runs the same
/// `domus_spec` conversion `create -N` runs here).
///
/// # Errors
/// The current directory unknown.
pub fn prepare_config(
    mut config: domus_config::DomainConfig,
) -> anyhow::Result<domus_config::DomainConfig> {
    let cwd = std::env::current_dir()
        .map_err(|e| anyhow::anyhow!("cannot read the current directory: {e}"))?;
    domus_spec::resolve_paths(&mut config, &cwd);
    Ok(config)
}
