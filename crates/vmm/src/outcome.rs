//! How a domain stops: the [`Outcome`] and its [`Reason`], part of the control protocol shared with
//! domusd (`domus-vmm-api`), which also fixes the exit status that reports each reason.

pub use domus_vmm_api::{Outcome, Reason};
