//! Local APIC, IOAPIC and 8259 programming, from CPL3 through the identity-mapped MMIO pages.
