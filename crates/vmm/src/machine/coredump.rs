//! `xl dump-core`: an ELF core file of the guest (ELF-64 gABI, `ET_CORE`), the layout gdb and
//! crash(8) read: one `PT_NOTE` segment holding an `NT_PRSTATUS` note per vCPU (Linux's x86-64
//! `struct elf_prstatus`, whose `pr_reg` is `struct user_regs_struct`; `pr_pid` = vCPU number + 1), then
//! one `PT_LOAD` segment per guest RAM region with its guest-physical address as both `p_paddr` and
//! `p_vaddr` (so a guest that identity-maps its memory, as the probe does, is read at its own addresses).
//!
//! The caller stops the vCPUs first and hands over their registers; guest memory is read through
//! vm-memory.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use kvm_bindings::{kvm_regs, kvm_sregs};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::vstate::memory::GuestMem;

/// One vCPU's registers, as KVM_GET_REGS / KVM_GET_SREGS return them.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuRegs {
    /// General-purpose registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
}

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const PRSTATUS_SIZE: usize = 336;
const PR_REG_OFFSET: usize = 112;
const NOTE_NAME: &[u8; 8] = b"CORE\0\0\0\0";
const NT_PRSTATUS: u32 = 1;
const PAGE: u64 = 4096;
const CHUNK: usize = 1 << 20;

/// Core-file errors.
#[derive(Debug, thiserror::Error)]
pub enum CoreDumpError {
    /// Creating or writing the file failed.
    #[error("cannot write core file {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Guest memory could not be read.
    #[error("cannot read guest memory at {gpa:#x}")]
    Memory {
        /// Where.
        gpa: u64,
    },
}

/// `struct elf_prstatus` for one vCPU.
fn prstatus(vcpu: u32, r: &CpuRegs) -> [u8; PRSTATUS_SIZE] {
    let mut b = [0u8; PRSTATUS_SIZE];
    // pr_pid (offset 32): gdb shows each vCPU as a thread "LWP n".
    b[32..36].copy_from_slice(&(vcpu + 1).to_le_bytes());
    let g = &r.regs;
    let s = &r.sregs;
    // struct user_regs_struct, in its order.
    let regs: [u64; 27] = [
        g.r15,
        g.r14,
        g.r13,
        g.r12,
        g.rbp,
        g.rbx,
        g.r11,
        g.r10,
        g.r9,
        g.r8,
        g.rax,
        g.rcx,
        g.rdx,
        g.rsi,
        g.rdi,
        u64::MAX, // orig_rax: not in a system call
        g.rip,
        u64::from(s.cs.selector),
        g.rflags,
        g.rsp,
        u64::from(s.ss.selector),
        s.fs.base,
        s.gs.base,
        u64::from(s.ds.selector),
        u64::from(s.es.selector),
        u64::from(s.fs.selector),
        u64::from(s.gs.selector),
    ];
    for (i, v) in regs.iter().enumerate() {
        let at = PR_REG_OFFSET + i * 8;
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// The note segment: one NT_PRSTATUS note per vCPU.
fn notes(cpus: &[CpuRegs]) -> Vec<u8> {
    let mut n = Vec::with_capacity(cpus.len() * (12 + 8 + PRSTATUS_SIZE));
    for (i, r) in cpus.iter().enumerate() {
        n.extend_from_slice(&5u32.to_le_bytes()); // namesz: "CORE\0"
        n.extend_from_slice(&u32::try_from(PRSTATUS_SIZE).unwrap_or(0).to_le_bytes());
        n.extend_from_slice(&NT_PRSTATUS.to_le_bytes());
        n.extend_from_slice(NOTE_NAME);
        n.extend_from_slice(&prstatus(u32::try_from(i).unwrap_or(u32::MAX), r));
    }
    n
}

fn ehdr(phnum: u16) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little endian
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[32..40].copy_from_slice(&EHDR_SIZE.to_le_bytes()); // e_phoff
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h[56..58].copy_from_slice(&phnum.to_le_bytes());
    h
}

#[allow(clippy::too_many_arguments)]
fn phdr(kind: u32, flags: u32, offset: u64, addr: u64, size: u64, align: u64) -> [u8; 56] {
    let mut p = [0u8; 56];
    p[..4].copy_from_slice(&kind.to_le_bytes());
    p[4..8].copy_from_slice(&flags.to_le_bytes());
    p[8..16].copy_from_slice(&offset.to_le_bytes());
    p[16..24].copy_from_slice(&addr.to_le_bytes()); // p_vaddr
    p[24..32].copy_from_slice(&addr.to_le_bytes()); // p_paddr
    p[32..40].copy_from_slice(&size.to_le_bytes()); // p_filesz
    p[40..48].copy_from_slice(&size.to_le_bytes()); // p_memsz
    p[48..56].copy_from_slice(&align.to_le_bytes());
    p
}

/// Writes the core of `mem` with the vCPUs' registers `cpus` to `path` (created, or truncated).
///
/// # Errors
/// The file cannot be written, or guest memory cannot be read.
pub fn write(path: &Path, cpus: &[CpuRegs], mem: &GuestMem) -> Result<(), CoreDumpError> {
    let file = File::create(path).map_err(|source| CoreDumpError::Io {
        path: path.display().to_string(),
        source,
    })?;
    write_to(file, &path.display().to_string(), cpus, mem)
}

/// As [`write()`], into `file` (open for writing, empty; `name` names it in errors).
///
/// # Errors
/// As [`write()`].
pub fn write_to(
    file: File,
    name: &str,
    cpus: &[CpuRegs],
    mem: &GuestMem,
) -> Result<(), CoreDumpError> {
    let io_err = |source| CoreDumpError::Io {
        path: name.to_owned(),
        source,
    };
    let regions: Vec<(u64, u64)> = mem
        .iter()
        .map(|r| (r.start_addr().raw_value(), r.len()))
        .collect();
    let notes = notes(cpus);
    let phnum = u16::try_from(regions.len() + 1).unwrap_or(u16::MAX);
    let headers_end = EHDR_SIZE + PHDR_SIZE * u64::from(phnum);
    let notes_len = u64::try_from(notes.len()).unwrap_or(u64::MAX);
    let mut offset = (headers_end + notes_len).div_ceil(PAGE) * PAGE;
    let mut out = BufWriter::new(file);
    out.write_all(&ehdr(phnum)).map_err(io_err)?;
    out.write_all(&phdr(4, 4, headers_end, 0, notes_len, 4))
        .map_err(io_err)?; // PT_NOTE
    let mut loads = Vec::new();
    for &(start, len) in &regions {
        out.write_all(&phdr(1, 7, offset, start, len, PAGE))
            .map_err(io_err)?; // PT_LOAD, RWX
        loads.push((offset, start, len));
        offset += len.div_ceil(PAGE) * PAGE;
    }
    out.write_all(&notes).map_err(io_err)?;
    let mut buf = vec![0u8; CHUNK];
    for (file_off, start, len) in loads {
        out.seek(SeekFrom::Start(file_off)).map_err(io_err)?;
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from((len - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            let gpa = start + done;
            mem.read_slice(&mut buf[..n], GuestAddress(gpa))
                .map_err(|_| CoreDumpError::Memory { gpa })?;
            out.write_all(&buf[..n]).map_err(io_err)?;
            done += n as u64;
        }
    }
    out.flush().map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_core_layout() {
        let mem = crate::vstate::memory::create_guest_memory(2 << 20).unwrap();
        mem.write_slice(b"domus core", GuestAddress(0x1000))
            .unwrap();
        let mut r = CpuRegs::default();
        r.regs.rip = 0x1234_5678;
        r.regs.rsp = 0x8000;
        r.sregs.cs.selector = 0x2b;
        let p = std::env::temp_dir().join(format!("domus-core-test-{}", std::process::id()));
        write(&p, &[r, CpuRegs::default()], &mem).unwrap();
        let f = std::fs::read(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(&f[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([f[16], f[17]]), 4, "ET_CORE");
        assert_eq!(
            u16::from_le_bytes([f[56], f[57]]),
            2,
            "PT_NOTE + one PT_LOAD"
        );
        // The note segment: two NT_PRSTATUS notes.
        let note_off = 64 + 2 * 56;
        assert_eq!(&f[note_off + 8..note_off + 12], &1u32.to_le_bytes());
        assert_eq!(&f[note_off + 12..note_off + 16], b"CORE");
        let desc = note_off + 20;
        let rip = desc + PR_REG_OFFSET + 16 * 8;
        assert_eq!(&f[rip..rip + 8], &0x1234_5678u64.to_le_bytes());
        let cs = desc + PR_REG_OFFSET + 17 * 8;
        assert_eq!(f[cs], 0x2b);
        let second = desc + PRSTATUS_SIZE;
        assert_eq!(&f[second + 8..second + 12], &1u32.to_le_bytes());
        // The load segment: guest RAM at its file offset.
        let ph = 64 + 56;
        let off =
            usize::try_from(u64::from_le_bytes(f[ph + 8..ph + 16].try_into().unwrap())).unwrap();
        assert_eq!(off % 4096, 0);
        assert_eq!(&f[off + 0x1000..off + 0x100a], b"domus core");
        assert_eq!(f.len(), off + (2 << 20));
    }
}
