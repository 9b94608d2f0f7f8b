//! Connection and template expiry on a virtual clock (spec §3.2–3.4, §3.6,
//! §3.7, §4.8, §4.9): idle timeouts per state, re-arming on every packet,
//! `--set`, the `-L -c` expire column, counters going back down, and
//! persistence templates. Hours of timeouts run in microseconds.

mod virt;

use tunvs::dataplane::drop::DropReason;
use tunvs::dataplane::pipeline::Verdict;
use virt::*;

/// One NAT TCP service with one real server, one UDP service.
fn nat_lab() -> Virt {
    let v = Virt::new();
    v.adm_ok("-A -t 12.0.0.1:80 -s rr");
    v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m");
    v.adm_ok("-A -u 12.0.0.1:53 -s rr");
    v.adm_ok("-a -u 12.0.0.1:53 -r 192.168.168.10:53 -m");
    v
}

fn tcp_flow(cport: u16) -> Flow {
    Flow::new(
        &format!("10.0.0.2:{cport}"),
        "12.0.0.1:80",
        "192.168.168.10:80",
    )
}

#[derive(Clone, Copy)]
enum By {
    Client,
    Server,
}
use By::*;

/// Packets (and who sends them) that lead a fresh NAT conn into each state,
/// with the state's idle timeout in seconds (spec §3.3 table, §3.4).
/// (state name, packets that reach it, idle timeout in seconds).
type StateCase = (&'static str, &'static [(By, u8)], u64);

const STATES: &[StateCase] = &[
    ("SYN_RECV", &[(Client, SYN)], 60),
    ("SYN_RECV", &[(Client, SYN), (Server, SYN | TCP_ACK)], 60),
    (
        "ESTABLISHED",
        &[(Client, SYN), (Server, SYN | TCP_ACK), (Client, TCP_ACK)],
        900,
    ),
    (
        "CLOSE_WAIT",
        &[
            (Client, SYN),
            (Server, SYN | TCP_ACK),
            (Client, TCP_ACK),
            (Client, TCP_FIN | TCP_ACK),
        ],
        60,
    ),
    (
        "TIME_WAIT",
        &[
            (Client, SYN),
            (Server, SYN | TCP_ACK),
            (Client, TCP_ACK),
            (Client, TCP_FIN | TCP_ACK),
            (Server, TCP_FIN | TCP_ACK),
        ],
        120,
    ),
    (
        "FIN_WAIT",
        &[
            (Client, SYN),
            (Server, SYN | TCP_ACK),
            (Client, TCP_ACK),
            (Server, TCP_FIN | TCP_ACK),
        ],
        120,
    ),
    (
        "CLOSE",
        &[
            (Client, SYN),
            (Server, SYN | TCP_ACK),
            (Client, TCP_ACK),
            (Client, TCP_RST),
        ],
        10,
    ),
];

/// Drive `f` through `pkts`, one every 10 ms from `t0`; the last packet's time.
fn drive(v: &mut Virt, f: &Flow, pkts: &[(By, u8)], t0: u64) -> u64 {
    let mut t = t0;
    for (i, (from, flags)) in pkts.iter().enumerate() {
        t = t0 + 10 * i as u64;
        let p = match from {
            Client => f.c2v(*flags),
            Server => f.r2c(*flags),
        };
        v.fwd(t, &p);
    }
    t
}

fn expire_col(secs: u64) -> String {
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

#[test]
fn each_state_expires_after_its_idle_timeout() {
    for (i, (state, pkts, timeout)) in STATES.iter().enumerate() {
        let mut v = nat_lab();
        let f = tcp_flow(40000 + i as u16);
        let last = drive(&mut v, &f, pkts, s(1));
        let row = |exp: u64| {
            format!(
                "TCP {:<6} {:<11} {:<18} {:<18} {}",
                expire_col(exp),
                state,
                f.client.to_string(),
                "12.0.0.1:80",
                "192.168.168.10:80"
            )
        };
        // Right after the last packet the whole timeout is left …
        v.at(last);
        assert_eq!(v.conn_rows(), vec![row(*timeout)], "{state}");
        // … counting down (floor of the seconds left) …
        v.at(last + 1_500);
        assert_eq!(v.conn_rows(), vec![row(timeout - 2)], "{state}");
        // … still there a millisecond before the deadline …
        v.tick(last + s(*timeout) - 1);
        assert_eq!(v.dir.conns.len(), 1, "{state} expired early");
        // … and gone at it.
        v.tick(last + s(*timeout));
        assert_eq!(v.dir.conns.len(), 0, "{state} did not expire");
        assert!(v.conn_rows().is_empty());
    }
}

#[test]
fn udp_expires_after_300_s_and_replies_rearm_it() {
    let mut v = nat_lab();
    let f = Flow::new("10.0.0.2:5000", "12.0.0.1:53", "192.168.168.10:53");
    v.fwd(s(1), &f.uc2v(b"q"));
    assert_eq!(
        v.conn_rows(),
        vec!["UDP 05:00  UDP         10.0.0.2:5000      12.0.0.1:53        192.168.168.10:53"]
    );
    // The answer from the real server re-arms it too.
    v.fwd(s(200), &f.ur2c(b"a"));
    v.tick(s(1 + 300));
    assert_eq!(v.dir.conns.len(), 1, "the reply re-armed the timer");
    v.tick(s(200 + 300) - 1);
    assert_eq!(v.dir.conns.len(), 1);
    v.tick(s(200 + 300));
    assert_eq!(v.dir.conns.len(), 0);
}

#[test]
fn every_packet_rearms_the_timer_in_either_direction() {
    let mut v = nat_lab();
    let f = tcp_flow(40000);
    let mut last = drive(
        &mut v,
        &f,
        &[(Client, SYN), (Server, SYN | TCP_ACK), (Client, TCP_ACK)],
        s(1),
    );
    // Ten packets 800 s apart (less than ESTABLISHED's 900 s), alternating
    // sides: the connection outlives 2 hours of virtual time.
    for k in 0..10 {
        let t = last + s(800);
        v.tick(t - 1);
        assert_eq!(v.dir.conns.len(), 1, "expired before packet {k}");
        let p = if k % 2 == 0 {
            f.c2v_data(b"ping")
        } else {
            f.r2c_data(b"pong")
        };
        v.fwd(t, &p);
        let rows = v.conn_rows();
        assert!(rows[0].starts_with("TCP 15:00  ESTABLISHED"), "{rows:?}");
        last = t;
    }
    assert!(last > s(2 * 3600));
    v.tick(last + s(900) - 1);
    assert_eq!(v.dir.conns.len(), 1);
    v.tick(last + s(900));
    assert_eq!(v.dir.conns.len(), 0);
}

/// The kernel's timer fires at the deadline; a packet arriving after it (and
/// before our sweep happened to run) must find no connection.
#[test]
fn a_packet_after_the_deadline_does_not_revive_the_connection() {
    let mut v = nat_lab();
    let f = tcp_flow(40000);
    v.fwd(s(1), &f.c2v(SYN));
    // No sweep ran. SYN_RECV lasts 60 s: the ACK at the deadline is too late.
    let (verdict, _) = v.send(s(61), &f.c2v(TCP_ACK));
    assert_eq!(verdict, Verdict::Drop(DropReason::NotSyn));
    assert_eq!(v.dir.conns.len(), 0);
    let svc = &v.dir_services()[0];
    assert_eq!((svc.1, svc.2), (0, 0), "ActiveConn/InActConn");
    // A reply from the real server after the deadline is not translated either.
    v.fwd(s(100), &f.c2v(SYN));
    let (verdict, _) = v.send(s(160), &f.r2c(SYN | TCP_ACK));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoMatch));
    // UDP: a datagram after the deadline starts a new connection (conns 2).
    let u = Flow::new("10.0.0.2:5000", "12.0.0.1:53", "192.168.168.10:53");
    v.fwd(s(200), &u.uc2v(b"q"));
    v.fwd(s(500), &u.uc2v(b"q"));
    let st = v.adm_ok("-L -n --stats -u 12.0.0.1:53");
    let conns: u64 = st
        .lines()
        .nth(2)
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(conns, 2, "{st}");
    assert_eq!(v.dir.conns.len(), 1);
}

trait Rows {
    /// (service, ActiveConn, InActConn) of each service's first destination.
    fn dir_services(&self) -> Vec<(String, u32, u32)>;
}

impl Rows for Virt {
    fn dir_services(&self) -> Vec<(String, u32, u32)> {
        use tunvs::adm::api::Ipvs;
        self.dir
            .services()
            .iter()
            .map(|s| {
                let d = &s.dests[0];
                (format!("{:?}", s.spec.id), d.activeconns, d.inactconns)
            })
            .collect()
    }
}

#[test]
fn set_changes_established_fin_wait_and_udp_only() {
    let mut v = nat_lab();
    assert_eq!(
        v.adm_ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    // A connection established before --set keeps its timeout until its next packet.
    let old = tcp_flow(40000);
    let t_old = drive(
        &mut v,
        &old,
        &[(Client, SYN), (Server, SYN | TCP_ACK), (Client, TCP_ACK)],
        s(1),
    );
    v.adm_ok("--set 100 20 30");
    assert_eq!(
        v.adm_ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 100 20 30\n"
    );
    v.at(t_old);
    assert!(v.conn_rows()[0].starts_with("TCP 15:00  ESTABLISHED"));
    // Each state's timeout after --set.
    let want: &[(&str, u64)] = &[
        ("SYN_RECV", 60),
        ("SYN_RECV", 60),
        ("ESTABLISHED", 100),
        ("CLOSE_WAIT", 60),
        ("TIME_WAIT", 120),
        ("FIN_WAIT", 20),
        ("CLOSE", 10),
    ];
    for (i, ((state, pkts, _), (state2, t))) in STATES.iter().zip(want).enumerate() {
        assert_eq!(state, state2);
        let f = tcp_flow(41000 + i as u16);
        let last = drive(&mut v, &f, pkts, s(10 + i as u64));
        v.at(last);
        let row = v
            .conn_rows()
            .into_iter()
            .find(|r| r.contains(&format!("{} ", f.client)))
            .unwrap();
        let want = format!("TCP {:<6} {:<11} ", expire_col(*t), state);
        assert!(row.starts_with(&want), "{row} vs {want}");
    }
    let u = Flow::new("10.0.0.2:5000", "12.0.0.1:53", "192.168.168.10:53");
    v.fwd(s(20), &u.uc2v(b"q"));
    v.at(s(20));
    assert!(v
        .conn_rows()
        .iter()
        .any(|r| r.starts_with("UDP 00:30  UDP ")));
    // The old connection picks up 100 s with its next packet.
    v.fwd(s(30), &old.c2v_data(b"x"));
    v.at(s(30));
    let row = v
        .conn_rows()
        .into_iter()
        .find(|r| r.contains("10.0.0.2:40000 "))
        .unwrap();
    assert!(row.starts_with("TCP 01:40  ESTABLISHED"), "{row}");
    v.tick(s(130) - 1);
    assert!(v.conn_rows().iter().any(|r| r.contains("10.0.0.2:40000 ")));
    v.tick(s(130));
    assert!(!v.conn_rows().iter().any(|r| r.contains("10.0.0.2:40000 ")));
    // 0 leaves a value unchanged.
    v.adm_ok("--set 0 0 0");
    assert_eq!(
        v.adm_ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 100 20 30\n"
    );
    v.adm_ok("--set 0 50 0");
    assert_eq!(
        v.adm_ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 100 50 30\n"
    );
    v.adm_ok("--set 7200 0 1");
    assert_eq!(
        v.adm_ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 7200 50 1\n"
    );
}

#[test]
fn list_connections_shows_each_entry_with_its_expire_column() {
    let mut v = nat_lab();
    let a = tcp_flow(41234);
    let b = tcp_flow(41236);
    let u = Flow::new("10.0.0.5:50000", "12.0.0.1:53", "192.168.168.10:53");
    drive(
        &mut v,
        &a,
        &[(Client, SYN), (Server, SYN | TCP_ACK), (Client, TCP_ACK)],
        s(100),
    );
    drive(
        &mut v,
        &b,
        &[
            (Client, SYN),
            (Server, SYN | TCP_ACK),
            (Client, TCP_ACK),
            (Server, TCP_FIN | TCP_ACK),
        ],
        s(100),
    );
    v.fwd(s(100), &u.uc2v(b"q"));
    // 65.5 s later.
    v.at(s(165) + 500);
    let out = v.adm_ok("-L -n -c");
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "IPVS connection entries");
    assert_eq!(
        lines[1],
        "pro expire state       source             virtual            destination"
    );
    lines.drain(..2);
    lines.sort();
    assert_eq!(
        lines,
        vec![
            // 120 − 65.53 = 54.47 → 00:54
            "TCP 00:54  FIN_WAIT    10.0.0.2:41236     12.0.0.1:80        192.168.168.10:80",
            // 900 − 65.52 = 834.48 → 13:54
            "TCP 13:54  ESTABLISHED 10.0.0.2:41234     12.0.0.1:80        192.168.168.10:80",
            // 300 − 65.5 = 234.5 → 03:54
            "UDP 03:54  UDP         10.0.0.5:50000     12.0.0.1:53        192.168.168.10:53",
        ]
    );
}

#[test]
fn counters_drop_back_when_connections_expire() {
    let mut v = nat_lab();
    for (i, pkts) in [
        &[(Client, SYN), (Server, SYN | TCP_ACK), (Client, TCP_ACK)][..],
        &[(Client, SYN)][..],
        &[
            (Client, SYN),
            (Server, SYN | TCP_ACK),
            (Client, TCP_ACK),
            (Client, TCP_RST),
        ][..],
    ]
    .iter()
    .enumerate()
    {
        drive(&mut v, &tcp_flow(40000 + i as u16), pkts, s(1));
    }
    for p in 0..3 {
        let u = Flow::new(
            &format!("10.0.0.2:{}", 5000 + p),
            "12.0.0.1:53",
            "192.168.168.10:53",
        );
        v.fwd(s(2), &u.uc2v(b"q"));
    }
    let listing = |v: &Virt| v.adm_ok("-L -n");
    let want = |a: u32, i: u32, ua: u32, ui: u32| {
        format!(
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n\
             \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  12.0.0.1:80 rr\n\
             \x20 -> 192.168.168.10:80            Masq    1      {a:<10} {i:<10}\n\
             UDP  12.0.0.1:53 rr\n\
             \x20 -> 192.168.168.10:53            Masq    1      {ua:<10} {ui:<10}\n"
        )
    };
    // ESTABLISHED + SYN_RECV active, CLOSE inactive; UDP always inactive.
    assert_eq!(listing(&v), want(2, 1, 0, 3));
    v.tick(s(12));
    assert_eq!(listing(&v), want(2, 0, 0, 3), "CLOSE went after 10 s");
    v.tick(s(62));
    assert_eq!(listing(&v), want(1, 0, 0, 3), "SYN_RECV went after 60 s");
    v.tick(s(302));
    assert_eq!(listing(&v), want(1, 0, 0, 0), "UDP went after 300 s");
    v.tick(s(902));
    assert_eq!(
        listing(&v),
        want(0, 0, 0, 0),
        "ESTABLISHED went after 900 s"
    );
    assert!(v.dir.conns.is_empty());
    // The totals stay: 3 TCP and 3 UDP connections were made.
    let st = v.adm_ok("-L -n --stats");
    assert!(
        st.contains("TCP  12.0.0.1:80                         3"),
        "{st}"
    );
    assert!(
        st.contains("UDP  12.0.0.1:53                         3"),
        "{st}"
    );
}

// ---------------------------------------------------------------------------
// Persistence (spec §3.7)

fn persistent_lab(extra: &str) -> Virt {
    let v = Virt::new();
    v.adm_ok(&format!("-A -t 12.0.0.1:80 -s rr {extra}"));
    v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m");
    v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m");
    v
}

fn client(ip: &str, port: u16) -> Flow {
    Flow::new(&format!("{ip}:{port}"), "12.0.0.1:80", "0.0.0.0:0")
}

/// PersistConn of .10 and .11 from `--persistent-conn`.
fn persist(v: &Virt) -> (u32, u32) {
    let out = v.adm_ok("-L -n --persistent-conn");
    // A deleted destination is not listed: 0.
    let col = |rs: &str| -> u32 {
        out.lines()
            .find(|l| l.contains(rs))
            .map_or(0, |l| l.split_whitespace().nth(3).unwrap().parse().unwrap())
    };
    (col("192.168.168.10:80"), col("192.168.168.11:80"))
}

#[test]
fn persistence_pins_a_client_and_the_template_outlives_its_connections() {
    let mut v = persistent_lab("-p 360");
    let r10 = "192.168.168.10:80".parse().unwrap();
    let r11 = "192.168.168.11:80".parse().unwrap();
    // rr alone would give .11, .10, .11, .10, …
    let a1 = client("10.0.0.2", 40000);
    assert_eq!(dst_of(&v.fwd(s(1), &a1.c2v(SYN))), r11);
    assert_eq!(
        dst_of(&v.fwd(s(1), &client("10.0.0.3", 40000).c2v(SYN))),
        r10
    );
    assert_eq!(
        dst_of(&v.fwd(s(1), &client("10.0.0.4", 40000).c2v(SYN))),
        r11
    );
    // rr's turn is .10, but 10.0.0.2 is pinned to .11.
    let a2 = client("10.0.0.2", 40001);
    assert_eq!(dst_of(&v.fwd(s(2), &a2.c2v(SYN))), r11);
    assert_eq!(persist(&v), (1, 2));
    v.at(s(2));
    let tpl = |exp: &str, state: &str| {
        format!("TCP {exp:<6} {state:<11} 10.0.0.2:0         12.0.0.1:80        192.168.168.11:80")
    };
    // The second conn refreshed the template: 360 s from 2 s.
    assert!(
        v.conn_rows().contains(&tpl("06:00", "NONE")),
        "{:?}",
        v.conn_rows()
    );
    // ESTABLISHED assures the template.
    let a1 = a1.to(r11);
    v.fwd(s(3), &a1.r2c(SYN | TCP_ACK));
    v.fwd(s(3), &a1.c2v(TCP_ACK));
    v.at(s(3));
    assert!(v.conn_rows().contains(&tpl("05:59", "ASSURED")));
    // The client's connections end (RST → CLOSE 10 s; SYN_RECV 60 s) …
    v.fwd(s(4), &a1.c2v(TCP_RST));
    v.tick(s(62));
    assert!(!v.conn_rows().iter().any(|r| r.contains("10.0.0.2:4000")));
    // … the template stays and still pins the client.
    assert_eq!(persist(&v), (1, 2));
    let a3 = client("10.0.0.2", 40002);
    assert_eq!(dst_of(&v.fwd(s(100), &a3.c2v(SYN))), r11, "still pinned");
    v.tick(s(160)); // a3 (SYN_RECV) gone
                    // The template expires 360 s after the last connection it made (100 s).
    v.tick(s(460) - 1);
    v.at(s(460) - 1);
    assert!(
        v.conn_rows().contains(&tpl("00:00", "ASSURED")),
        "{:?}",
        v.conn_rows()
    );
    v.tick(s(460));
    assert!(
        !v.conn_rows().iter().any(|r| r.contains("10.0.0.2:0 ")),
        "{:?}",
        v.conn_rows()
    );
    // The other templates (made at 1 s) went at 361 s.
    assert_eq!(persist(&v), (0, 0));
    assert!(v.conn_rows().iter().all(|r| !r.contains(":0 ")));
    // Unpinned: 10.0.0.2 is scheduled afresh. rr: after .11 (a3 reused the
    // template, not rr), rr's next is .10.
    let a4 = client("10.0.0.2", 40003);
    assert_eq!(dst_of(&v.fwd(s(500), &a4.c2v(SYN))), r10);
    assert_eq!(persist(&v), (1, 0));
}

#[test]
fn a_template_with_live_connections_is_rearmed_for_60_s() {
    let mut v = persistent_lab("-p 10");
    let r11 = "192.168.168.11:80".parse().unwrap();
    let f = client("10.0.0.2", 40000).to(r11);
    v.fwd(s(1), &f.c2v(SYN));
    v.fwd(s(1), &f.r2c(SYN | TCP_ACK));
    v.fwd(s(1), &f.c2v(TCP_ACK));
    // At 11 s the template is due but controls an ESTABLISHED conn: 60 s more.
    v.tick(s(11));
    let tpl = |v: &Virt| {
        v.conn_rows()
            .into_iter()
            .find(|r| r.contains("10.0.0.2:0 "))
    };
    assert_eq!(
        tpl(&v).as_deref(),
        Some("TCP 01:00  ASSURED     10.0.0.2:0         12.0.0.1:80        192.168.168.11:80")
    );
    // Re-armed again while the connection lives.
    v.tick(s(71));
    assert!(tpl(&v).unwrap().starts_with("TCP 01:00"));
    // The connection closes (RST → CLOSE, 10 s) and goes; the template
    // follows at its next deadline (131 s).
    v.fwd(s(80), &f.c2v(TCP_RST));
    v.tick(s(90));
    assert_eq!(v.dir.conns.len(), 0);
    v.tick(s(131) - 1);
    assert!(tpl(&v).is_some());
    v.tick(s(131));
    assert!(tpl(&v).is_none());
    assert_eq!(persist(&v), (0, 0));
}

/// A new connection through a template that is past its deadline but still
/// controls one (no sweep ran yet) finds it held for 60 s, as the sweep would
/// have left it, not re-armed with its own 10 s.
#[test]
fn a_due_template_reused_before_the_sweep_is_held_for_60_s() {
    let mut v = persistent_lab("-p 10");
    let r11: std::net::SocketAddr = "192.168.168.11:80".parse().unwrap();
    let f = client("10.0.0.2", 40000).to(r11);
    v.fwd(s(1), &f.c2v(SYN));
    // At 20 s (template due at 11 s, no sweep since): the SYN_RECV conn (60 s)
    // still lives, so the template pins the second connection …
    let g = client("10.0.0.2", 40001).to(r11);
    assert_eq!(dst_of(&v.fwd(s(20), &g.c2v(SYN))), r11);
    v.at(s(20));
    let row = v
        .conn_rows()
        .into_iter()
        .find(|r| r.contains("10.0.0.2:0 "))
        .expect("template row");
    // … and is held 60 s from its refresh, not 10 s.
    assert!(row.starts_with("TCP 01:00 "), "{row}");
}

#[test]
fn netmask_pins_a_whole_client_network() {
    let mut v = persistent_lab("-p 360 -M 255.255.255.0");
    let first = dst_of(&v.fwd(s(1), &client("10.0.0.2", 40000).c2v(SYN)));
    for (i, ip) in ["10.0.0.3", "10.0.0.200", "10.0.0.2"].iter().enumerate() {
        let d = dst_of(&v.fwd(s(2), &client(ip, 41000 + i as u16).c2v(SYN)));
        assert_eq!(d, first, "{ip}");
    }
    // Another /24 goes through rr.
    let other = dst_of(&v.fwd(s(3), &client("10.0.1.2", 40000).c2v(SYN)));
    assert_ne!(other, first);
    v.at(s(3));
    let tpls: Vec<String> = v
        .conn_rows()
        .into_iter()
        .filter(|r| r.contains(":0 "))
        .collect();
    assert_eq!(tpls.len(), 2, "{tpls:?}");
    assert!(tpls.iter().any(|r| r.contains("10.0.0.0:0 ")), "{tpls:?}");
    assert!(tpls.iter().any(|r| r.contains("10.0.1.0:0 ")), "{tpls:?}");
}

#[test]
fn udp_template_is_assured_by_a_reply() {
    let mut v = Virt::new();
    v.adm_ok("-A -u 12.0.0.1:53 -s rr -p 60");
    v.adm_ok("-a -u 12.0.0.1:53 -r 192.168.168.10:53 -m");
    let f = Flow::new("10.0.0.2:5000", "12.0.0.1:53", "192.168.168.10:53");
    v.fwd(s(1), &f.uc2v(b"q"));
    v.at(s(1));
    assert!(v.conn_rows().contains(
        &"UDP 01:00  NONE        10.0.0.2:0         12.0.0.1:53        192.168.168.10:53"
            .to_string()
    ));
    v.fwd(s(2), &f.ur2c(b"a"));
    assert!(v
        .conn_rows()
        .iter()
        .any(|r| r.contains("ASSURED     10.0.0.2:0 ")));
    // The template (60 s) is re-armed while the conn (300 s) lives, then goes.
    v.tick(s(61));
    assert_eq!(v.conn_rows().len(), 2);
    v.tick(s(302));
    v.tick(s(362));
    assert!(v.conn_rows().is_empty(), "{:?}", v.conn_rows());
}

/// Like connections, a template past its deadline (and controlling nothing)
/// no longer pins the client, even if no sweep has run yet.
#[test]
fn a_template_past_its_deadline_pins_nothing_even_before_the_sweep() {
    let mut v = persistent_lab("-p 30");
    let r10 = "192.168.168.10:80".parse().unwrap();
    let r11 = "192.168.168.11:80".parse().unwrap();
    // UDP-like short life: a SYN_RECV conn (60 s) would outlive the template,
    // so let the conn end first with RST in ESTABLISHED (CLOSE, 10 s).
    let f = client("10.0.0.2", 40000).to(r11);
    assert_eq!(dst_of(&v.fwd(s(1), &f.c2v(SYN))), r11);
    v.fwd(s(1), &f.r2c(SYN | TCP_ACK));
    v.fwd(s(1), &f.c2v(TCP_ACK));
    v.fwd(s(2), &f.c2v(TCP_RST));
    v.tick(s(12)); // the conn is gone; the template (30 s from 1 s) is not
    assert_eq!(v.dir.conns.len(), 0);
    assert_eq!(persist(&v), (0, 1));
    // At 31 s, no sweep: the template is dead. rr's next pick is .10.
    let g = client("10.0.0.2", 40001);
    assert_eq!(dst_of(&v.fwd(s(31), &g.c2v(SYN))), r10);
    assert_eq!(
        persist(&v),
        (1, 0),
        "the dead template was released, the new one counted"
    );
    v.tick(s(32));
    assert_eq!(persist(&v), (1, 0));
}

/// Persistence and destination changes (spec §3.7, §3.11): a quiescent
/// (weight 0) destination keeps its pinned clients; a deleted one invalidates
/// the template, so the client is scheduled afresh.
#[test]
fn templates_survive_weight_zero_but_not_deletion() {
    let mut v = persistent_lab("-p 360");
    let r10 = "192.168.168.10:80".parse().unwrap();
    let r11 = "192.168.168.11:80".parse().unwrap();
    assert_eq!(
        dst_of(&v.fwd(s(1), &client("10.0.0.2", 40000).c2v(SYN))),
        r11
    );
    v.adm_ok("-e -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 0");
    // Quiescent: new clients avoid it, the pinned one still goes there.
    assert_eq!(
        dst_of(&v.fwd(s(2), &client("10.0.0.3", 40000).c2v(SYN))),
        r10
    );
    assert_eq!(
        dst_of(&v.fwd(s(2), &client("10.0.0.4", 40000).c2v(SYN))),
        r10
    );
    assert_eq!(
        dst_of(&v.fwd(s(3), &client("10.0.0.2", 40001).c2v(SYN))),
        r11
    );
    // Deleted: the template no longer counts; 10.0.0.2 lands on .10.
    v.adm_ok("-d -t 12.0.0.1:80 -r 192.168.168.11:80");
    assert_eq!(
        dst_of(&v.fwd(s(4), &client("10.0.0.2", 40002).c2v(SYN))),
        r10
    );
    assert_eq!(
        dst_of(&v.fwd(s(5), &client("10.0.0.2", 40003).c2v(SYN))),
        r10
    );
    let tpls: Vec<String> = v
        .conn_rows()
        .into_iter()
        .filter(|r| r.contains("10.0.0.2:0 ") && r.contains("192.168.168.10:80"))
        .collect();
    assert_eq!(tpls.len(), 1, "{:?}", v.conn_rows());
    // Everything expires in the end, the deleted destination's template too.
    v.tick(s(5 + 360));
    v.tick(s(5 + 360 + 60));
    assert!(v.conn_rows().is_empty(), "{:?}", v.conn_rows());
    // Re-adding .11 revives it with its counters: its invalidated template
    // was released (PersistConn 0), and so were its connections.
    v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m");
    assert_eq!(persist(&v), (0, 0));
    assert!(v
        .adm_ok("-L -n")
        .contains("  -> 192.168.168.11:80            Masq    1      0          0         \n"));
}

/// One-packet scheduling (`-o`, spec §3.8): every datagram is scheduled on
/// its own, no connection stays, the counters go back to zero.
#[test]
fn one_packet_scheduling_leaves_no_connection() {
    let mut v = Virt::new();
    v.adm_ok("-A -u 12.0.0.1:53 -s rr -o");
    v.adm_ok("-a -u 12.0.0.1:53 -r 192.168.168.10:53 -m");
    v.adm_ok("-a -u 12.0.0.1:53 -r 192.168.168.11:53 -m");
    let f = Flow::new("10.0.0.2:5000", "12.0.0.1:53", "0.0.0.0:0");
    let mut got = Vec::new();
    for i in 0..4 {
        got.push(dst_of(&v.fwd(s(1) + i, &f.uc2v(b"q"))).ip().to_string());
    }
    assert_eq!(
        got,
        [
            "192.168.168.11",
            "192.168.168.10",
            "192.168.168.11",
            "192.168.168.10"
        ]
    );
    assert!(v.conn_rows().is_empty());
    assert_eq!(
        v.adm_ok("-L -n"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         UDP  12.0.0.1:53 rr ops\n\
         \x20 -> 192.168.168.10:53            Masq    1      0          0         \n\
         \x20 -> 192.168.168.11:53            Masq    1      0          0         \n"
    );
    assert!(v
        .adm_ok("-L -n --stats")
        .contains("UDP  12.0.0.1:53                         4"));
    // A reply has no connection to follow.
    let (verdict, _) = v.send(s(2), &f.to("192.168.168.10:53".parse().unwrap()).ur2c(b"a"));
    assert_eq!(verdict, Verdict::Drop(DropReason::NoMatch));
    // A destination tun mode cannot carry (DR): dropped, and still no
    // connection left behind in the counters.
    v.adm_ok("-A -u 12.0.0.2:53 -s rr -o");
    v.adm_ok("-a -u 12.0.0.2:53 -r 192.168.168.12:53 -g");
    let g = Flow::new("10.0.0.2:5000", "12.0.0.2:53", "0.0.0.0:0");
    for i in 0..3 {
        let (verdict, _) = v.send(s(3) + i, &g.uc2v(b"q"));
        assert_eq!(verdict, Verdict::Drop(DropReason::MethodUnavailable));
    }
    assert!(
        v.adm_ok("-L -n -u 12.0.0.2:53")
            .contains("  -> 192.168.168.12:53            Route   1      0          0         \n"),
        "{}",
        v.adm_ok("-L -n -u 12.0.0.2:53")
    );
}

/// Related ICMP errors are translated but do not re-arm the connection's
/// timer (kernel `ip_vs_in_icmp`/`ip_vs_out_icmp` put the conn back without
/// touching it): a stream of errors never keeps a dead flow alive.
#[test]
fn icmp_errors_do_not_rearm_the_timer() {
    use tunvs::packet::testutil::icmp_packet;
    let mut v = nat_lab();
    let f = tcp_flow(40000);
    let last = drive(&mut v, &f, &[(Client, SYN)], s(1)); // SYN_RECV, 60 s
    let quoted = tcp_flow(40000).to("192.168.168.10:80".parse().unwrap());
    // From the real server: port unreachable about what it got (client → RS).
    let seen = tunvs::packet::testutil::tcp_packet(quoted.client, quoted.rs, SYN, 1, 1, &[], &[]);
    let err = icmp_packet(
        quoted.rs.ip(),
        quoted.client.ip(),
        3,
        3,
        [0; 4],
        &seen[..28],
    );
    for t in [s(30), s(50), s(60)] {
        v.fwd(t, &err);
    }
    v.tick(last + s(60));
    assert_eq!(
        v.dir.conns.len(),
        0,
        "ICMP errors kept the connection alive"
    );
    // After expiry the same error is unrelated.
    let (verdict, _) = v.send(last + s(61), &err);
    assert_eq!(verdict, Verdict::Drop(DropReason::IcmpUnrelated));
}
