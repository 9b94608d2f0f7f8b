//! The director: the live service table, the connection table and the
//! global counters, with the kernel's control semantics (spec §1, §3.12, §4.12).
//! It implements [`Ipvs`] so `tunvs adm` drives it, and it is what the data
//! path reads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use crate::adm::api::{ConnSnapshot, DestSnapshot, Ipvs, IpvsError, ServiceSnapshot, Timeouts};
use crate::conntrack::ConnTable;
use crate::sched::{self, DestChange, FlowInfo, SchedCtx, Scheduler};
use crate::service::{
    Dest, DestSpec, ServiceSpec, SvcId, TunType, DEST_F_AVAILABLE, SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
};
use crate::stats::Stats;
use crate::util::Rng;

/// How long a deleted destination stays in the trash after its last
/// connection is gone (spec §3.12).
const TRASH_IDLE_MS: u64 = 120_000;

#[derive(Debug)]
struct SchedSlot {
    dests: Vec<Arc<Dest>>,
    sched: Box<dyn Scheduler>,
    rng: Rng,
}

/// What the data path reads of a service's settings when it schedules a new
/// connection: copied out of two atomics, no lock, no string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcParams {
    /// `SVC_F_*` flags.
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub timeout: u32,
    /// Persistence netmask (IPv4 mask as a u32, IPv6 prefix length).
    pub netmask: u32,
}

impl SvcParams {
    fn of(spec: &ServiceSpec) -> Self {
        SvcParams {
            flags: spec.flags,
            timeout: spec.timeout,
            netmask: spec.netmask,
        }
    }

    /// True for `-p` services.
    pub fn is_persistent(self) -> bool {
        self.flags & SVC_F_PERSISTENT != 0
    }

    /// True for `-o` services.
    pub fn is_one_packet(self) -> bool {
        self.flags & SVC_F_ONEPACKET != 0
    }
}

/// A virtual service at run time.
#[derive(Debug)]
pub struct Service {
    /// Identity.
    pub id: SvcId,
    /// The whole spec, for listings and `-E`.
    spec: RwLock<ServiceSpec>,
    /// flags << 32 | timeout, and the netmask: the data path's copy of the
    /// spec's hot fields, written with it.
    flags_timeout: AtomicU64,
    netmask: AtomicU32,
    slot: Mutex<SchedSlot>,
    /// Counters and rates.
    pub stats: Stats,
}

impl Service {
    fn new(spec: &ServiceSpec, sched: Box<dyn Scheduler>, seed: u64) -> Self {
        let mut sched = sched;
        sched.init_service(&[], spec.flags);
        Service {
            id: spec.id,
            spec: RwLock::new(spec.clone()),
            flags_timeout: AtomicU64::new(((spec.flags as u64) << 32) | spec.timeout as u64),
            netmask: AtomicU32::new(spec.netmask),
            slot: Mutex::new(SchedSlot {
                dests: Vec::new(),
                sched,
                rng: Rng::seeded(seed),
            }),
            stats: Stats::default(),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, SchedSlot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current settings.
    pub fn spec(&self) -> ServiceSpec {
        self.spec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The settings the data path needs, without a lock.
    pub fn params(&self) -> SvcParams {
        let ft = self.flags_timeout.load(Relaxed);
        SvcParams {
            flags: (ft >> 32) as u32,
            timeout: ft as u32,
            netmask: self.netmask.load(Relaxed),
        }
    }

    /// Current `SVC_F_*` flags.
    pub fn flags(&self) -> u32 {
        self.params().flags
    }

    /// Replace the settings (`-E`); the caller holds the slot lock, so a
    /// scheduling decision sees the old or the new flags, never a mix.
    fn set_spec(&self, spec: &ServiceSpec) {
        let p = SvcParams::of(spec);
        *self.spec.write().unwrap_or_else(|e| e.into_inner()) = spec.clone();
        self.netmask.store(p.netmask, Relaxed);
        self.flags_timeout
            .store(((p.flags as u64) << 32) | p.timeout as u64, Relaxed);
    }

    /// Destinations in kernel list order (newest first).
    pub fn dests(&self) -> Vec<Arc<Dest>> {
        self.slot().dests.clone()
    }

    /// Ask the scheduler for a destination (the kernel's `ip_vs_schedule`
    /// core); `None` is "no destination available".
    pub fn schedule(&self, flow: &FlowInfo, now_ms: u64) -> Option<Arc<Dest>> {
        let mut slot = self.slot();
        // Read under the slot lock, which `-E` holds while it changes both
        // the scheduler and the flags.
        let flags = self.flags();
        let SchedSlot { dests, sched, rng } = &mut *slot;
        let mut ctx = SchedCtx {
            now_ms,
            rng,
            svc_flags: flags,
        };
        let i = sched.schedule(dests, flow, &mut ctx)?;
        dests.get(i).cloned()
    }

    /// Scheduler housekeeping (lblc/lblcr expiry).
    pub fn sched_tick(&self, now_ms: u64) {
        self.slot().sched.handle_timeout(now_ms);
    }

    fn find(&self, addr: IpAddr, port: u16) -> Option<(usize, Arc<Dest>)> {
        self.slot()
            .dests
            .iter()
            .enumerate()
            .find(|(_, d)| d.addr == addr && d.port == port)
            .map(|(i, d)| (i, d.clone()))
    }

    fn snapshot(&self) -> ServiceSnapshot {
        let dests = self
            .dests()
            .iter()
            .map(|d| DestSnapshot {
                spec: d.spec(),
                activeconns: d.active(),
                inactconns: d.inactive(),
                persistconns: d.persistconns.load(Relaxed),
                stats: d.stats.snapshot(),
            })
            .collect();
        ServiceSnapshot {
            spec: self.spec(),
            stats: self.stats.snapshot(),
            dests,
        }
    }
}

/// What the daemon does when services and destinations come and go: steer
/// their traffic into the device (tun mode) and say which methods work.
pub trait Hooks: Send + Sync + std::fmt::Debug {
    /// A service is about to be added; an error refuses the command.
    fn service_added(&self, _id: &SvcId) -> Result<(), String> {
        Ok(())
    }
    /// A service was removed.
    fn service_removed(&self, _id: &SvcId) {}
    /// A destination is about to be added (or changed to this spec).
    fn dest_added(&self, _svc: &SvcId, _d: &DestSpec) -> Result<(), String> {
        Ok(())
    }
    /// A destination was removed (or changed away from this spec).
    fn dest_removed(&self, _svc: &SvcId, _d: &DestSpec) {}
    /// A warning for a destination this data path cannot serve yet.
    fn dest_warning(&self, _d: &DestSpec) -> Option<String> {
        None
    }
}

#[derive(Debug, Default)]
struct Services {
    list: Vec<Arc<Service>>,
    // foldhash, as the connection table: every packet that misses the
    // connection table (SYN floods included) looks a service up here.
    by_addr: HashMap<(u8, IpAddr, u16), Arc<Service>, Hasher>,
    by_mark: HashMap<(u32, bool), Arc<Service>, Hasher>,
    /// How many services each virtual address carries (tap mode answers ARP
    /// and ping for these).
    vips: HashMap<IpAddr, u32, Hasher>,
    port0: usize,
}

type Hasher = foldhash::fast::RandomState;

/// The clock the director reads for listings (expiry columns).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Services, connections, counters.
pub struct Director {
    services: RwLock<Services>,
    trash: Mutex<Vec<(SvcId, Arc<Dest>, u64)>>,
    /// The connection table.
    pub conns: ConnTable,
    /// Director-wide counters.
    pub stats: Stats,
    hooks: RwLock<Option<Arc<dyn Hooks>>>,
    clock: Clock,
    seed: Mutex<Rng>,
}

impl std::fmt::Debug for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director").finish_non_exhaustive()
    }
}

impl Default for Director {
    fn default() -> Self {
        Director::new()
    }
}

fn svc_key(id: &SvcId) -> Option<(u8, IpAddr, u16)> {
    match id {
        SvcId::Addr { proto, addr, port } => Some((proto.number(), *addr, *port)),
        SvcId::Fwmark { .. } => None,
    }
}

impl Director {
    /// An empty director on the process clock.
    pub fn new() -> Self {
        Director::with_clock(Arc::new(crate::util::now_ms), Rng::from_entropy())
    }

    /// An empty director with a given clock and seed (tests: virtual time).
    pub fn with_clock(clock: Clock, seed: Rng) -> Self {
        Director {
            services: RwLock::new(Services::default()),
            trash: Mutex::new(Vec::new()),
            conns: ConnTable::default(),
            stats: Stats::default(),
            hooks: RwLock::new(None),
            clock,
            seed: Mutex::new(seed),
        }
    }

    /// Install the daemon's hooks.
    pub fn set_hooks(&self, h: Arc<dyn Hooks>) {
        *self.hooks.write().unwrap_or_else(|e| e.into_inner()) = Some(h);
    }

    fn hooks(&self) -> Option<Arc<dyn Hooks>> {
        self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Milliseconds on the director's clock.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    fn next_seed(&self) -> u64 {
        self.seed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u64()
    }

    /// The service a new packet to `daddr:dport` belongs to: exact match,
    /// then a port-0 service of the same address (spec §1.4).
    #[inline]
    pub fn find_service(&self, proto: u8, daddr: IpAddr, dport: u16) -> Option<Arc<Service>> {
        let s = self.services.read().unwrap_or_else(|e| e.into_inner());
        if let Some(svc) = s.by_addr.get(&(proto, daddr, dport)) {
            return Some(svc.clone());
        }
        if s.port0 > 0 {
            return s.by_addr.get(&(proto, daddr, 0)).cloned();
        }
        None
    }

    /// True when `addr` is the address of a virtual service (tap mode
    /// answers ARP and ICMP echo for it).
    pub fn is_vip(&self, addr: IpAddr) -> bool {
        let s = self.services.read().unwrap_or_else(|e| e.into_inner());
        s.vips.contains_key(&addr)
    }

    /// The fwmark service with this mark.
    pub fn find_fwmark(&self, mark: u32, v6: bool) -> Option<Arc<Service>> {
        let s = self.services.read().unwrap_or_else(|e| e.into_inner());
        s.by_mark.get(&(mark, v6)).cloned()
    }

    fn get(&self, id: &SvcId) -> Result<Arc<Service>, IpvsError> {
        let s = self.services.read().unwrap_or_else(|e| e.into_inner());
        let found = match id {
            SvcId::Addr { .. } => svc_key(id).and_then(|k| s.by_addr.get(&k)),
            SvcId::Fwmark { mark, v6 } => s.by_mark.get(&(*mark, *v6)),
        };
        found.cloned().ok_or(IpvsError::NoService)
    }

    /// All services in insertion order.
    pub fn service_list(&self) -> Vec<Arc<Service>> {
        self.services
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .list
            .clone()
    }

    /// Periodic work: connection expiry, scheduler housekeeping, trash.
    pub fn tick(&self, now_ms: u64) {
        self.conns.expire(now_ms);
        for s in self.service_list() {
            s.sched_tick(now_ms);
        }
        // Free trashed destinations nobody references any more.
        let mut t = self.trash.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|(_, d, at)| Arc::strong_count(d) > 1 || now_ms < at + TRASH_IDLE_MS);
    }

    /// The 2-second rate-estimator tick for every counter.
    pub fn estimate_tick(&self) {
        self.stats.estimate_tick();
        for s in self.service_list() {
            s.stats.estimate_tick();
            for d in s.dests() {
                d.stats.estimate_tick();
            }
        }
    }

    fn validate_service(spec: &ServiceSpec) -> Result<Box<dyn Scheduler>, IpvsError> {
        if spec.id.is_v6() && (spec.netmask < 1 || spec.netmask > 128) {
            return Err(IpvsError::Invalid);
        }
        if spec.pe.is_some() {
            // No persistence engine (sip) is built in.
            return Err(IpvsError::NotFound);
        }
        sched::by_name(&spec.sched).ok_or(IpvsError::NotFound)
    }

    fn validate_dest(svc: &SvcId, d: &DestSpec) -> Result<(), IpvsError> {
        if d.weight < 0 {
            return Err(IpvsError::Range);
        }
        if d.l_threshold > d.u_threshold {
            return Err(IpvsError::Range);
        }
        if d.tun_type == TunType::Gue && d.tun_port == 0 {
            return Err(IpvsError::Invalid);
        }
        let unicast = match d.addr {
            IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
            IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified()),
        };
        if !unicast {
            return Err(IpvsError::Invalid);
        }
        if d.addr.is_ipv6() != svc.is_v6() && d.fwd != crate::service::FwdMethod::Tunnel {
            return Err(IpvsError::AfNotSupported);
        }
        Ok(())
    }

    /// A deleted service's destinations go to the trash. Like the kernel's
    /// `__ip_vs_del_service`, the scheduler is not told dest by dest (the
    /// service is gone with it), and the hooks run outside the locks.
    fn trash_dests(&self, svc: &Service) {
        let now = self.now_ms();
        let dests = std::mem::take(&mut svc.slot().dests);
        for d in &dests {
            d.flags.fetch_and(!DEST_F_AVAILABLE, Relaxed);
            if let Some(h) = self.hooks() {
                h.dest_removed(&svc.id, &d.spec());
            }
        }
        let mut t = self.trash.lock().unwrap_or_else(|e| e.into_inner());
        t.extend(dests.into_iter().map(|d| (svc.id, d, now)));
    }
}

impl Ipvs for Director {
    fn add_service(&self, spec: &ServiceSpec) -> Result<(), IpvsError> {
        let sched = Self::validate_service(spec)?;
        let mut s = self.services.write().unwrap_or_else(|e| e.into_inner());
        let exists = match &spec.id {
            SvcId::Addr { .. } => svc_key(&spec.id).is_some_and(|k| s.by_addr.contains_key(&k)),
            SvcId::Fwmark { mark, v6 } => s.by_mark.contains_key(&(*mark, *v6)),
        };
        if exists {
            return Err(IpvsError::Exists);
        }
        if let Some(h) = self.hooks() {
            h.service_added(&spec.id).map_err(IpvsError::Other)?;
        }
        let svc = Arc::new(Service::new(spec, sched, self.next_seed()));
        match &spec.id {
            SvcId::Addr { port, addr, .. } => {
                if *port == 0 {
                    s.port0 += 1;
                }
                *s.vips.entry(*addr).or_insert(0) += 1;
                s.by_addr.insert(
                    svc_key(&spec.id).unwrap_or_else(|| unreachable!()),
                    svc.clone(),
                );
            }
            SvcId::Fwmark { mark, v6 } => {
                s.by_mark.insert((*mark, *v6), svc.clone());
            }
        }
        s.list.push(svc);
        Ok(())
    }

    fn edit_service(&self, spec: &ServiceSpec) -> Result<(), IpvsError> {
        let svc = self.get(&spec.id)?;
        let new_sched = Self::validate_service(spec)?;
        let mut slot = svc.slot();
        if slot.sched.name() != spec.sched {
            let mut sch = new_sched;
            sch.init_service(&slot.dests, spec.flags);
            slot.sched = sch;
        }
        svc.set_spec(spec);
        Ok(())
    }

    fn del_service(&self, id: &SvcId) -> Result<(), IpvsError> {
        let svc = {
            let mut s = self.services.write().unwrap_or_else(|e| e.into_inner());
            let svc = match id {
                SvcId::Addr { port, addr, .. } => {
                    let k = svc_key(id).unwrap_or_else(|| unreachable!());
                    let svc = s.by_addr.remove(&k).ok_or(IpvsError::NoService)?;
                    if *port == 0 {
                        s.port0 -= 1;
                    }
                    if let Some(n) = s.vips.get_mut(addr) {
                        *n -= 1;
                        if *n == 0 {
                            s.vips.remove(addr);
                        }
                    }
                    svc
                }
                SvcId::Fwmark { mark, v6 } => s
                    .by_mark
                    .remove(&(*mark, *v6))
                    .ok_or(IpvsError::NoService)?,
            };
            s.list.retain(|x| !Arc::ptr_eq(x, &svc));
            svc
        };
        self.trash_dests(&svc);
        if let Some(h) = self.hooks() {
            h.service_removed(id);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), IpvsError> {
        for s in self.service_list() {
            self.del_service(&s.id)?;
        }
        Ok(())
    }

    fn add_dest(&self, id: &SvcId, d: &DestSpec) -> Result<(), IpvsError> {
        let svc = self.get(id)?;
        Self::validate_dest(id, d)?;
        if svc.find(d.addr, d.port).is_some() {
            return Err(IpvsError::Exists);
        }
        if let Some(h) = self.hooks() {
            h.dest_added(id, d).map_err(IpvsError::Other)?;
        }
        // A destination still in the trash comes back with its counters.
        let revived = {
            let mut t = self.trash.lock().unwrap_or_else(|e| e.into_inner());
            t.iter()
                .position(|(sid, x, _)| sid == id && x.addr == d.addr && x.port == d.port)
                .map(|i| t.remove(i).1)
        };
        let dest = match revived {
            Some(x) => {
                x.apply_spec(d, true);
                x.flags.fetch_or(DEST_F_AVAILABLE, Relaxed);
                x
            }
            None => Arc::new(Dest::from_spec(d)),
        };
        let flags = svc.flags();
        let mut slot = svc.slot();
        slot.dests.insert(0, dest);
        let SchedSlot { dests, sched, .. } = &mut *slot;
        sched.dests_changed(dests, DestChange::Added(0), flags);
        Ok(())
    }

    fn edit_dest(&self, id: &SvcId, d: &DestSpec) -> Result<(), IpvsError> {
        let svc = self.get(id)?;
        Self::validate_dest(id, d)?;
        let (i, dest) = svc.find(d.addr, d.port).ok_or(IpvsError::NotFound)?;
        let old = dest.spec();
        if let Some(h) = self.hooks() {
            if old.fwd != d.fwd {
                h.dest_added(id, d).map_err(IpvsError::Other)?;
                h.dest_removed(id, &old);
            }
        }
        dest.apply_spec(d, false);
        let flags = svc.flags();
        let mut slot = svc.slot();
        let SchedSlot { dests, sched, .. } = &mut *slot;
        sched.dests_changed(dests, DestChange::Edited(i), flags);
        Ok(())
    }

    fn del_dest(&self, id: &SvcId, addr: IpAddr, port: u16) -> Result<(), IpvsError> {
        let svc = self.get(id)?;
        let dest = {
            // Find and unlink under one lock.
            let mut slot = svc.slot();
            let i = slot
                .dests
                .iter()
                .position(|d| d.addr == addr && d.port == port)
                .ok_or(IpvsError::NotFound)?;
            let dest = slot.dests.remove(i);
            dest.flags.fetch_and(!DEST_F_AVAILABLE, Relaxed);
            let flags = svc.flags();
            let SchedSlot { dests, sched, .. } = &mut *slot;
            sched.dests_changed(dests, DestChange::Removed(i), flags);
            dest
        };
        if let Some(h) = self.hooks() {
            h.dest_removed(id, &dest.spec());
        }
        let now = self.now_ms();
        self.trash
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((*id, dest, now));
        Ok(())
    }

    fn zero(&self, id: Option<&SvcId>) -> Result<(), IpvsError> {
        let list = match id {
            Some(id) => vec![self.get(id)?],
            None => {
                self.stats.zero();
                self.service_list()
            }
        };
        for s in list {
            s.stats.zero();
            for d in s.dests() {
                d.stats.zero();
            }
        }
        Ok(())
    }

    fn set_timeouts(&self, t: Timeouts) -> Result<(), IpvsError> {
        self.conns.timeouts.set(t);
        Ok(())
    }

    fn timeouts(&self) -> Timeouts {
        self.conns.timeouts.get()
    }

    fn services(&self) -> Vec<ServiceSnapshot> {
        self.service_list().iter().map(|s| s.snapshot()).collect()
    }

    fn conns(&self) -> Vec<ConnSnapshot> {
        self.conns.snapshot(self.now_ms())
    }

    fn dest_warning(&self, _svc: &SvcId, d: &DestSpec) -> Option<String> {
        self.hooks().and_then(|h| h.dest_warning(d))
    }
}
