//! ICMP errors about our tunnel packets (spec §3.13 "error about our own tunnel
//! packet", §3.15; the kernel's `ip_vs_in_icmp` tunnel case).
//!
//! A router between the director and a real server that cannot forward an outer
//! packet answers the outer source — the director's own address, not a virtual
//! service — so these errors never enter the device. A raw ICMP socket sees a copy of
//! every ICMP message delivered to the host ([`spawn_listener`]); [`handle`] picks
//! those that quote an outer IPIP, GUE or GRE packet sent to a known tunnel real
//! server of that type, finds the client's original packet inside and the connection
//! it belongs to, and then:
//! * fragmentation needed: the path MTU toward the real server is lowered to the
//!   reported MTU (at least 552, the kernel's `min_pmtu`); if the client's packet had
//!   DF, the client gets a fragmentation-needed about its own packet with the
//!   resulting MTU minus the encapsulation overhead (when above 88);
//! * any other error: the client gets the same type, code and info about its packet.
//!
//! The new error comes from the client packet's destination (the VIP), as the
//! kernel's `icmp_send` does for a locally addressed packet.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use crate::conntrack::{FlowKey, Side};
use crate::dataplane::drop::{Counters, DropReason};
use crate::dataplane::xmit_tunnel::TunnelError;
use crate::dataplane::xmit_tunnel::{encap_of, TunnelRoutes};
use crate::director::Director;
use crate::packet::csum::{checksum, fold, sum};
use crate::packet::icmp::{build_icmp_error, IcmpErrorKind};
use crate::packet::parse::{arr4, be16, PacketInfo, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::packet::tunnel::{Encap, ETH_P_IP, GRE_FLAG_CSUM, IPPROTO_GRE, IPPROTO_IPIP};
use crate::service::{FwdMethod, TunType};

/// The kernel's default `net.ipv4.route.min_pmtu`.
pub const MIN_PMTU: u32 = 552;

/// What [`handle`] did with an ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not an error about one of our tunnel connections.
    NotOurs,
    /// The ICMP checksum is wrong: ignored.
    BadChecksum,
    /// Handled; nothing to send (a PMTU update for a client without DF).
    Consumed,
    /// Send the first `len` bytes of the output buffer (an IPv4 packet) to `to`.
    Reply {
        /// The client.
        to: Ipv4Addr,
        /// Length of the reply.
        len: usize,
        /// True for a fragmentation-needed.
        frag_needed: bool,
    },
}

/// The destination of a tunnel: its encapsulation, when `rs` (with GUE port `port`)
/// is a tunnel real server of type `ty`.
fn find_tunnel(dir: &Director, rs: Ipv4Addr, ty: TunType, port: Option<u16>) -> Option<Encap> {
    for svc in dir.service_list() {
        for d in svc.dests() {
            let f = d.fwd();
            if d.addr == IpAddr::V4(rs)
                && f.fwd == FwdMethod::Tunnel
                && f.tun_type == ty
                && port.is_none_or(|p| p == f.tun_port)
            {
                return Some(encap_of(&f));
            }
        }
    }
    None
}

/// Handle one ICMP message `pkt` (a whole IPv4 packet, as a raw socket reads it);
/// a reply, if any, is written into `out`.
pub fn handle(
    dir: &Director,
    routes: &TunnelRoutes,
    now_ms: u64,
    pkt: &[u8],
    out: &mut [u8],
) -> Outcome {
    match handle_inner(dir, routes, now_ms, pkt, out) {
        Some(o) => o,
        None => Outcome::NotOurs,
    }
}

fn handle_inner(
    dir: &Director,
    routes: &TunnelRoutes,
    now_ms: u64,
    pkt: &[u8],
    out: &mut [u8],
) -> Option<Outcome> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != PROTO_ICMP {
        return None;
    }
    let ihl = (pkt[0] & 0x0f) as usize * 4;
    let total = (be16(pkt, 2) as usize).min(pkt.len());
    let icmp = pkt.get(ihl..total)?;
    if icmp.len() < 8 + 20 || !matches!(icmp[0], 3 | 4 | 11) {
        return None;
    }
    let (ty, code) = (icmp[0], icmp[1]);
    // The quoted outer header: ours, to a tunnel real server.
    let cih = &icmp[8..];
    if cih[0] >> 4 != 4 || be16(cih, 6) & 0x1fff != 0 {
        return None;
    }
    let cihl = (cih[0] & 0x0f) as usize * 4;
    let rs = Ipv4Addr::from(arr4(cih, 16));
    let tun = cih.get(cihl..)?;
    let (encap, ulen) = match cih[9] {
        IPPROTO_IPIP => (find_tunnel(dir, rs, TunType::Ipip, None)?, 0),
        PROTO_UDP => {
            let dport = be16(tun.get(..8)?, 2);
            let e = find_tunnel(dir, rs, TunType::Gue, Some(dport))?;
            let g = tun.get(8..12)?;
            // version 0, control 0, inner IPv4
            if g[0] & 0xe0 != 0 || g[1] != IPPROTO_IPIP {
                return None;
            }
            (e, 8 + 4 + (g[0] & 0x1f) as usize * 4)
        }
        IPPROTO_GRE => {
            let e = find_tunnel(dir, rs, TunType::Gre, None)?;
            let g = tun.get(..4)?;
            let flags = be16(g, 0);
            if flags & !GRE_FLAG_CSUM != 0 || be16(g, 2) != ETH_P_IP {
                return None;
            }
            (e, if flags & GRE_FLAG_CSUM != 0 { 8 } else { 4 })
        }
        _ => return None,
    };
    // The client's original packet, possibly cut short by the router.
    let orig = tun.get(ulen..)?;
    if orig.len() < 20 || orig[0] >> 4 != 4 || (orig[0] & 0x0f) < 5 {
        return None;
    }
    let oihl = (orig[0] & 0x0f) as usize * 4;
    let proto = orig[9];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let ports = orig.get(oihl..oihl + 4)?;
    let info = PacketInfo {
        v6: false,
        src: IpAddr::V4(Ipv4Addr::from(arr4(orig, 12))),
        dst: IpAddr::V4(Ipv4Addr::from(arr4(orig, 16))),
        proto,
        ttl: orig[8],
        l4_off: oihl,
        l4_hdr_len: 0,
        total_len: be16(orig, 2) as usize,
        is_fragment: be16(orig, 6) & 0x3fff != 0,
        first_fragment: be16(orig, 6) & 0x1fff == 0,
        sport: be16(ports, 0),
        dport: be16(ports, 2),
        tcp_flags: 0,
        csum_off: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    // Errors about a request: the tuple as the client sent it.
    let key = FlowKey {
        proto,
        src: info.src,
        sport: info.sport,
        dst: info.dst,
        dport: info.dport,
    };
    let (conn, side) = dir.conns.lookup(&key)?;
    if side != Side::Client || conn.fwd.fwd != FwdMethod::Tunnel || conn.daddr != IpAddr::V4(rs) {
        return None;
    }
    if fold(sum(icmp, 0)) != 0xffff {
        return Some(Outcome::BadChecksum);
    }
    let mut rest = [icmp[4], icmp[5], icmp[6], icmp[7]];
    if ty == 3 && code == 4 {
        let reported = (be16(icmp, 6) as u32).max(MIN_PMTU);
        routes.learn_pmtu(IpAddr::V4(rs), reported, now_ms);
        if be16(orig, 6) & 0x4000 == 0 {
            return Some(Outcome::Consumed);
        }
        let mut mtu = routes
            .get(IpAddr::V4(rs))
            .and_then(|e| e.resolved(now_ms))
            .map_or(reported, |(_, m)| m);
        let overhead = encap.overhead(false) as u32;
        if mtu > 68 + 20 {
            mtu = mtu.saturating_sub(overhead);
        }
        rest = mtu.to_be_bytes();
    }
    let IpAddr::V4(client) = info.src else {
        return None;
    };
    let n = build_icmp_v4(out, orig, &info, ty, code, rest)?;
    conn.dest.stats.count_out(n);
    conn.svc.stats.count_out(n);
    dir.stats.count_out(n);
    Some(Outcome::Reply {
        to: client,
        len: n,
        frag_needed: ty == 3 && code == 4,
    })
}

/// An ICMPv4 error of any type/code/info about `orig` (built like
/// [`build_icmp_error`], whose header fields are then set).
fn build_icmp_v4(
    out: &mut [u8],
    orig: &[u8],
    info: &PacketInfo,
    ty: u8,
    code: u8,
    rest: [u8; 4],
) -> Option<usize> {
    let n = build_icmp_error(out, orig, info, IcmpErrorKind::PortUnreachable)?;
    let icmp = out.get_mut(20..n)?;
    icmp[0] = ty;
    icmp[1] = code;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&rest);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(n)
}

/// `SOL_RAW` / `ICMP_FILTER` (linux/icmp.h): a bit mask of ICMP types *not* to receive.
const SOL_RAW: libc::c_int = 255;
const ICMP_FILTER: libc::c_int = 1;

fn raw_socket(proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the returned descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live `T` of the size passed; the descriptor is open.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Start the listener thread: a raw ICMP socket (types 3, 4 and 11 only) whose
/// messages go through [`handle`], replies sent with a raw IP socket and counted
/// in `counters` (`icmp_replies`; a fragmentation-needed also as
/// `tunnel_frag_needed`). It stops within 200 ms of `stop` being set. Needs
/// CAP_NET_RAW.
pub fn spawn_listener(
    dir: Arc<Director>,
    routes: Arc<TunnelRoutes>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let rx = raw_socket(libc::IPPROTO_ICMP)?;
    let filter: u32 = !((1 << 3) | (1 << 4) | (1 << 11));
    setsockopt(&rx, SOL_RAW, ICMP_FILTER, &filter)?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    setsockopt(&rx, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    let tx = raw_socket(libc::IPPROTO_RAW)?;
    std::thread::Builder::new()
        .name("tunvs-icmp".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut out = vec![0u8; 1500];
            while !stop.load(Relaxed) {
                // SAFETY: `buf` is valid for writes of its length; `rx` is open.
                let n =
                    unsafe { libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    continue; // timeout, EINTR
                }
                let now = crate::util::now_ms();
                if let Outcome::Reply {
                    to,
                    len,
                    frag_needed,
                } = handle(&dir, &routes, now, &buf[..n as usize], &mut out)
                {
                    counters.replies.fetch_add(1, Relaxed);
                    if frag_needed {
                        counters.count_drop(DropReason::Tunnel(TunnelError::FragNeeded));
                    }
                    let sa = libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: 0,
                        sin_addr: libc::in_addr {
                            s_addr: u32::from(to).to_be(),
                        },
                        sin_zero: [0; 8],
                    };
                    // SAFETY: `out[..len]` is initialised and `sa` is a valid
                    // sockaddr_in for the duration of the call.
                    unsafe {
                        libc::sendto(
                            tx.as_raw_fd(),
                            out.as_ptr().cast(),
                            len,
                            0,
                            (&sa as *const libc::sockaddr_in).cast(),
                            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        );
                    }
                }
            }
        })
}
