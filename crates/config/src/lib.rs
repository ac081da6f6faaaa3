//! The xl.cfg configuration language: text in, a typed [`DomainConfig`] or a located [`ConfigError`] out.
//!
//! Pure: callers pass text; this crate never touches files, processes or the environment (it only draws
//! random numbers for generated UUIDs and MACs). Layers, each in its own module:
//! - [`lexer`] and [`parser`]: xl.cfg(5) syntax (libxlu's), into an [`XlConfig`] of [`Value`]s;
//! - [`disk`], [`vif`], [`pci`], [`cpus`], [`vdev`], [`units`]: the sub-languages inside string values;
//! - [`domain`] (types, defaults, JSON) and `build` ([`DomainConfig::from_xl`]): the typed configuration;
//! - `print` ([`DomainConfig::to_xl`]): back to xl.cfg text.
//!
//! ```
//! let text = "name = 'web'\nmemory = 512\nvif = [ 'bridge=xenbr0' ]\n";
//! let cfg = domus_config::DomainConfig::from_xl("web.cfg", text, &[]).unwrap();
//! assert_eq!(cfg.name, "web");
//! assert_eq!(cfg.vifs[0].mac.0[..3], [0x00, 0x16, 0x3e]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod build;
pub mod cpus;
pub mod disk;
pub mod domain;
pub mod error;
pub mod keys;
pub mod lexer;
pub mod parser;
pub mod pci;
mod print;
pub mod random;
pub mod units;
pub mod value;
pub mod vdev;
pub mod vif;

pub use build::OVERRIDE_SOURCE;
pub use cpus::{CpusConfig, CpusError, CpusSpec};
pub use disk::{Access, DevType, DiskConfig, DiskFormat, DiskSpec};
pub use domain::{Action, DomainConfig, DomainType, Origins};
pub use error::{ConfigError, ConfigErrorKind, Location};
pub use parser::parse;
pub use pci::{PciConfig, PciSpec};
pub use value::{PlainValue, Value, XlConfig};
pub use vif::{MacAddr, VifConfig, VifRate, VifSpec};
