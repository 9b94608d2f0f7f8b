//! Routes toward tunnel real servers, asked of the kernel (tun mode): the outer
//! source address the routing table selects and the route MTU, as the kernel's
//! `__ip_vs_get_out_rt` caches them per destination.
//!
//! How: a UDP socket connected to the real server (no packet is sent) —
//! `getsockname` gives the selected source, `IP_MTU` the MTU of the route (path MTU
//! exceptions included). Done when a tunnel destination is added and refreshed
//! periodically off the data path ([`refresh`]); the workers only read the table.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use crate::dataplane::xmit_tunnel::{TunnelConfig, TunnelRoutes};
use crate::director::Director;
use crate::service::FwdMethod;

/// The kernel's route toward `dst`: `(source address, route MTU)`.
pub fn resolve(dst: Ipv4Addr) -> io::Result<(Ipv4Addr, u32)> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    // Port 9 (discard): any port does, nothing is sent.
    s.connect((dst, 9))?;
    let src = match s.local_addr()? {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => return Err(io::Error::other("IPv6 source for an IPv4 route")),
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mtu` and `len` are valid for writes of the sizes given, and the
    // descriptor belongs to `s`, alive for the call.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((src, mtu.max(0) as u32))
}

/// Resolve `addr` into `routes` now; an unresolvable address is kept (and its
/// packets dropped as `tunnel_no_route`) until a later [`refresh`] succeeds.
pub fn resolve_into(routes: &TunnelRoutes, addr: IpAddr) -> io::Result<()> {
    let IpAddr::V4(a) = addr else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "tunnelling to IPv6 real servers is not available yet",
        ));
    };
    match resolve(a) {
        Ok((src, mtu)) => {
            routes.set(addr, src, mtu);
            Ok(())
        }
        Err(e) => {
            routes.set_unresolved(addr);
            Err(e)
        }
    }
}

/// Bring `routes` in line with the director: every IPv4 tunnel destination is
/// (re)resolved, addresses no longer used by any are forgotten (at the second
/// refresh that finds them unused). Returns the addresses that could not be
/// resolved, with the reason.
pub fn refresh(dir: &Director, routes: &TunnelRoutes) -> Vec<(IpAddr, io::Error)> {
    let mut want = HashSet::new();
    for svc in dir.service_list() {
        for d in svc.dests() {
            if d.fwd().fwd == FwdMethod::Tunnel && d.addr.is_ipv4() {
                want.insert(d.addr);
            }
        }
    }
    routes.sweep(|a| want.contains(&a));
    let mut failed = Vec::new();
    for a in want {
        if let Err(e) = resolve_into(routes, a) {
            failed.push((a, e));
        }
    }
    failed
}

/// The tunnel settings of this host: the local port range for GUE source ports
/// and a random flow-hash seed; one local hop (tun mode).
pub fn host_config() -> TunnelConfig {
    let mut cfg = TunnelConfig {
        hash_seed: crate::util::Rng::from_entropy().next_u64(),
        ..TunnelConfig::default()
    };
    if let Ok(s) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") {
        let v: Vec<u16> = s
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [lo, hi] = v[..] {
            if lo < hi {
                cfg.port_lo = lo;
                cfg.port_hi = hi;
            }
        }
    }
    cfg
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn loopback_route_resolves() {
        // Every network namespace has lo: 127.0.0.1 routes via lo, MTU 65536.
        match resolve(Ipv4Addr::LOCALHOST) {
            Ok((src, mtu)) => {
                assert_eq!(src, Ipv4Addr::LOCALHOST);
                assert!(mtu >= 1280, "{mtu}");
            }
            // A sandbox without lo up: nothing to check.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENETUNREACH), "{e}"),
        }
    }

    #[test]
    fn ipv6_is_refused_and_kept_unresolved() {
        let routes = TunnelRoutes::new();
        assert!(resolve_into(&routes, "2001:db8::1".parse().unwrap()).is_err());
        assert!(routes.get("2001:db8::1".parse().unwrap()).is_none());
    }
}
