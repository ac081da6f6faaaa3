//! ACPI CPU hotplug: the CPU hotplug register block and the Generic Event Device (GED) that tells
//! the guest to look at it (ACPI 6.4 §5.6.9 for the GED, §8.4 / §6.3 for processor devices and
//! ejection). Both are MMIO, so a guest reaches them from any privilege level through its page
//! tables (the probe at CPL3) and the DSDT's methods through SystemMemory operation regions.
//!
//! Register block at [`CPU_HP_ADDR`] ([`CPU_HP_SIZE`] bytes, little endian):
//!
//! | offset | width | name | access |
//! |---|---|---|---|
//! | 0 | 32 | CSEL | selects the CPU (ACPI processor UID = APIC id) the status byte refers to |
//! | 4 | 8 | status | bit 0 CPEN enabled (read only); bit 1 CINS inserting, bit 2 CRMV removing (read; write 1 to acknowledge); bit 3 CEJ0 (write 1: eject the CPU) |
//! | 8 | 32 | CCNT | possible CPUs (`maxvcpus`), read only |
//!
//! GED at [`GED_ADDR`]: one 32-bit event selector; reading returns the pending events and clears
//! them. [`GED_CPU_HOTPLUG`] means "scan the CPU register block" (the DSDT's `_EVT` calls `CSCN`).
//! Its interrupt is [`GED_GSI`], edge triggered and active high (pulsed, as the SCI is).
//!
//! This module is the state machine only; the machine creates or unparks the vCPU thread before
//! [`CpuHotplug::insert`] and parks it when [`HotplugAction::Ejected`] comes back.

/// Guest physical address of the GED event selector.
pub const GED_ADDR: u64 = 0xfeb0_0000;
/// Size of the GED register window.
pub const GED_SIZE: u64 = 4;
/// GSI of the GED interrupt (an ISA line no other device uses; Cloud Hypervisor's choice too).
pub const GED_GSI: u32 = 5;
/// GED event bit: the CPU register block has news (inserting or removing CPUs).
pub const GED_CPU_HOTPLUG: u32 = 1 << 3;
/// Guest physical address of the CPU hotplug register block.
pub const CPU_HP_ADDR: u64 = 0xfeb0_1000;
/// Size of the register block.
pub const CPU_HP_SIZE: u64 = 0x10;

/// Status bit: the CPU is enabled (present and usable).
pub const CPEN: u8 = 1 << 0;
/// Status bit: the CPU is being inserted (the guest should bring it up, then write 1 here).
pub const CINS: u8 = 1 << 1;
/// Status bit: the CPU is being removed (the guest should offline it, then eject).
pub const CRMV: u8 = 1 << 2;
/// Status bit, write only: eject the selected CPU.
pub const CEJ0: u8 = 1 << 3;

/// Register offsets.
const REG_CSEL: u64 = 0;
const REG_STATUS: u64 = 4;
const REG_CCNT: u64 = 8;

/// One CPU's bits in the register block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    /// CPEN.
    pub enabled: bool,
    /// CINS.
    pub inserting: bool,
    /// CRMV.
    pub removing: bool,
}

/// The register block and the GED's pending events in a snapshot (save/restore, migration).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuHotplugSnapshot {
    /// Per possible CPU.
    pub slots: Vec<Slot>,
    /// CSEL.
    pub selected: u32,
    /// GED events not read by the guest yet.
    pub ged_events: u32,
}

/// What a guest write asks the machine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotplugAction {
    /// Nothing beyond the register update.
    None,
    /// The guest ejected this CPU: park its thread.
    Ejected(u32),
}

/// The register block and the GED's pending events.
#[derive(Debug)]
pub struct CpuHotplug {
    slots: Vec<Slot>,
    selected: u32,
    ged_events: u32,
}

impl CpuHotplug {
    /// `possible` CPUs, the first `online` of them enabled (the boot CPUs).
    pub fn new(online: u32, possible: u32) -> Self {
        let slots = (0..possible.max(online))
            .map(|i| Slot {
                enabled: i < online,
                ..Slot::default()
            })
            .collect();
        Self {
            slots,
            selected: 0,
            ged_events: 0,
        }
    }

    /// The state for a snapshot.
    pub fn snapshot(&self) -> CpuHotplugSnapshot {
        CpuHotplugSnapshot {
            slots: self.slots.clone(),
            selected: self.selected,
            ged_events: self.ged_events,
        }
    }

    /// Takes a snapshot's state.
    ///
    /// # Errors
    /// The snapshot has another number of possible CPUs than this machine.
    pub fn restore(&mut self, s: &CpuHotplugSnapshot) -> Result<(), String> {
        if s.slots.len() != self.slots.len() {
            return Err(format!(
                "the image has {} possible vCPUs (maxvcpus), the configuration {}",
                s.slots.len(),
                self.slots.len()
            ));
        }
        self.slots.clone_from(&s.slots);
        self.selected = s.selected;
        self.ged_events = s.ged_events;
        Ok(())
    }

    /// Possible CPUs.
    pub fn possible(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }

    /// Whether CPU `id` is enabled (the guest has not ejected it).
    pub fn is_enabled(&self, id: u32) -> bool {
        self.slot(id).is_some_and(|s| s.enabled)
    }

    /// Enabled CPUs.
    pub fn enabled_count(&self) -> u32 {
        u32::try_from(self.slots.iter().filter(|s| s.enabled).count()).unwrap_or(u32::MAX)
    }

    /// The CPUs that must be inserted for the first `count` to be enabled (ascending); the caller
    /// makes each runnable, then calls [`CpuHotplug::insert`].
    pub fn to_insert(&self, count: u32) -> Vec<u32> {
        (0..count.min(self.possible()))
            .filter(|&i| !self.is_enabled(i))
            .collect()
    }

    fn slot(&self, id: u32) -> Option<&Slot> {
        self.slots.get(usize::try_from(id).ok()?)
    }

    fn slot_mut(&mut self, id: u32) -> Option<&mut Slot> {
        self.slots.get_mut(usize::try_from(id).ok()?)
    }

    /// Marks CPU `id` enabled and inserting, and queues the GED event. False if out of range.
    pub fn insert(&mut self, id: u32) -> bool {
        let Some(s) = self.slot_mut(id) else {
            return false;
        };
        s.enabled = true;
        s.inserting = true;
        s.removing = false;
        self.ged_events |= GED_CPU_HOTPLUG;
        true
    }

    /// Asks the guest to remove every enabled CPU from `count` on, and withdraws the removal of
    /// those below `count` that were still waiting for their eject. Returns the CPUs newly asked
    /// for; queues the GED event when there is news.
    pub fn request_online(&mut self, count: u32) -> Vec<u32> {
        let mut asked = Vec::new();
        let mut news = false;
        for (i, s) in self.slots.iter_mut().enumerate() {
            let id = u32::try_from(i).unwrap_or(u32::MAX);
            if id < count {
                if s.removing {
                    s.removing = false;
                    news = true;
                }
            } else if s.enabled && !s.removing {
                s.removing = true;
                s.inserting = false;
                asked.push(id);
                news = true;
            }
        }
        if news {
            self.ged_events |= GED_CPU_HOTPLUG;
        }
        asked
    }

    /// Whether GED events wait for the guest.
    pub fn has_events(&self) -> bool {
        self.ged_events != 0
    }

    /// Reads and clears the GED event selector.
    pub fn take_ged_events(&mut self) -> u32 {
        std::mem::take(&mut self.ged_events)
    }

    /// A guest read of the GED window (`offset` from [`GED_ADDR`]).
    pub fn ged_read(&mut self, offset: u64, data: &mut [u8]) {
        let v = if offset == 0 {
            self.take_ged_events()
        } else {
            0
        };
        fill(data, u64::from(v));
    }

    /// A guest read of the register block (`offset` from [`CPU_HP_ADDR`]).
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            REG_CSEL => u64::from(self.selected),
            REG_STATUS => u64::from(self.status()),
            REG_CCNT => u64::from(self.possible()),
            _ => 0,
        };
        fill(data, v);
    }

    fn status(&self) -> u8 {
        self.slot(self.selected).map_or(0, |s| {
            let bit = |on: bool, b: u8| if on { b } else { 0 };
            bit(s.enabled, CPEN) | bit(s.inserting, CINS) | bit(s.removing, CRMV)
        })
    }

    /// A guest write to the register block; an eject comes back as [`HotplugAction::Ejected`].
    pub fn write(&mut self, offset: u64, data: &[u8]) -> HotplugAction {
        let mut b = [0u8; 4];
        for (d, s) in b.iter_mut().zip(data) {
            *d = *s;
        }
        match offset {
            REG_CSEL => {
                self.selected = u32::from_le_bytes(b);
                HotplugAction::None
            }
            REG_STATUS => {
                let v = b[0];
                let id = self.selected;
                let Some(s) = self.slot_mut(id) else {
                    return HotplugAction::None;
                };
                if v & CINS != 0 {
                    s.inserting = false;
                }
                if v & CRMV != 0 {
                    s.removing = false;
                }
                // CPU 0 (the boot CPU) is never ejected; an eject of a disabled CPU changes nothing.
                if v & CEJ0 != 0 && id != 0 && s.enabled {
                    *s = Slot::default();
                    return HotplugAction::Ejected(id);
                }
                HotplugAction::None
            }
            _ => HotplugAction::None,
        }
    }
}

fn fill(data: &mut [u8], v: u64) {
    for (i, d) in data.iter_mut().enumerate() {
        *d = v.to_le_bytes().get(i).copied().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(hp: &mut CpuHotplug, id: u32) -> u8 {
        hp.write(REG_CSEL, &id.to_le_bytes());
        let mut b = [0u8; 1];
        hp.read(REG_STATUS, &mut b);
        b[0]
    }

    #[test]
    fn boot_cpus_are_enabled_and_the_count_is_possible() {
        let mut hp = CpuHotplug::new(2, 4);
        assert_eq!(status(&mut hp, 0), CPEN);
        assert_eq!(status(&mut hp, 1), CPEN);
        assert_eq!(status(&mut hp, 2), 0);
        assert_eq!(status(&mut hp, 9), 0, "out of range reads as absent");
        let mut c = [0u8; 4];
        hp.read(REG_CCNT, &mut c);
        assert_eq!(u32::from_le_bytes(c), 4);
        assert_eq!(hp.take_ged_events(), 0);
        assert_eq!(hp.to_insert(4), [2, 3]);
        assert_eq!(hp.to_insert(9), [2, 3]);
    }

    #[test]
    fn insert_then_acknowledge() {
        let mut hp = CpuHotplug::new(1, 3);
        assert!(hp.insert(1));
        assert!(!hp.insert(3));
        let mut e = [0u8; 4];
        hp.ged_read(0, &mut e);
        assert_eq!(u32::from_le_bytes(e), GED_CPU_HOTPLUG);
        hp.ged_read(0, &mut e);
        assert_eq!(u32::from_le_bytes(e), 0, "reading the selector clears it");
        assert_eq!(status(&mut hp, 1), CPEN | CINS);
        assert_eq!(hp.write(REG_STATUS, &[CINS]), HotplugAction::None);
        assert_eq!(status(&mut hp, 1), CPEN);
        assert_eq!(hp.enabled_count(), 2);
    }

    #[test]
    fn remove_eject_and_reinsert() {
        let mut hp = CpuHotplug::new(3, 3);
        assert_eq!(hp.request_online(1), [1, 2]);
        assert_eq!(hp.take_ged_events(), GED_CPU_HOTPLUG);
        assert_eq!(hp.request_online(1), Vec::<u32>::new(), "asked once");
        assert_eq!(hp.take_ged_events(), 0);
        assert_eq!(status(&mut hp, 2), CPEN | CRMV);
        // The guest acknowledges, then ejects.
        hp.write(REG_STATUS, &[CRMV]);
        assert_eq!(hp.write(REG_STATUS, &[CEJ0]), HotplugAction::Ejected(2));
        assert_eq!(status(&mut hp, 2), 0);
        assert_eq!(hp.write(REG_STATUS, &[CEJ0]), HotplugAction::None);
        // CPU 1: the removal is withdrawn before the guest ejected it.
        assert_eq!(hp.request_online(2), Vec::<u32>::new());
        assert_eq!(status(&mut hp, 1), CPEN);
        assert_eq!(hp.take_ged_events(), GED_CPU_HOTPLUG);
        assert_eq!(hp.to_insert(3), [2]);
        assert!(hp.insert(2));
        assert_eq!(status(&mut hp, 2), CPEN | CINS);
        assert_eq!(hp.enabled_count(), 3);
    }

    #[test]
    fn the_boot_cpu_cannot_be_ejected() {
        let mut hp = CpuHotplug::new(2, 2);
        hp.write(REG_CSEL, &0u32.to_le_bytes());
        assert_eq!(hp.write(REG_STATUS, &[CEJ0]), HotplugAction::None);
        assert!(hp.is_enabled(0));
        // Narrow and odd accesses do not panic.
        hp.write(REG_CSEL, &[1]);
        let mut b = [0u8; 8];
        hp.read(REG_CSEL, &mut b);
        assert_eq!(b, [1, 0, 0, 0, 0, 0, 0, 0]);
        hp.write(0xc, &[0xff; 4]);
        hp.read(0xc, &mut b);
        assert_eq!(b, [0; 8]);
    }
}
