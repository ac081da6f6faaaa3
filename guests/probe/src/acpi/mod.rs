//! ACPI as the probe needs it: vCPU count (MADT), power management registers (FADT), the S5
//! sleep type (DSDT/SSDT `\_S5_`), interrupt routing for the SCI (MADT IOAPIC + overrides).
//!
//! Parsed once at boot into plain values ([`Acpi`]); scenarios never touch the tables again.

pub mod tables;

pub use domus_probe::aml;
use domus_probe::bytes::HEADER_LEN;
pub use domus_probe::fadt::{Fadt, Gas, FADT_PWR_BUTTON};
pub use domus_probe::madt::Madt;
use tables::Root;

/// Everything the probe learned from ACPI.
pub struct Acpi {
    /// Root pointer and root table.
    pub root: Root,
    /// FADT, if present and valid.
    pub fadt: Option<Fadt>,
    /// MADT, if present and valid.
    pub madt: Option<Madt>,
    /// `\_S5_` SLP_TYPa/SLP_TYPb from the DSDT or an SSDT.
    pub s5: Option<(u8, u8)>,
    /// The DSDT (validated), for AML pattern searches.
    pub dsdt: Option<&'static [u8]>,
}

impl Acpi {
    /// Finds and parses the tables (`rsdp_hint` = start_info's rsdp_paddr, 0 if none).
    pub fn discover(rsdp_hint: u64) -> Option<Self> {
        let root = tables::find_root(rsdp_hint)?;
        let fadt = root.find(b"FACP").map(Fadt::parse);
        let madt = root.find(b"APIC").map(Madt::parse);
        let dsdt = fadt
            .and_then(|f| tables::table_at(f.dsdt))
            .filter(|t| &t[..4] == b"DSDT");
        let s5 = dsdt
            .into_iter()
            .chain(root.tables().filter(|t| &t[..4] == b"SSDT"))
            .find_map(|t| aml::find_s5(&t[HEADER_LEN..]));
        Some(Self {
            root,
            fadt,
            madt,
            s5,
            dsdt,
        })
    }

    /// Number of enabled processors in the MADT (0 without one).
    pub fn vcpus(&self) -> usize {
        self.madt.map_or(0, |m| m.enabled_cpus)
    }
}
