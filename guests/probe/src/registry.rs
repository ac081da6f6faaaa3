//! The probe's device registry: every virtio-mmio transport found at boot, in ascending address
//! order, looked up by device type ("the second virtio-blk disk"). Drivers find their devices here
//! instead of scanning themselves, so several devices of a type and several drivers coexist.
//!
//! Pure bookkeeping (the probing of registers lives in the binary's `virtio` module), bounded and
//! host-tested.

/// Most devices tracked (domus-vmm's window has 32 slots).
pub const MAX_DEVICES: usize = 32;

/// One virtio-mmio transport that answered with the magic value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// Register base (guest physical).
    pub base: u64,
    /// Interrupt (GSI) from ACPI, 0 if unknown.
    pub irq: u32,
    /// Transport version (1 legacy, 2 modern).
    pub version: u32,
    /// Virtio device type (1 net, 2 block, 4 entropy, ...).
    pub device_id: u32,
}

/// Why a device was not added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// [`MAX_DEVICES`] are already registered.
    Full,
    /// A device with this base is already registered.
    Duplicate,
    /// DeviceID 0: a transport with no device behind it.
    NoDevice,
}

/// The registered devices.
pub struct Registry {
    list: [Device; MAX_DEVICES],
    len: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    pub const fn new() -> Self {
        Self {
            list: [Device {
                base: 0,
                irq: 0,
                version: 0,
                device_id: 0,
            }; MAX_DEVICES],
            len: 0,
        }
    }

    /// Whether a device at `base` is registered.
    pub fn contains(&self, base: u64) -> bool {
        self.all().iter().any(|d| d.base == base)
    }

    /// Adds `dev`, keeping the list sorted by address.
    pub fn add(&mut self, dev: Device) -> Result<(), AddError> {
        if dev.device_id == 0 {
            return Err(AddError::NoDevice);
        }
        if self.contains(dev.base) {
            return Err(AddError::Duplicate);
        }
        if self.len == MAX_DEVICES {
            return Err(AddError::Full);
        }
        let at = self
            .all()
            .iter()
            .position(|d| d.base > dev.base)
            .unwrap_or(self.len);
        self.list.copy_within(at..self.len, at + 1);
        self.list[at] = dev;
        self.len += 1;
        Ok(())
    }

    /// Every device, ascending address.
    pub fn all(&self) -> &[Device] {
        &self.list[..self.len]
    }

    /// The devices of type `device_id`, ascending address.
    pub fn of_type(&self, device_id: u32) -> impl Iterator<Item = &Device> + '_ {
        self.all().iter().filter(move |d| d.device_id == device_id)
    }

    /// The `n`-th device (from 0) of type `device_id`.
    pub fn nth_of_type(&self, device_id: u32, n: usize) -> Option<&Device> {
        self.of_type(device_id).nth(n)
    }

    /// How many devices of type `device_id` there are.
    pub fn count_of_type(&self, device_id: u32) -> usize {
        self.of_type(device_id).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(base: u64, device_id: u32) -> Device {
        Device {
            base,
            irq: 10,
            version: 2,
            device_id,
        }
    }

    #[test]
    fn sorted_by_address_and_found_by_type() {
        let mut r = Registry::new();
        // QEMU microvm fills its transports from the top: added in descending order.
        for (base, id) in [(0x3000, 2), (0x2000, 4), (0x1000, 2), (0x4000, 1)] {
            r.add(dev(base, id)).unwrap();
        }
        let bases: Vec<u64> = r.all().iter().map(|d| d.base).collect();
        assert_eq!(bases, [0x1000, 0x2000, 0x3000, 0x4000]);
        assert_eq!(r.count_of_type(2), 2);
        assert_eq!(r.nth_of_type(2, 0).map(|d| d.base), Some(0x1000));
        assert_eq!(r.nth_of_type(2, 1).map(|d| d.base), Some(0x3000));
        assert_eq!(r.nth_of_type(2, 2), None);
        assert_eq!(r.nth_of_type(4, 0).map(|d| d.base), Some(0x2000));
        assert_eq!(r.count_of_type(3), 0);
    }

    #[test]
    fn rejects_duplicates_empty_transports_and_overflow() {
        let mut r = Registry::new();
        assert_eq!(r.add(dev(0x1000, 0)), Err(AddError::NoDevice));
        r.add(dev(0x1000, 2)).unwrap();
        assert_eq!(r.add(dev(0x1000, 4)), Err(AddError::Duplicate));
        for i in 1..MAX_DEVICES as u64 {
            r.add(dev(0x1000 + i * 0x1000, 2)).unwrap();
        }
        assert_eq!(r.add(dev(0xff_0000, 2)), Err(AddError::Full));
        assert_eq!(r.all().len(), MAX_DEVICES);
        assert!(r.all().windows(2).all(|w| w[0].base < w[1].base));
    }
}
