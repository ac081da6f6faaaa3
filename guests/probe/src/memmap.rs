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

impl Default for MemMap {
    fn default() -> Self {
        Self::new()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn map(regions: &[(u64, u64, u32)]) -> MemMap {
        let mut m = MemMap::new();
        for &(addr, size, kind) in regions {
            m.push(MemRegion { addr, size, kind });
        }
        m
    }

    #[test]
    fn domus_vmm_layout_is_64_mib() {
        // domus-vmm's e820 map (its crate docs' machine model): [0, 0x9fc00) RAM, [0x9fc00, 1 MiB) reserved, [1 MiB, 64 MiB) RAM.
        let m = map(&[
            (0, 0x9fc00, 1),
            (0x9fc00, 0x60400, 2),
            (0x10_0000, 63 << 20, 1),
        ]);
        assert_eq!(m.ram_mib(), 64);
    }

    #[test]
    fn rounds_to_the_nearest_mib() {
        assert_eq!(map(&[(0, (1 << 20) + (512 << 10) - 1, 1)]).ram_mib(), 1);
        assert_eq!(map(&[(0, (1 << 20) + (512 << 10), 1)]).ram_mib(), 2);
        // QEMU -M pc with -m 64: SeaBIOS reserves the top 128 KiB -> 63.5 MiB - 1 KiB.
        assert_eq!(
            map(&[
                (0, 0x9fc00, 1),
                (0x10_0000, 0x3ee_0000, 1),
                (0x3fe_0000, 0x2_0000, 2)
            ])
            .ram_mib(),
            63
        );
    }

    #[test]
    fn only_ram_counts_and_sums_saturate() {
        assert_eq!(map(&[(0, 1 << 30, 2), (0, 1 << 30, 3)]).ram_bytes(), 0);
        assert_eq!(
            map(&[(0, u64::MAX, 1), (0, u64::MAX, 1)]).ram_bytes(),
            u64::MAX
        );
        assert_eq!(map(&[(0, u64::MAX, 1)]).ram_mib(), u64::MAX >> 20);
    }

    #[test]
    fn full_map_drops_extra_regions() {
        let mut m = MemMap::new();
        for i in 0..(MAX_REGIONS as u64 + 5) {
            m.push(MemRegion {
                addr: i << 20,
                size: 1 << 20,
                kind: E820_RAM,
            });
        }
        assert_eq!(m.regions().len(), MAX_REGIONS);
        assert_eq!(m.ram_mib(), MAX_REGIONS as u64);
    }
}
