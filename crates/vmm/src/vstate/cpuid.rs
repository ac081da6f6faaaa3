//! CPUID normalisation: KVM_GET_SUPPORTED_CPUID adjusted per vCPU (APIC id, topology, hypervisor bit).
//!
//! The topology presented is one socket with `vcpus` cores, one thread each (as Firecracker does without
//! SMT): leaf 1 (initial APIC id, logical count, HTT), leaf 4 (cores per package), leaves 0xb/0x1f (x2APIC
//! topology with the vCPU's id in EDX), leaf 0xa cleared (no virtual PMU).

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;

/// CPUID.1:ECX bit 31, "running under a hypervisor".
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bit 28, HTT (the logical-processor count in EBX[23:16] is valid).
const EDX_HTT: u32 = 1 << 28;

/// Number of bits needed to number `n` APIC ids (ceil(log2 n)).
fn id_bits(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Adjusts `cpuid` (a copy of the supported set) for vCPU `id` of `count`.
pub fn normalize(cpuid: &mut CpuId, id: u32, count: u32) {
    let core_bits = id_bits(count);
    for e in cpuid.as_mut_slice() {
        match e.function {
            LEAF_FEATURES => {
                // EBX: [31:24] initial APIC id, [23:16] logical processors per package, [15:8] CLFLUSH
                // line size in 8-byte units (64 bytes), [7:0] brand index.
                let logical = count.min(255);
                e.ebx = (id << 24) | (logical << 16) | (8 << 8);
                e.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            LEAF_CACHE => {
                // EAX[31:26] = cores per package - 1; EAX[25:14] = logical processors sharing this cache - 1.
                let level = (e.eax >> 5) & 0x7;
                let sharing = if level >= 3 {
                    count.saturating_sub(1)
                } else {
                    0
                };
                e.eax &= 0x3fff;
                if e.eax & 0x1f != 0 {
                    e.eax |= (count.saturating_sub(1).min(63) << 26) | ((sharing & 0xfff) << 14);
                }
            }
            LEAF_PMU => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                e.edx = id;
                match e.index {
                    0 => {
                        // SMT level: one thread per core.
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8;
                    }
                    1 => {
                        // Core level: `count` cores in the package.
                        e.eax = core_bits;
                        e.ebx = count;
                        e.ecx = (2 << 8) | 1;
                    }
                    n => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = n;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    #[test]
    fn apic_ids_and_topology() {
        let mut c =
            CpuId::from_entries(&[entry(1, 0), entry(0xb, 0), entry(0xb, 1), entry(0xb, 2)])
                .unwrap();
        normalize(&mut c, 2, 3);
        let s = c.as_slice();
        assert_eq!(s[0].ebx >> 24, 2);
        assert_eq!((s[0].ebx >> 16) & 0xff, 3);
        assert_ne!(s[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(s[0].edx & EDX_HTT, 0);
        assert_eq!(s[1].edx, 2);
        assert_eq!(s[2].eax, 2);
        assert_eq!(s[2].ebx, 3);
        assert_eq!(s[3].ecx, 2);
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(5), 3);
    }
}
