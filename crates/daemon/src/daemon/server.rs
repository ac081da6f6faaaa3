//! The API server: connections on `domusd.sock` are taken in by `intake.rs` (deadlines, bounded worker
//! pools), one request each, routed to [`Daemon`]. Routes and message types are documented in the `domus-api` crate.

use std::fs;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use domus_api::http::Request;
use domus_api::messages::{
    self, ConfigUpdateRequest, CreateRequest, DmesgReply, DumpCoreRequest, ErrorReply,
    MemMaxRequest, MemSetRequest, RebootRequest, RenameRequest, RestoreRequest, SaveRequest,
    SchedCreditRequest, ShutdownRequest, SysrqRequest, TriggerRequest, VcpuPinRequest,
    VcpuSetRequest,
};
use serde::de::DeserializeOwned;
use tracing::debug;

use super::{intake, ApiError, Daemon};

/// Binds the API socket, refusing to start when another domusd answers on it.
///
/// # Errors
/// When the socket is in use or cannot be bound.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if domusd_answers(path) {
            bail!("another domusd is already serving {}", path.display());
        }
        fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    // 0660 root:domus (0600 without the group): see `door.rs`.
    super::door::share(path, 0o660, 0o600)
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(l)
}

/// Whether a domusd answers an API request on `path`. A socket that accepts connections but never
/// answers is stale: a killed domusd's child between fork and exec still holds its listener for a moment.
fn domusd_answers(path: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = UnixStream::connect(path) else {
        return false;
    };
    let t = Some(std::time::Duration::from_secs(2));
    if s.set_read_timeout(t).is_err() || s.set_write_timeout(t).is_err() {
        return false;
    }
    if s.write_all(b"GET /v1/host HTTP/1.1\r\nHost: domusd\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 8];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1"
}

/// Serves forever (see `intake.rs` for how connections are read and replies written).
pub fn serve(daemon: &Arc<Daemon>, listener: &UnixListener) {
    let d = Arc::clone(daemon);
    let handler: Arc<intake::Handler> = Arc::new(move |req: &Request, fds| {
        let result = route(&d, req, fds);
        if let Err(e) = &result {
            debug!(method = %req.method, path = %req.path, status = e.status, error = %e.message, "API error");
        }
        match result {
            Ok(v) => (
                200,
                serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()),
            ),
            Err(e) => (
                e.status,
                serde_json::to_vec(&ErrorReply { error: e.message }).unwrap_or_default(),
            ),
        }
    });
    intake::run(listener, handler, intake::Limits::default());
}

fn body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let b: &[u8] = if req.body.is_empty() {
        b"{}"
    } else {
        &req.body
    };
    serde_json::from_slice(b)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))
}

fn ok() -> Result<serde_json::Value, ApiError> {
    Ok(serde_json::json!({}))
}

/// Serves one request; `fds` are the descriptors it passed (only a restore of a passed stream
/// takes any).
fn route(
    d: &Arc<Daemon>,
    req: &Request,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<serde_json::Value, ApiError> {
    let path = req.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["v1", "domains"]) => json(d.list()),
        ("POST", ["v1", "domains"]) => {
            let r: CreateRequest = body(req)?;
            json(d.create(r.config, r.paused)?)
        }
        ("POST", ["v1", "restore"]) => {
            let r: RestoreRequest = body(req)?;
            json(d.restore_image(&r, fds)?)
        }
        ("GET", ["v1", "host"]) => json(d.host()),
        ("GET", ["v1", "dmesg"]) => json(DmesgReply {
            lines: d.dmesg.lines(false),
        }),
        ("POST", ["v1", "dmesg", "clear"]) => json(DmesgReply {
            lines: d.dmesg.lines(true),
        }),
        (m, ["v1", "domains", dom, rest @ ..]) => {
            let dom = messages::decode_segment(dom)
                .ok_or_else(|| ApiError::bad_request("malformed domain in path"))?;
            domain_route(d, req, m, &dom, rest)
        }
        _ => Err(ApiError::not_found(format!(
            "no API route {} {}",
            req.method, req.path
        ))),
    }
}

fn domain_route(
    d: &Arc<Daemon>,
    req: &Request,
    method: &str,
    dom: &str,
    rest: &[&str],
) -> Result<serde_json::Value, ApiError> {
    match (method, rest) {
        ("GET", []) => json(d.get(dom)?),
        ("GET", ["progress"]) => json(d.save_progress(dom)?),
        ("POST", ["shutdown"]) => {
            let _r: ShutdownRequest = body(req)?;
            d.shutdown(dom).and_then(|()| ok())
        }
        ("POST", ["reboot"]) => {
            let r: RebootRequest = body(req)?;
            d.reboot(dom, r.force).and_then(|()| ok())
        }
        ("POST", ["destroy"]) => d.destroy(dom).and_then(|()| ok()),
        ("POST", ["dump-core"]) => {
            let r: DumpCoreRequest = body(req)?;
            d.dump_core(dom, &r.path).and_then(|()| ok())
        }
        ("POST", ["save"]) => {
            let r: SaveRequest = body(req)?;
            d.save_image(dom, &r).and_then(|()| ok())
        }
        ("POST", ["sysrq"]) => {
            let r: SysrqRequest = body(req)?;
            d.sysrq(dom, r.key).and_then(|()| ok())
        }
        ("POST", ["trigger"]) => {
            let r: TriggerRequest = body(req)?;
            d.trigger(dom, &r.trigger, r.vcpu).and_then(|()| ok())
        }
        ("POST", ["pause"]) => d.set_paused(dom, true).and_then(|()| ok()),
        ("POST", ["unpause"]) => d.set_paused(dom, false).and_then(|()| ok()),
        ("POST", ["rename"]) => {
            let r: RenameRequest = body(req)?;
            d.rename(dom, &r.name).and_then(|()| ok())
        }
        ("POST", ["vcpu-pin"]) => {
            let r: VcpuPinRequest = body(req)?;
            let hard = (!r.hard_unchanged).then_some(r.cpus.as_slice());
            d.vcpu_pin(dom, r.vcpu, hard, r.soft.as_deref())
                .and_then(|()| ok())
        }
        ("POST", ["mem-set"]) => {
            let r: MemSetRequest = body(req)?;
            d.mem_set(dom, r.mib).and_then(|()| ok())
        }
        ("POST", ["vcpu-set"]) => {
            let r: VcpuSetRequest = body(req)?;
            d.vcpu_set(dom, r.vcpus).and_then(|()| ok())
        }
        ("POST", ["sched-credit"]) => {
            let r: SchedCreditRequest = body(req)?;
            d.sched_credit(dom, r.weight, r.cap).and_then(|()| ok())
        }
        ("POST", ["mem-max"]) => {
            let r: MemMaxRequest = body(req)?;
            d.mem_max(dom, r.mib).and_then(|()| ok())
        }
        ("POST", ["config-update"]) => {
            let r: ConfigUpdateRequest = body(req)?;
            d.config_update(dom, r.config).and_then(|()| ok())
        }
        _ => Err(ApiError {
            status: 405,
            message: format!("no API route {method} {}", req.path),
        }),
    }
}
