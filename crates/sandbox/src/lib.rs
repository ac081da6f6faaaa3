//! domus-sandbox: run a program that handles untrusted data as the least-privileged process on the host.
//!
//! Xen's pygrub ran as root over guest-controlled disk images until XSA-443; this crate is how Domus runs
//! such code instead. It has two halves, one per side of `execve`:
//!
//! - [`Command::spawn`] (parent): clones the child into fresh mount, PID, IPC, UTS and network namespaces
//!   ([`NAMESPACES`]), gives it only the descriptors passed with [`Command::pass_fd`] (0, 1, 2 default to
//!   /dev/null), an empty environment, its own session, the parent-death signal SIGKILL and the rlimits of
//!   [`Limits`] (CPU time, address space, file size, open files, no core dumps), then execs the program.
//!   [`Child::wait`] enforces the wall-clock deadline by killing the child.
//! - [`Jail::enter`] (child, first thing in `main`, before reading any untrusted input): an empty read-only
//!   root via `pivot_root`, a non-root uid/gid, no capabilities, NoNewPrivs and a seccomp allow-list
//!   ([`filter::allow_list`]) whose default action kills the process.
//!
//! The split exists because a dynamically linked program cannot be exec'd inside an empty root: its loader
//! and libraries must be reachable during `execve`. Until `Jail::enter` returns, the child runs only the
//! runtime's start-up code, with no untrusted input yet; it is already in its own namespaces and limits.
//!
//! The parent must be root (namespaces, `pivot_root`, changing uid). It must not itself reap children with
//! `waitpid(-1)`.
//!
//! This crate must not: interpret what the child computes (callers define their own protocol over the
//! descriptors they pass), or choose uids (callers pass them).

#![warn(missing_docs)]

pub mod filter;
mod jail;
mod spawn;
pub mod sys;

pub use jail::{Jail, JailError};
pub use spawn::{Child, Command, Gate, Limits, Outcome, SandboxError, NAMESPACES};
