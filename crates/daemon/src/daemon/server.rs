//! The API server: accepts connections on `domusd.sock`, one thread per connection (bounded), one request
//! each, routed to [`Daemon`]. Routes and message types are documented in the `domus-api` crate.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use domus_api::http::{self, Request};
use domus_api::messages::{
    self, ConfigUpdateRequest, CreateRequest, DmesgReply, DumpCoreRequest, ErrorReply,
    MemMaxRequest, MemSetRequest, RebootRequest, RenameRequest, SchedCreditRequest,
    ShutdownRequest, SysrqRequest, TriggerRequest, VcpuPinRequest, VcpuSetRequest,
};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

use super::{ApiError, Daemon};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 128;

/// Binds the API socket, refusing to start when another domusd answers on it.
///
/// # Errors
/// When the socket is in use or cannot be bound.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("another domusd is already serving {}", path.display());
        }
        fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(l)
}

/// Serves forever.
pub fn serve(daemon: &Arc<Daemon>, listener: &UnixListener) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        while active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(1));
        }
        active.fetch_add(1, Ordering::AcqRel);
        let d = Arc::clone(daemon);
        let a = Arc::clone(&active);
        let spawned = std::thread::Builder::new()
            .name("api".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                handle(&d, &stream);
                a.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::AcqRel);
            warn!(error = %e, "cannot start a connection thread");
        }
    }
}

fn handle(daemon: &Arc<Daemon>, stream: &UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let req = match http::read_request(stream) {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "bad API request");
            let _ = respond(stream, Err(ApiError::bad_request(e.to_string())));
            return;
        }
    };
    let result = route(daemon, &req);
    if let Err(e) = &result {
        debug!(method = %req.method, path = %req.path, status = e.status, error = %e.message, "API error");
    }
    let _ = respond(stream, result);
}

fn respond(stream: &UnixStream, r: Result<serde_json::Value, ApiError>) -> io::Result<()> {
    let (status, body) = match r {
        Ok(v) => (
            200,
            serde_json::to_vec(&v).unwrap_or_else(|_| b"{}".to_vec()),
        ),
        Err(e) => (
            e.status,
            serde_json::to_vec(&ErrorReply { error: e.message }).unwrap_or_default(),
        ),
    };
    http::write_response(stream, status, &body)
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

fn route(d: &Arc<Daemon>, req: &Request) -> Result<serde_json::Value, ApiError> {
    let path = req.path.split('?').next().unwrap_or("");
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["v1", "domains"]) => json(d.list()),
        ("POST", ["v1", "domains"]) => {
            let r: CreateRequest = body(req)?;
            json(d.create(r.config, r.paused)?)
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
