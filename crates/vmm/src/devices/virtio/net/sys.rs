//! The TUN/TAP system calls the net device needs (linux/if_tun.h): attach to a TAP by name, query an
//! inherited TAP's flags, set the vnet header size and the offloads, and scatter/gather I/O. Each
//! wrapper holds exactly one `unsafe` call, on a file descriptor the caller owns.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// IFF_TAP: Ethernet frames.
pub const IFF_TAP: i16 = 0x0002;
/// IFF_NO_PI: no packet-information prefix.
pub const IFF_NO_PI: i16 = 0x1000;
/// IFF_VNET_HDR: every frame carries a virtio-net header.
pub const IFF_VNET_HDR: i16 = 0x4000;

/// TUN_F_CSUM: the TAP may hand us frames whose checksum is partial.
pub const TUN_F_CSUM: u32 = 0x01;
/// TUN_F_TSO4.
pub const TUN_F_TSO4: u32 = 0x02;
/// TUN_F_TSO6.
pub const TUN_F_TSO6: u32 = 0x04;
/// TUN_F_TSO_ECN.
pub const TUN_F_TSO_ECN: u32 = 0x08;
/// TUN_F_USO4 (Linux 6.2+).
pub const TUN_F_USO4: u32 = 0x20;
/// TUN_F_USO6 (Linux 6.2+).
pub const TUN_F_USO6: u32 = 0x40;

// _IOW('T', 202, int), _IOR('T', 210, unsigned int), _IOW('T', 208, unsigned int), _IOW('T', 216, int).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// `struct ifreq` as TUNSETIFF/TUNGETIFF use it: the name and the flags (the union's first member).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: i16,
    pad: [u8; 22],
}

/// Whether an interface called `name` exists in this network namespace.
pub fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// TUNSETIFF on `fd` (an open /dev/net/tun) for the existing interface `name` with `flags`.
///
/// # Errors
/// The kernel refused (not a TAP, busy, no permission).
pub fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: i16) -> io::Result<()> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags,
        pad: [0; 22],
    };
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `fd` is an open /dev/net/tun; `req` is a valid ifreq for TUNSETIFF, read by the kernel.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &raw mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNGETIFF: the interface name and flags of an attached TAP fd.
///
/// # Errors
/// `fd` is not an attached TUN/TAP descriptor.
pub fn get_iff(fd: BorrowedFd<'_>) -> io::Result<(String, i16)> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        pad: [0; 22],
    };
    // SAFETY: `req` is a writable ifreq the kernel fills for TUNGETIFF.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &raw mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    let name = String::from_utf8_lossy(req.name.get(..end).unwrap_or_default()).into_owned();
    Ok((name, req.flags))
}

/// Sets O_NONBLOCK on `fd`.
///
/// # Errors
/// fcntl(2) failed.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL on an open descriptor reads no memory.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL on an open descriptor reads no memory.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETOFFLOAD: which offloaded frames the TAP may hand us.
///
/// # Errors
/// The kernel does not know a flag (e.g. USO before Linux 6.2: EINVAL).
pub fn set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETVNETHDRSZ.
///
/// # Errors
/// The kernel refused the size.
pub fn set_vnet_hdr_size(fd: BorrowedFd<'_>, size: i32) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer, which points at `size`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &raw const size) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// readv(2) into `iov`.
///
/// # Errors
/// As readv(2) (EAGAIN when the TAP has nothing).
///
/// # Safety
/// Every entry of `iov` must describe memory that is valid for writes for its length.
pub unsafe fn readv(fd: BorrowedFd<'_>, iov: &[libc::iovec]) -> io::Result<usize> {
    let n = libc::c_int::try_from(iov.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: the caller guarantees the iovecs are writable; `n` is at most their count.
    let r = unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), n) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// read(2) into `buf`: one segment, which the kernel copies to without walking an iovec array.
///
/// # Errors
/// As read(2) (EAGAIN when the non-blocking TAP holds no frame).
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its whole length.
    let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// writev(2) from `iov`.
///
/// # Errors
/// As writev(2) (EINVAL for a frame the kernel rejects, e.g. a bad GSO header).
///
/// # Safety
/// Every entry of `iov` must describe memory that is valid for reads for its length.
pub unsafe fn writev(fd: BorrowedFd<'_>, iov: &[libc::iovec]) -> io::Result<usize> {
    let n = libc::c_int::try_from(iov.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: the caller guarantees the iovecs are readable; `n` is at most their count.
    let r = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), n) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}
