//! KVM state: the system handle, the VM, its guest memory and its vCPUs.
//!
//! This is the only module tree of the crate that contains `unsafe` code (registering guest memory with
//! KVM and the vCPU kick signal); every block carries a `// SAFETY:` comment.

pub mod cpuid;
pub mod dirty_ring;
pub mod kvm;
pub mod memory;
pub mod state;
pub mod vcpu;
pub mod vm;
