//! `tunvs realserver tunnel --vip V [--type ipip|gue|gre] [--port P] [--dev NAME]`:
//! user-space decapsulation on a real server of an LVS tunnel (`-i`) service.
//!
//! The kernels tunvs targets often lack `ipip`, `ip_gre` and `fou`, and the users
//! of tunvs often cannot load them. This helper does their receive half:
//!
//! ```text
//!  director ──IPIP/GRE──▶ raw socket (protocol 4 / 47) ─┐
//!           ──GUE/UDP───▶ UDP socket on --port ──────────┤ check outer header,
//!                                                        │ inner packet to the VIP?
//!                                                        ▼
//!        application ◀── local stack ◀── TUN device NAME (owns VIP/32)
//!             │
//!             └── reply VIP → client, straight back (not via the director)
//! ```
//!
//! Why a TUN device that owns the VIP (rather than the VIP on `lo` and a TUN that
//! only injects): the inner packet must arrive on an interface for the stack to
//! accept it, and tying the VIP to that interface means the real server accepts
//! VIP traffic exactly while the decapsulator runs — when it stops, the device and
//! the VIP disappear together, and nothing is left behind. (A VIP already on `lo`,
//! as in the kernel selftest, does no harm.)
//!
//! What it sets up, and removes on SIGTERM/SIGINT/SIGHUP:
//! * the TUN device (no offloads), up, with VIP/32 (or /128);
//! * `net.ipv4.conf.NAME.rp_filter=2` if the effective value on it would be strict:
//!   the inner packets carry the client's address, which is not routed via NAME;
//! * `net.ipv6.conf.NAME.disable_ipv6=1` for an IPv4 VIP (no router solicitations
//!   into a device nobody reads);
//! * the LVS real-server ARP settings ([`super::arp`]), where they differ.
//!
//! Buffers are bounded: one 64 KiB receive buffer, the socket's receive buffer set
//! to 1 MiB, packets are injected as they are read. Every packet not injected is
//! counted by reason ([`DecapError`]); the counters are printed on SIGUSR1 and on
//! exit.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::dataplane::device::{Device, DeviceConfig, DeviceKind};
use crate::netcfg::sysctl::{self, SysctlChange};
use crate::netcfg::{Family, Netlink};
use crate::packet::decap::{
    apply_remcsum, check_inner, decap_gre, decap_gue, decap_ipip, DecapError,
};
use crate::service::TunType;

/// Options of `tunvs realserver tunnel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opts {
    /// The virtual address the director's service has.
    pub vip: IpAddr,
    /// The encapsulation.
    pub kind: TunType,
    /// GUE: the UDP port (`--tun-port` on the director).
    pub port: u16,
    /// Name of the TUN device to create.
    pub dev: String,
    /// Accept encapsulated packets only from this address (the director's).
    pub director: Option<IpAddr>,
}

/// Counters of the decapsulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Encapsulated packets read.
    pub received: u64,
    /// Inner packets handed to the local stack.
    pub injected: u64,
    /// Bytes of inner packets handed to the local stack.
    pub injected_bytes: u64,
    /// Inner packets the device refused.
    pub write_failed: u64,
    /// The longest encapsulated packet seen (outer IP header included; for GUE,
    /// assuming an outer IPv4 header without options).
    pub max_outer_len: u64,
    /// Drops by reason, indexed by [`DecapError::index`].
    pub drops: [u64; DecapError::ALL.len()],
}

impl Counters {
    /// Count of one drop reason.
    pub fn drop_count(&self, e: DecapError) -> u64 {
        self.drops[e.index()]
    }

    /// The counters as `name value` lines (drops as `drop_NAME`).
    pub fn report(&self) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("received", self.received),
            ("injected", self.injected),
            ("injected_bytes", self.injected_bytes),
            ("write_failed", self.write_failed),
            ("max_outer_len", self.max_outer_len),
        ] {
            let _ = writeln!(s, "{k:<24} {v}");
        }
        for e in DecapError::ALL {
            let _ = writeln!(
                s,
                "{:<24} {}",
                format!("drop_{}", e.name()),
                self.drops[e.index()]
            );
        }
        s
    }
}

/// The pure part: check and unwrap one received packet.
#[derive(Debug, Clone)]
pub struct Decapsulator {
    kind: TunType,
    vip: IpAddr,
    director: Option<IpAddr>,
    /// What happened so far.
    pub counters: Counters,
}

impl Decapsulator {
    /// A decapsulator of `kind` for `vip`.
    pub fn new(kind: TunType, vip: IpAddr) -> Self {
        Decapsulator {
            kind,
            vip,
            director: None,
            counters: Counters::default(),
        }
    }

    /// Accept only packets whose outer source is `director`.
    pub fn only_from(mut self, director: IpAddr) -> Self {
        self.director = Some(director);
        self
    }

    /// Process one packet as read from the socket (the whole outer IP packet for
    /// IPIP and GRE, the UDP payload for GUE). Returns the range of the inner packet
    /// to inject (completed in place for GUE REMCSUM), or the reason it is dropped
    /// (also counted).
    pub fn process(&mut self, buf: &mut [u8]) -> Result<std::ops::Range<usize>, DecapError> {
        self.process_from(buf, None)
    }

    /// [`Decapsulator::process`] for a packet the socket says came from `peer`
    /// (checked against [`Decapsulator::only_from`]; IPIP and GRE also carry it
    /// in their outer header).
    pub fn process_from(
        &mut self,
        buf: &mut [u8],
        peer: Option<IpAddr>,
    ) -> Result<std::ops::Range<usize>, DecapError> {
        self.counters.received += 1;
        let outer_len = match self.kind {
            TunType::Gue => buf.len() + 28,
            _ => buf.len(),
        } as u64;
        self.counters.max_outer_len = self.counters.max_outer_len.max(outer_len);
        let r = match self.director {
            Some(want) if peer.is_some_and(|p| p != want) => Err(DecapError::NotDirector),
            _ => self.unwrap(buf),
        };
        if let Err(e) = &r {
            self.counters.drops[e.index()] += 1;
        }
        r
    }

    fn unwrap(&self, buf: &mut [u8]) -> Result<std::ops::Range<usize>, DecapError> {
        let d = match self.kind {
            TunType::Ipip => decap_ipip(buf)?,
            TunType::Gre => decap_gre(buf)?,
            TunType::Gue => decap_gue(buf)?,
        };
        if let (Some(want), TunType::Ipip | TunType::Gre) = (self.director, self.kind) {
            if IpAddr::from([buf[12], buf[13], buf[14], buf[15]]) != want {
                return Err(DecapError::NotDirector);
            }
        }
        let inner = &mut buf[d.inner.clone()];
        let len = check_inner(inner, d.inner_v6, self.vip)?;
        let inner = &mut inner[..len];
        if let Some((start, off)) = d.remcsum {
            apply_remcsum(inner, start, off)?;
        }
        Ok(d.inner.start..d.inner.start + len)
    }

    /// Count a successful injection of `len` bytes.
    pub fn injected(&mut self, len: usize) {
        self.counters.injected += 1;
        self.counters.injected_bytes += len as u64;
    }
}

/// Everything the helper changed on the host, undone on drop.
struct Setup {
    sysctls: Vec<SysctlChange>,
    arp: Vec<SysctlChange>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        super::arp::restore(&self.arp);
        for c in self.sysctls.iter().rev() {
            // The device's own keys vanish with it; only report real failures.
            if let Err(e) = c.restore() {
                if e.kind() != io::ErrorKind::NotFound {
                    eprintln!("tunvs: cannot restore {}: {e}", c.key);
                }
            }
        }
    }
}

fn raw_socket(proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            proto,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_rcvbuf(fd: RawFd, bytes: libc::c_int) {
    // SAFETY: the option value is a live c_int of the size passed; `fd` is open.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The receiving socket: raw for IPIP/GRE, UDP for GUE.
enum Rx {
    Raw(OwnedFd),
    Udp(UdpSocket),
}

impl Rx {
    fn open(o: &Opts) -> io::Result<Rx> {
        let rx = match o.kind {
            TunType::Ipip => Rx::Raw(raw_socket(if o.vip.is_ipv6() {
                libc::IPPROTO_IPV6
            } else {
                libc::IPPROTO_IPIP
            })?),
            TunType::Gre => Rx::Raw(raw_socket(libc::IPPROTO_GRE)?),
            TunType::Gue => {
                let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, o.port))?;
                s.set_nonblocking(true)?;
                Rx::Udp(s)
            }
        };
        set_rcvbuf(rx.fd(), 1 << 20);
        Ok(rx)
    }

    fn fd(&self) -> RawFd {
        match self {
            Rx::Raw(f) => f.as_raw_fd(),
            Rx::Udp(s) => s.as_raw_fd(),
        }
    }

    /// One packet and the address it came from.
    fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<IpAddr>)> {
        // SAFETY: sockaddr_in is plain data; all zeroes is a valid value.
        let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `buf` is valid for writes of its length, `from`/`len` for
        // writes of their sizes; the descriptor is open.
        let n = unsafe {
            libc::recvfrom(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let peer = (from.sin_family == libc::AF_INET as libc::sa_family_t)
            .then(|| IpAddr::V4(Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr))));
        Ok((n as usize, peer))
    }
}

/// Block the stop signals and SIGUSR1 and read them from a signalfd.
fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset/sigaddset;
    // pthread_sigmask and signalfd only read it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The next pending signal number, if any.
fn next_signal(fd: &OwnedFd) -> Option<u32> {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    // SAFETY: `info` is valid for writes of its length; the descriptor is open.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) };
    (n as usize == info.len()).then(|| u32::from_ne_bytes([info[0], info[1], info[2], info[3]]))
}

/// Run the decapsulator until SIGTERM/SIGINT/SIGHUP.
pub fn run(o: &Opts) -> Result<(), String> {
    if o.kind == TunType::Gue && o.port == 0 {
        return Err("--type gue needs --port (the director's --tun-port)".into());
    }
    if o.vip.is_ipv6() && o.kind == TunType::Ipip {
        // IPv6-in-IPv4 is protocol 41: supported, but say what is read.
        eprintln!("tunvs realserver: IPv6 VIP: reading IP protocol 41 (IPv6 in IPv4)");
    }
    let sig = signal_fd().map_err(|e| format!("signalfd: {e}"))?;
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    if nl.link_get(&o.dev).is_ok() {
        return Err(format!(
            "an interface named {} already exists: pick another name with --dev",
            o.dev
        ));
    }
    let rx = Rx::open(o).map_err(|e| {
        format!(
            "cannot open the {} receive socket: {e} (needs root or CAP_NET_RAW{})",
            o.kind.name(),
            if o.kind == TunType::Gue {
                ", and a free UDP port"
            } else {
                ""
            }
        )
    })?;
    let dev = Device::open(&DeviceConfig {
        name: o.dev.clone(),
        kind: DeviceKind::Tun,
        queues: 1,
        offload: false,
    })
    .map_err(|e| format!("cannot create device {}: {e}", o.dev))?;
    let mut setup = Setup {
        sysctls: Vec::new(),
        arp: Vec::new(),
    };
    if o.vip.is_ipv4() {
        let k = sysctl::conf_key(Family::V6, &dev.name, "disable_ipv6");
        if let Ok(Some(c)) = sysctl::ensure(&k, "1") {
            setup.sysctls.push(c);
        }
        if let Some(c) = sysctl::loosen_rp_filter(&dev.name).map_err(|e| e.to_string())? {
            setup.sysctls.push(c);
        }
    }
    nl.link_set_up(dev.ifindex, true)
        .map_err(|e| format!("cannot bring {} up: {e}", dev.name))?;
    let plen = if o.vip.is_ipv6() { 128 } else { 32 };
    match nl.addr_add(dev.ifindex, o.vip, plen) {
        Ok(()) => {}
        Err(e) if crate::netcfg::errno(&e) == Some(libc::EEXIST) => {}
        Err(e) => return Err(format!("cannot add {}/{plen} to {}: {e}", o.vip, dev.name)),
    }
    setup.arp = super::arp::apply().map_err(|e| format!("ARP settings: {e}"))?;
    println!(
        "tunvs realserver: decapsulating {}{} for {} into {} ({}/{plen}); {}",
        o.kind.name(),
        if o.kind == TunType::Gue {
            format!(" on UDP port {}", o.port)
        } else {
            String::new()
        },
        o.vip,
        dev.name,
        o.vip,
        super::arp::ARP_SETTINGS
            .iter()
            .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let q = &dev.queues[0];
    let mut d = Decapsulator::new(o.kind, o.vip);
    if let Some(a) = o.director {
        d = d.only_from(a);
    }
    let r = serve(&rx, q, &sig, &mut d);
    print!("{}", d.counters.report());
    drop(setup);
    drop(dev);
    r
}

const SOCK: Token = Token(0);
const SIG: Token = Token(1);
/// Packets handled per wakeup before checking signals again.
const BATCH: usize = 256;

fn serve(
    rx: &Rx,
    q: &crate::dataplane::device::Queue,
    sig: &OwnedFd,
    d: &mut Decapsulator,
) -> Result<(), String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let (rfd, sfd) = (rx.fd(), sig.as_raw_fd());
    poll.registry()
        .register(&mut SourceFd(&rfd), SOCK, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut SourceFd(&sfd), SIG, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 65536];
    let mut pending = true;
    loop {
        if !pending {
            match poll.poll(&mut events, Some(std::time::Duration::from_millis(500))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        while let Some(s) = next_signal(sig) {
            if s == libc::SIGUSR1 as u32 {
                print!("{}", d.counters.report());
                use std::io::Write as _;
                let _ = io::stdout().flush();
            } else {
                println!("tunvs realserver: signal {s}, shutting down");
                return Ok(());
            }
        }
        pending = false;
        for _ in 0..BATCH {
            let (n, peer) = match rx.recv(&mut buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("receive: {e}")),
            };
            pending = true;
            let pkt = &mut buf[..n];
            if let Ok(r) = d.process_from(pkt, peer) {
                let len = r.len();
                if q.write(&pkt[r]).is_ok() {
                    d.injected(len);
                } else {
                    d.counters.write_failed += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::packet::testutil::{l4_checksum_ok, tcp_packet, to_partial};
    use crate::packet::tunnel::{write_outer, Encap, GueCsum, Outer};
    use crate::packet::TCP_ACK;

    fn inner() -> Vec<u8> {
        tcp_packet(
            "10.0.0.2:40000".parse().unwrap(),
            "207.175.44.110:8080".parse().unwrap(),
            TCP_ACK,
            1,
            2,
            &[],
            b"data",
        )
    }

    fn enc(e: Encap, inner: &[u8], rem: Option<(u16, u16)>) -> Vec<u8> {
        let hl = e.overhead(rem.is_some());
        let mut f = vec![0u8; hl];
        f.extend_from_slice(inner);
        let o = Outer {
            src: Ipv4Addr::new(172, 16, 0, 1),
            dst: Ipv4Addr::new(172, 16, 0, 2),
            id: 0,
            pmtu_disc: true,
            local_hops: 0,
            sport: 40000,
        };
        write_outer(&mut f, e, &o, rem).unwrap();
        f
    }

    #[test]
    fn counts_injections_and_drops_by_reason() {
        let vip: IpAddr = "207.175.44.110".parse().unwrap();
        let i = inner();
        let mut d = Decapsulator::new(TunType::Ipip, vip);
        let mut p = enc(Encap::Ipip, &i, None);
        let r = d.process(&mut p).unwrap();
        assert_eq!(&p[r], &i[..]);
        let mut bad = p.clone();
        bad[10] ^= 1;
        assert_eq!(d.process(&mut bad), Err(DecapError::OuterChecksum));
        let other = tcp_packet(
            "10.0.0.2:1".parse().unwrap(),
            "10.9.9.9:8080".parse().unwrap(),
            TCP_ACK,
            1,
            2,
            &[],
            b"x",
        );
        let mut p2 = enc(Encap::Ipip, &other, None);
        assert_eq!(d.process(&mut p2), Err(DecapError::NotVip));
        assert_eq!(d.counters.received, 3);
        assert_eq!(d.counters.drop_count(DecapError::OuterChecksum), 1);
        assert_eq!(d.counters.drop_count(DecapError::NotVip), 1);
        assert_eq!(d.counters.max_outer_len, p.len() as u64);
        let rep = d.counters.report();
        assert!(rep.contains("drop_outer_checksum      1\n"), "{rep}");
        assert!(rep.contains("received                 3\n"), "{rep}");

        // GUE REMCSUM: the inner checksum is completed before injection.
        let mut d = Decapsulator::new(TunType::Gue, vip);
        let mut partial = i.clone();
        to_partial(&mut partial, 0);
        let e = Encap::Gue {
            port: 6080,
            csum: GueCsum::RemCsum,
        };
        let p = enc(e, &partial, Some((20, 16)));
        let mut payload = p[28..].to_vec();
        let r = d.process(&mut payload).unwrap();
        assert!(l4_checksum_ok(&payload[r.clone()]));
        assert_eq!(&payload[r], &i[..]);
        assert_eq!(d.counters.max_outer_len, p.len() as u64);

        // Only from the director.
        let dir: IpAddr = "172.16.0.1".parse().unwrap();
        let mut d = Decapsulator::new(TunType::Ipip, vip).only_from(dir);
        let mut p = enc(Encap::Ipip, &i, None);
        assert!(d.process(&mut p.clone()).is_ok());
        assert!(d.process_from(&mut p, Some(dir)).is_ok());
        let mut q = enc(Encap::Ipip, &i, None);
        q[15] = 9;
        q[10..12].fill(0);
        let c = crate::packet::csum::checksum(&q[..20]);
        q[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(d.process(&mut q), Err(DecapError::NotDirector));
        let mut d = Decapsulator::new(TunType::Gue, vip).only_from(dir);
        let mut g = enc(
            Encap::Gue {
                port: 1,
                csum: GueCsum::None,
            },
            &i,
            None,
        )[28..]
            .to_vec();
        assert!(d.process_from(&mut g.clone(), Some(dir)).is_ok());
        assert_eq!(
            d.process_from(&mut g, Some("10.9.9.9".parse().unwrap())),
            Err(DecapError::NotDirector)
        );
        assert_eq!(d.counters.drop_count(DecapError::NotDirector), 1);
    }
}
