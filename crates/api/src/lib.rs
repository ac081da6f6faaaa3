//! domusd's API, everything the `domus` CLI shares with the `domusd` daemon: the messages ([`messages`]),
//! their framing as JSON over HTTP/1.1 on a unix socket ([`http`], heads parsed by `httparse`), a blocking
//! client ([`client`]) and the path conventions ([`paths`]). The CLI links this crate only, not the daemon
//! nor the store. (The protocol between domusd and each domus-vmm is a separate crate, `domus-vmm-api`;
//! this one borrows only its vCPU state.)
//!
//! # The API
//! domusd listens on `$DOMUS_RUNTIME_DIR/domusd.sock` (default `/run/domus/domusd.sock`). Each connection
//! carries one HTTP/1.1 request and one response (`Connection: close`); bodies are JSON
//! (`Content-Type: application/json`, `Content-Length` always set, no chunking). Errors are a non-2xx status
//! with `{"error": "message"}`. `DOM` below is a domid (all digits) or a domain name, percent-encoded.
//!
//! | method and path | request body | reply |
//! |---|---|---|
//! | `GET /v1/domains` | - | `[DomainInfo]`, Domain-0 (the host) first |
//! | `POST /v1/domains` | [`messages::CreateRequest`] | [`messages::DomainInfo`] once the VMM answers |
//! | `GET /v1/domains/DOM` | - | [`messages::DomainInfo`] |
//! | `GET /v1/domains/DOM/progress` | - | [`messages::ProgressReply`]: the latest progress report of the domain's save in progress (none when no save runs) |
//! | `POST /v1/domains/DOM/shutdown` | [`messages::ShutdownRequest`] | `{}`: power button pressed |
//! | `POST /v1/domains/DOM/reboot` | [`messages::RebootRequest`] | `{}`: power button pressed, the domain marked "reboot requested" (its poweroff then applies on_reboot); with `force` the VMM resets the guest |
//! | `POST /v1/domains/DOM/destroy` | - | `{}` once the domain is gone |
//! | `POST /v1/domains/DOM/pause`, `/unpause` | - | `{}` |
//! | `POST /v1/domains/DOM/rename` | [`messages::RenameRequest`] | `{}` |
//! | `POST /v1/domains/DOM/vcpu-pin` | [`messages::VcpuPinRequest`] | `{}` |
//! | `POST /v1/domains/DOM/sched-credit` | [`messages::SchedCreditRequest`] | `{}`: weight/cap set on the domain's cgroup |
//! | `POST /v1/domains/DOM/mem-set` | [`messages::MemSetRequest`] | `{}`: the balloon's new target |
//! | `POST /v1/domains/DOM/vcpu-set` | [`messages::VcpuSetRequest`] | `{}`: vCPUs plugged/unplugged |
//! | `POST /v1/domains/DOM/mem-max` | [`messages::MemMaxRequest`] | `{}` |
//! | `POST /v1/domains/DOM/config-update` | [`messages::ConfigUpdateRequest`] | `{}`: used from the next restart |
//! | `GET /v1/host` | - | [`messages::HostInfo`] |
//! | `GET /v1/dmesg`, `POST /v1/dmesg/clear` | - | [`messages::DmesgReply`] |
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod client;
pub mod http;
pub mod image;
pub mod messages;
pub mod paths;
