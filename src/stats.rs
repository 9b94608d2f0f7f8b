//! Traffic counters and the kernel's rate estimator (spec §3.16).
//!
//! Counters are plain atomics bumped by the workers; the estimator runs every
//! two seconds from the housekeeping thread and keeps the kernel's scaled EWMA
//! so `--rate` prints what `ipvsadm --rate` would.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Counters of a service, a destination or the whole director.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections created.
    pub conns: AtomicU64,
    /// Packets client → real server.
    pub inpkts: AtomicU64,
    /// Packets real server → client.
    pub outpkts: AtomicU64,
    /// Bytes client → real server (whole IP packets).
    pub inbytes: AtomicU64,
    /// Bytes real server → client.
    pub outbytes: AtomicU64,
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

/// The kernel estimator state: last counter values and scaled averages.
#[derive(Debug, Default, Clone, Copy)]
struct Estimator {
    last: [u64; 5],
    // cps, inpps, outpps scaled by 2^10; inbps, outbps scaled by 2^5.
    avg: [u64; 5],
}

impl Stats {
    /// Count one incoming packet of `len` bytes.
    #[inline]
    pub fn count_in(&self, len: usize) {
        self.inpkts.fetch_add(1, Relaxed);
        self.inbytes.fetch_add(len as u64, Relaxed);
    }

    /// Count one outgoing packet of `len` bytes.
    #[inline]
    pub fn count_out(&self, len: usize) {
        self.outpkts.fetch_add(1, Relaxed);
        self.outbytes.fetch_add(len as u64, Relaxed);
    }

    /// Count a new connection.
    #[inline]
    pub fn count_conn(&self) {
        self.conns.fetch_add(1, Relaxed);
    }

    fn counters(&self) -> [u64; 5] {
        [
            self.conns.load(Relaxed),
            self.inpkts.load(Relaxed),
            self.outpkts.load(Relaxed),
            self.inbytes.load(Relaxed),
            self.outbytes.load(Relaxed),
        ]
    }

    /// One 2-second estimator tick (`ip_vs_estimation_timer`): rate = delta
    /// scaled (2^9 per 2 s for counts, 2^4 for bytes), then `avg += (rate - avg) / 4`.
    pub fn estimate_tick(&self) {
        let now = self.counters();
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
        let c = self.counters();
        let e = *self.est.lock().unwrap_or_else(|p| p.into_inner());
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

    /// `ipvsadm -Z`: zero counters and the estimator.
    pub fn zero(&self) {
        let mut e = self.est.lock().unwrap_or_else(|p| p.into_inner());
        for a in [
            &self.conns,
            &self.inpkts,
            &self.outpkts,
            &self.inbytes,
            &self.outbytes,
        ] {
            a.store(0, Relaxed);
        }
        *e = Estimator::default();
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
}
