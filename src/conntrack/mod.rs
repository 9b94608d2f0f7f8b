//! The connection table (spec §3.1–3.8): one `DashMap` found from both
//! directions, plus persistence templates.
//!
//! A NAT connection is stored under two keys — the client's tuple as it
//! arrives (client → VIP) and the real server's reply tuple (RIP → client) —
//! both pointing at one `Conn`. Expiry is an idle timer: a packet only stores
//! a timestamp; a sweep from the housekeeping thread (about once a second)
//! removes connections whose `last_seen + timeout` has passed.

pub mod tcp;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::adm::api::{ConnSnapshot, Timeouts};
use crate::director::Service;
use crate::service::{Dest, DestFwd, FwdMethod};
use tcp::{Direction, TcpState};

/// Connection flag: counted in InActConn.
pub const CONN_F_INACTIVE: u32 = 0x0001;
/// Connection flag: no reply seen through us yet (DR/TUN): INPUT-ONLY table.
pub const CONN_F_NOOUTPUT: u32 = 0x0002;
/// Connection flag: persistence template.
pub const CONN_F_TEMPLATE: u32 = 0x0004;
/// Template flag: a controlled connection was established (shown `ASSURED`).
pub const CONN_F_ASSURED: u32 = 0x0008;

/// UDP's single state, named "UDP" in listings.
pub const UDP_STATE_NAME: &str = "UDP";
/// What an expiring template that still controls connections is re-armed to.
const TEMPLATE_HOLD_MS: u64 = 60_000;

/// A packet's 5-tuple as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
}

/// Which side of a connection a packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Client → VIP (the connection's "in" direction).
    Client,
    /// Real server → client (replies; seen for NAT only).
    Server,
}

/// The key of a persistence template (spec §3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// Protocol number (0 = IPPROTO_IP for fwmark templates).
    pub proto: u8,
    /// Client address masked by the service netmask.
    pub snet: IpAddr,
    /// VIP, or the fwmark as an IPv4 address.
    pub vaddr: IpAddr,
    /// Service port, or 0.
    pub vport: u16,
}

/// Write `v` unless the word already holds it.
#[inline]
fn store_if_changed(a: &AtomicU64, v: u64) {
    if a.load(Relaxed) != v {
        a.store(v, Relaxed);
    }
}

/// State and flags share one atomic word, so a packet that changes neither
/// (an established flow's data) only reads it, and a change is one
/// compare-and-swap: no lock on the packet path.
const fn pack(state: u8, flags: u32) -> u64 {
    ((flags as u64) << 32) | state as u64
}

const fn unpack(v: u64) -> (u8, u32) {
    (v as u8, (v >> 32) as u32)
}

/// One tracked flow or persistence template.
#[derive(Debug)]
pub struct Conn {
    /// IP protocol number (0 for fwmark templates).
    pub proto: u8,
    /// Client address (masked network for templates).
    pub caddr: IpAddr,
    /// Client port (0 for templates).
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// Forwarding settings copied from the destination at creation.
    pub fwd: DestFwd,
    /// The destination this connection is bound to.
    pub dest: Arc<Dest>,
    /// The service that scheduled it (for its counters).
    pub svc: Arc<Service>,
    /// Controlling template, if the service is persistent.
    pub control: Option<Arc<Conn>>,
    /// Connections this template controls.
    pub n_control: AtomicU32,
    /// Template key (templates only).
    pub tkey: Option<TemplateKey>,
    /// One-packet scheduling (`-o`): never hashed, released after its packet.
    one_packet: bool,
    last_seen: AtomicU64,
    /// The idle timeout of the current state: read on every lookup without
    /// the state lock, written under it.
    timeout_ms: AtomicU64,
    /// [`pack`]ed state and `CONN_F_*` flags.
    sf: AtomicU64,
}

/// Parameters of a new connection.
#[derive(Debug)]
pub struct NewConn {
    /// IP protocol.
    pub proto: u8,
    /// Client address and port.
    pub caddr: IpAddr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vaddr: IpAddr,
    /// Virtual port.
    pub vport: u16,
    /// Real server address.
    pub daddr: IpAddr,
    /// Real server port.
    pub dport: u16,
    /// Destination.
    pub dest: Arc<Dest>,
    /// Service.
    pub svc: Arc<Service>,
    /// Controlling template.
    pub control: Option<Arc<Conn>>,
}

impl Conn {
    /// Build a connection (not yet in the table). The destination's counters
    /// are bumped here (bind): it starts inactive, as in the kernel.
    pub fn new(p: NewConn, now_ms: u64, one_packet: bool) -> Arc<Conn> {
        let fwd = p.dest.fwd();
        let mut flags = CONN_F_INACTIVE;
        if fwd.fwd != FwdMethod::Masq {
            flags |= CONN_F_NOOUTPUT;
        }
        p.dest.bind_conn();
        if let Some(t) = &p.control {
            t.n_control.fetch_add(1, Relaxed);
        }
        Arc::new(Conn {
            proto: p.proto,
            caddr: p.caddr,
            cport: p.cport,
            vaddr: p.vaddr,
            vport: p.vport,
            daddr: p.daddr,
            dport: p.dport,
            fwd,
            dest: p.dest,
            svc: p.svc,
            control: p.control,
            n_control: AtomicU32::new(0),
            tkey: None,
            one_packet,
            last_seen: AtomicU64::new(now_ms),
            // Placeholder until the first packet sets the state's timeout.
            timeout_ms: AtomicU64::new(3_000),
            sf: AtomicU64::new(pack(0, flags)),
        })
    }

    /// Build a persistence template bound to `dest` (counted in PersistConn).
    pub fn new_template(
        key: TemplateKey,
        daddr: IpAddr,
        dport: u16,
        dest: Arc<Dest>,
        svc: Arc<Service>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Arc<Conn> {
        dest.bind_template();
        Arc::new(Conn {
            proto: key.proto,
            caddr: key.snet,
            cport: 0,
            vaddr: key.vaddr,
            vport: key.vport,
            daddr,
            dport,
            fwd: dest.fwd(),
            dest,
            svc,
            control: None,
            n_control: AtomicU32::new(0),
            tkey: Some(key),
            one_packet: false,
            last_seen: AtomicU64::new(now_ms),
            timeout_ms: AtomicU64::new(timeout_s as u64 * 1000),
            sf: AtomicU64::new(pack(0, CONN_F_TEMPLATE)),
        })
    }

    fn state_flags(&self) -> (u8, u32) {
        unpack(self.sf.load(Relaxed))
    }

    /// Current state number (TCP: `TcpState`; UDP: 0).
    pub fn state(&self) -> u8 {
        self.state_flags().0
    }

    /// Current flags.
    pub fn flags(&self) -> u32 {
        self.state_flags().1
    }

    /// Milliseconds of the last packet.
    pub fn last_seen(&self) -> u64 {
        self.last_seen.load(Relaxed)
    }

    /// The instant (ms) this entry expires unless refreshed.
    pub fn expires_at(&self) -> u64 {
        self.last_seen() + self.timeout_ms.load(Relaxed)
    }

    /// True for one-packet connections.
    pub fn is_one_packet(&self) -> bool {
        self.one_packet
    }

    /// Re-arm the idle timer without a state change (related ICMP does not:
    /// the kernel leaves the timer alone for it).
    pub fn touch(&self, now_ms: u64) {
        self.last_seen.store(now_ms, Relaxed);
    }

    /// Refresh a template's timer (every new controlled connection does).
    pub fn refresh(&self, now_ms: u64) {
        self.last_seen.store(now_ms, Relaxed);
    }

    /// Mark a template ASSURED.
    pub fn assure(&self) {
        // Read first: every reply of a persistent UDP flow lands here, and
        // the template is shared by all of the client's connections.
        if self.flags() & CONN_F_ASSURED == 0 {
            self.sf.fetch_or(pack(0, CONN_F_ASSURED), Relaxed);
        }
    }

    /// Run the protocol state machine for one packet and re-arm the idle
    /// timer (spec §3.2–3.4). Moves the destination's active/inactive
    /// counters when the state's activity changes.
    pub fn on_packet(&self, now_ms: u64, side: Side, tcp_flags: u8, t: &ConnTimeouts) {
        // Store only what changed: both directions' workers touch this conn,
        // and an unchanged cache line is not bounced between their cores.
        store_if_changed(&self.last_seen, now_ms);
        if self.proto != 6 {
            // UDP (and anything else): one state, always inactive.
            store_if_changed(&self.timeout_ms, t.udp_ms());
            if side == Side::Server {
                if let Some(t) = &self.control {
                    t.assure();
                }
            }
            return;
        }
        let mut old = self.sf.load(Relaxed);
        loop {
            let (st, flags) = unpack(old);
            let mut nflags = flags;
            let dir = match side {
                Side::Server => {
                    nflags &= !CONN_F_NOOUTPUT;
                    Direction::Output
                }
                Side::Client if flags & CONN_F_NOOUTPUT != 0 => Direction::InputOnly,
                Side::Client => Direction::Input,
            };
            let cur = TcpState::from_u8(st);
            // No secure_tcp sysctl in tunvs: always the normal table.
            let new = tcp::next(false, dir, tcp_flags, cur);
            // Some(active) when the connection moves between the counters.
            let mut moved = None;
            if new != cur {
                let inactive = flags & CONN_F_INACTIVE != 0;
                if !inactive && !new.is_active() {
                    nflags |= CONN_F_INACTIVE;
                    moved = Some(false);
                } else if inactive && new.is_active() {
                    nflags &= !CONN_F_INACTIVE;
                    moved = Some(true);
                }
            }
            let next = pack(new as u8, nflags);
            if next != old {
                if let Err(seen) = self.sf.compare_exchange_weak(old, next, Relaxed, Relaxed) {
                    old = seen;
                    continue;
                }
            }
            if let Some(active) = moved {
                self.dest.conn_became_active(active);
            }
            if new != cur && new == TcpState::Established {
                if let Some(t) = &self.control {
                    t.assure();
                }
            }
            store_if_changed(&self.timeout_ms, t.tcp_ms(new));
            return;
        }
    }

    /// The state's display name (`ipvsadm -L -c`).
    pub fn state_name(&self) -> &'static str {
        let (state, flags) = self.state_flags();
        if flags & CONN_F_TEMPLATE != 0 {
            if flags & CONN_F_ASSURED != 0 {
                "ASSURED"
            } else {
                "NONE"
            }
        } else if self.proto == 6 {
            TcpState::from_u8(state).name()
        } else {
            UDP_STATE_NAME
        }
    }

    /// True if TCP and in TIME_WAIT or CLOSE: a new SYN on the same tuple
    /// starts a new connection (conn_reuse_mode=1, spec §3.10).
    pub fn is_reusable(&self) -> bool {
        if self.control.is_some() || self.proto != 6 {
            return false;
        }
        let (state, flags) = self.state_flags();
        let st = TcpState::from_u8(state);
        st == TcpState::TimeWait
            || st == TcpState::Close
            || (st == TcpState::FinWait && flags & CONN_F_NOOUTPUT != 0)
    }

    /// The key packets from the client carry.
    pub fn client_key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.caddr,
            sport: self.cport,
            dst: self.vaddr,
            dport: self.vport,
        }
    }

    /// The key replies from the real server carry (NAT).
    pub fn server_key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.daddr,
            sport: self.dport,
            dst: self.caddr,
            dport: self.cport,
        }
    }
}

/// The timeouts in force (`--set`), shared by the table and its connections.
#[derive(Debug)]
pub struct ConnTimeouts {
    tcp: AtomicU32,
    tcpfin: AtomicU32,
    udp: AtomicU32,
}

impl Default for ConnTimeouts {
    fn default() -> Self {
        let d = Timeouts::default();
        ConnTimeouts {
            tcp: AtomicU32::new(d.tcp),
            tcpfin: AtomicU32::new(d.tcpfin),
            udp: AtomicU32::new(d.udp),
        }
    }
}

impl ConnTimeouts {
    /// Timeout in ms of a TCP state (ESTABLISHED and FIN_WAIT follow `--set`).
    pub fn tcp_ms(&self, s: TcpState) -> u64 {
        let secs = match s {
            TcpState::Established => self.tcp.load(Relaxed),
            TcpState::FinWait => self.tcpfin.load(Relaxed),
            other => other.default_timeout(),
        };
        secs as u64 * 1000
    }

    /// UDP timeout in ms.
    pub fn udp_ms(&self) -> u64 {
        self.udp.load(Relaxed) as u64 * 1000
    }

    /// `--set` (0 = unchanged).
    pub fn set(&self, t: Timeouts) {
        if t.tcp != 0 {
            self.tcp.store(t.tcp, Relaxed);
        }
        if t.tcpfin != 0 {
            self.tcpfin.store(t.tcpfin, Relaxed);
        }
        if t.udp != 0 {
            self.udp.store(t.udp, Relaxed);
        }
    }

    /// `-L --timeout`.
    pub fn get(&self) -> Timeouts {
        Timeouts {
            tcp: self.tcp.load(Relaxed),
            tcpfin: self.tcpfin.load(Relaxed),
            udp: self.udp.load(Relaxed),
        }
    }
}

type Hasher = foldhash::fast::RandomState;

/// The connection table and the template table.
#[derive(Debug, Default)]
pub struct ConnTable {
    flows: DashMap<FlowKey, (Arc<Conn>, Side), Hasher>,
    templates: DashMap<TemplateKey, Arc<Conn>, Hasher>,
    /// Invalidated templates, kept until the connections they control are gone.
    detached: Mutex<Vec<Arc<Conn>>>,
    /// Timeouts in force.
    pub timeouts: ConnTimeouts,
}

impl ConnTable {
    /// Find the connection a packet belongs to, and which side sent it.
    #[inline]
    pub fn lookup(&self, key: &FlowKey) -> Option<(Arc<Conn>, Side)> {
        self.flows.get(key).map(|e| (e.0.clone(), e.1))
    }

    /// [`ConnTable::lookup`] at `now_ms`: a connection whose idle deadline has
    /// passed is gone, as the kernel's timer would have fired (spec §3.2); it
    /// is unlinked now rather than at the next sweep.
    #[inline]
    pub fn lookup_live(&self, key: &FlowKey, now_ms: u64) -> Option<(Arc<Conn>, Side)> {
        let (c, side) = self.lookup(key)?;
        if c.expires_at() <= now_ms {
            self.unlink(&c);
            return None;
        }
        Some((c, side))
    }

    /// Insert a new connection under its client key (and its server key for NAT).
    pub fn insert(&self, c: Arc<Conn>) {
        if c.fwd.fwd == FwdMethod::Masq {
            self.flows.insert(c.server_key(), (c.clone(), Side::Server));
        }
        self.flows.insert(c.client_key(), (c, Side::Client));
    }

    /// Find a valid template.
    pub fn template(&self, key: &TemplateKey) -> Option<Arc<Conn>> {
        self.templates.get(key).map(|e| e.clone())
    }

    /// [`ConnTable::template`] at `now_ms`: a template past its deadline that
    /// controls no connection is gone (spec §3.7) and is released now.
    pub fn template_live(&self, key: &TemplateKey, now_ms: u64) -> Option<Arc<Conn>> {
        let t = self.template(key)?;
        if t.expires_at() <= now_ms && t.n_control.load(Relaxed) == 0 {
            if self
                .templates
                .remove_if(key, |_, v| Arc::ptr_eq(v, &t))
                .is_some()
            {
                t.dest.unbind_template();
            }
            return None;
        }
        if t.expires_at() <= now_ms {
            // Its timer would have fired while it still controlled
            // connections: the kernel then holds it with a 60 s timeout, for
            // good (spec §3.2), as the next sweep would.
            t.timeout_ms.store(TEMPLATE_HOLD_MS, Relaxed);
        }
        Some(t)
    }

    /// Insert a template.
    pub fn insert_template(&self, t: Arc<Conn>) {
        if let Some(k) = t.tkey {
            self.templates.insert(k, t);
        }
    }

    /// Invalidate a template whose destination went away: it can no longer
    /// match and is left to expire (spec §3.7).
    pub fn invalidate_template(&self, key: &TemplateKey, t: &Arc<Conn>) {
        if let Some((_, t)) = self.templates.remove_if(key, |_, v| Arc::ptr_eq(v, t)) {
            self.detached
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t);
        }
    }

    /// Number of connections (not templates).
    pub fn len(&self) -> usize {
        self.flows.iter().filter(|e| e.1 == Side::Client).count()
    }

    /// True when there are no connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remove one connection now (both keys) and unbind it.
    fn unlink(&self, c: &Arc<Conn>) {
        let ck = c.client_key();
        let removed = self
            .flows
            .remove_if(&ck, |_, v| Arc::ptr_eq(&v.0, c))
            .is_some();
        if c.fwd.fwd == FwdMethod::Masq {
            self.flows
                .remove_if(&c.server_key(), |_, v| Arc::ptr_eq(&v.0, c));
        }
        if removed {
            Self::release(c);
        }
    }

    fn release(c: &Arc<Conn>) {
        let inactive = c.flags() & CONN_F_INACTIVE != 0;
        c.dest.unbind_conn(!inactive);
        if let Some(t) = &c.control {
            let _ = t
                .n_control
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        }
    }

    /// Drop a connection that was never inserted (one-packet scheduling).
    pub fn release_unhashed(c: &Arc<Conn>) {
        Self::release(c);
    }

    /// Expire a connection at once (port reuse).
    pub fn expire_conn(&self, c: &Arc<Conn>) {
        self.unlink(c);
    }

    /// Sweep: remove every connection and template idle past its timeout.
    /// Returns how many entries went.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut dead: Vec<Arc<Conn>> = Vec::new();
        for e in self.flows.iter() {
            if e.1 == Side::Client && e.0.expires_at() <= now_ms {
                dead.push(e.0.clone());
            }
        }
        let mut n = 0;
        for c in &dead {
            if c.expires_at() <= now_ms {
                self.unlink(c);
                n += 1;
            }
        }
        let mut dead_t: Vec<(TemplateKey, Arc<Conn>)> = Vec::new();
        for e in self.templates.iter() {
            if e.value().expires_at() <= now_ms {
                dead_t.push((*e.key(), e.value().clone()));
            }
        }
        for (k, t) in dead_t {
            if t.n_control.load(Relaxed) > 0 {
                // A template lives as long as the connections it controls.
                t.timeout_ms.store(TEMPLATE_HOLD_MS, Relaxed);
                t.refresh(now_ms);
                continue;
            }
            if self
                .templates
                .remove_if(&k, |_, v| Arc::ptr_eq(v, &t))
                .is_some()
            {
                t.dest.unbind_template();
                n += 1;
            }
        }
        // Invalidated templates: released once nothing they control is left.
        if let Ok(mut d) = self.detached.lock() {
            d.retain(|t| {
                if t.n_control.load(Relaxed) == 0 && t.expires_at() <= now_ms {
                    t.dest.unbind_template();
                    n += 1;
                    false
                } else {
                    true
                }
            });
        }
        n
    }

    /// Every connection and template as listings show them.
    pub fn snapshot(&self, now_ms: u64) -> Vec<ConnSnapshot> {
        let mut v = Vec::new();
        let snap = |c: &Conn, proto: &'static str| ConnSnapshot {
            proto,
            caddr: c.caddr,
            cport: c.cport,
            vaddr: c.vaddr,
            vport: c.vport,
            daddr: c.daddr,
            dport: c.dport,
            state: c.state_name(),
            expires: (c.expires_at().saturating_sub(now_ms) / 1000) as u32,
            pe: None,
        };
        for e in self.templates.iter() {
            let c = e.value();
            let proto = match c.proto {
                6 => "TCP",
                17 => "UDP",
                132 => "SCTP",
                _ => "IP",
            };
            v.push(snap(c, proto));
        }
        for e in self.flows.iter() {
            if e.1 != Side::Client {
                continue;
            }
            let proto = match e.0.proto {
                6 => "TCP",
                17 => "UDP",
                132 => "SCTP",
                _ => "IP",
            };
            v.push(snap(&e.0, proto));
        }
        v
    }
}
