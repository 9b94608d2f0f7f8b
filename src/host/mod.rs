//! The director's own presence on the LAN in tap mode: a smoltcp
//! [`Interface`] that owns the director's addresses (the DIPs given with
//! `tunvs run --address`), answers ARP for them and ICMP echo to them, and
//! will carry the health checkers' TCP sockets.
//!
//! It is fed from the data path's queues through a [`FeedDevice`] (the
//! "custom Device" pattern of crates-and-tun.md §3): the L2 layer hands it
//! only the frames that are for the director itself — ARP asking for or
//! answering a DIP, and IP addressed to a DIP — and writes whatever smoltcp
//! emits back to the device. Forwarded traffic never reaches it.
//!
//! The VIPs are not given to smoltcp (it holds at most a few addresses, and
//! services come and go at run time): the L2 layer answers ARP and ICMP echo
//! for them itself (`dataplane::l2`).
//!
//! Time comes in as an argument (milliseconds of the caller's clock); the
//! worker loop calls [`Host::poll`] when [`Host::poll_delay`] says so.

use std::collections::VecDeque;
use std::net::IpAddr;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

use crate::dataplane::neigh::Mac;

/// Largest Ethernet frame smoltcp sends (1500-byte IP MTU + 14).
pub const FRAME_MTU: usize = 1514;
/// Frames waiting in either direction before the oldest are dropped.
const QUEUE_MAX: usize = 64;

/// A smoltcp device fed by the data path: received frames are pushed in,
/// transmitted frames are collected. Buffers are recycled, so a steady
/// exchange allocates nothing.
#[derive(Debug, Default)]
pub struct FeedDevice {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    free: Vec<Vec<u8>>,
}

impl FeedDevice {
    fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.free.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// Queue a received frame for smoltcp (the oldest is dropped when full).
    pub fn push_rx(&mut self, frame: &[u8]) {
        if self.rx.len() >= QUEUE_MAX {
            if let Some(b) = self.rx.pop_front() {
                self.free.push(b);
            }
        }
        let mut b = self.buffer();
        b.extend_from_slice(frame);
        self.rx.push_back(b);
    }

    /// Take every frame smoltcp transmitted, oldest first.
    pub fn drain_tx(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(b) = self.tx.pop_front() {
            f(&b);
            self.free.push(b);
            n += 1;
        }
        n
    }
}

/// Receive token: one frame popped from the feed queue.
#[derive(Debug)]
pub struct RxTok(Vec<u8>);

/// Transmit token: pushes the frame smoltcp builds onto the tx queue.
#[derive(Debug)]
pub struct TxTok<'a> {
    tx: &'a mut VecDeque<Vec<u8>>,
    free: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxTok {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl phy::TxToken for TxTok<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut b = self.free.pop().unwrap_or_default();
        b.clear();
        b.resize(len, 0);
        let r = f(&mut b);
        if self.tx.len() >= QUEUE_MAX {
            self.tx.pop_front();
        }
        self.tx.push_back(b);
        r
    }
}

impl phy::Device for FeedDevice {
    type RxToken<'a> = RxTok;
    type TxToken<'a> = TxTok<'a>;

    fn receive(&mut self, _ts: Instant) -> Option<(RxTok, TxTok<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((
            RxTok(frame),
            TxTok {
                tx: &mut self.tx,
                free: &mut self.free,
            },
        ))
    }

    fn transmit(&mut self, _ts: Instant) -> Option<TxTok<'_>> {
        Some(TxTok {
            tx: &mut self.tx,
            free: &mut self.free,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = FRAME_MTU;
        // Frames come from the local kernel (a bridge port): checksums may be
        // partial (virtio NEEDS_CSUM) and are trusted, as the kernel trusts
        // CHECKSUM_PARTIAL; smoltcp computes its own on transmit.
        caps.checksum = ChecksumCapabilities::ignored();
        caps.checksum.ipv4 = Checksum::Tx;
        caps.checksum.tcp = Checksum::Tx;
        caps.checksum.udp = Checksum::Tx;
        caps.checksum.icmpv4 = Checksum::Tx;
        caps.checksum.icmpv6 = Checksum::Tx;
        caps
    }
}

/// The director's own interface.
pub struct Host {
    iface: Interface,
    dev: FeedDevice,
    sockets: SocketSet<'static>,
    addrs: Vec<(IpAddr, u8)>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

fn ts(now_ms: u64) -> Instant {
    Instant::from_millis(now_ms as i64)
}

impl Host {
    /// An interface with MAC `mac` owning `addrs` (address, prefix length),
    /// with a default route via `gateway` when given.
    pub fn new(
        mac: Mac,
        addrs: &[(IpAddr, u8)],
        gateway: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<Host, String> {
        if addrs.len() > smoltcp::config::IFACE_MAX_ADDR_COUNT {
            return Err(format!(
                "at most {} director addresses (--address), not {}",
                smoltcp::config::IFACE_MAX_ADDR_COUNT,
                addrs.len()
            ));
        }
        let mut dev = FeedDevice::default();
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        let mut iface = Interface::new(config, &mut dev, ts(now_ms));
        let mut err = None;
        iface.update_ip_addrs(|ips| {
            for &(a, len) in addrs {
                if ips.push(IpCidr::new(IpAddress::from(a), len)).is_err() {
                    err = Some(format!("cannot add director address {a}/{len}"));
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        match gateway {
            Some(IpAddr::V4(g)) => {
                iface
                    .routes_mut()
                    .add_default_ipv4_route(g)
                    .map_err(|_| "cannot add the default route".to_string())?;
            }
            Some(IpAddr::V6(g)) => {
                iface
                    .routes_mut()
                    .add_default_ipv6_route(g)
                    .map_err(|_| "cannot add the default route".to_string())?;
            }
            None => {}
        }
        Ok(Host {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            addrs: addrs.to_vec(),
        })
    }

    /// Hand a received Ethernet frame (no virtio header) to smoltcp, let it
    /// work, and pass every frame it transmits to `emit`.
    pub fn receive(&mut self, now_ms: u64, frame: &[u8], emit: &mut dyn FnMut(&[u8])) -> usize {
        self.dev.push_rx(frame);
        self.poll(now_ms, emit)
    }

    /// Run smoltcp's timers and queues; pass what it transmits to `emit`.
    /// Returns the number of frames emitted.
    pub fn poll(&mut self, now_ms: u64, emit: &mut dyn FnMut(&[u8])) -> usize {
        self.iface
            .poll(ts(now_ms), &mut self.dev, &mut self.sockets);
        self.dev.drain_tx(|f| emit(f))
    }

    /// Milliseconds until smoltcp next needs [`Host::poll`] (None: no timer).
    pub fn poll_delay(&mut self, now_ms: u64) -> Option<u64> {
        self.iface
            .poll_delay(ts(now_ms), &self.sockets)
            .map(|d| d.total_millis())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::Ipv4Addr;

    const MAC: Mac = [0x02, 0, 0, 0, 0, 1];

    fn dip() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1))
    }

    /// An ARP request for the DIP from 172.16.0.2 (02:00:00:00:00:02).
    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 2, 172, 16, 0, 2]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    #[test]
    fn answers_arp_for_its_address_only() {
        let mut h = Host::new(MAC, &[(dip(), 24)], None, 0).unwrap();
        let mut out = Vec::new();
        h.receive(1, &arp_request([172, 16, 0, 1]), &mut |f| {
            out.push(f.to_vec())
        });
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(&r[0..6], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&r[6..12], &MAC);
        assert_eq!(&r[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&r[22..28], &MAC);
        assert_eq!(&r[28..32], &[172, 16, 0, 1]);
        out.clear();
        h.receive(2, &arp_request([172, 16, 0, 9]), &mut |f| {
            out.push(f.to_vec())
        });
        assert!(out.is_empty(), "not ours: no answer");
    }

    #[test]
    fn too_many_addresses_are_refused() {
        let many: Vec<(IpAddr, u8)> = (1..=9)
            .map(|i| (IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), 24))
            .collect();
        assert!(Host::new(MAC, &many, None, 0).is_err());
    }
}
