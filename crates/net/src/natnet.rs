//! The NAT network domusd manages on the host, like libvirt's default network: one bridge with
//! the subnet's first address, dnsmasq for DHCP and DNS (leases and static leases in the state
//! directory), IPv4 forwarding, and masquerade in the `domus` nftables table. It exists while at
//! least one NAT vif does: [`NatNetwork::reconcile`] brings it up for the first, updates the
//! static leases and rules as vifs come and go, and takes it down after the last. Reconciling from
//! the same records twice changes nothing, so a restarted domusd can call it freely.
//!
//! Order for a create: reconcile with the new NAT vif included (the bridge must exist before the
//! vif is plumbed into it), plumb, then reconcile again if the vif has `ip=` (anti-spoofing hooks
//! the TAP's ingress: this host's 6.18 kernel accepts a hook on a missing device, older ones may not). For a
//! destroy: unplumb, then reconcile without the domain's vifs.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::dnsmasq::{DhcpNet, Dnsmasq, DnsmasqError};
use crate::globalconf::NetDefaults;
use crate::netlink::{Netlink, NetlinkError};
use crate::nft::{AntiSpoof, Masquerade, NftError, Ruleset};

/// What went wrong with the NAT network.
#[derive(Debug, thiserror::Error)]
pub enum NatError {
    /// Bridge or address.
    #[error("NAT network: {0}")]
    Netlink(#[from] NetlinkError),
    /// dnsmasq.
    #[error("NAT network: {0}")]
    Dnsmasq(#[from] DnsmasqError),
    /// nftables.
    #[error("NAT network: {0}")]
    Nft(#[from] NftError),
    /// Forwarding sysctl.
    #[error("NAT network: enabling IPv4 forwarding: {0}")]
    Forwarding(std::io::Error),
}

/// A NAT vif as the NAT network needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatVif {
    /// The guest's MAC.
    pub mac: [u8; 6],
    /// `ip=`: the first address becomes a static lease.
    pub ips: Vec<Ipv4Addr>,
}

/// The NAT network and its dnsmasq.
pub struct NatNetwork {
    defaults: NetDefaults,
    dir: PathBuf,
    dnsmasq: Option<Dnsmasq>,
}

impl NatNetwork {
    /// The network described by `defaults`, with dnsmasq's files under `dir` (adopting a running
    /// dnsmasq a previous domusd left there).
    pub fn new(defaults: NetDefaults, dir: PathBuf) -> Self {
        let dnsmasq = Dnsmasq::adopt(&dir);
        Self {
            defaults,
            dir,
            dnsmasq,
        }
    }

    /// The DHCP network.
    pub fn dhcp(&self) -> DhcpNet {
        DhcpNet {
            bridge: self.defaults.nat_bridge.clone(),
            network: self.defaults.nat_network,
            prefix: self.defaults.nat_prefix,
        }
    }

    /// The running dnsmasq's pid, if any.
    pub fn dnsmasq_pid(&self) -> Option<i32> {
        self.dnsmasq.as_ref().map(Dnsmasq::pid)
    }

    /// Makes the host match the records: the NAT vifs (all running domains' vifs in NAT mode)
    /// and every `ip=` vif's anti-spoofing rule. Restarts a dnsmasq that died.
    pub fn reconcile(
        &mut self,
        nl: &mut Netlink,
        nat_vifs: &[NatVif],
        antispoof: &[AntiSpoof],
    ) -> Result<(), NatError> {
        let net = self.dhcp();
        let masquerade = if nat_vifs.is_empty() {
            None
        } else {
            Some(Masquerade {
                network: net.network,
                prefix: net.prefix,
                uplink: self.defaults.gatewaydev.clone(),
                bridge: net.bridge.clone(),
            })
        };
        if nat_vifs.is_empty() {
            Ruleset {
                masquerade,
                antispoof: antispoof.to_vec(),
            }
            .apply()?;
            if let Some(d) = self.dnsmasq.take() {
                d.stop();
            }
            nl.delete_link_if_exists(&net.bridge)?;
            return Ok(());
        }
        if nl.link(&net.bridge)?.is_none() {
            nl.add_bridge(&net.bridge)?;
        }
        nl.add_address(&net.bridge, net.host_addr(), net.prefix)?;
        nl.set_up(&net.bridge, true)?;
        crate::netlink::enable_ipv4_forwarding().map_err(NatError::Forwarding)?;
        Ruleset {
            masquerade,
            antispoof: antispoof.to_vec(),
        }
        .apply()?;
        let leases: Vec<_> = nat_vifs
            .iter()
            .filter_map(|v| v.ips.first().map(|ip| (v.mac, *ip)))
            .collect();
        crate::dnsmasq::write_static_leases(
            &crate::dnsmasq::DnsmasqFiles::in_dir(&self.dir),
            &leases,
        )?;
        let alive = self.dnsmasq.as_mut().is_some_and(Dnsmasq::running);
        match &self.dnsmasq {
            Some(d) if alive => d.set_static_leases(&leases)?,
            _ => self.dnsmasq = Some(Dnsmasq::start(&self.dir, &net)?),
        }
        Ok(())
    }
}
