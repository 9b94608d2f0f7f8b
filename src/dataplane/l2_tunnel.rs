//! Tunnelling (`-i`) in tap mode: where the outer packets come from and how
//! big they may be, from tap mode's own addressing instead of the kernel's
//! routing table (which tun mode asks, `tunnel_route`).
//!
//! In tap mode tunvs is a host on the LAN with its own addresses (the DIPs,
//! `--address`) and next hop (`--gateway`); the kernel never routes what it
//! writes. So for a tunnel real server:
//! * the outer source is the DIP on the real server's link, or — for a real
//!   server beyond every link — the DIP on the gateway's link
//!   ([`tunnel_source`]); neither: unresolved, packets dropped as
//!   `tunnel_no_route`;
//! * the route MTU is the MTU of the TAP's link (the TAP's own MTU, and the
//!   bridge's when enslaved: a bridge drops frames bigger than a port's MTU),
//!   lowered per real server by ICMP fragmentation-needed from routers
//!   (`tunnel_icmp`, fed by the L2 layer);
//! * the transmitter decrements the inner TTL itself (no kernel forwards the
//!   frame) and writes the outer TTL equal to it: no local hop follows
//!   ([`tunnel_config`]).
//!
//! The tap daemon fills [`TunnelRoutes`] when a tunnel destination is added
//! ([`resolve_into`], from its director hooks) and every housekeeping tick
//! ([`refresh`]: new MTU, destinations gone), off the data path.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::dataplane::l2::L2Config;
use crate::dataplane::tunnel_route;
use crate::dataplane::xmit_tunnel::{TunnelConfig, TunnelRoutes};
use crate::director::Director;
use crate::service::FwdMethod;

/// The tunnel transmitter's settings in tap mode: the host's GUE port range
/// and a random flow-hash seed ([`tunnel_route::host_config`]), no local
/// hop, inner TTL decremented by tunvs (TTL ≤ 1: ICMP time exceeded).
pub fn tunnel_config() -> TunnelConfig {
    TunnelConfig {
        local_hops: 0,
        decrement_ttl: true,
        ..tunnel_route::host_config()
    }
}

/// The outer source address toward real server `rs`: the DIP on its link,
/// else the DIP on the gateway's link. `None` for an IPv6 real server, or
/// one beyond our links without a gateway on one of them.
pub fn tunnel_source(cfg: &L2Config, rs: IpAddr) -> Option<Ipv4Addr> {
    if !rs.is_ipv4() {
        return None;
    }
    let dip = cfg.link_of(rs).or_else(|| {
        cfg.gateway
            .filter(IpAddr::is_ipv4)
            .and_then(|g| cfg.link_of(g))
    })?;
    match dip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// Record the route toward `rs` with link MTU `mtu`; false (and the entry
/// marked unresolved) when it has none.
pub fn resolve_into(routes: &TunnelRoutes, cfg: &L2Config, rs: IpAddr, mtu: u32) -> bool {
    match tunnel_source(cfg, rs) {
        Some(src) if mtu > 0 => {
            routes.set(rs, src, mtu);
            true
        }
        _ => {
            routes.set_unresolved(rs);
            false
        }
    }
}

/// Bring `routes` in line with the director: every IPv4 tunnel destination
/// gets its route with the current link MTU (a path MTU learned from ICMP is
/// kept until it expires); addresses no tunnel destination uses any more are
/// forgotten at the second refresh that finds them unused. Returns the
/// destinations without a route.
pub fn refresh(dir: &Director, routes: &TunnelRoutes, cfg: &L2Config, mtu: u32) -> Vec<IpAddr> {
    let mut want = HashSet::new();
    for svc in dir.service_list() {
        for d in svc.dests() {
            if d.fwd().fwd == FwdMethod::Tunnel && d.addr.is_ipv4() {
                want.insert(d.addr);
            }
        }
    }
    routes.sweep(|a| want.contains(&a));
    let mut failed: Vec<IpAddr> = want
        .into_iter()
        .filter(|&a| !resolve_into(routes, cfg, a, mtu))
        .collect();
    failed.sort();
    failed
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::adm::api::Ipvs;
    use crate::service::{DestSpec, Proto, ServiceSpec, SvcId};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cfg(gateway: Option<&str>) -> L2Config {
        L2Config {
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![
                (ip("172.16.0.1"), 24),
                (ip("192.168.9.1"), 24),
                (ip("2001:db8::1"), 64),
            ],
            gateway: gateway.map(ip),
            vnet: false,
        }
    }

    #[test]
    fn source_is_the_dip_on_the_link_or_toward_the_gateway() {
        let c = cfg(Some("192.168.9.254"));
        let s = |a: &str| tunnel_source(&c, ip(a));
        assert_eq!(s("172.16.0.2"), Some(Ipv4Addr::new(172, 16, 0, 1)));
        assert_eq!(s("192.168.9.7"), Some(Ipv4Addr::new(192, 168, 9, 1)));
        assert_eq!(
            s("10.9.9.9"),
            Some(Ipv4Addr::new(192, 168, 9, 1)),
            "beyond the links: the gateway's"
        );
        assert_eq!(s("2001:db8::2"), None, "no IPv6 outer header");
        let none = cfg(None);
        assert_eq!(tunnel_source(&none, ip("10.9.9.9")), None);
        // A gateway on none of our links is no way out either.
        let off = cfg(Some("10.0.0.1"));
        assert_eq!(tunnel_source(&off, ip("10.9.9.9")), None);
    }

    #[test]
    fn refresh_follows_the_destinations_and_the_mtu() {
        let dir = Director::new();
        let id = SvcId::Addr {
            proto: Proto::Tcp,
            addr: ip("207.175.44.110"),
            port: 80,
        };
        dir.add_service(&ServiceSpec::new(id)).unwrap();
        for (rs, fwd) in [
            ("172.16.0.2", FwdMethod::Tunnel),
            ("10.9.9.9", FwdMethod::Tunnel),
            ("172.16.0.3", FwdMethod::Masq),
        ] {
            let mut d = DestSpec::new(ip(rs), 80);
            d.fwd = fwd;
            dir.add_dest(&id, &d).unwrap();
        }
        let routes = TunnelRoutes::new();
        let c = cfg(None);
        assert_eq!(refresh(&dir, &routes, &c, 1500), vec![ip("10.9.9.9")]);
        let e = routes.get(ip("172.16.0.2")).unwrap();
        assert_eq!(e.resolved(0), Some((Ipv4Addr::new(172, 16, 0, 1), 1500)));
        assert!(routes.get(ip("10.9.9.9")).unwrap().resolved(0).is_none());
        assert!(routes.get(ip("172.16.0.3")).is_none(), "NAT needs none");
        // The link MTU changes; a learned path MTU stays below it.
        routes.learn_pmtu(ip("172.16.0.2"), 1300, 0);
        assert!(refresh(&dir, &routes, &cfg(Some("192.168.9.254")), 1400).is_empty());
        assert_eq!(e.resolved(1), Some((Ipv4Addr::new(172, 16, 0, 1), 1300)));
        assert_eq!(
            e.resolved(crate::dataplane::xmit_tunnel::PMTU_EXPIRES_MS),
            Some((Ipv4Addr::new(172, 16, 0, 1), 1400))
        );
        assert_eq!(
            routes.get(ip("10.9.9.9")).unwrap().resolved(0),
            Some((Ipv4Addr::new(192, 168, 9, 1), 1400))
        );
        // A destination removed: its route goes at the second refresh.
        dir.del_dest(&id, ip("10.9.9.9"), 80).unwrap();
        refresh(&dir, &routes, &c, 1400);
        assert!(routes.get(ip("10.9.9.9")).is_some());
        refresh(&dir, &routes, &c, 1400);
        assert!(routes.get(ip("10.9.9.9")).is_none());
        assert!(routes.get(ip("172.16.0.2")).is_some());
        // No MTU known: unresolved rather than a guess.
        assert!(!resolve_into(&routes, &c, ip("172.16.0.2"), 0));
        assert!(e.resolved(0).is_none());
    }
}
