//! Traffic counters and the kernel's rate estimator (spec §3.16).
//!
//! Counters live in per-worker slots, like the kernel's per-CPU counters: a
//! worker that owns a slot ([`Writer`]) bumps it with plain loads and stores
//! (no locked instruction, no cache line shared with another core); other
//! writers share one slot updated with atomic adds. Readers sum the slots.
//! `-Z` records a baseline instead of writing into the slots, so it never
//! races a worker. The estimator runs every two seconds from the housekeeping
//! thread and keeps the kernel's scaled EWMA so `--rate` prints what
//! `ipvsadm --rate` would.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Slots owned by one worker each; the last slot is shared by everyone else.
pub const OWNED_SLOTS: usize = 15;
const SHARED: usize = OWNED_SLOTS;

/// conns, inpkts, outpkts, inbytes, outbytes.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot([AtomicU64; 5]);

const CONNS: usize = 0;
const INPKTS: usize = 1;
const OUTPKTS: usize = 2;
const INBYTES: usize = 3;
const OUTBYTES: usize = 4;

/// Who bumps a counter: a worker that owns a slot, or anyone (shared slot).
#[derive(Debug)]
pub struct Writer {
    slot: usize,
}

static FREE_SLOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static NEXT_SLOT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Writer {
    /// Claim a slot of its own for this worker (the shared one when all
    /// are taken). Dropping the writer gives the slot back.
    pub fn claim() -> Writer {
        if let Some(slot) = FREE_SLOTS.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Writer { slot };
        }
        let n = NEXT_SLOT.fetch_add(1, Relaxed);
        Writer {
            slot: if n < OWNED_SLOTS { n } else { SHARED },
        }
    }

    /// A writer on the shared slot (control plane, helper threads, tests).
    pub const fn shared() -> Writer {
        Writer { slot: SHARED }
    }

    #[inline]
    fn bump(&self, stats: &Stats, field: usize, by: u64) {
        let c = &stats.slots[self.slot].0[field];
        if self.slot == SHARED {
            c.fetch_add(by, Relaxed);
        } else {
            // Only this writer stores into its slot: a plain read-modify-write
            // loses nothing and needs no locked instruction.
            c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.slot != SHARED {
            FREE_SLOTS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.slot);
        }
    }
}

/// Counters of a service, a destination or the whole director.
#[derive(Debug, Default)]
pub struct Stats {
    slots: [Slot; OWNED_SLOTS + 1],
    est: Mutex<Estimator>,
}

/// A copy of the counters and the current rates.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections created.
    pub conns: u64,
    /// Incoming packets.
    pub inpkts: u64,
    /// Outgoing packets.
    pub outpkts: u64,
    /// Incoming bytes.
    pub inbytes: u64,
    /// Outgoing bytes.
    pub outbytes: u64,
    /// Connections per second.
    pub cps: u64,
    /// Incoming packets per second.
    pub inpps: u64,
    /// Outgoing packets per second.
    pub outpps: u64,
    /// Incoming bytes per second.
    pub inbps: u64,
    /// Outgoing bytes per second.
    pub outbps: u64,
}

/// The kernel estimator state: last counter values and scaled averages,
/// and the baseline `-Z` set.
#[derive(Debug, Default, Clone, Copy)]
struct Estimator {
    base: [u64; 5],
    last: [u64; 5],
    // cps, inpps, outpps scaled by 2^10; inbps, outbps scaled by 2^5.
    avg: [u64; 5],
}

impl Stats {
    /// Count one incoming packet of `len` bytes.
    #[inline]
    pub fn count_in_by(&self, w: &Writer, len: usize) {
        w.bump(self, INPKTS, 1);
        w.bump(self, INBYTES, len as u64);
    }

    /// Count one outgoing packet of `len` bytes.
    #[inline]
    pub fn count_out_by(&self, w: &Writer, len: usize) {
        w.bump(self, OUTPKTS, 1);
        w.bump(self, OUTBYTES, len as u64);
    }

    /// Count a new connection.
    #[inline]
    pub fn count_conn_by(&self, w: &Writer) {
        w.bump(self, CONNS, 1);
    }

    /// [`Stats::count_in_by`] on the shared slot.
    pub fn count_in(&self, len: usize) {
        self.count_in_by(&Writer::shared(), len);
    }

    /// [`Stats::count_out_by`] on the shared slot.
    pub fn count_out(&self, len: usize) {
        self.count_out_by(&Writer::shared(), len);
    }

    /// [`Stats::count_conn_by`] on the shared slot.
    pub fn count_conn(&self) {
        self.count_conn_by(&Writer::shared());
    }

    /// Raw sums over the slots (before the `-Z` baseline).
    fn sums(&self) -> [u64; 5] {
        let mut v = [0u64; 5];
        for s in &self.slots {
            for (acc, c) in v.iter_mut().zip(&s.0) {
                *acc = acc.wrapping_add(c.load(Relaxed));
            }
        }
        v
    }

    /// One 2-second estimator tick (`ip_vs_estimation_timer`): rate = delta
    /// scaled (2^9 per 2 s for counts, 2^4 for bytes), then `avg += (rate - avg) / 4`.
    pub fn estimate_tick(&self) {
        let now = self.sums();
        let mut e = self.est.lock().unwrap_or_else(|p| p.into_inner());
        #[allow(clippy::needless_range_loop)] // three parallel arrays
        for i in 0..5 {
            let delta = now[i].wrapping_sub(e.last[i]);
            e.last[i] = now[i];
            let rate = if i < 3 { delta << 9 } else { delta << 4 };
            let avg = e.avg[i] as i64;
            e.avg[i] = (avg + ((rate as i64 - avg) >> 2)).max(0) as u64;
        }
    }

    /// Counters and rates as `ipvsadm` reports them.
    pub fn snapshot(&self) -> StatsSnapshot {
        let raw = self.sums();
        let e = *self.est.lock().unwrap_or_else(|p| p.into_inner());
        let c: [u64; 5] = std::array::from_fn(|i| raw[i].wrapping_sub(e.base[i]));
        StatsSnapshot {
            conns: c[0],
            inpkts: c[1],
            outpkts: c[2],
            inbytes: c[3],
            outbytes: c[4],
            cps: (e.avg[0] + 0x1ff) >> 10,
            inpps: (e.avg[1] + 0x1ff) >> 10,
            outpps: (e.avg[2] + 0x1ff) >> 10,
            inbps: (e.avg[3] + 0xf) >> 5,
            outbps: (e.avg[4] + 0xf) >> 5,
        }
    }

    /// `ipvsadm -Z`: zero counters and the estimator (a new baseline; the
    /// slots themselves are never written by anyone but their writers).
    pub fn zero(&self) {
        let now = self.sums();
        let mut e = self.est.lock().unwrap_or_else(|p| p.into_inner());
        *e = Estimator {
            base: now,
            last: now,
            avg: [0; 5],
        };
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn steady_rate_converges_to_the_real_rate() {
        let s = Stats::default();
        // 100 packets of 1000 bytes per second, i.e. 200 / 200000 per tick.
        // The EWMA (weight 1/4) needs ~60 ticks to get within the rounding
        // of 3.2e6 (scaled bytes); after 40 it still reads 99999.
        for _ in 0..80 {
            for _ in 0..200 {
                s.count_in(1000);
            }
            s.estimate_tick();
        }
        let snap = s.snapshot();
        assert_eq!(snap.inpps, 100);
        assert_eq!(snap.inbps, 100_000);
        assert_eq!(snap.outpps, 0);
        s.zero();
        assert_eq!(s.snapshot(), StatsSnapshot::default());
    }

    #[test]
    fn owned_and_shared_writers_add_up_across_threads() {
        let s = std::sync::Arc::new(Stats::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    // Two owned writers and two on the shared slot.
                    let w = if i < 2 {
                        Writer::claim()
                    } else {
                        Writer::shared()
                    };
                    for _ in 0..10_000 {
                        s.count_in_by(&w, 100);
                        s.count_out_by(&w, 10);
                    }
                    s.count_conn_by(&w);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = s.snapshot();
        assert_eq!((snap.inpkts, snap.inbytes), (40_000, 4_000_000));
        assert_eq!(
            (snap.outpkts, snap.outbytes, snap.conns),
            (40_000, 400_000, 4)
        );
        // -Z is a baseline: later counts start from zero.
        s.zero();
        s.count_in(7);
        let snap = s.snapshot();
        assert_eq!((snap.inpkts, snap.inbytes, snap.conns), (1, 7, 0));
    }
}
