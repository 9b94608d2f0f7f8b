//! The destination-address cache shared by lblc and lblcr (spec §2.9, §2.10):
//! a 1024-bucket hash table (`IP_VS_LBLC_TAB_BITS` = 10, key `hash_32(daddr, 10)`)
//! with the kernel's garbage collection, plus the helpers both schedulers use.
//!
//! GC runs every 60 s (`CHECK_EXPIRE_INTERVAL`). A counter starting at 1 makes
//! every 30th run a full check that drops entries idle for the expiration time
//! (sysctl `lblc_expiration`/`lblcr_expiration`, default 24 h). Other runs only
//! act when the table holds more than 16384 entries: they drop entries idle for
//! 6 min, bucket by bucket from a rover, until `min((entries − max)·4/3, max/2)`
//! are gone. The daemon has no per-scheduler timers, so we keep our own
//! "next check" time and act when `handle_timeout(now)` passes it. The timer
//! is armed by the first `handle_timeout` or `schedule` call after binding
//! (the kernel arms it in `init_service`, which gets no clock here).

use std::net::IpAddr;
use std::sync::Arc;

use super::hash::{addr_fold, hash_32};
use crate::service::Dest;

/// Cache table size exponent (Kconfig `IP_VS_LBLC_TAB_BITS`/`IP_VS_LBLCR_TAB_BITS`).
pub const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
const TAB_MASK: usize = TAB_SIZE - 1;
/// `max_size`: entries above this trigger the partial GC.
pub const MAX_SIZE: usize = TAB_SIZE * 16;
/// GC period (`CHECK_EXPIRE_INTERVAL`, 60 s).
pub const CHECK_EXPIRE_INTERVAL_MS: u64 = 60_000;
/// Idle time after which the partial GC may drop an entry (`ENTRY_TIMEOUT`, 6 min).
pub const ENTRY_TIMEOUT_MS: u64 = 6 * 60_000;
/// Default `lblc_expiration` / `lblcr_expiration` (24 h).
pub const DEFAULT_EXPIRATION_MS: u64 = 24 * 60 * 60_000;
/// Every this many GC runs without partial collection, do a full check.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

/// One cache entry: a packet destination address and the scheduler's value.
#[derive(Debug)]
pub struct Entry<V> {
    /// The packet destination address (the key).
    pub addr: IpAddr,
    /// Last time (ms) a packet looked this entry up.
    pub lastuse: u64,
    /// The cached destination (lblc) or destination set (lblcr).
    pub val: V,
}

/// The cache table with its GC state (`ip_vs_lblc_table`).
#[derive(Debug)]
pub struct Table<V> {
    buckets: Vec<Vec<Entry<V>>>,
    entries: usize,
    rover: usize,
    counter: u32,
    next_check: Option<u64>,
    /// Full-check expiration in ms (the sysctl).
    pub expiration_ms: u64,
}

impl<V> Table<V> {
    /// An empty table with the given full-check expiration.
    pub fn new(expiration_ms: u64) -> Self {
        Table {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            entries: 0,
            rover: 0,
            counter: 1,
            next_check: None,
            expiration_ms,
        }
    }

    /// Drop every entry and the GC state (a fresh bind).
    pub fn reset(&mut self) {
        *self = Table::new(self.expiration_ms);
    }

    /// Number of cached addresses.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    #[inline]
    fn bucket(addr: IpAddr) -> usize {
        hash_32(addr_fold(addr), TAB_BITS) as usize
    }

    /// The entry for `addr`, if cached.
    #[inline]
    pub fn get_mut(&mut self, addr: IpAddr) -> Option<&mut Entry<V>> {
        self.buckets[Self::bucket(addr)]
            .iter_mut()
            .find(|e| e.addr == addr)
    }

    /// Add an entry for an address that is not cached yet.
    pub fn insert(&mut self, addr: IpAddr, now: u64, val: V) {
        self.buckets[Self::bucket(addr)].push(Entry {
            addr,
            lastuse: now,
            val,
        });
        self.entries += 1;
    }

    /// Start the GC clock if it is not running.
    #[inline]
    pub fn arm(&mut self, now: u64) {
        if self.next_check.is_none() {
            self.next_check = Some(now.saturating_add(CHECK_EXPIRE_INTERVAL_MS));
        }
    }

    /// Run the periodic check if it is due, then re-arm it one interval on.
    pub fn handle_timeout(&mut self, now: u64) {
        match self.next_check {
            None => self.arm(now),
            Some(t) if now >= t => {
                self.check_expire(now);
                self.next_check = Some(now.saturating_add(CHECK_EXPIRE_INTERVAL_MS));
            }
            Some(_) => {}
        }
    }

    /// Remove the entries of bucket `j` idle for at least `idle_ms`; returns how many.
    fn expire_bucket(&mut self, j: usize, now: u64, idle_ms: u64) -> usize {
        let b = &mut self.buckets[j];
        let before = b.len();
        b.retain(|e| now < e.lastuse.saturating_add(idle_ms));
        let gone = before - b.len();
        self.entries -= gone;
        gone
    }

    /// One GC timer run (`ip_vs_lblc_check_expire`).
    fn check_expire(&mut self, now: u64) {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            // Full check: every bucket, entries idle for the whole expiration.
            let mut j = self.rover;
            for _ in 0..TAB_SIZE {
                j = (j + 1) & TAB_MASK;
                self.expire_bucket(j, now, self.expiration_ms);
            }
            self.rover = j;
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let mut goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2) as isize;
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & TAB_MASK;
            goal -= self.expire_bucket(j, now, ENTRY_TIMEOUT_MS) as isize;
            if goal <= 0 {
                break;
            }
        }
        self.rover = j;
    }
}

/// `is_overloaded` of lblc/lblcr: `d` has more active connections than its
/// weight while some destination in the list is below half of its own weight.
/// (This is not the OVERLOAD flag, which the cached path ignores.)
#[inline]
pub fn lblc_overloaded(d: &Dest, dests: &[Arc<Dest>]) -> bool {
    d.active() as i64 > d.weight() as i64
        && dests
            .iter()
            .any(|m| (m.active() as i64) * 2 < m.weight() as i64)
}

/// The index of `d` in `dests`, trying the remembered `hint` first; `None` if
/// `d` is not in the list (e.g. deleted but not yet flagged unavailable).
#[inline]
pub fn find_dest(dests: &[Arc<Dest>], d: &Arc<Dest>, hint: &mut usize) -> Option<usize> {
    if dests.get(*hint).is_some_and(|x| Arc::ptr_eq(x, d)) {
        return Some(*hint);
    }
    let i = dests.iter().position(|x| Arc::ptr_eq(x, d))?;
    *hint = i;
    Some(i)
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::atomic::Ordering::Relaxed;

    fn a(i: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
    }

    #[test]
    fn full_check_on_every_30th_run() {
        let mut t: Table<()> = Table::new(1000);
        t.handle_timeout(0); // armed: first run at 60 s
        t.insert(a(1), 0, ());
        // Runs at 60 s, 120 s, … ; the counter goes 1 → 30 over 29 runs, the 30th run
        // (at 30 min) is the full check.
        for k in 1..30 {
            t.handle_timeout(k * 60_000);
            assert_eq!(t.len(), 1, "run {k}");
        }
        t.handle_timeout(30 * 60_000 - 1);
        assert_eq!(t.len(), 1);
        t.handle_timeout(30 * 60_000);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn partial_gc_only_above_max_size() {
        let mut t: Table<()> = Table::new(DEFAULT_EXPIRATION_MS);
        t.handle_timeout(0);
        for i in 0..(MAX_SIZE as u32 + 300) {
            t.insert(a(i), 0, ());
        }
        // Fresh entries (< 6 min idle) survive the first run.
        t.handle_timeout(60_000);
        assert_eq!(t.len(), MAX_SIZE + 300);
        // At the 6 min run all are idle ≥ 6 min: goal = 300 * 4 / 3 = 400, whole buckets
        // are dropped until at least 400 are gone (about 16 per bucket).
        for k in 2..=7 {
            t.handle_timeout(k * 60_000);
        }
        let gone = MAX_SIZE + 300 - t.len();
        assert!((400..400 + 40).contains(&gone), "gone {gone}");
        // Below max_size again: no further partial collection.
        let left = t.len();
        t.handle_timeout(8 * 60_000);
        assert_eq!(t.len(), left);
    }

    #[test]
    fn lblc_overloaded_rule() {
        let d = Dest::v4([10, 0, 0, 1], 80, 2);
        let m = Dest::v4([10, 0, 0, 2], 80, 3);
        let l = vec![d.clone(), m.clone()];
        d.activeconns.store(3, Relaxed);
        assert!(lblc_overloaded(&d, &l)); // m: 0 * 2 < 3
        m.activeconns.store(2, Relaxed);
        assert!(!lblc_overloaded(&d, &l)); // 4 < 3 false, d: 6 < 2 false
        d.activeconns.store(2, Relaxed);
        m.activeconns.store(0, Relaxed);
        assert!(!lblc_overloaded(&d, &l)); // 2 > 2 false
    }
}
