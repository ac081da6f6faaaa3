//! rtnetlink from Rust without an async runtime: links (up, bridge master, MTU, MAC, bridges),
//! IPv4 addresses and host routes, on a blocking `NETLINK_ROUTE` socket ([`netlink_sys`]) with
//! messages built and parsed by [`netlink_packet_route`]. Every request asks for an ACK, so a
//! kernel refusal comes back as [`NetlinkError::Kernel`] naming the operation and the errno.
//!
//! The socket works in the network namespace of the thread that opened it, which is how the tests
//! confine themselves to namespaces they create.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType},
    AddressFamily, RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// What went wrong talking to the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, bound, written or read.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel refused a request.
    #[error("{op}: {source}")]
    Kernel {
        /// The operation, e.g. "set vif1.0 master bridge0".
        op: String,
        /// The errno the kernel gave.
        source: std::io::Error,
    },
    /// A reply that could not be decoded.
    #[error("{op}: undecodable netlink reply: {detail}")]
    Decode {
        /// The operation.
        op: String,
        /// What failed to decode.
        detail: String,
    },
    /// No interface of that name.
    #[error("no network interface named `{0}`")]
    NoSuchLink(String),
}

/// A link as a dump reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// ifindex.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// Hardware address.
    pub mac: Option<[u8; 6]>,
    /// ifindex of the bridge (or other master) this link is a port of.
    pub master: Option<u32>,
    /// IFF_UP.
    pub up: bool,
    /// `IFLA_INFO_KIND` (e.g. "bridge", "tun").
    pub kind: Option<String>,
}

/// A blocking rtnetlink connection.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        sock.set_ext_ack(true).ok();
        Ok(Self { sock, seq: 0 })
    }

    /// Sends one request and collects every reply message up to the ACK (or `NLMSG_DONE` for
    /// dumps).
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let bytes = &data[offset..];
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                        NetlinkError::Decode {
                            op: op.to_owned(),
                            detail: e.to_string(),
                        }
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(NetlinkError::Decode {
                        op: op.to_owned(),
                        detail: "zero-length message".into(),
                    });
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => {
                                if dump {
                                    continue;
                                }
                                Ok(out)
                            }
                            Some(code) => Err(NetlinkError::Kernel {
                                op: op.to_owned(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    /// All links.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let replies = self.request(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, if any (one `RTM_GETLINK` by name, no dump).
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        if !crate::tap::valid_ifname(name) {
            return Ok(None);
        }
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::IfName(name.to_owned())];
        match self.request(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(m),
            0,
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })),
            Err(NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The ifindex of `name`.
    pub fn index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_owned()))
    }

    fn set_link(
        &mut self,
        op: &str,
        name: &str,
        flags: Option<(LinkFlags, LinkFlags)>,
        attrs: Vec<LinkAttribute>,
    ) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        let mut m = LinkMessage::default();
        m.header.index = index;
        if let Some((f, mask)) = flags {
            m.header.flags = f;
            m.header.change_mask = mask;
        }
        m.attributes = attrs;
        self.request(op, RouteNetlinkMessage::SetLink(m), 0)?;
        Ok(())
    }

    /// Brings `name` up (or down).
    pub fn set_up(&mut self, name: &str, up: bool) -> Result<(), NetlinkError> {
        let f = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        self.set_link(
            &format!("set {name} {}", if up { "up" } else { "down" }),
            name,
            Some((f, LinkFlags::Up)),
            vec![],
        )
    }

    /// Makes `name` a port of the bridge `master` (or detaches it with `None`).
    pub fn set_master(&mut self, name: &str, master: Option<&str>) -> Result<(), NetlinkError> {
        let m = match master {
            Some(b) => self.index(b)?,
            None => 0,
        };
        self.set_link(
            &format!("set {name} master {}", master.unwrap_or("none")),
            name,
            None,
            vec![LinkAttribute::Controller(m)],
        )
    }

    /// Sets the MTU of `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        self.set_link(
            &format!("set {name} mtu {mtu}"),
            name,
            None,
            vec![LinkAttribute::Mtu(mtu)],
        )
    }

    /// Sets the hardware address of `name`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<(), NetlinkError> {
        self.set_link(
            &format!("set {name} address {}", crate::mac::format(mac)),
            name,
            None,
            vec![LinkAttribute::Address(mac.to_vec())],
        )
    }

    /// Creates a bridge (`ip link add NAME type bridge`); fails with EEXIST if it exists.
    pub fn add_bridge(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(
            &format!("add bridge {name}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Deletes the link `name`.
    pub fn delete_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.request(
            &format!("delete {name}"),
            RouteNetlinkMessage::DelLink(m),
            0,
        )?;
        Ok(())
    }

    /// Deletes the link `name` if it exists (a destroy's clean-up: works on a TAP whatever holds
    /// its descriptor).
    pub fn delete_link_if_exists(&mut self, name: &str) -> Result<(), NetlinkError> {
        match self.delete_link(name) {
            Err(NetlinkError::NoSuchLink(_)) => Ok(()),
            Err(NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(())
            }
            r => r,
        }
    }

    /// Adds `addr/prefix` to `name`; an address already present is not an error.
    pub fn add_address(
        &mut self,
        name: &str,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes = vec![
            AddressAttribute::Local(IpAddr::V4(addr)),
            AddressAttribute::Address(IpAddr::V4(addr)),
        ];
        match self.request(
            &format!("add address {addr}/{prefix} to {name}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(())
            }
            r => r.map(drop),
        }
    }

    /// IPv4 addresses of `name`, with their prefix lengths.
    pub fn addresses(&mut self, name: &str) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let index = self.index(name)?;
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let replies = self.request(
            "list addresses",
            RouteNetlinkMessage::GetAddress(m),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for r in replies {
            if let RouteNetlinkMessage::NewAddress(a) = r {
                if a.header.index != index {
                    continue;
                }
                for attr in &a.attributes {
                    if let AddressAttribute::Local(IpAddr::V4(ip)) = attr {
                        out.push((*ip, a.header.prefix_len));
                    }
                }
            }
        }
        Ok(out)
    }

    fn host_route(name_index: u32, dst: Ipv4Addr) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = 32;
        m.header.table = netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Link;
        m.header.kind = RouteType::Unicast;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(dst)),
            RouteAttribute::Oif(name_index),
        ];
        m
    }

    /// Adds the host route `dst/32 dev name` (Xen's vif-route); an existing one is replaced.
    pub fn add_host_route(&mut self, name: &str, dst: Ipv4Addr) -> Result<(), NetlinkError> {
        let index = self.index(name)?;
        self.request(
            &format!("add route {dst}/32 dev {name}"),
            RouteNetlinkMessage::NewRoute(Self::host_route(index, dst)),
            NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Removes the host route `dst/32 dev name`; a missing route or link is not an error.
    pub fn del_host_route(&mut self, name: &str, dst: Ipv4Addr) -> Result<(), NetlinkError> {
        let index = match self.index(name) {
            Ok(i) => i,
            Err(NetlinkError::NoSuchLink(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        match self.request(
            &format!("delete route {dst}/32 dev {name}"),
            RouteNetlinkMessage::DelRoute(Self::host_route(index, dst)),
            0,
        ) {
            Err(NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ESRCH) =>
            {
                Ok(())
            }
            r => r.map(drop),
        }
    }

    /// IPv4 unicast host routes (`/32`) through `name` in the main table.
    pub fn host_routes(&mut self, name: &str) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        let index = self.index(name)?;
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let replies = self.request("list routes", RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP)?;
        let mut out = Vec::new();
        for r in replies {
            if let RouteNetlinkMessage::NewRoute(rt) = r {
                if rt.header.destination_prefix_length != 32
                    || rt.header.table != netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN
                    || rt.header.kind != RouteType::Unicast
                {
                    continue;
                }
                let oif = rt.attributes.contains(&RouteAttribute::Oif(index));
                let dst = rt.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                    _ => None,
                });
                if let (true, Some(d)) = (oif, dst) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mtu: None,
        mac: None,
        master: None,
        up: l.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = Some(*m),
            LinkAttribute::Address(a) => link.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
            LinkAttribute::Controller(m) => link.master = Some(*m),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// Writes an IPv4 sysctl of interface `name` under `/proc/sys/net/ipv4/conf/` (e.g. `proxy_arp`).
/// sysctls have no rtnetlink form; this is the kernel's interface for them.
pub fn set_ipv4_conf(name: &str, key: &str, value: &str) -> std::io::Result<()> {
    if name.contains('/') || name.starts_with('.') || key.contains('/') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad interface or key name `{name}`/`{key}`"),
        ));
    }
    std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/{key}"), value)
}

/// Turns IPv4 forwarding on in the current network namespace (routed and NAT modes need it).
pub fn enable_ipv4_forwarding() -> std::io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
}
