//! Scheduling through the real pipeline (no device, virtual time): one-packet
//! scheduling, thresholds and OVERLOAD, persistence granularity and weight 0
//! (spec §1.3, §3.7, §3.8, §3.11).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tunvs::adm::api::Ipvs;
use tunvs::dataplane::buf::PacketBuf;
use tunvs::dataplane::pipeline::{Methods, Pipeline, Verdict};
use tunvs::director::Director;
use tunvs::packet::parse::parse_ip;
use tunvs::packet::testutil;
use tunvs::service::{
    DestSpec, FwdMethod, Proto, ServiceSpec, SvcId, DEST_F_OVERLOAD, SVC_F_ONEPACKET,
    SVC_F_PERSISTENT,
};
use tunvs::util::Rng;

const RS1: [u8; 4] = [192, 168, 168, 10];
const RS2: [u8; 4] = [192, 168, 168, 20];

struct Bench {
    clock: Arc<AtomicU64>,
    dir: Arc<Director>,
    pipe: Pipeline,
}

impl Bench {
    fn new() -> Bench {
        let clock = Arc::new(AtomicU64::new(1_000));
        let c = clock.clone();
        let dir = Arc::new(Director::with_clock(
            Arc::new(move || c.load(Ordering::Relaxed)),
            Rng::seeded(1),
        ));
        let pipe = Pipeline::new(dir.clone(), Methods::TUN);
        Bench { clock, dir, pipe }
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs * 1000, Ordering::Relaxed);
        self.dir.tick(self.now());
    }

    fn service(
        &self,
        proto: Proto,
        port: u16,
        sched: &str,
        flags: u32,
        timeout: u32,
        mask: u32,
    ) -> SvcId {
        let id = SvcId::Addr {
            proto,
            addr: IpAddr::V4(Ipv4Addr::new(12, 0, 0, 1)),
            port,
        };
        let mut s = ServiceSpec::new(id);
        s.sched = sched.into();
        s.flags = flags;
        s.timeout = timeout;
        s.netmask = mask;
        self.dir.add_service(&s).unwrap();
        id
    }

    fn dest(&self, id: &SvcId, a: [u8; 4], port: u16, weight: i32, x: u32, y: u32) {
        let mut d = DestSpec::new(IpAddr::V4(Ipv4Addr::from(a)), port);
        d.fwd = FwdMethod::Masq;
        d.weight = weight;
        d.u_threshold = x;
        d.l_threshold = y;
        self.dir.add_dest(id, &d).unwrap();
    }

    /// Send one packet; the real server it was forwarded to.
    fn send(&mut self, pkt: Vec<u8>) -> Ipv4Addr {
        let mut b = PacketBuf::from_frame(&pkt);
        let now = self.now();
        assert_eq!(self.pipe.handle(now, &mut b, false), Verdict::Forward);
        match parse_ip(b.frame()).unwrap().dst {
            IpAddr::V4(a) => a,
            other => panic!("{other}"),
        }
    }

    fn syn(&mut self, client: [u8; 4], port: u16, vport: u16) -> Ipv4Addr {
        let c = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(client)), port);
        let v = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(12, 0, 0, 1)), vport);
        self.send(testutil::tcp_packet(c, v, 0x02, 1, 0, &[], &[]))
    }

    fn udp(&mut self, client: [u8; 4], port: u16) -> Ipv4Addr {
        let c = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(client)), port);
        let v = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(12, 0, 0, 1)), 53);
        self.send(testutil::udp_packet(c, v, b"query"))
    }

    fn dest_counts(&self, a: [u8; 4]) -> (u32, u32, u32, u64) {
        for s in self.dir.services() {
            for d in s.dests {
                if d.spec.addr == IpAddr::V4(Ipv4Addr::from(a)) {
                    return (d.activeconns, d.inactconns, d.persistconns, d.stats.conns);
                }
            }
        }
        panic!("no dest");
    }
}

#[test]
fn one_packet_scheduling_schedules_every_datagram() {
    let mut b = Bench::new();
    let id = b.service(Proto::Udp, 53, "rr", SVC_F_ONEPACKET, 0, u32::MAX);
    b.dest(&id, RS1, 53, 1, 0, 0);
    b.dest(&id, RS2, 53, 1, 0, 0);
    let picks: Vec<Ipv4Addr> = (0..4).map(|_| b.udp([12, 0, 0, 10], 5000)).collect();
    let (r1, r2) = (Ipv4Addr::from(RS1), Ipv4Addr::from(RS2));
    assert_eq!(picks, vec![r2, r1, r2, r1], "-o: each datagram scheduled");
    assert!(
        b.dir.conns.is_empty(),
        "one-packet connections are never hashed"
    );
    let (a, i, _, conns) = b.dest_counts(RS1);
    assert_eq!(
        (a, i, conns),
        (0, 0, 2),
        "bound and released at once, counted"
    );

    // Without -o, the same datagrams follow one connection.
    let mut b = Bench::new();
    let id = b.service(Proto::Udp, 53, "rr", 0, 0, u32::MAX);
    b.dest(&id, RS1, 53, 1, 0, 0);
    b.dest(&id, RS2, 53, 1, 0, 0);
    let picks: Vec<Ipv4Addr> = (0..4).map(|_| b.udp([12, 0, 0, 10], 5000)).collect();
    assert!(picks.iter().all(|p| *p == r2), "{picks:?}");
    assert_eq!(
        b.dest_counts(RS2).1,
        1,
        "UDP connections are always inactive"
    );
}

#[test]
fn thresholds_set_and_clear_overload() {
    let mut b = Bench::new();
    // fo always picks the heaviest dest that is not overloaded.
    let id = b.service(Proto::Tcp, 80, "fo", 0, 0, u32::MAX);
    b.dest(&id, RS1, 80, 100, 2, 1); // heavy weight, but -x 2 -y 1
    b.dest(&id, RS2, 80, 1, 0, 0);
    let rs1 = Ipv4Addr::from(RS1);
    let rs2 = Ipv4Addr::from(RS2);
    let overloaded = |b: &Bench| {
        b.dir.service_list()[0]
            .dests()
            .iter()
            .find(|d| d.addr == IpAddr::V4(rs1))
            .unwrap()
            .flags
            .load(Ordering::Relaxed)
            & DEST_F_OVERLOAD
            != 0
    };
    assert_eq!(b.syn([12, 0, 0, 10], 1000, 80), rs1);
    assert!(!overloaded(&b));
    assert_eq!(b.syn([12, 0, 0, 10], 1001, 80), rs1);
    assert!(
        overloaded(&b),
        "OVERLOAD as soon as the dest holds u_threshold conns"
    );
    for p in 1002..1006 {
        assert_eq!(
            b.syn([12, 0, 0, 10], p, 80),
            rs2,
            "overloaded dest is skipped"
        );
    }
    // SYN_RECV expires after 60 s: the connections go, total drops below -y.
    b.advance(61);
    assert!(!overloaded(&b), "OVERLOAD cleared below l_threshold");
    assert_eq!(b.syn([12, 0, 0, 10], 2000, 80), rs1);
}

#[test]
fn persistence_granularity_and_quiescent_dests() {
    let mut b = Bench::new();
    let id = b.service(Proto::Tcp, 80, "rr", SVC_F_PERSISTENT, 300, 0xffff_ff00);
    b.dest(&id, RS1, 80, 1, 0, 0);
    b.dest(&id, RS2, 80, 1, 0, 0);
    let first = b.syn([10, 1, 1, 5], 1000, 80);
    // The whole /24 sticks to the first pick (-M 255.255.255.0) …
    for (host, port) in [(5u8, 1001u16), (77, 1002), (200, 1003)] {
        assert_eq!(b.syn([10, 1, 1, host], port, 80), first);
    }
    // … another /24 gets the next rr pick.
    let other = b.syn([10, 1, 2, 5], 1000, 80);
    assert_ne!(other, first);
    let first_a: [u8; 4] = first.octets();
    assert_eq!(
        b.dest_counts(first_a).2,
        1,
        "one template bound (PersistConn)"
    );
    // Weight 0 does not break an existing template (expire_quiescent_template=0).
    let mut d = DestSpec::new(IpAddr::V4(first), 80);
    d.fwd = FwdMethod::Masq;
    d.weight = 0;
    b.dir.edit_dest(&id, &d).unwrap();
    assert_eq!(b.syn([10, 1, 1, 9], 1004, 80), first);
    // Once the template and its connections expire, rr picks among weight > 0 only.
    b.advance(61); // SYN_RECV conns gone
    b.advance(301); // template timeout
    assert_eq!(b.dest_counts(first_a).2, 0, "template expired");
    assert_eq!(b.syn([10, 1, 1, 9], 1005, 80), other);
}

/// "No destination available" answers with ICMP port unreachable (spec §1.4),
/// rate-limited like the kernel's ICMP: a burst of 50, then 1000 per second;
/// a suppressed reply leaves a plain drop, counted as icmp_rate_limited.
#[test]
fn no_destination_replies_are_rate_limited() {
    use tunvs::dataplane::drop::DropReason;
    let mut b = Bench::new();
    let id = b.service(Proto::Tcp, 80, "rr", 0, 0, u32::MAX);
    b.dest(&id, RS1, 80, 0, 0, 0); // quiescent: nothing to schedule
    let now = b.now();
    let mut replies = 0;
    let mut drops = 0;
    for port in 1000..1051u16 {
        let c = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(12, 0, 0, 10)), port);
        let v = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(12, 0, 0, 1)), 80);
        let mut buf = PacketBuf::from_frame(&testutil::tcp_packet(c, v, 0x02, 1, 0, &[], &[]));
        match b.pipe.handle(now, &mut buf, false) {
            Verdict::Reply(_) => replies += 1,
            Verdict::Drop(DropReason::NoDestination) => drops += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((replies, drops), (50, 1));
    let k = b.pipe.counters();
    assert_eq!(k.get(DropReason::IcmpRateLimited), 1);
    assert_eq!(k.get(DropReason::NoDestination), 51);
    // 10 ms later, 10 more may go.
    let c = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(12, 0, 0, 10)), 2000);
    let v = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(12, 0, 0, 1)), 80);
    let mut buf = PacketBuf::from_frame(&testutil::tcp_packet(c, v, 0x02, 1, 0, &[], &[]));
    assert!(matches!(
        b.pipe.handle(now + 10, &mut buf, false),
        Verdict::Reply(_)
    ));
}
