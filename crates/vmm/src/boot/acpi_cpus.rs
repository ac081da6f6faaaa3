//! The DSDT part of ACPI CPU hotplug (register layout in [`crate::devices::cpu_hotplug`]):
//!
//! - `\_SB_.PRES`: the register block (`_CRS` Memory32Fixed; fields CSEL, CPEN/CINS/CRMV/CEJ0, CCNT)
//!   and the mutex `CPLK` that serialises its users.
//! - `\_SB_.CPUS` (`ACPI0010` processor container): `CSTA(uid)` (the `_STA` of a CPU: 0xF when
//!   enabled, else 0), `CEJ0(uid)` (eject), `CTFY(uid, event)` (Notify the CPU device) and `CSCN()`
//!   (scan: Notify 1 "device check" for each inserting CPU and 3 "eject request" for each removing
//!   one, acknowledging each), and one `Cnnn` device per possible CPU (`ACPI0007`, `_UID` = APIC id,
//!   `_STA`, `_MAT` = its MADT Local APIC entry with Enabled set, `_EJ0`).
//! - `\_SB_.GED_` (`ACPI0013`): the GED, whose `_EVT` reads the event selector and calls `CSCN` for
//!   the CPU hotplug event.
//!
//! Nothing here runs in the test guest (the probe has no AML interpreter): a test disassembles the
//! table with acpica's `iasl` instead (`tests/dsdt_iasl.rs`).

use acpi_tables::aml;
use acpi_tables::{Aml, AmlSink};

use crate::devices::cpu_hotplug::{
    CPU_HP_ADDR, CPU_HP_SIZE, GED_ADDR, GED_CPU_HOTPLUG, GED_GSI, GED_SIZE,
};

/// The hotplug objects for `possible` CPUs, as one AML blob for the `\_SB_` scope.
pub struct CpuHotplugAml {
    /// Possible CPUs (`maxvcpus`), at most 254.
    pub possible: u8,
}

/// A field of the register block, by absolute path.
fn field(name: &str) -> aml::Path {
    aml::Path::new(&format!("\\_SB_.PRES.{name}"))
}

fn addr32(a: u64) -> u32 {
    u32::try_from(a).unwrap_or(u32::MAX)
}

fn register_block(sink: &mut dyn AmlSink) {
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A06"));
    let uid = aml::Name::new("_UID".into(), &"CPU Hotplug Controller");
    let mem = aml::Memory32Fixed::new(true, addr32(CPU_HP_ADDR), addr32(CPU_HP_SIZE));
    let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(vec![&mem]));
    let lock = aml::Mutex::new("CPLK".into(), 0);
    let base = addr32(CPU_HP_ADDR);
    let size = addr32(CPU_HP_SIZE);
    let region = aml::OpRegion::new(
        "PRST".into(),
        aml::OpRegionSpace::SystemMemory,
        &base,
        &size,
    );
    let dwords = aml::Field::new(
        "PRST".into(),
        aml::FieldAccessType::DWord,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::Preserve,
        vec![
            aml::FieldEntry::Named(*b"CSEL", 32),
            aml::FieldEntry::Reserved(32),
            aml::FieldEntry::Named(*b"CCNT", 32),
        ],
    );
    let status = aml::Field::new(
        "PRST".into(),
        aml::FieldAccessType::Byte,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::WriteAsZeroes,
        vec![
            aml::FieldEntry::Reserved(32),
            aml::FieldEntry::Named(*b"CPEN", 1),
            aml::FieldEntry::Named(*b"CINS", 1),
            aml::FieldEntry::Named(*b"CRMV", 1),
            aml::FieldEntry::Named(*b"CEJ0", 1),
            aml::FieldEntry::Reserved(4),
        ],
    );
    aml::Device::new(
        "\\_SB_.PRES".into(),
        vec![&hid, &uid, &crs, &lock, &region, &dwords, &status],
    )
    .to_aml_bytes(sink);
}

/// `CSTA(uid)`: 0xF (present, enabled, shown, functioning) when CPEN, else 0.
fn csta() -> Vec<u8> {
    let mut out = Vec::new();
    let (csel, cpen) = (field("CSEL"), field("CPEN"));
    let acquire = aml::Acquire::new("\\_SB_.PRES.CPLK".into(), 0xffff);
    let select = aml::Store::new(&csel, &aml::Arg(0));
    let zero = aml::Store::new(&aml::Local(0), &aml::ZERO);
    let enabled = aml::Equal::new(&cpen, &aml::ONE);
    let fifteen = aml::Store::new(&aml::Local(0), &0xfu8);
    let cond = aml::If::new(&enabled, vec![&fifteen]);
    let release = aml::Release::new("\\_SB_.PRES.CPLK".into());
    let ret = aml::Return::new(&aml::Local(0));
    aml::Method::new(
        "CSTA".into(),
        1,
        true,
        vec![&acquire, &select, &zero, &cond, &release, &ret],
    )
    .to_aml_bytes(&mut out);
    out
}

/// `CEJ0(uid)`: selects the CPU and writes its eject bit.
fn cej0() -> Vec<u8> {
    let mut out = Vec::new();
    let (csel, cej0_field) = (field("CSEL"), field("CEJ0"));
    let acquire = aml::Acquire::new("\\_SB_.PRES.CPLK".into(), 0xffff);
    let select = aml::Store::new(&csel, &aml::Arg(0));
    let eject = aml::Store::new(&cej0_field, &aml::ONE);
    let release = aml::Release::new("\\_SB_.PRES.CPLK".into());
    aml::Method::new(
        "CEJ0".into(),
        1,
        true,
        vec![&acquire, &select, &eject, &release],
    )
    .to_aml_bytes(&mut out);
    out
}

fn cpu_name(uid: u8) -> String {
    format!("C{uid:03X}")
}

/// `CTFY(uid, event)`: `Notify(Cnnn, event)` for the CPU with that UID.
fn ctfy(possible: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let paths: Vec<aml::Path> = (0..possible)
        .map(|i| aml::Path::new(&cpu_name(i)))
        .collect();
    let notifies: Vec<aml::Notify> = paths
        .iter()
        .map(|p| aml::Notify::new(p, &aml::Arg(1)))
        .collect();
    let uids: Vec<u8> = (0..possible).collect();
    let tests: Vec<aml::Equal> = uids
        .iter()
        .map(|u| aml::Equal::new(&aml::Arg(0), u))
        .collect();
    let ifs: Vec<aml::If> = tests
        .iter()
        .zip(&notifies)
        .map(|(t, n)| aml::If::new(t, vec![n]))
        .collect();
    let body: Vec<&dyn Aml> = ifs.iter().map(|i| i as &dyn Aml).collect();
    aml::Method::new("CTFY".into(), 2, true, body).to_aml_bytes(&mut out);
    out
}

/// `CSCN()`: for each CPU, Notify 1 (device check) when inserting and 3 (eject request) when
/// removing, acknowledging the bit it acted on.
fn cscn(possible: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let (csel, cins, crmv) = (field("CSEL"), field("CINS"), field("CRMV"));
    let acquire = aml::Acquire::new("\\_SB_.PRES.CPLK".into(), 0xffff);
    let start = aml::Store::new(&aml::Local(0), &aml::ZERO);
    let more = aml::LessThan::new(&aml::Local(0), &possible);
    let select = aml::Store::new(&csel, &aml::Local(0));
    let inserting = aml::Equal::new(&cins, &aml::ONE);
    let check = aml::MethodCall::new("CTFY".into(), vec![&aml::Local(0), &aml::ONE]);
    let ack_ins = aml::Store::new(&cins, &aml::ONE);
    let on_insert = aml::If::new(&inserting, vec![&check, &ack_ins]);
    let removing = aml::Equal::new(&crmv, &aml::ONE);
    let eject_req = aml::MethodCall::new("CTFY".into(), vec![&aml::Local(0), &3u8]);
    let ack_rmv = aml::Store::new(&crmv, &aml::ONE);
    let on_remove = aml::If::new(&removing, vec![&eject_req, &ack_rmv]);
    let next = aml::Add::new(&aml::Local(0), &aml::Local(0), &aml::ONE);
    let each = aml::While::new(&more, vec![&select, &on_insert, &on_remove, &next]);
    let release = aml::Release::new("\\_SB_.PRES.CPLK".into());
    aml::Method::new(
        "CSCN".into(),
        0,
        true,
        vec![&acquire, &start, &each, &release],
    )
    .to_aml_bytes(&mut out);
    out
}

/// One processor device: `_HID ACPI0007`, `_UID`, `_STA`, `_MAT`, `_EJ0`.
fn cpu_device(uid: u8, sink: &mut dyn AmlSink) {
    let hid = aml::Name::new("_HID".into(), &"ACPI0007");
    let uid_name = aml::Name::new("_UID".into(), &uid);
    let sta_call = aml::MethodCall::new("CSTA".into(), vec![&uid]);
    let sta_ret = aml::Return::new(&sta_call);
    let sta = aml::Method::new("_STA".into(), 0, false, vec![&sta_ret]);
    // The MADT Processor Local APIC entry of this CPU, enabled (what it is once inserted).
    let mat_buf = aml::BufferData::new(vec![0, 8, uid, uid, 1, 0, 0, 0]);
    let mat_ret = aml::Return::new(&mat_buf);
    let mat = aml::Method::new("_MAT".into(), 0, false, vec![&mat_ret]);
    let ej_call = aml::MethodCall::new("CEJ0".into(), vec![&uid]);
    let ej0 = aml::Method::new("_EJ0".into(), 1, false, vec![&ej_call]);
    aml::Device::new(
        cpu_name(uid).as_str().into(),
        vec![&hid, &uid_name, &sta, &mat, &ej0],
    )
    .to_aml_bytes(sink);
}

fn cpus_container(possible: u8, sink: &mut dyn AmlSink) {
    let hid = aml::Name::new("_HID".into(), &"ACPI0010");
    let cid = aml::Name::new("_CID".into(), &aml::EISAName::new("PNP0A05"));
    let methods = [csta(), cej0(), ctfy(possible), cscn(possible)];
    let mut devices = Vec::new();
    for uid in 0..possible {
        cpu_device(uid, &mut devices);
    }
    let raw: Vec<Raw> = methods
        .into_iter()
        .chain(std::iter::once(devices))
        .map(Raw)
        .collect();
    let mut children: Vec<&dyn Aml> = vec![&hid, &cid];
    children.extend(raw.iter().map(|r| r as &dyn Aml));
    aml::Device::new("\\_SB_.CPUS".into(), children).to_aml_bytes(sink);
}

fn ged(sink: &mut dyn AmlSink) {
    let hid = aml::Name::new("_HID".into(), &"ACPI0013");
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let irq = aml::Interrupt::new(true, true, false, false, GED_GSI);
    let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(vec![&irq]));
    let base = addr32(GED_ADDR);
    let size = addr32(GED_SIZE);
    let region = aml::OpRegion::new(
        "GDST".into(),
        aml::OpRegionSpace::SystemMemory,
        &base,
        &size,
    );
    let field = aml::Field::new(
        "GDST".into(),
        aml::FieldAccessType::DWord,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::WriteAsZeroes,
        vec![aml::FieldEntry::Named(*b"GDAT", 32)],
    );
    let gdat = aml::Path::new("GDAT");
    let read = aml::Store::new(&aml::Local(0), &gdat);
    let bit = GED_CPU_HOTPLUG;
    let masked = aml::And::new(&aml::Local(1), &aml::Local(0), &bit);
    let is_cpu = aml::Equal::new(&aml::Local(1), &bit);
    let scan = aml::MethodCall::new("\\_SB_.CPUS.CSCN".into(), vec![]);
    let on_cpu = aml::If::new(&is_cpu, vec![&scan]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&read, &masked, &on_cpu]);
    aml::Device::new(
        "\\_SB_.GED_".into(),
        vec![&hid, &uid, &crs, &region, &field, &evt],
    )
    .to_aml_bytes(sink);
}

/// Already-encoded AML.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

impl Aml for CpuHotplugAml {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        register_block(sink);
        cpus_container(self.possible, sink);
        ged(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_processor_device_per_possible_cpu() {
        let mut b = Vec::new();
        CpuHotplugAml { possible: 3 }.to_aml_bytes(&mut b);
        assert_eq!(b.windows(9).filter(|w| w == b"\x0dACPI0007").count(), 3);
        for name in [
            b"C000", b"C001", b"C002", b"CSCN", b"CTFY", b"PRST", b"GDST",
        ] {
            assert!(b.windows(4).any(|w| w == name), "{name:?}");
        }
        assert!(!b.windows(4).any(|w| w == b"C003"));
        assert_eq!(b.windows(9).filter(|w| w == b"\x0dACPI0013").count(), 1);
    }
}
