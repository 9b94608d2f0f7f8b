//! A director on a virtual clock with one pipeline in front of it, for the
//! rootless tests (exemplars.md §4: sans-IO, virtual time). Packets are built
//! with `packet::testutil`; `ipvsadm` runs through `adm::run` against the real
//! `Director`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tunvs::adm::{self, AdmOutput};
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::pipeline::{Methods, Pipeline, Verdict};
use tunvs::director::Director;
use tunvs::packet::testutil::{tcp_packet, udp_packet, SYN_OPTIONS};
use tunvs::packet::TCP_SYN;
use tunvs::util::Rng;

pub use tunvs::packet::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST};
pub const SYN: u8 = TCP_SYN;

/// Seconds → milliseconds.
pub const fn s(secs: u64) -> u64 {
    secs * 1000
}

/// A director, its clock and one pipeline.
pub struct Virt {
    pub clock: Arc<AtomicU64>,
    pub dir: Arc<Director>,
    pub pipe: Pipeline,
}

impl Default for Virt {
    fn default() -> Self {
        Virt::new()
    }
}

impl Virt {
    pub fn new() -> Virt {
        let clock = Arc::new(AtomicU64::new(0));
        let c = clock.clone();
        let dir = Arc::new(Director::with_clock(
            Arc::new(move || c.load(Ordering::Relaxed)),
            Rng::seeded(7),
        ));
        let pipe = Pipeline::new(dir.clone(), Methods::TUN);
        Virt { clock, dir, pipe }
    }

    /// Set the virtual clock.
    pub fn at(&self, t_ms: u64) {
        self.clock.store(t_ms, Ordering::Relaxed);
    }

    /// `ipvsadm ARGS` (whitespace-separated) against the director.
    pub fn adm(&self, line: &str) -> AdmOutput {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        adm::run("ipvsadm", &args, "", self.dir.as_ref())
    }

    /// `ipvsadm ARGS` that must succeed; its stdout.
    pub fn adm_ok(&self, line: &str) -> String {
        let o = self.adm(line);
        assert_eq!(o.code, 0, "ipvsadm {line}: {}{}", o.stdout, o.stderr);
        o.stdout
    }

    /// Push one bare IP packet through the pipeline at `t_ms`; the verdict and
    /// the frame as it would be written.
    pub fn send(&mut self, t_ms: u64, pkt: &[u8]) -> (Verdict, Vec<u8>) {
        self.at(t_ms);
        let mut buf = PacketBuf::from_frame(pkt);
        let v = self.pipe.handle(t_ms, &mut buf, false);
        (v, buf.frame().to_vec())
    }

    /// Like `send`, but the packet must be forwarded; returns the output.
    pub fn fwd(&mut self, t_ms: u64, pkt: &[u8]) -> Vec<u8> {
        let (v, out) = self.send(t_ms, pkt);
        assert_eq!(v, Verdict::Forward, "at {t_ms} ms");
        out
    }

    /// Housekeeping at `t_ms` (connection expiry).
    pub fn tick(&self, t_ms: u64) {
        self.at(t_ms);
        self.dir.tick(t_ms);
    }

    /// `ipvsadm -L -n -c` rows (no header), sorted.
    pub fn conn_rows(&self) -> Vec<String> {
        let out = self.adm_ok("-L -n -c");
        let mut v: Vec<String> = out.lines().skip(2).map(str::to_string).collect();
        v.sort();
        v
    }
}

/// The destination address a forwarded packet went to, as `ip:port`.
pub fn dst_of(pkt: &[u8]) -> SocketAddr {
    let info = tunvs::packet::parse_ip(pkt).expect("parse");
    SocketAddr::new(info.dst, info.dport)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// One client's flow to a VIP and (once known) a real server.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub client: SocketAddr,
    pub vip: SocketAddr,
    pub rs: SocketAddr,
}

impl Flow {
    pub fn new(client: &str, vip: &str, rs: &str) -> Flow {
        Flow {
            client: sa(client),
            vip: sa(vip),
            rs: sa(rs),
        }
    }

    /// The same flow towards another real server.
    pub fn to(self, rs: SocketAddr) -> Flow {
        Flow { rs, ..self }
    }

    /// TCP client → VIP.
    pub fn c2v(&self, flags: u8) -> Vec<u8> {
        let o: &[u8] = if flags & SYN != 0 { &SYN_OPTIONS } else { &[] };
        tcp_packet(self.client, self.vip, flags, 1, 1, o, &[])
    }

    /// TCP client → VIP with data.
    pub fn c2v_data(&self, data: &[u8]) -> Vec<u8> {
        tcp_packet(self.client, self.vip, TCP_PSH | TCP_ACK, 1, 1, &[], data)
    }

    /// TCP RS → client.
    pub fn r2c(&self, flags: u8) -> Vec<u8> {
        tcp_packet(self.rs, self.client, flags, 1, 1, &[], &[])
    }

    /// TCP RS → client with data.
    pub fn r2c_data(&self, data: &[u8]) -> Vec<u8> {
        tcp_packet(self.rs, self.client, TCP_PSH | TCP_ACK, 1, 1, &[], data)
    }

    /// UDP client → VIP.
    pub fn uc2v(&self, data: &[u8]) -> Vec<u8> {
        udp_packet(self.client, self.vip, data)
    }

    /// UDP RS → client.
    pub fn ur2c(&self, data: &[u8]) -> Vec<u8> {
        udp_packet(self.rs, self.client, data)
    }
}
