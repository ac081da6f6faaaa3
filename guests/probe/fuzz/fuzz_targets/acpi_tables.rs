//! Every ACPI parser of the probe guest on arbitrary bytes: FADT, MADT, and the AML pattern
//! searches (`\_S5_`, virtio-mmio devices, the Generic Event Device). They must never panic.
#![no_main]

use domus_probe::{aml, fadt::Fadt, madt::Madt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fadt = Fadt::parse(data);
    let _ = fadt.is_hw_reduced();
    let madt = Madt::parse(data);
    assert!(madt.apic_ids().len() <= madt.enabled_cpus);
    for irq in [0u8, 9, 255] {
        let _ = madt.isa_irq(irq);
    }
    let _ = aml::find_s5(data);
    let _ = aml::find_ged(data);
    let mut n = 0usize;
    aml::find_mmio_devices(data, b"LNRO0005", |_| n += 1);
    assert!(n <= data.len());
});
