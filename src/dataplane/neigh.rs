//! tunvs's own neighbour (ARP) table for tap mode, shared by the workers,
//! and the per-worker queue of packets waiting for a neighbour.
//!
//! smoltcp keeps a neighbour cache too, but it is private to its interface
//! and sized at compile time (crates-and-tun.md §3), so the data path keeps
//! this one: filled by snooping every ARP frame on the wire and by our own
//! ARP requests for real servers and the gateway.
//!
//! Life of an entry (a simplified Linux `neigh` state machine, times in ms of
//! the caller's clock — nothing here reads a clock):
//! * **incomplete**: created by [`NeighTable::resolve`] for an unknown
//!   address; a request is sent at once and every [`PROBE_INTERVAL_MS`] up
//!   to [`MAX_PROBES`] times, then the entry is **failed** for
//!   [`FAILED_HOLD_MS`] (packets to it are dropped and counted), after which
//!   resolution starts again;
//! * **reachable**: an ARP frame from the address was seen less than
//!   [`REACHABLE_MS`] ago: used as is;
//! * **stale**: older than that: still used, and re-probed (at most
//!   [`MAX_PROBES`] requests [`PROBE_INTERVAL_MS`] apart); without an answer
//!   it becomes failed. A direct-routing real server never sends us IP
//!   traffic, so only these probes keep it confirmed;
//! * entries unconfirmed for [`GC_MS`] are removed by [`NeighTable::expire`].
//!
//! The pending queue ([`PendingQueue`]) holds copies of frames in a fixed
//! pool allocated once: at most [`PER_NEIGH`] frames per neighbour and
//! `slots` in all; the rest are dropped and counted.

use std::net::IpAddr;

use dashmap::DashMap;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// A confirmed entry is used without probing for this long.
pub const REACHABLE_MS: u64 = 30_000;
/// Time between two ARP requests for the same address.
pub const PROBE_INTERVAL_MS: u64 = 1_000;
/// Requests sent before an address is declared failed.
pub const MAX_PROBES: u8 = 3;
/// How long a failed address stays failed before it is tried again.
pub const FAILED_HOLD_MS: u64 = 3_000;
/// Entries not confirmed for this long are removed.
pub const GC_MS: u64 = 300_000;
/// Most entries the table holds (a bigger LAN is refused new entries).
pub const MAX_ENTRIES: usize = 4096;
/// Most frames queued for one unresolved neighbour.
pub const PER_NEIGH: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: Option<Mac>,
    confirmed_ms: u64,
    probe_ms: u64,
    probes: u8,
}

/// What [`NeighTable::resolve`] says about a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Use this MAC; when `probe`, also send an ARP request (the entry is
    /// stale and due for a re-probe).
    Known {
        /// The neighbour's address.
        mac: Mac,
        /// Send an ARP request to re-confirm it.
        probe: bool,
    },
    /// Not resolved yet: queue the frame; when `probe`, send an ARP request.
    Unresolved {
        /// Send an ARP request now.
        probe: bool,
    },
    /// Resolution failed recently (or the table is full): drop the frame.
    Failed,
}

/// One row of [`NeighTable::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighRow {
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its MAC, if resolved.
    pub mac: Option<Mac>,
    /// Milliseconds since it was last confirmed (since creation if never).
    pub age_ms: u64,
}

/// The shared neighbour table.
#[derive(Debug, Default)]
pub struct NeighTable {
    map: DashMap<IpAddr, Entry, foldhash::fast::RandomState>,
}

impl NeighTable {
    /// An empty table.
    pub fn new() -> Self {
        NeighTable::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// An ARP frame said `ip` is at `mac`. Existing entries are updated
    /// (and confirmed); a new one is created only when `create` (the frame
    /// was meant for us, or the address is on one of our links). Returns
    /// true when the address was unresolved before (queued frames may go).
    pub fn learn(&self, ip: IpAddr, mac: Mac, now_ms: u64, create: bool) -> bool {
        if let Some(mut e) = self.map.get_mut(&ip) {
            let was_unresolved = e.mac.is_none();
            *e = Entry {
                mac: Some(mac),
                confirmed_ms: now_ms,
                probe_ms: e.probe_ms,
                probes: 0,
            };
            return was_unresolved;
        }
        if create && self.map.len() < MAX_ENTRIES {
            self.map.insert(
                ip,
                Entry {
                    mac: Some(mac),
                    confirmed_ms: now_ms,
                    probe_ms: 0,
                    probes: 0,
                },
            );
        }
        false
    }

    /// The MAC of `ip`, if resolved (no state change).
    pub fn get(&self, ip: IpAddr) -> Option<Mac> {
        self.map.get(&ip).and_then(|e| e.mac)
    }

    /// Resolve a next hop for a frame about to be sent, advancing the entry's
    /// state machine (see the module documentation).
    pub fn resolve(&self, ip: IpAddr, now_ms: u64) -> Resolution {
        // Fast path: a reachable entry under a read lock.
        if let Some(e) = self.map.get(&ip) {
            if let Some(mac) = e.mac {
                if now_ms.saturating_sub(e.confirmed_ms) < REACHABLE_MS
                    || now_ms.saturating_sub(e.probe_ms) < PROBE_INTERVAL_MS
                {
                    return Resolution::Known { mac, probe: false };
                }
            }
        }
        if let Some(mut e) = self.map.get_mut(&ip) {
            let since_probe = now_ms.saturating_sub(e.probe_ms);
            return match e.mac {
                Some(mac) => {
                    if now_ms.saturating_sub(e.confirmed_ms) < REACHABLE_MS
                        || since_probe < PROBE_INTERVAL_MS
                    {
                        Resolution::Known { mac, probe: false }
                    } else if e.probes >= MAX_PROBES {
                        // Stale and silent through every probe: failed.
                        e.mac = None;
                        e.probe_ms = now_ms;
                        Resolution::Failed
                    } else {
                        e.probes += 1;
                        e.probe_ms = now_ms;
                        Resolution::Known { mac, probe: true }
                    }
                }
                None => {
                    if e.probes >= MAX_PROBES {
                        if since_probe < FAILED_HOLD_MS {
                            return Resolution::Failed;
                        }
                        e.probes = 0;
                    }
                    if e.probes == 0 || since_probe >= PROBE_INTERVAL_MS {
                        e.probes += 1;
                        e.probe_ms = now_ms;
                        Resolution::Unresolved { probe: true }
                    } else {
                        Resolution::Unresolved { probe: false }
                    }
                }
            };
        }
        if self.map.len() >= MAX_ENTRIES {
            return Resolution::Failed;
        }
        self.map.insert(
            ip,
            Entry {
                mac: None,
                confirmed_ms: now_ms,
                probe_ms: now_ms,
                probes: 1,
            },
        );
        Resolution::Unresolved { probe: true }
    }

    /// True when `ip` has failed resolution (queued frames for it must go).
    pub fn failed(&self, ip: IpAddr) -> bool {
        self.map
            .get(&ip)
            .is_some_and(|e| e.mac.is_none() && e.probes >= MAX_PROBES)
    }

    /// Remove entries not confirmed for [`GC_MS`], and failed ones whose
    /// hold time is over. Returns how many were removed.
    pub fn expire(&self, now_ms: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, e| match e.mac {
            Some(_) => now_ms.saturating_sub(e.confirmed_ms) < GC_MS,
            None => e.probes < MAX_PROBES || now_ms.saturating_sub(e.probe_ms) < 2 * FAILED_HOLD_MS,
        });
        before - self.map.len()
    }

    /// Every entry, for listings and tests (sorted by address).
    pub fn snapshot(&self, now_ms: u64) -> Vec<NeighRow> {
        let mut v: Vec<NeighRow> = self
            .map
            .iter()
            .map(|r| NeighRow {
                ip: *r.key(),
                mac: r.mac,
                age_ms: now_ms.saturating_sub(r.confirmed_ms),
            })
            .collect();
        v.sort_by_key(|r| r.ip);
        v
    }
}

/// Frames waiting for a neighbour: a fixed pool of buffers allocated once,
/// owned by one worker.
#[derive(Debug)]
pub struct PendingQueue {
    bufs: Vec<Box<[u8]>>,
    slots: Vec<Slot>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    used: bool,
    ip: Option<IpAddr>,
    len: usize,
    queued_ms: u64,
    seq: u64,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFull {
    /// [`PER_NEIGH`] frames already wait for this neighbour.
    Neighbour,
    /// Every slot of the pool is taken.
    Pool,
    /// The frame is larger than a slot.
    TooBig,
}

impl PendingQueue {
    /// A pool of `slots` buffers of `slot_len` bytes each.
    pub fn new(slots: usize, slot_len: usize) -> Self {
        PendingQueue {
            bufs: (0..slots)
                .map(|_| vec![0u8; slot_len].into_boxed_slice())
                .collect(),
            slots: vec![
                Slot {
                    used: false,
                    ip: None,
                    len: 0,
                    queued_ms: 0,
                    seq: 0,
                };
                slots
            ],
        }
    }

    /// Number of frames waiting.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        !self.slots.iter().any(|s| s.used)
    }

    /// Queue a copy of `frame` for neighbour `ip`.
    pub fn push(&mut self, ip: IpAddr, frame: &[u8], now_ms: u64) -> Result<(), QueueFull> {
        let same = self
            .slots
            .iter()
            .filter(|s| s.used && s.ip == Some(ip))
            .count();
        if same >= PER_NEIGH {
            return Err(QueueFull::Neighbour);
        }
        let seq = self
            .slots
            .iter()
            .filter(|s| s.used)
            .map(|s| s.seq + 1)
            .max()
            .unwrap_or(0);
        let Some(i) = self.slots.iter().position(|s| !s.used) else {
            return Err(QueueFull::Pool);
        };
        let Some(dst) = self.bufs[i].get_mut(..frame.len()) else {
            return Err(QueueFull::TooBig);
        };
        dst.copy_from_slice(frame);
        self.slots[i] = Slot {
            used: true,
            ip: Some(ip),
            len: frame.len(),
            queued_ms: now_ms,
            seq,
        };
        Ok(())
    }

    /// The distinct neighbours frames wait for (at most `out.len()`);
    /// returns how many were written.
    pub fn waiting(&self, out: &mut [IpAddr]) -> usize {
        let mut n = 0;
        for s in self.slots.iter().filter(|s| s.used) {
            let Some(ip) = s.ip else { continue };
            if n < out.len() && !out[..n].contains(&ip) {
                out[n] = ip;
                n += 1;
            }
        }
        n
    }

    /// Take every frame queued for `ip`, oldest first: `f` gets each frame
    /// (writable, to fill in the MAC addresses) and the slot is freed.
    pub fn drain(&mut self, ip: IpAddr, mut f: impl FnMut(&mut [u8])) -> usize {
        let mut n = 0;
        loop {
            let next = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.used && s.ip == Some(ip))
                .min_by_key(|(_, s)| s.seq)
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let len = self.slots[i].len;
            f(&mut self.bufs[i][..len]);
            self.slots[i].used = false;
            self.slots[i].ip = None;
            n += 1;
        }
        n
    }

    /// Drop every frame for `ip` (resolution failed); returns how many.
    pub fn discard(&mut self, ip: IpAddr) -> usize {
        self.drain(ip, |_| {})
    }

    /// Drop frames older than `max_age_ms`; returns how many.
    pub fn discard_older(&mut self, now_ms: u64, max_age_ms: u64) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut() {
            if s.used && now_ms.saturating_sub(s.queued_ms) > max_age_ms {
                s.used = false;
                s.ip = None;
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(172, 16, 0, n))
    }

    const MAC: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn unknown_address_is_probed_then_fails_then_retried() {
        let t = NeighTable::new();
        assert_eq!(t.resolve(ip(2), 0), Resolution::Unresolved { probe: true });
        assert_eq!(
            t.resolve(ip(2), 10),
            Resolution::Unresolved { probe: false }
        );
        assert_eq!(
            t.resolve(ip(2), PROBE_INTERVAL_MS),
            Resolution::Unresolved { probe: true }
        );
        assert_eq!(
            t.resolve(ip(2), 2 * PROBE_INTERVAL_MS),
            Resolution::Unresolved { probe: true }
        );
        // Three probes sent: failed for the hold time.
        assert_eq!(
            t.resolve(ip(2), 2 * PROBE_INTERVAL_MS + 1),
            Resolution::Failed
        );
        assert!(t.failed(ip(2)));
        let later = 2 * PROBE_INTERVAL_MS + FAILED_HOLD_MS;
        assert_eq!(
            t.resolve(ip(2), later),
            Resolution::Unresolved { probe: true }
        );
        // An answer resolves it and says queued frames may go.
        assert!(t.learn(ip(2), MAC, later + 5, false));
        assert_eq!(
            t.resolve(ip(2), later + 6),
            Resolution::Known {
                mac: MAC,
                probe: false
            }
        );
    }

    #[test]
    fn stale_entries_are_reprobed_and_fail_without_answers() {
        let t = NeighTable::new();
        assert!(!t.learn(ip(3), MAC, 0, false), "not created without create");
        assert_eq!(t.get(ip(3)), None);
        t.learn(ip(3), MAC, 0, true);
        let mut now = REACHABLE_MS;
        for _ in 0..MAX_PROBES {
            assert_eq!(
                t.resolve(ip(3), now),
                Resolution::Known {
                    mac: MAC,
                    probe: true
                }
            );
            assert_eq!(
                t.resolve(ip(3), now + 1),
                Resolution::Known {
                    mac: MAC,
                    probe: false
                }
            );
            now += PROBE_INTERVAL_MS;
        }
        assert_eq!(t.resolve(ip(3), now), Resolution::Failed);
        // A reply in time would have kept it.
        t.learn(ip(4), MAC, 0, true);
        t.resolve(ip(4), REACHABLE_MS);
        t.learn(ip(4), MAC, REACHABLE_MS + 3, false);
        assert_eq!(
            t.resolve(ip(4), REACHABLE_MS + 2 * PROBE_INTERVAL_MS),
            Resolution::Known {
                mac: MAC,
                probe: false
            }
        );
    }

    #[test]
    fn expiry_removes_old_and_failed_entries() {
        let t = NeighTable::new();
        t.learn(ip(5), MAC, 0, true);
        t.learn(ip(6), MAC, GC_MS, true);
        assert_eq!(t.expire(GC_MS), 1);
        assert_eq!(t.snapshot(GC_MS).len(), 1);
        assert_eq!(t.snapshot(GC_MS)[0].ip, ip(6));
    }

    #[test]
    fn pending_queue_is_bounded_per_neighbour_and_in_all() {
        let mut q = PendingQueue::new(6, 64);
        for i in 0..PER_NEIGH {
            q.push(ip(2), &[i as u8; 10], 0).unwrap();
        }
        assert_eq!(q.push(ip(2), &[9; 10], 0), Err(QueueFull::Neighbour));
        q.push(ip(3), &[7; 10], 0).unwrap();
        q.push(ip(4), &[8; 10], 0).unwrap();
        assert_eq!(q.push(ip(5), &[8; 10], 0), Err(QueueFull::Pool));
        assert_eq!(q.push(ip(5), &[8; 100], 0), Err(QueueFull::Pool));
        let mut w = [ip(0); 8];
        assert_eq!(q.waiting(&mut w), 3);
        let mut got = Vec::new();
        assert_eq!(q.drain(ip(2), |f| got.push(f[0])), PER_NEIGH);
        assert_eq!(got, vec![0, 1, 2, 3], "oldest first");
        assert_eq!(q.len(), 2);
        assert_eq!(q.push(ip(5), &[8; 100], 0), Err(QueueFull::TooBig));
        assert_eq!(q.discard(ip(3)), 1);
        assert_eq!(q.discard_older(10, 5), 1);
        assert!(q.is_empty());
    }
}
