//! The host side of a NIC: a TAP file descriptor with a virtio-net header on every frame
//! (IFF_VNET_HDR, header size 12 = `virtio_net_hdr_v1`, the VERSION_1 layout), non-blocking.
//!
//! domus-vmm never creates or configures host interfaces: [`Tap::open`] attaches to an existing TAP
//! (made beforehand, e.g. `ip tuntap add dev NAME mode tap`, or by domusd), and [`Tap::from_fd`]
//! takes one handed over as an inherited descriptor. Offloads are mirrored from what the guest
//! negotiated ([`Tap::set_offload`]); UDP segmentation offload is used only where this kernel's TAP
//! knows it ([`Tap::has_uso`], probed at open).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::sys;
use super::HDR_LEN;

/// The TAP cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// No interface of that name.
    #[error("TAP device {name} does not exist in this network namespace: create it first (e.g. `ip tuntap add dev {name} mode tap`)")]
    Missing {
        /// Interface name.
        name: String,
    },
    /// /dev/net/tun cannot be opened.
    #[error("cannot open /dev/net/tun (for TAP device {name})")]
    OpenTun {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The kernel refused to attach (not a TAP, or busy).
    #[error("cannot attach to {name}: is it a TAP device (`ip tuntap add dev {name} mode tap`) not used by another process?")]
    Attach {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An inherited descriptor is not a TAP with a vnet header.
    #[error("inherited descriptor is not a TAP opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR")]
    NotTap {
        /// Cause (TUNGETIFF), if the ioctl failed.
        #[source]
        source: Option<io::Error>,
    },
    /// TUNSETVNETHDRSZ failed.
    #[error("cannot set the vnet header size of TAP {name}")]
    HdrSize {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// An attached TAP.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    uso: bool,
    /// A datagram socket standing in for a TAP in unit tests (offload ioctls are no-ops).
    fake: bool,
}

impl Tap {
    /// Attaches to the existing TAP `name` (never creates one).
    ///
    /// # Errors
    /// [`TapError::Missing`] when there is no such interface, else what the kernel refused.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if !sys::interface_exists(name) {
            return Err(TapError::Missing { name: name.into() });
        }
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|source| TapError::OpenTun {
                name: name.into(),
                source,
            })?;
        let flags = sys::IFF_TAP | sys::IFF_NO_PI | sys::IFF_VNET_HDR;
        sys::set_iff(file.as_fd(), name, flags).map_err(|source| TapError::Attach {
            name: name.into(),
            source,
        })?;
        Self::finish(OwnedFd::from(file), name.into())
    }

    /// Takes an inherited TAP descriptor (opened by domusd with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR).
    ///
    /// # Errors
    /// [`TapError::NotTap`] when it is something else.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, TapError> {
        let (name, flags) =
            sys::get_iff(fd.as_fd()).map_err(|e| TapError::NotTap { source: Some(e) })?;
        let want = sys::IFF_TAP | sys::IFF_NO_PI | sys::IFF_VNET_HDR;
        if flags & want != want {
            return Err(TapError::NotTap { source: None });
        }
        sys::set_nonblocking(fd.as_fd()).map_err(|e| TapError::NotTap { source: Some(e) })?;
        Self::finish(fd, name)
    }

    fn finish(fd: OwnedFd, name: String) -> Result<Self, TapError> {
        let size = i32::try_from(HDR_LEN).unwrap_or(12);
        sys::set_vnet_hdr_size(fd.as_fd(), size).map_err(|source| TapError::HdrSize {
            name: name.clone(),
            source,
        })?;
        // Run-time detection of UDP segmentation offload (Linux 6.2+): the kernel refuses flags it
        // does not know. Then no offloads until the guest negotiates some.
        let uso = sys::set_offload(
            fd.as_fd(),
            sys::TUN_F_CSUM | sys::TUN_F_USO4 | sys::TUN_F_USO6,
        )
        .is_ok();
        // Best effort: a TAP that refuses 0 simply keeps what it had.
        let _ignored = sys::set_offload(fd.as_fd(), 0);
        Ok(Self {
            fd,
            name,
            uso,
            fake: false,
        })
    }

    /// A datagram socket standing in for a TAP (unit tests: same framing, no ioctls).
    #[cfg(test)]
    pub fn fake(fd: OwnedFd) -> Self {
        Self {
            fd,
            name: "fake".into(),
            uso: false,
            fake: true,
        }
    }

    /// As [`Tap::fake`], for a kernel whose TAP takes UDP segmentation offload.
    #[cfg(test)]
    pub fn fake_uso(fd: OwnedFd) -> Self {
        Self {
            uso: true,
            ..Self::fake(fd)
        }
    }

    /// The descriptor (a sandboxed standalone VMM opens its TAPs before it locks itself in).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this kernel's TAP takes UDP segmentation offload.
    pub fn has_uso(&self) -> bool {
        self.uso
    }

    /// TUNSETOFFLOAD with `TUN_F_*` flags.
    ///
    /// # Errors
    /// The kernel refused the flags.
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        if self.fake {
            return Ok(());
        }
        sys::set_offload(self.fd.as_fd(), flags)
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
