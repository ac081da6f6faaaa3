//! The e820-style memory map from start_info, and the RAM total the `hello` scenario reports.

/// Most regions kept (further entries are ignored).
pub const MAX_REGIONS: usize = 64;
/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// One memory map entry.
#[derive(Clone, Copy, Default)]
pub struct MemRegion {
    /// Physical start.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// e820 type (1 = RAM, 2 = reserved, 3 = ACPI, ...).
    pub kind: u32,
}

/// A bounded list of regions.
pub struct MemMap {
    regions: [MemRegion; MAX_REGIONS],
    len: usize,
}

impl MemMap {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            regions: [MemRegion {
                addr: 0,
                size: 0,
                kind: 0,
            }; MAX_REGIONS],
            len: 0,
        }
    }

    /// Appends a region (dropped if the map is full).
    pub fn push(&mut self, region: MemRegion) {
        if let Some(slot) = self.regions.get_mut(self.len) {
            *slot = region;
            self.len += 1;
        }
    }

    /// The regions in boot-loader order.
    pub fn regions(&self) -> &[MemRegion] {
        &self.regions[..self.len]
    }

    /// Bytes of usable RAM (type 1), saturating.
    pub fn ram_bytes(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == E820_RAM)
            .fold(0u64, |sum, r| sum.saturating_add(r.size))
    }

    /// Usable RAM rounded to the nearest MiB.
    pub fn ram_mib(&self) -> u64 {
        self.ram_bytes().saturating_add(512 * 1024) >> 20
    }
}
