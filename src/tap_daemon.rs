//! `tunvs run --device tap`: the daemon in L2 mode.
//!
//! tunvs opens a TAP device (virtio-net header and offloads, one queue per
//! worker), sets it up and, with `--bridge BR`, enslaves it to that bridge:
//! the TAP's kernel side is then just a bridge port (no address on it) and
//! tunvs is a host on the bridge's LAN, with its own MAC and the addresses
//! given with `--address` (the DIPs). Nothing else on the host is touched —
//! no policy rules, no routes, no sysctls: a VIP reaches the director
//! because the router routes it to a DIP, or because the director answers
//! ARP for it.
//!
//! Each worker runs an [`L2Pipeline`] on its queue. The smoltcp interface
//! that owns the DIPs ([`Host`]) and the neighbour table are shared; the
//! first worker runs smoltcp's timers and announces the DIPs (gratuitous
//! ARP) at start.
//!
//! Tunnel destinations (`-i`) get their route — outer source DIP and the
//! link MTU — from tap mode's own addressing ([`l2_tunnel`]): when they are
//! added (the director hooks) and on every housekeeping tick, which also
//! re-reads the link MTU (the TAP's, and the bridge's when enslaved).

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::adm;
use crate::control;
use crate::daemon::RunOpts;
use crate::dataplane::buf::PacketBuf;
use crate::dataplane::device::{Device, DeviceConfig, DeviceKind, Queue};
use crate::dataplane::drop::{Counters, DropReason};
use crate::dataplane::l2::{L2Config, L2Counters, L2Pipeline, L2Verdict};
use crate::dataplane::l2_tunnel;
use crate::dataplane::neigh::{Mac, NeighTable};
use crate::dataplane::pipeline::{Methods, Pipeline};
use crate::dataplane::queue_loop::{self, FrameHandler};
use crate::dataplane::xmit_tunnel::TunnelRoutes;
use crate::director::{Director, Hooks};
use crate::host::Host;
use crate::netcfg::Netlink;
use crate::packet::vnet::VNET_HDR_LEN;
use crate::service::{DestSpec, FwdMethod, SvcId};

/// Buffer: virtio header + Ethernet header + the largest GSO packet.
pub const TAP_BUF_LEN: usize = VNET_HDR_LEN + 14 + 65536;

/// The tap-mode options of `tunvs run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapOpts {
    /// The director's own addresses (DIPs) with prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Next hop for destinations beyond the DIPs' links.
    pub gateway: Option<IpAddr>,
    /// Bridge to enslave the TAP to.
    pub bridge: Option<String>,
    /// The director's MAC (default: derived from the device name and the
    /// addresses, so it is stable across restarts).
    pub mac: Option<Mac>,
}

/// Parse `ADDR/LEN` (a bare address is a host address, /32 or /128).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{s:?} is not an address (ADDR/PREFIX, e.g. 172.16.0.1/24)"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .parse::<u8>()
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        None => max,
    };
    Ok((addr, len))
}

/// Parse a MAC `aa:bb:cc:dd:ee:ff` (unicast only).
pub fn parse_mac(s: &str) -> Result<Mac, String> {
    let bad = || format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)");
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if m[0] & 1 != 0 {
        return Err(format!(
            "{s}: a group (multicast) address cannot be a host's"
        ));
    }
    Ok(m)
}

/// The default MAC: locally administered, unicast, from an FNV-1a hash of
/// the device name and the addresses (stable across restarts, so the
/// neighbours' ARP caches stay right).
pub fn default_mac(dev: &str, addrs: &[(IpAddr, u8)]) -> Mac {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(dev.as_bytes());
    for (a, l) in addrs {
        eat(a.to_string().as_bytes());
        eat(&[*l]);
    }
    let b = h.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

/// Format a MAC.
pub fn mac_string(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Tap mode's hooks: nothing to steer; tunnel destinations get their route
/// at once; warn about what it cannot carry.
#[derive(Debug)]
struct TapHooks {
    dev: String,
    cfg: Arc<L2Config>,
    routes: Arc<TunnelRoutes>,
    mtu: Arc<AtomicU32>,
}

impl Hooks for TapHooks {
    fn service_added(&self, id: &SvcId) -> Result<(), String> {
        match id {
            SvcId::Addr { .. } => Ok(()),
            SvcId::Fwmark { .. } => {
                Err("firewall-mark services are not available in tap mode".into())
            }
        }
    }

    fn dest_added(&self, _svc: &SvcId, d: &DestSpec) -> Result<(), String> {
        // The route now, so the first packet finds it (housekeeping keeps
        // it up to date); one without a route is warned about below.
        if d.fwd == FwdMethod::Tunnel && d.addr.is_ipv4() {
            l2_tunnel::resolve_into(&self.routes, &self.cfg, d.addr, self.mtu.load(Relaxed));
        }
        Ok(())
    }

    fn dest_warning(&self, d: &DestSpec) -> Option<String> {
        match d.fwd {
            FwdMethod::Masq | FwdMethod::Route => None,
            FwdMethod::Tunnel if d.addr.is_ipv4() => l2_tunnel::tunnel_source(&self.cfg, d.addr)
                .is_none()
                .then(|| {
                    format!(
                        "tunvs: warning: no route to tunnel real server {}: it is on none of the \
                         --address links of {} and there is no --gateway on one; connections \
                         scheduled to it are dropped and counted as tunnel_no_route.",
                        d.addr, self.dev
                    )
                }),
            FwdMethod::Tunnel => Some(format!(
                "tunvs: warning: tunnelling to IPv6 real servers is not available yet; \
                 connections scheduled to {} are dropped and counted as tunnel_ipv6_outer.",
                d.addr
            )),
            FwdMethod::Local => Some(format!(
                "tunvs: warning: forwarding method {} is not available on {} (tap mode); \
                 connections scheduled to {} are dropped and counted as method_unavailable. \
                 Use -g (direct routing), -m (NAT) or -i (tunnelling).",
                d.fwd.name(),
                self.dev,
                d.addr
            )),
        }
    }
}

/// The MTU of the TAP's link: the TAP's own, and the bridge's when it is
/// enslaved (a bridge drops frames above a port's MTU, and its own MTU
/// follows its smallest port's).
fn link_mtu(nl: &mut Netlink, dev: &str, bridge: Option<&str>) -> io::Result<u32> {
    let mut mtu = nl.link_get(dev)?.mtu;
    if let Some(br) = bridge {
        mtu = mtu.min(nl.link_get(br)?.mtu);
    }
    Ok(mtu)
}

/// Run the daemon in tap mode until a signal in `sigset` arrives.
pub(crate) fn run(
    opts: &RunOpts,
    config: Vec<(usize, adm::Command)>,
    sigset: &libc::sigset_t,
) -> Result<(), String> {
    let tap = &opts.tap;
    if !tap.addresses.iter().any(|(a, _)| a.is_ipv4()) {
        return Err(
            "--device tap needs the director's own IPv4 address on the LAN (the DIP): \
             add --address ADDR/PREFIX, e.g. --address 172.16.0.1/24"
                .into(),
        );
    }
    let mut dev = Device::open(&DeviceConfig {
        name: opts.dev.clone(),
        kind: DeviceKind::Tap,
        queues: opts.queues.max(1),
        offload: opts.offload,
    })
    .map_err(|e| format!("cannot open device {}: {e}", opts.dev))?;
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let mut enslaved = false;
    if let Some(br) = &tap.bridge {
        let master = nl.link_index(br).map_err(|e| {
            format!("bridge {br}: {e} (create it first: ip link add {br} type bridge)")
        })?;
        nl.link_set_master(dev.ifindex, master)
            .map_err(|e| format!("cannot enslave {} to bridge {br}: {e}", dev.name))?;
        enslaved = true;
    }
    // A longer transmit queue avoids drops under bursts (crates-and-tun.md §5).
    let _ = nl.link_set_txqueuelen(dev.ifindex, 5000);
    nl.link_set_up(dev.ifindex, true)
        .map_err(|e| format!("cannot set {} up: {e}", dev.name))?;

    let mac = tap
        .mac
        .unwrap_or_else(|| default_mac(&dev.name, &tap.addresses));
    let cfg = Arc::new(L2Config {
        mac,
        addrs: tap.addresses.clone(),
        gateway: tap.gateway,
        vnet: dev.vnet,
    });
    let mtu = link_mtu(&mut nl, &dev.name, tap.bridge.as_deref())
        .map_err(|e| format!("cannot read the MTU of {}: {e}", dev.name))?;
    let tunnel = TapTunnel {
        routes: Arc::new(TunnelRoutes::new()),
        mtu: Arc::new(AtomicU32::new(mtu)),
    };
    let director = Arc::new(Director::new());
    director.set_hooks(Arc::new(TapHooks {
        dev: dev.name.clone(),
        cfg: cfg.clone(),
        routes: tunnel.routes.clone(),
        mtu: tunnel.mtu.clone(),
    }));
    let now = crate::util::now_ms();
    let host = Arc::new(Mutex::new(Host::new(
        mac,
        &tap.addresses,
        tap.gateway,
        now,
    )?));
    let neigh = Arc::new(NeighTable::new());
    let queues = std::mem::take(&mut dev.queues);
    let result = serve(
        opts, &dev, queues, director, config, cfg, host, neigh, tunnel, sigset,
    );
    if enslaved {
        // A persistent device outlives us: give its port back.
        if let Ok(ix) = nl.link_index(&dev.name) {
            let _ = nl.link_set_master(ix, 0);
        }
    }
    let _ = std::fs::remove_file(&opts.control);
    result
}

/// What the workers and the housekeeping share for tunnel destinations.
struct TapTunnel {
    routes: Arc<TunnelRoutes>,
    /// The link MTU, re-read every housekeeping tick.
    mtu: Arc<AtomicU32>,
}

#[allow(clippy::too_many_arguments)]
fn serve(
    opts: &RunOpts,
    dev: &Device,
    queues: Vec<Queue>,
    director: Arc<Director>,
    config: Vec<(usize, adm::Command)>,
    cfg: Arc<L2Config>,
    host: Arc<Mutex<Host>>,
    neigh: Arc<NeighTable>,
    tunnel: TapTunnel,
    sigset: &libc::sigset_t,
) -> Result<(), String> {
    crate::daemon::apply_config(opts, &director, &config)?;
    let listener = control::bind(&opts.control)
        .map_err(|e| format!("cannot bind control socket {}: {e}", opts.control.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut ip_counters = Vec::new();
    let mut l2_counters = Vec::new();
    let nq = queues.len();
    // One configuration for all workers: a flow's GUE source port must not
    // depend on the queue it arrives on.
    let tcfg = l2_tunnel::tunnel_config();
    for (i, q) in queues.into_iter().enumerate() {
        let pipe = Pipeline::new(director.clone(), Methods::TAP);
        ip_counters.push(pipe.counters());
        let l2 = L2Pipeline::new(
            pipe,
            director.clone(),
            cfg.clone(),
            neigh.clone(),
            host.clone(),
            TAP_BUF_LEN,
            i == 0,
        )
        .with_tunnel(tunnel.routes.clone(), tcfg);
        l2_counters.push(l2.counters());
        let stop = stop.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("tunvs-q{i}"))
                .spawn(move || worker(q, l2, i == 0, &stop))
                .map_err(|e| e.to_string())?,
        );
    }
    {
        let director = director.clone();
        let neigh = neigh.clone();
        let stop = stop.clone();
        let cfg = cfg.clone();
        let (routes, mtu) = (tunnel.routes.clone(), tunnel.mtu.clone());
        let (dev_name, bridge) = (dev.name.clone(), opts.tap.bridge.clone());
        std::thread::Builder::new()
            .name("tunvs-timer".into())
            .spawn(move || {
                let nl = Mutex::new(Netlink::open().ok());
                crate::daemon::housekeeping_with(&director, &stop, &|now| {
                    neigh.expire(now);
                    // Tunnel routes follow the destinations and the link MTU.
                    let mut nl = nl.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(m) = nl
                        .as_mut()
                        .and_then(|nl| link_mtu(nl, &dev_name, bridge.as_deref()).ok())
                    {
                        mtu.store(m, Relaxed);
                    }
                    l2_tunnel::refresh(&director, &routes, &cfg, mtu.load(Relaxed));
                })
            })
            .map_err(|e| e.to_string())?;
    }
    {
        let neigh = neigh.clone();
        crate::daemon::spawn_control(listener, director.clone(), move || {
            let mut rows = Counters::report(&ip_counters);
            rows.extend(L2Counters::report(&l2_counters));
            rows.push(("l2_neighbours", neigh.len() as u64));
            rows
        })?;
    }
    let addrs: Vec<String> = cfg.addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect();
    println!(
        "tunvs: running on {} (tap, {} queue{}, offload {}, MTU {}), MAC {}, address {}{}{}, control socket {}",
        dev.name,
        nq,
        if nq == 1 { "" } else { "s" },
        if dev.vnet { "on" } else { "off" },
        tunnel.mtu.load(Relaxed),
        mac_string(&cfg.mac),
        addrs.join(" "),
        cfg.gateway
            .map(|g| format!(", gateway {g}"))
            .unwrap_or_default(),
        opts.tap
            .bridge
            .as_ref()
            .map(|b| format!(", bridge {b}"))
            .unwrap_or_default(),
        opts.control.display()
    );
    crate::daemon::wait_then_stop(sigset, &stop, workers);
    Ok(())
}

/// Tap mode: each frame goes through the L2 layer (ARP, the smoltcp host,
/// the IP pipeline, next hops); what results is written back to the queue.
struct TapFrames {
    l2: L2Pipeline,
    write_failed: Arc<Counters>,
}

/// Write one frame to the queue, counting a refused write.
fn send_to(q: &Queue, write_failed: &Counters, f: &[u8]) {
    if q.write(f).is_err() {
        write_failed.count_drop(DropReason::WriteFailed);
    }
}

impl FrameHandler for TapFrames {
    fn frame(&mut self, now_ms: u64, buf: &mut PacketBuf, q: &Queue) {
        let TapFrames { l2, write_failed } = self;
        let mut send = |f: &[u8]| send_to(q, write_failed, f);
        match l2.handle(now_ms, buf, &mut send) {
            L2Verdict::Forward => send(buf.frame()),
            L2Verdict::Reply(n) => send(&l2.reply()[..n]),
            L2Verdict::Segments(n) => {
                for f in l2.segments().take(n) {
                    send(f);
                }
            }
            L2Verdict::Consumed | L2Verdict::Drop(_) => {}
        }
    }

    fn wait_ms(&mut self, now_ms: u64) -> u64 {
        self.l2
            .poll_delay(now_ms)
            .unwrap_or(queue_loop::MAX_WAIT_MS)
    }

    fn after_batch(&mut self, now_ms: u64, q: &Queue) {
        let TapFrames { l2, write_failed } = self;
        l2.poll(now_ms, &mut |f: &[u8]| send_to(q, write_failed, f));
    }
}

/// One queue's worker thread (tap mode); the first announces the DIPs.
fn worker(q: Queue, mut l2: L2Pipeline, first: bool, stop: &AtomicBool) {
    let write_failed = l2.pipeline().counters();
    if first {
        l2.announce(&mut |f: &[u8]| send_to(&q, &write_failed, f));
    }
    let mut h = TapFrames { l2, write_failed };
    if let Err(e) = queue_loop::run(&q, TAP_BUF_LEN, stop, &mut h) {
        eprintln!("tunvs: worker stopped: {e}");
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn cidrs_and_macs_parse() {
        assert_eq!(
            parse_cidr("172.16.0.1/24").unwrap(),
            ("172.16.0.1".parse().unwrap(), 24)
        );
        assert_eq!(parse_cidr("10.0.0.1").unwrap().1, 32);
        assert_eq!(parse_cidr("2001:db8::1/64").unwrap().1, 64);
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("nope/24").is_err());
        assert_eq!(
            parse_mac("02:74:76:00:00:01").unwrap(),
            [2, 0x74, 0x76, 0, 0, 1]
        );
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert!(parse_mac("02:00:00:00:00").is_err());
    }

    #[test]
    fn hooks_route_tunnel_destinations_and_warn_only_about_what_cannot_go() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let hooks = TapHooks {
            dev: "tunvs0".into(),
            cfg: Arc::new(L2Config {
                mac: [2, 0, 0, 0, 0, 1],
                addrs: vec![(ip("172.16.0.1"), 24)],
                gateway: None,
                vnet: true,
            }),
            routes: Arc::new(TunnelRoutes::new()),
            mtu: Arc::new(AtomicU32::new(1400)),
        };
        let svc = SvcId::Addr {
            proto: crate::service::Proto::Tcp,
            addr: ip("207.175.44.110"),
            port: 80,
        };
        let dest = |a: &str, fwd: FwdMethod| {
            let mut d = DestSpec::new(ip(a), 80);
            d.fwd = fwd;
            d
        };
        // On the link: routed at once, no warning.
        let d = dest("172.16.0.2", FwdMethod::Tunnel);
        hooks.dest_added(&svc, &d).unwrap();
        assert_eq!(
            hooks.routes.get(d.addr).unwrap().resolved(0),
            Some(("172.16.0.1".parse().unwrap(), 1400))
        );
        assert_eq!(hooks.dest_warning(&d), None);
        for m in [FwdMethod::Masq, FwdMethod::Route] {
            assert_eq!(hooks.dest_warning(&dest("172.16.0.3", m)), None);
        }
        // Beyond the link without a gateway: added, unresolved, warned.
        let far = dest("192.0.2.9", FwdMethod::Tunnel);
        hooks.dest_added(&svc, &far).unwrap();
        assert!(hooks.routes.get(far.addr).unwrap().resolved(0).is_none());
        let w = hooks.dest_warning(&far).unwrap();
        assert!(
            w.contains("no route") && w.contains("tunnel_no_route"),
            "{w}"
        );
        let w = hooks
            .dest_warning(&dest("2001:db8::2", FwdMethod::Tunnel))
            .unwrap();
        assert!(w.contains("tunnel_ipv6_outer"), "{w}");
        let w = hooks
            .dest_warning(&dest("172.16.0.4", FwdMethod::Local))
            .unwrap();
        assert!(w.contains("method_unavailable"), "{w}");
    }

    #[test]
    fn default_mac_is_stable_local_and_unicast() {
        let a = [(IpAddr::from([172, 16, 0, 1]), 24)];
        let m = default_mac("tunvs0", &a);
        assert_eq!(m, default_mac("tunvs0", &a));
        assert_ne!(m, default_mac("tunvs1", &a));
        assert_eq!(m[0], 0x02);
        assert_eq!(mac_string(&[2, 0xab, 0, 0, 0, 1]), "02:ab:00:00:00:01");
    }
}
