//! TAP creation with the TUNSETIFF ioctl (the kernel creates TAPs only this way, not over
//! netlink). The descriptor is opened `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, which is what
//! domus-vmm's virtio-net device checks (TUNGETIFF) on the descriptor it inherits, and made
//! persistent (TUNSETPERSIST) so that the interface survives domusd: a restarted domusd finds the
//! running domain's TAP by name and a destroy deletes it by name over netlink
//! ([`crate::netlink::Netlink::delete_link_if_exists`]), whoever holds its descriptor.

use std::ffi::CStr;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

/// IFF_TAP: Ethernet frames.
pub const IFF_TAP: i16 = 0x0002;
/// IFF_NO_PI: no packet-information prefix.
pub const IFF_NO_PI: i16 = 0x1000;
/// IFF_VNET_HDR: every frame carries a virtio-net header.
pub const IFF_VNET_HDR: i16 = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;

/// The MAC Xen's Linux backend gives every vif's host side, so that a bridge without a fixed
/// address never takes a vif's MAC as its own (a bridge uses its lowest port MAC).
pub const HOST_SIDE_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];

/// Linux's IFNAMSIZ less the terminating NUL.
pub const MAX_IFNAME: usize = 15;

/// What went wrong creating a TAP.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error("`{0}` is not a valid interface name (1-15 characters, no '/', ':', spaces or NUL)")]
    BadName(String),
    /// /dev/net/tun could not be opened.
    #[error("opening /dev/net/tun: {0}")]
    Open(std::io::Error),
    /// TUNSETIFF or TUNSETPERSIST failed.
    #[error("{op} for TAP `{name}`: {source}")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// The TAP name.
        name: String,
        /// The errno.
        source: std::io::Error,
    },
}

/// Checks an interface name as the kernel's `dev_valid_name` does.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

fn ioctl(
    file: &File,
    op: &'static str,
    req: libc::c_ulong,
    arg: libc::c_ulong,
    name: &str,
) -> Result<(), TapError> {
    // SAFETY: `req` is TUNSETIFF (arg points at a live, correctly sized ifreq) or TUNSETPERSIST
    // (arg is an integer); the descriptor is an open /dev/net/tun.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), req, arg) };
    if r < 0 {
        return Err(TapError::Ioctl {
            op,
            name: name.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Creates (or attaches to, if a persistent TAP of that name exists and is free) the TAP `name`,
/// persistent, and returns its descriptor for the VMM. Fails with EBUSY if another process holds
/// it, and with EINVAL/EEXIST if a non-TAP interface has the name.
pub fn create_tap(name: &str) -> Result<OwnedFd, TapError> {
    if !valid_ifname(name) {
        return Err(TapError::BadName(name.to_owned()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(TapError::Open)?;
    let mut req = IfReq {
        name: [0; 16],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // A process forked by another thread holds a copy of a just-closed descriptor until it execs:
    // give such a copy a moment to go before calling the TAP busy.
    let mut tries = 0;
    loop {
        match ioctl(
            &file,
            "TUNSETIFF",
            TUNSETIFF,
            std::ptr::addr_of_mut!(req) as libc::c_ulong,
            name,
        ) {
            Err(TapError::Ioctl { source, .. })
                if source.raw_os_error() == Some(libc::EBUSY) && tries < 20 =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => break r?,
        }
    }
    ioctl(&file, "TUNSETPERSIST", TUNSETPERSIST, 1, name)?;
    let got = CStr::from_bytes_until_nul(&req.name)
        .ok()
        .and_then(|c| c.to_str().ok())
        .unwrap_or_default();
    if got != name {
        return Err(TapError::BadName(name.to_owned()));
    }
    Ok(OwnedFd::from(file))
}
