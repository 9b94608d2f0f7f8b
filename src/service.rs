//! The model: virtual services, their destinations (real servers), and the
//! settings `ipvsadm` edits. Runtime counters live here too, as atomics, because
//! the data-path workers and the control plane share them.
//!
//! Kernel list order matters (spec §1.1): a new destination is inserted at the
//! head, so `Service::dests` is newest-first. Schedulers receive that slice.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::stats::Stats;

/// Service flag: persistent (`-p`).
pub const SVC_F_PERSISTENT: u32 = 0x0001;
/// Service flag: one-packet scheduling (`-o`).
pub const SVC_F_ONEPACKET: u32 = 0x0004;
/// Scheduler flag 1: `flag-1`, `sh-fallback`, `mh-fallback`.
pub const SVC_F_SCHED1: u32 = 0x0008;
/// Scheduler flag 2: `flag-2`, `sh-port`, `mh-port`.
pub const SVC_F_SCHED2: u32 = 0x0010;
/// Scheduler flag 3: `flag-3`.
pub const SVC_F_SCHED3: u32 = 0x0020;
/// All scheduler flags.
pub const SVC_F_SCHED_MASK: u32 = SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3;

/// Destination flag: linked in a service (cleared when moved to the trash).
pub const DEST_F_AVAILABLE: u32 = 0x0001;
/// Destination flag: over its upper threshold.
pub const DEST_F_OVERLOAD: u32 = 0x0002;

/// Default persistence timeout when `-p` has no value (the kernel really uses 360 s).
pub const DEFAULT_PERSIST_TIMEOUT: u32 = 360;

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
}

impl Proto {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }

    /// From an IP protocol number.
    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            132 => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// Name as ipvsadm prints it (`TCP`, `UDP`, `SCTP`).
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
        }
    }
}

/// How a virtual service is identified: `<proto, addr, port>` or a firewall mark.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SvcId {
    /// `-t/-u/--sctp-service addr:port`.
    Addr {
        /// Protocol.
        proto: Proto,
        /// Virtual address (VIP).
        addr: IpAddr,
        /// Virtual port (0 = all ports, persistent services only).
        port: u16,
    },
    /// `-f mark` (`-6` for IPv6).
    Fwmark {
        /// The mark.
        mark: u32,
        /// IPv6 family.
        v6: bool,
    },
}

impl SvcId {
    /// True for IPv6 services.
    pub fn is_v6(&self) -> bool {
        match self {
            SvcId::Addr { addr, .. } => addr.is_ipv6(),
            SvcId::Fwmark { v6, .. } => *v6,
        }
    }

    /// The service port (0 for fwmark services).
    pub fn port(&self) -> u16 {
        match self {
            SvcId::Addr { port, .. } => *port,
            SvcId::Fwmark { .. } => 0,
        }
    }

    /// The service protocol (fwmark services count as TCP, as ipvsadm sends them).
    pub fn proto(&self) -> Proto {
        match self {
            SvcId::Addr { proto, .. } => *proto,
            SvcId::Fwmark { .. } => Proto::Tcp,
        }
    }
}

/// Forwarding method of a destination.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FwdMethod {
    /// NAT, `-m`: `Masq`.
    Masq,
    /// Local node: `Local`.
    Local,
    /// IP tunnelling, `-i`: `Tunnel`.
    Tunnel,
    /// Direct routing, `-g` (ipvsadm's default): `Route`.
    Route,
}

impl FwdMethod {
    /// The name `ipvsadm -L` prints.
    pub fn name(self) -> &'static str {
        match self {
            FwdMethod::Masq => "Masq",
            FwdMethod::Local => "Local",
            FwdMethod::Tunnel => "Tunnel",
            FwdMethod::Route => "Route",
        }
    }
}

/// Tunnel encapsulation (`--tun-type`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum TunType {
    /// IP in IP (default).
    #[default]
    Ipip,
    /// Generic UDP Encapsulation.
    Gue,
    /// GRE.
    Gre,
}

impl TunType {
    /// The name `--tun-type` takes and listings print.
    pub fn name(self) -> &'static str {
        match self {
            TunType::Ipip => "ipip",
            TunType::Gue => "gue",
            TunType::Gre => "gre",
        }
    }
}

/// Tunnel checksum option.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum TunCsum {
    /// `--tun-nocsum` (default).
    #[default]
    NoCsum,
    /// `--tun-csum`.
    Csum,
    /// `--tun-remcsum` (GUE only).
    RemCsum,
}

/// Everything `ipvsadm -A/-E` sets on a service.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServiceSpec {
    /// Identity.
    pub id: SvcId,
    /// Scheduler name (`wlc` by default).
    pub sched: String,
    /// `SVC_F_*` flags (persistent, one-packet, scheduler flags).
    pub flags: u32,
    /// Persistence timeout in seconds (meaningful with `SVC_F_PERSISTENT`).
    pub timeout: u32,
    /// IPv4: netmask as a host-order u32 (default 0xffffffff); IPv6: prefix length (default 128).
    pub netmask: u32,
    /// Persistence engine (`--pe`).
    pub pe: Option<String>,
}

impl ServiceSpec {
    /// A service with ipvsadm's defaults (wlc, not persistent).
    pub fn new(id: SvcId) -> Self {
        ServiceSpec {
            id,
            sched: "wlc".into(),
            flags: 0,
            timeout: 0,
            netmask: if id.is_v6() { 128 } else { 0xffff_ffff },
            pe: None,
        }
    }
}

/// Everything `ipvsadm -a/-e` sets on a destination.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DestSpec {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Forwarding method.
    pub fwd: FwdMethod,
    /// Weight 0..=65535 (0 = quiescent).
    pub weight: i32,
    /// Upper connection threshold (`-x`, 0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`, 0 = none).
    pub l_threshold: u32,
    /// Tunnel type (`-i`).
    pub tun_type: TunType,
    /// GUE port.
    pub tun_port: u16,
    /// Tunnel checksum option.
    pub tun_flags: TunCsum,
}

impl DestSpec {
    /// A destination with ipvsadm's defaults (DR, weight 1).
    pub fn new(addr: IpAddr, port: u16) -> Self {
        DestSpec {
            addr,
            port,
            fwd: FwdMethod::Route,
            weight: 1,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: TunType::Ipip,
            tun_port: 0,
            tun_flags: TunCsum::NoCsum,
        }
    }
}

/// The forwarding settings of a destination a new connection copies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DestFwd {
    /// Method.
    pub fwd: FwdMethod,
    /// Tunnel type.
    pub tun_type: TunType,
    /// GUE port.
    pub tun_port: u16,
    /// Tunnel checksum option.
    pub tun_flags: TunCsum,
}

/// A destination (real server) at run time.
///
/// Identity (`addr`, `port`) never changes; everything `-e` may change is an
/// atomic or behind a small mutex so the data path can read it without locks.
#[derive(Debug)]
pub struct Dest {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Current weight (0 = quiescent).
    pub weight: AtomicI32,
    /// Last non-zero weight (used by `mh`).
    pub last_weight: AtomicI32,
    /// `DEST_F_*` flags.
    pub flags: AtomicU32,
    /// Connections in an active state.
    pub activeconns: AtomicU32,
    /// Connections in an inactive state.
    pub inactconns: AtomicU32,
    /// Persistence templates bound to this destination.
    pub persistconns: AtomicU32,
    /// Upper threshold (`-x`).
    pub u_threshold: AtomicU32,
    /// Lower threshold (`-y`).
    pub l_threshold: AtomicU32,
    fwd: Mutex<DestFwd>,
    /// Traffic counters and rates.
    pub stats: Stats,
}

impl Dest {
    /// A fresh, available destination from its spec.
    pub fn from_spec(spec: &DestSpec) -> Self {
        Dest {
            addr: spec.addr,
            port: spec.port,
            weight: AtomicI32::new(spec.weight),
            last_weight: AtomicI32::new(spec.weight),
            flags: AtomicU32::new(DEST_F_AVAILABLE),
            activeconns: AtomicU32::new(0),
            inactconns: AtomicU32::new(0),
            persistconns: AtomicU32::new(0),
            u_threshold: AtomicU32::new(spec.u_threshold),
            l_threshold: AtomicU32::new(spec.l_threshold),
            fwd: Mutex::new(DestFwd {
                fwd: spec.fwd,
                tun_type: spec.tun_type,
                tun_port: spec.tun_port,
                tun_flags: spec.tun_flags,
            }),
            stats: Stats::default(),
        }
    }

    /// A test/bench helper: an available destination with a weight, DR method.
    pub fn new(addr: IpAddr, port: u16, weight: i32) -> Self {
        let mut s = DestSpec::new(addr, port);
        s.weight = weight;
        Dest::from_spec(&s)
    }

    /// A test helper: IPv4 destination `a.b.c.d:port`.
    pub fn v4(a: [u8; 4], port: u16, weight: i32) -> Arc<Self> {
        Arc::new(Dest::new(IpAddr::V4(Ipv4Addr::from(a)), port, weight))
    }

    /// Current weight.
    pub fn weight(&self) -> i32 {
        self.weight.load(Relaxed)
    }

    /// Last non-zero weight.
    pub fn last_weight(&self) -> i32 {
        self.last_weight.load(Relaxed)
    }

    /// Active connections.
    pub fn active(&self) -> u32 {
        self.activeconns.load(Relaxed)
    }

    /// Inactive connections.
    pub fn inactive(&self) -> u32 {
        self.inactconns.load(Relaxed)
    }

    /// True while the OVERLOAD flag is set.
    pub fn is_overloaded(&self) -> bool {
        self.flags.load(Relaxed) & DEST_F_OVERLOAD != 0
    }

    /// A scheduler may pick it: weight above 0 and not overloaded.
    #[inline]
    pub fn is_schedulable(&self) -> bool {
        self.weight() > 0 && !self.is_overloaded()
    }

    /// True while linked in a service.
    pub fn is_available(&self) -> bool {
        self.flags.load(Relaxed) & DEST_F_AVAILABLE != 0
    }

    /// The kernel's `ip_vs_dest_conn_overhead`: `active * 256 + inactive` (classic).
    pub fn overhead(&self) -> u64 {
        ((self.active() as u64) << 8) + self.inactive() as u64
    }

    /// Forwarding settings.
    pub fn fwd(&self) -> DestFwd {
        *self.fwd.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace the forwarding settings (`-e`).
    pub fn set_fwd(&self, f: DestFwd) {
        *self.fwd.lock().unwrap_or_else(|e| e.into_inner()) = f;
    }

    /// Apply a spec's mutable fields (`-a` on a resurrected dest, `-e`), with the
    /// kernel's OVERLOAD and last_weight rules (spec §1.2–1.3).
    pub fn apply_spec(&self, spec: &DestSpec, is_add: bool) {
        self.weight.store(spec.weight, Relaxed);
        if is_add || spec.weight != 0 {
            self.last_weight.store(spec.weight, Relaxed);
        }
        let old_u = self.u_threshold.swap(spec.u_threshold, Relaxed);
        self.l_threshold.store(spec.l_threshold, Relaxed);
        if spec.u_threshold == 0 || spec.u_threshold > old_u {
            self.flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        }
        self.set_fwd(DestFwd {
            fwd: spec.fwd,
            tun_type: spec.tun_type,
            tun_port: spec.tun_port,
            tun_flags: spec.tun_flags,
        });
    }

    /// The spec as it stands now (for listings and `-S`).
    pub fn spec(&self) -> DestSpec {
        let f = self.fwd();
        DestSpec {
            addr: self.addr,
            port: self.port,
            fwd: f.fwd,
            weight: self.weight(),
            u_threshold: self.u_threshold.load(Relaxed),
            l_threshold: self.l_threshold.load(Relaxed),
            tun_type: f.tun_type,
            tun_port: f.tun_port,
            tun_flags: f.tun_flags,
        }
    }

    /// Count a new connection bound to this destination (spec §1.3, bind):
    /// every connection starts inactive; OVERLOAD is set when the total
    /// reaches the upper threshold.
    pub fn bind_conn(&self) {
        self.inactconns.fetch_add(1, Relaxed);
        self.check_overload_on_bind();
    }

    /// Count a new persistence template bound to this destination.
    pub fn bind_template(&self) {
        self.persistconns.fetch_add(1, Relaxed);
        self.check_overload_on_bind();
    }

    fn check_overload_on_bind(&self) {
        let u = self.u_threshold.load(Relaxed);
        if u != 0 && self.active() + self.inactive() >= u {
            self.flags.fetch_or(DEST_F_OVERLOAD, Relaxed);
        }
    }

    /// A connection left (expiry): decrement the counter its activity flag
    /// says, then clear OVERLOAD per spec §1.3.
    pub fn unbind_conn(&self, was_active: bool) {
        let c = if was_active {
            &self.activeconns
        } else {
            &self.inactconns
        };
        let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        self.check_overload_on_unbind();
    }

    /// A template left.
    pub fn unbind_template(&self) {
        let _ = self
            .persistconns
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        self.check_overload_on_unbind();
    }

    fn check_overload_on_unbind(&self) {
        let l = self.l_threshold.load(Relaxed);
        let u = self.u_threshold.load(Relaxed);
        let total = self.active() + self.inactive();
        let clear = if l != 0 {
            total < l
        } else if u != 0 {
            (total as u64) * 4 < (u as u64) * 3
        } else {
            true
        };
        if clear {
            self.flags.fetch_and(!DEST_F_OVERLOAD, Relaxed);
        }
    }

    /// A connection moved between active and inactive (state machine).
    pub fn conn_became_active(&self, active: bool) {
        if active {
            let _ = self
                .inactconns
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
            self.activeconns.fetch_add(1, Relaxed);
        } else {
            let _ = self
                .activeconns
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
            self.inactconns.fetch_add(1, Relaxed);
        }
    }
}
