//! Byte-exact tests of `tunvs adm` against spec §4 (expected texts copied
//! from §4.14, trailing spaces included).

use std::net::IpAddr;

use super::api::{ConnSnapshot, Ipvs, Timeouts};
use super::exec::{apply, parse_rules, run_with_names, AdmOutput, NO_SYNC_DAEMON};
use super::fake::FakeIpvs;
use super::format::{largenum, VERSION_LINE};
use super::names::Names;
use super::parse::{parse, Command, ListWhat};
use crate::service::{
    FwdMethod, Proto, SvcId, TunCsum, TunType, SVC_F_PERSISTENT, SVC_F_SCHED1, SVC_F_SCHED2,
};
use crate::stats::StatsSnapshot;

fn names() -> Names {
    Names::from_tables(
        "127.0.0.1 localhost\n10.9.9.9 web1 web\n",
        "http 80/tcp www\nhttp 80/udp\ndomain 53/udp\nhttps 443/tcp\n",
    )
}

fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

fn adm_in(ipvs: &FakeIpvs, line: &str, stdin: &str) -> AdmOutput {
    run_with_names("ipvsadm", &argv(line), stdin, ipvs, &names())
}

fn adm(ipvs: &FakeIpvs, line: &str) -> AdmOutput {
    adm_in(ipvs, line, "")
}

/// Run and require success with no stderr.
fn ok(ipvs: &FakeIpvs, line: &str) -> String {
    let o = adm(ipvs, line);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""), "{line}");
    o.stdout
}

/// Run on a fresh table; return (code, stderr) and assert nothing on stdout.
fn fails(line: &str) -> (i32, String) {
    let ipvs = FakeIpvs::default();
    let o = adm(&ipvs, line);
    assert_eq!(o.stdout, "", "{line}");
    (o.code, o.stderr)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(addr: &str, port: u16) -> SvcId {
    SvcId::Addr {
        proto: Proto::Tcp,
        addr: ip(addr),
        port,
    }
}

fn stats(v: [u64; 10]) -> StatsSnapshot {
    StatsSnapshot {
        conns: v[0],
        inpkts: v[1],
        outpkts: v[2],
        inbytes: v[3],
        outbytes: v[4],
        cps: v[5],
        inpps: v[6],
        outpps: v[7],
        inbps: v[8],
        outbps: v[9],
    }
}

/// The §4.14 setup, with the example's counters.
fn example() -> FakeIpvs {
    let ipvs = FakeIpvs::default();
    ok(&ipvs, "-A -t 12.0.0.1:80 -s rr");
    ok(&ipvs, "-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1");
    ok(
        &ipvs,
        "-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2 -x 100 -y 50",
    );
    let id = tcp("12.0.0.1", 80);
    ipvs.with_service(&id, |s| {
        s.stats = stats([60, 1350, 1210, 91320, 1650300, 2, 45, 40, 3044, 55010])
    });
    ipvs.with_dest(&id, "192.168.168.10", 80, |d| {
        d.activeconns = 2;
        d.inactconns = 0;
        d.stats = stats([20, 450, 400, 30440, 550100, 1, 15, 13, 1015, 18336]);
    });
    ipvs.with_dest(&id, "192.168.168.11", 80, |d| {
        d.activeconns = 1;
        d.inactconns = 3;
        d.stats = stats([40, 900, 810, 60880, 1100200, 1, 30, 27, 2029, 36674]);
    });
    ipvs
}

// ---------------------------------------------------------------------------
// §4.14 listings

#[test]
fn example_kernel_order_is_newest_first() {
    let ipvs = example();
    let s = ipvs.services();
    let order: Vec<String> = s[0].dests.iter().map(|d| d.spec.addr.to_string()).collect();
    assert_eq!(order, ["192.168.168.11", "192.168.168.10"]);
    let d = &s[0].dests[0].spec;
    assert_eq!(
        (d.fwd, d.weight, d.u_threshold, d.l_threshold),
        (FwdMethod::Masq, 2, 100, 50)
    );
}

#[test]
fn list_numeric_example() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "TCP  12.0.0.1:80 rr\n",
        "  -> 192.168.168.10:80            Masq    1      2          0         \n",
        "  -> 192.168.168.11:80            Masq    2      1          3         \n",
    );
    let ipvs = example();
    assert_eq!(ok(&ipvs, "-L -n"), expected);
    assert_eq!(ok(&ipvs, "-Ln"), expected);
    assert_eq!(ok(&ipvs, "-l --numeric --sort"), expected);
    assert_eq!(ok(&ipvs, "--list -n"), expected);
}

#[test]
fn list_with_names_example() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "TCP  12.0.0.1:http rr\n",
        "  -> 192.168.168.10:http          Masq    1      2          0         \n",
        "  -> 192.168.168.11:http          Masq    2      1          3         \n",
    );
    let ipvs = example();
    assert_eq!(ok(&ipvs, "-L"), expected);
    // No arguments at all = `-L` without `-n`.
    assert_eq!(ok(&ipvs, ""), expected);
}

#[test]
fn list_stats_example() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
        "  -> RemoteAddress:Port\n",
        "TCP  12.0.0.1:80                        60     1350     1210    91320  1650300\n",
        "  -> 192.168.168.10:80                  20      450      400    30440   550100\n",
        "  -> 192.168.168.11:80                  40      900      810    60880  1100200\n",
    );
    assert_eq!(ok(&example(), "-L -n --stats"), expected);
}

#[test]
fn list_rate_example() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n",
        "  -> RemoteAddress:Port\n",
        "TCP  12.0.0.1:80                         2       45       40     3044    55010\n",
        "  -> 192.168.168.10:80                   1       15       13     1015    18336\n",
        "  -> 192.168.168.11:80                   1       30       27     2029    36674\n",
    );
    assert_eq!(ok(&example(), "-L -n --rate"), expected);
}

#[test]
fn list_thresholds_example() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n",
        "  -> RemoteAddress:Port\n",
        "TCP  12.0.0.1:80 rr\n",
        "  -> 192.168.168.10:80            0          0          2          0         \n",
        "  -> 192.168.168.11:80            100        50         1          3         \n",
    );
    assert_eq!(ok(&example(), "-L -n --thresholds"), expected);
}

#[test]
fn list_persistent_conn_example() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n",
        "  -> RemoteAddress:Port\n",
        "TCP  12.0.0.1:80 rr\n",
        "  -> 192.168.168.10:80            1         0           2          0         \n",
        "  -> 192.168.168.11:80            2         0           1          3         \n",
    );
    assert_eq!(ok(&example(), "-L -n --persistent-conn"), expected);
}

#[test]
fn list_tun_info_example() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        "TCP  12.0.0.1:80 rr\n",
        "  -> 192.168.168.10:80            Masq    n/a           1      2          0         \n",
        "  -> 192.168.168.11:80            Masq    n/a           2      1          3         \n",
    );
    assert_eq!(ok(&example(), "-L -n --tun-info"), expected);
}

#[test]
fn list_precedence_stats_over_the_rest() {
    let ipvs = example();
    assert_eq!(
        ok(&ipvs, "-L -n --thresholds --rate --stats --tun-info"),
        ok(&ipvs, "-L -n --stats")
    );
    assert_eq!(
        ok(&ipvs, "-L -n --tun-info --persistent-conn"),
        ok(&ipvs, "-L -n --persistent-conn")
    );
}

#[test]
fn list_single_service_has_no_version_line() {
    let expected = concat!(
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "TCP  12.0.0.1:80 rr\n",
        "  -> 192.168.168.10:80            Masq    1      2          0         \n",
        "  -> 192.168.168.11:80            Masq    2      1          3         \n",
    );
    let ipvs = example();
    assert_eq!(ok(&ipvs, "-L -n -t 12.0.0.1:80"), expected);
    assert_eq!(ok(&ipvs, "-L -n -t 12.0.0.1:http"), expected);
    let o = adm(&ipvs, "-L -n -t 12.0.0.1:81");
    assert_eq!(
        (o.code, o.stderr.as_str(), o.stdout.as_str()),
        (1, "No such service\n", "")
    );
}

#[test]
fn list_nosort_keeps_kernel_order() {
    let o = ok(&example(), "-L -n --nosort");
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(
        lines[4],
        "  -> 192.168.168.11:80            Masq    2      1          3         "
    );
    assert_eq!(
        lines[5],
        "  -> 192.168.168.10:80            Masq    1      2          0         "
    );
}

fn example_conns() -> Vec<ConnSnapshot> {
    let c =
        |cport: u16, daddr: &str, state: &'static str, expires: u32, caddr: &str| ConnSnapshot {
            proto: "TCP",
            caddr: ip(caddr),
            cport,
            vaddr: ip("12.0.0.1"),
            vport: 80,
            daddr: ip(daddr),
            dport: 80,
            state,
            expires,
            pe: None,
        };
    vec![
        c(41234, "192.168.168.10", "ESTABLISHED", 898, "10.0.0.2"),
        c(41236, "192.168.168.11", "FIN_WAIT", 65, "10.0.0.2"),
        c(50000, "192.168.168.11", "SYN_RECV", 54, "10.0.0.5"),
        c(0, "192.168.168.10", "NONE", 359, "10.0.0.2"),
    ]
}

#[test]
fn list_connections_example() {
    let ipvs = example();
    *ipvs.conns.borrow_mut() = example_conns();
    let expected = concat!(
        "IPVS connection entries\n",
        "pro expire state       source             virtual            destination\n",
        "TCP 14:58  ESTABLISHED 10.0.0.2:41234     12.0.0.1:80        192.168.168.10:80\n",
        "TCP 01:05  FIN_WAIT    10.0.0.2:41236     12.0.0.1:80        192.168.168.11:80\n",
        "TCP 00:54  SYN_RECV    10.0.0.5:50000     12.0.0.1:80        192.168.168.11:80\n",
        "TCP 05:59  NONE        10.0.0.2:0         12.0.0.1:80        192.168.168.10:80\n",
    );
    assert_eq!(ok(&ipvs, "-L -n -c"), expected);
    // Names: port 80/tcp is `http`, the template's client port 0 stays numeric.
    let named = ok(&ipvs, "-L -c");
    assert!(named.contains(
        "TCP 05:59  NONE        10.0.0.2:0         12.0.0.1:http      192.168.168.10:http\n"
    ));
}

#[test]
fn list_connections_persistent_conn_columns() {
    let ipvs = FakeIpvs::default();
    let mut conns = example_conns();
    conns.truncate(1);
    conns.push(ConnSnapshot {
        proto: "UDP",
        caddr: ip("10.0.0.7"),
        cport: 5060,
        vaddr: ip("12.0.0.1"),
        vport: 5060,
        daddr: ip("192.168.168.10"),
        dport: 5060,
        state: "UDP",
        expires: 6000,
        pe: Some(("sip".into(), "a84b4c76e66710".into())),
    });
    conns.push(ConnSnapshot {
        proto: "IP",
        caddr: ip("10.0.0.8"),
        cport: 0,
        vaddr: ip("0.0.0.1"),
        vport: 0,
        daddr: ip("192.168.168.11"),
        dport: 80,
        state: "NONE",
        expires: 30,
        pe: None,
    });
    *ipvs.conns.borrow_mut() = conns;
    let expected = concat!(
        "IPVS connection entries\n",
        "pro expire state       source             virtual            destination        pe name          pe_data\n",
        "TCP 14:58  ESTABLISHED 10.0.0.2:41234     12.0.0.1:80        192.168.168.10:80\n",
        "UDP 100:00 UDP         10.0.0.7:5060      12.0.0.1:5060      192.168.168.10:5060 sip                a84b4c76e66710\n",
        "IP  00:30  NONE        10.0.0.8:0         0.0.0.1:0          192.168.168.11:80\n",
    );
    assert_eq!(ok(&ipvs, "-L -n -c --persistent-conn"), expected);
    // Without --persistent-conn the PE columns are not printed.
    assert!(ok(&ipvs, "-L -n -c").contains(
        "UDP 100:00 UDP         10.0.0.7:5060      12.0.0.1:5060      192.168.168.10:5060\n"
    ));
}

#[test]
fn list_timeout_and_set() {
    let ipvs = FakeIpvs::default();
    assert_eq!(
        ok(&ipvs, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    ok(&ipvs, "--set 0 60 0");
    assert_eq!(
        ok(&ipvs, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 60 300\n"
    );
    assert_eq!(
        ipvs.timeouts(),
        Timeouts {
            tcp: 900,
            tcpfin: 60,
            udp: 300
        }
    );
}

#[test]
fn list_daemon_prints_nothing() {
    let o = adm(&FakeIpvs::default(), "-L --daemon");
    assert_eq!((o.code, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));
}

#[test]
fn save_numeric_example() {
    let expected = concat!(
        "-A -t 12.0.0.1:80 -s rr\n",
        "-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1\n",
        "-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2\n",
    );
    let ipvs = example();
    assert_eq!(ok(&ipvs, "-S -n"), expected);
    assert_eq!(ok(&ipvs, "--save --numeric"), expected);
    // Without -n, names are resolved.
    assert_eq!(
        ok(&ipvs, "-S"),
        concat!(
            "-A -t 12.0.0.1:http -s rr\n",
            "-a -t 12.0.0.1:http -r 192.168.168.10:http -m -w 1\n",
            "-a -t 12.0.0.1:http -r 192.168.168.11:http -m -w 2\n",
        )
    );
}

// ---------------------------------------------------------------------------
// other shapes (§4.14 end)

fn shapes() -> FakeIpvs {
    let ipvs = FakeIpvs::default();
    ok(&ipvs, "-A -f 1");
    ok(&ipvs, "-A -t [2001:db8::80]:80 -s rr");
    ok(&ipvs, "-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m");
    ok(&ipvs, "-A -u 12.0.0.1:53 -s rr -o");
    ok(
        &ipvs,
        "-A -t 12.0.0.1:443 -s sh -b sh-fallback,sh-port -p -M 255.255.255.0",
    );
    ipvs
}

#[test]
fn other_service_line_shapes() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        "TCP  12.0.0.1:443 sh (sh-fallback,sh-port) persistent 360 mask 255.255.255.0\n",
        "UDP  12.0.0.1:53 rr ops\n",
        "TCP  [2001:db8::80]:80 rr\n",
        "  -> [2001:db8::a0a0]:80          Masq    1      0          0         \n",
        "FWM  1 wlc\n",
    );
    assert_eq!(ok(&shapes(), "-L -n"), expected);
}

#[test]
fn other_shapes_save() {
    let expected = concat!(
        "-A -t 12.0.0.1:443 -s sh -p 360 -M 255.255.255.0 -b sh-fallback,sh-port\n",
        "-A -u 12.0.0.1:53 -s rr -o\n",
        "-A -t [2001:db8::80]:80 -s rr\n",
        "-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1\n",
        "-A -f 1 -s wlc\n",
    );
    assert_eq!(ok(&shapes(), "-S -n"), expected);
}

#[test]
fn more_service_shapes_ipv6_fwmark_flags_pe() {
    let ipvs = FakeIpvs::default();
    ok(&ipvs, "-A -f 7 -6 -s mh -b mh-port -p 60 -M 64");
    ok(
        &ipvs,
        "-A -t [2001:db8::1]:0 -s wrr -p -M 48 --pe sip -b flag-3,flag-1",
    );
    ok(
        &ipvs,
        "--add-service --sctp-service 12.0.0.2:3868 --scheduler=lc",
    );
    assert_eq!(
        ok(&ipvs, "-L -n"),
        concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "SCTP 12.0.0.2:3868 lc\n",
            "TCP  [2001:db8::1]:0 wrr (flag-1,flag-3) persistent 360 mask 48 pe sip\n",
            "FWM  7 IPv6 mh (mh-port) persistent 60 mask 64\n",
        )
    );
    assert_eq!(
        ok(&ipvs, "-S -n"),
        concat!(
            "-A --sctp-service 12.0.0.2:3868 -s lc\n",
            "-A -t [2001:db8::1]:0 -s wrr -p 360 -M 48 --pe sip -b flag-1,flag-3\n",
            "-A -f 7 -6 -s mh -p 60 -M 64 -b mh-port\n",
        )
    );
}

fn tunnels() -> FakeIpvs {
    let ipvs = FakeIpvs::default();
    ok(&ipvs, "-A -t 10.1.1.1:80");
    ok(
        &ipvs,
        "-a -t 10.1.1.1:80 -r 192.168.10.1 -i --tun-type gue --tun-port 6080 --tun-nocsum",
    );
    ok(
        &ipvs,
        "-a -t 10.1.1.1:80 -r 192.168.11.1 -i --tun-type gre --tun-csum",
    );
    ok(&ipvs, "-a -t 10.1.1.1:80 -r 192.168.12.1 -i");
    ok(&ipvs, "-a -t 10.1.1.1:80 -r 192.168.13.1:8080 -m -w 0");
    ipvs
}

#[test]
fn tun_info_tunnel_lines() {
    let expected = concat!(
        "IP Virtual Server version 1.2.1 (size=4096)\n",
        "Prot LocalAddress:Port Scheduler Flags\n",
        "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        "TCP  10.1.1.1:80 wlc\n",
        "  -> 192.168.10.1:80              Tunnel  gue:6080:-c   1      0          0         \n",
        "  -> 192.168.11.1:80              Tunnel  gre:+c        1      0          0         \n",
        "  -> 192.168.12.1:80              Tunnel  ipip          1      0          0         \n",
        "  -> 192.168.13.1:8080            Masq    n/a           0      0          0         \n",
    );
    assert_eq!(ok(&tunnels(), "-L -n --tun-info"), expected);
}

#[test]
fn tunnel_saves() {
    let expected = concat!(
        "-A -t 10.1.1.1:80 -s wlc\n",
        "-a -t 10.1.1.1:80 -r 192.168.10.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum\n",
        "-a -t 10.1.1.1:80 -r 192.168.11.1:80 -i -w 1 --tun-type gre --tun-csum\n",
        "-a -t 10.1.1.1:80 -r 192.168.12.1:80 -i -w 1 --tun-type ipip\n",
        "-a -t 10.1.1.1:80 -r 192.168.13.1:8080 -m -w 0\n",
    );
    let ipvs = tunnels();
    assert_eq!(ok(&ipvs, "-S -n"), expected);
    // The save restores to the same table (round trip through -R).
    let again = FakeIpvs::default();
    let o = adm_in(&again, "-R", expected);
    assert_eq!((o.code, o.stderr.as_str()), (0, ""));
    assert_eq!(ok(&again, "-S -n"), expected);
    let d = &again.services()[0].dests;
    let gue = d
        .iter()
        .find(|d| d.spec.addr == ip("192.168.10.1"))
        .unwrap();
    assert_eq!(
        (gue.spec.tun_type, gue.spec.tun_port, gue.spec.tun_flags),
        (TunType::Gue, 6080, TunCsum::NoCsum)
    );
}

// ---------------------------------------------------------------------------
// numbers, sorting, names

#[test]
fn largenum_examples() {
    assert_eq!(largenum(0, false), "        0");
    assert_eq!(largenum(99_999_999, false), " 99999999");
    assert_eq!(largenum(123_456_789, false), "  123456K");
    assert_eq!(largenum(12_345_678_901, false), "   12345M");
    assert_eq!(largenum(100_000_000_000, false), "     100G");
    assert_eq!(largenum(123_456_789_012_345, false), "     123T");
    assert_eq!(largenum(12, true), "       12");
    assert_eq!(largenum(123_456_789, true), " 123456789");
    assert_eq!(largenum(12_345_678_901, true), " 12345678901");
}

#[test]
fn stats_exact_and_scaled() {
    let ipvs = example();
    let id = tcp("12.0.0.1", 80);
    ipvs.with_service(&id, |s| s.stats.inbytes = 123_456_789);
    let scaled = ok(&ipvs, "-L -n --stats");
    assert!(scaled.contains(
        "TCP  12.0.0.1:80                        60     1350     1210  123456K  1650300\n"
    ));
    let exact = ok(&ipvs, "-L -n --stats --exact");
    assert!(exact.contains(
        "TCP  12.0.0.1:80                        60     1350     1210 123456789  1650300\n"
    ));
    assert_eq!(exact, ok(&ipvs, "-L -n --stats -X"));
}

#[test]
fn wrapping_sort_puts_200_before_10() {
    let ipvs = FakeIpvs::default();
    ok(&ipvs, "-A -t 10.0.0.1:80");
    ok(&ipvs, "-A -t 200.0.0.1:80");
    ok(&ipvs, "-a -t 10.0.0.1:80 -r 10.0.0.5 -m");
    ok(&ipvs, "-a -t 10.0.0.1:80 -r 200.0.0.5 -m");
    ok(&ipvs, "-a -t 10.0.0.1:80 -r 10.0.0.5:8080 -m");
    assert_eq!(
        ok(&ipvs, "-S -n"),
        concat!(
            "-A -t 200.0.0.1:80 -s wlc\n",
            "-A -t 10.0.0.1:80 -s wlc\n",
            "-a -t 10.0.0.1:80 -r 200.0.0.5:80 -m -w 1\n",
            "-a -t 10.0.0.1:80 -r 10.0.0.5:80 -m -w 1\n",
            "-a -t 10.0.0.1:80 -r 10.0.0.5:8080 -m -w 1\n",
        )
    );
    // With 100.0.0.1 too the comparison is cyclic (200 < 10 < 100 < 200);
    // the result is what glibc's merge-sort qsort gives for this input order.
    ok(&ipvs, "-A -t 100.0.0.1:80");
    let order: Vec<String> = ok(&ipvs, "-S -n")
        .lines()
        .filter(|l| l.starts_with("-A"))
        .map(String::from)
        .collect();
    assert_eq!(
        order,
        [
            "-A -t 10.0.0.1:80 -s wlc",
            "-A -t 100.0.0.1:80 -s wlc",
            "-A -t 200.0.0.1:80 -s wlc"
        ]
    );
}

#[test]
fn names_resolve_from_hosts_and_truncate() {
    let n = Names::from_tables(
        concat!(
            "12.0.0.1 director-virtual-service.example.org\n",
            "192.168.168.10 averyveryverylonghostname.example.org\n",
        ),
        "http 80/tcp\n",
    );
    let ipvs = example();
    let o = run_with_names("ipvsadm", &argv("-L"), "", &ipvs, &n);
    assert_eq!(
        o.stdout,
        concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "TCP  director-virtual-service.exa rr\n",
            "  -> averyveryverylonghostname.ex Masq    1      2          0         \n",
            "  -> 192.168.168.11:http          Masq    2      1          3         \n",
        )
    );
    // Saves are not truncated.
    let o = run_with_names("ipvsadm", &argv("-S"), "", &ipvs, &n);
    assert!(o.stdout.starts_with(
        "-A -t director-virtual-service.example.org:http -s rr\n-a -t director-virtual-service.example.org:http -r averyveryverylonghostname.example.org:http -m -w 1\n"
    ));
}

#[test]
fn fwmark_dest_ports_stay_numeric() {
    let ipvs = FakeIpvs::default();
    ok(&ipvs, "-A -f 5 -p");
    ok(&ipvs, "-a -f 5 -r 192.168.1.1:http -m");
    let o = ok(&ipvs, "-L");
    assert!(
        o.contains("FWM  5 wlc persistent 360\n  -> 192.168.1.1:80"),
        "{o}"
    );
}

// ---------------------------------------------------------------------------
// parsing rules

fn parsed(line: &str) -> Command {
    parse("ipvsadm", &argv(line), &names()).expect(line)
}

fn add_dest(line: &str) -> (SvcId, crate::service::DestSpec) {
    match parsed(line) {
        Command::AddDest(id, d) => (id, d),
        c => panic!("{c:?}"),
    }
}

fn add_svc(line: &str) -> crate::service::ServiceSpec {
    match parsed(line) {
        Command::AddService(s) => s,
        c => panic!("{c:?}"),
    }
}

#[test]
fn real_server_port_rules() {
    // No port: the service port known so far.
    assert_eq!(add_dest("-a -t 1.2.3.4:80 -r 5.5.5.5 -m").1.port, 80);
    assert_eq!(add_dest("-a -r 5.5.5.5 -t 1.2.3.4:80 -m").1.port, 0);
    // DR (default) and TUN force the service port.
    assert_eq!(add_dest("-a -t 1.2.3.4:80 -r 5.5.5.5:8080").1.port, 80);
    assert_eq!(add_dest("-a -t 1.2.3.4:80 -r 5.5.5.5:8080 -i").1.port, 80);
    assert_eq!(add_dest("-a -t 1.2.3.4:80 -r 5.5.5.5:8080 -m").1.port, 8080);
    // ... except for fwmark services.
    assert_eq!(add_dest("-a -f 3 -r 5.5.5.5:8080 -g").1.port, 8080);
    // Port names use the service protocol.
    assert_eq!(add_dest("-a -u 1.2.3.4:53 -r 5.5.5.5:domain -m").1.port, 53);
    let (_, d) = add_dest("-a -t 1.2.3.4:80 -r web -m -w 0 -x 10 -y 5");
    assert_eq!(
        (d.addr, d.weight, d.u_threshold, d.l_threshold),
        (ip("10.9.9.9"), 0, 10, 5)
    );
}

#[test]
fn edit_commands_send_complete_records() {
    match parsed("-e -t 1.2.3.4:80 -r 5.5.5.5:80 -w 5") {
        Command::EditDest(_, d) => assert_eq!((d.fwd, d.weight), (FwdMethod::Route, 5)),
        c => panic!("{c:?}"),
    }
    match parsed("-E -t 1.2.3.4:80 -s rr") {
        Command::EditService(s) => {
            assert_eq!((s.flags & SVC_F_PERSISTENT, s.timeout), (0, 0));
            assert_eq!(s.netmask, 0xffff_ffff);
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn persistent_optional_argument() {
    assert_eq!(add_svc("-A -t 1.2.3.4:80 -p").timeout, 360);
    assert_eq!(add_svc("-A -t 1.2.3.4:80 -p 100").timeout, 100);
    assert_eq!(add_svc("-A -t 1.2.3.4:80 -p100").timeout, 100);
    assert_eq!(add_svc("-A -t 1.2.3.4:80 --persistent=50").timeout, 50);
    let s = add_svc("-A -t 1.2.3.4:80 -p -s rr");
    assert_eq!((s.timeout, s.sched.as_str()), (360, "rr"));
    assert_eq!(add_svc("-A -t 1.2.3:80 -srr").sched, "rr");
    assert_eq!(
        add_svc("-A --tcp-service=1.2.3.4:80 --scheduler sed").sched,
        "sed"
    );
    // Port 0 is fine for persistent services.
    assert_eq!(add_svc("-A -t 1.2.3.4 -p").id, tcp("1.2.3.4", 0));
    assert_eq!(
        fails("-A -t 1.2.3.4:80 -p 0"),
        (2, "invalid timeout value `0' specified\n".into())
    );
    assert_eq!(
        fails("-A -t 1.2.3.4:80 -p rr"),
        (2, "invalid timeout value `rr' specified\n".into())
    );
}

#[test]
fn netmask_depends_on_family_known_so_far() {
    assert_eq!(add_svc("-A -t [2001:db8::1]:80 -p -M 64").netmask, 64);
    // -M before -t: parsed as IPv4 (inet_aton("64")), then the v6 address resets it.
    assert_eq!(add_svc("-A -p -M 64 -t [2001:db8::1]:80").netmask, 128);
    assert_eq!(
        add_svc("-A -t 1.2.3.4:80 -p -M 255.255.0.0").netmask,
        0xffff_0000
    );
    assert_eq!(
        fails("-A -f 1 -6 -p -M 200"),
        (2, "illegal ipv6 netmask specified\n".into())
    );
    assert_eq!(
        fails("-A -t 1.2.3.4:80 -p -M nope"),
        (
            2,
            "illegal virtual server persistent mask specified\n".into()
        )
    );
    assert_eq!(fails("-A -6 -f 1"), (2, "-6 used before -f\n\n".into()));
}

#[test]
fn address_forms() {
    let id = |line: &str| add_svc(line).id;
    assert_eq!(id("-A -t 127.1:80"), tcp("127.0.0.1", 80));
    assert_eq!(id("-A -t localhost:www"), tcp("127.0.0.1", 80));
    assert_eq!(id("-A -t [::1]:80"), tcp("::1", 80));
    assert_eq!(id("-A -t ::1 -p"), tcp("::1", 0));
    assert_eq!(id("-A -t 1.2.3.4:+80"), tcp("1.2.3.4", 80));
    // A bracketed IPv4 address loses its port (1.31 quirk) → zero port.
    assert_eq!(id("-A -t [1.2.3.4]:80 -p"), tcp("1.2.3.4", 0));
    for bad in [
        "-A -t 80",
        "-A -t [::1]",
        "-A -t [::1]:",
        "-A -t 1.2.3.4:70000",
        "-A -t 1.2.3.4:nosuchport",
        "-A -t 1.2.3.4:domain",
        "-A -t nosuchhost:80",
        "-A -t 1.2.3.256:80",
    ] {
        assert_eq!(
            fails(bad),
            (
                2,
                "illegal virtual server address[:port] specified\n".into()
            ),
            "{bad}"
        );
    }
    assert_eq!(
        fails("-a -t 1.2.3.4:80 -r 1234"),
        (2, "illegal real server address[:port] specified\n".into())
    );
    assert_eq!(
        fails("-a -t 1.2.3.4:80 -r [2001:db8::1]:80 -m"),
        (
            2,
            "Different address family is allowed only for tunneling servers\n".into()
        )
    );
    let (_, d) = add_dest("-a -t 1.2.3.4:80 -r [2001:db8::1]:80 -i");
    assert_eq!(d.addr, ip("2001:db8::1"));
}

#[test]
fn fwmark_and_sched_flags() {
    let s = add_svc("-A -f 4294967295 -s sh -b sh-port");
    assert_eq!(
        s.id,
        SvcId::Fwmark {
            mark: u32::MAX,
            v6: false
        }
    );
    assert_eq!(s.flags, SVC_F_SCHED2);
    assert_eq!(add_svc("-A -t 1.2.3.4:80 -b flag-1").flags, SVC_F_SCHED1);
    for (bad, msg) in [
        ("-A -f 0", "invalid fwmark value `0' specified"),
        (
            "-A -f 4294967296",
            "invalid fwmark value `4294967296' specified",
        ),
        ("-A -f x1", "invalid fwmark value `x1' specified"),
        (
            "-A -t 1.2.3.4:80 -b sh-port",
            "incompatible scheduler flag `sh-port'",
        ),
        (
            "-A -t 1.2.3.4:80 -s sh -b sh-port,mh-fallback",
            "incompatible scheduler flag `mh-fallback'",
        ),
        (
            "-A -t 1.2.3.4:80 -s sh -b bogus",
            "invalid scheduler flag `bogus'",
        ),
    ] {
        assert_eq!(fails(bad), (2, format!("{msg}\n")), "{bad}");
    }
}

#[test]
fn error_first_option_must_be_a_command() {
    let tryhelp = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n";
    for line in [
        "-q",
        "-t 1.2.3.4:80 -A",
        "--bogus",
        "foo",
        "-n -L",
        "--sort -L",
        "--",
    ] {
        assert_eq!(fails(line), (255, tryhelp.to_string()), "{line}");
    }
    let o = run_with_names(
        "/usr/sbin/ipvsadm",
        &argv("-x"),
        "",
        &FakeIpvs::default(),
        &names(),
    );
    assert_eq!(
        o.stderr,
        "Try `/usr/sbin/ipvsadm -h' or '/usr/sbin/ipvsadm --help' for more information.\n"
    );
}

#[test]
fn error_messages_and_exit_codes() {
    let cases: &[(&str, i32, &str)] = &[
        (
            "-a -t 1.2.3.4:80",
            2,
            "You need to supply the 'real-server' option for the 'add-server' command",
        ),
        ("-A", 2, "You need to supply the 'service-address' option for the 'add-service' command"),
        ("-a -t 1.2.3.4:80 -r 2.2.2.2 -w 70000", 2, "illegal weight specified"),
        ("-a -t 1.2.3.4:80 -r 2.2.2.2 -w -1", 2, "illegal weight specified"),
        ("-a -t 1.2.3.4:80 -r 2.2.2.2 -x 2147483648", 2, "illegal u_threshold specified"),
        ("-a -t 1.2.3.4:80 -r 2.2.2.2 -y z", 2, "illegal l_threshold specified"),
        (
            "-A -t 1.2.3.4:80 -o",
            2,
            "One-Packet Scheduling is only for UDP virtual services",
        ),
        ("-A -t 1.2.3.4", 2, "Zero port specified for non-persistent service"),
        (
            "-A -t 1.1.1.1:80 -u 1.1.1.1:80",
            2,
            "multiple 'service-address' options specified",
        ),
        ("-a -t 1.1.1.1:80 -r 2.2.2.2 -m -g", 2, "multiple 'forwarding-method' options specified"),
        // A second command is not handled by 1.31's option loop.
        ("-A -E", 2, "invalid option `-E'"),
        ("-L -h", 2, "invalid option `-h'"),
        ("-LZ", 2, "invalid option `-LZ'"),
        ("-L --bogus", 255, "--bogus: unknown option"),
        ("-L -nq", 255, "-nq: unknown option"),
        ("-A -t", 255, "-t: missing argument"),
        ("-L --numeric=1", 255, "--numeric=1: option does not take an argument"),
        ("--set 1 2", 2, "--set option requires 3 timeout values"),
        ("--set 1 2 3 4", 2, "unexpected argument 4"),
        ("--set 1 2 2678401", 2, "invalid timeout value `2678401' specified"),
        ("-L foo", 2, "unexpected argument foo"),
        ("-L -c --stats", 2, "options conflicts in the list command"),
        ("-L --timeout --persistent-conn", 2, "options conflicts in the list command"),
        (
            "-L -c -t 1.2.3.4:80",
            2,
            "The option 'service-address' conflicts with the 'connection' option in the 'list' command",
        ),
        ("-S -c", 2, "Illegal 'connection' option with the 'save' command"),
        ("-C -n", 2, "Illegal 'numeric' option with the 'flush' command"),
        ("-D -t 1.2.3.4:80 -s rr", 2, "Illegal 'scheduler' option with the 'delete-service' command"),
        ("-A -t 1.2.3.4:80 -w 2", 2, "Illegal 'weight' option with the 'add-service' command"),
        ("--start-daemon foo", 2, "illegal start-daemon parameter specified"),
        ("--stop-daemon foo", 2, "illegal start_daemon specified"),
        ("--start-daemon master --syncid 256", 2, "illegal syncid specified"),
        ("--start-daemon master --mcast-group 10.0.0.1", 2, "invalid IPv4 mcast-group `10.0.0.1'"),
        ("--start-daemon master --mcast-group ::1", 2, "invalid IPv6 mcast-group `::1'"),
        ("--stop-daemon master --mcast-ttl 2", 2, "Illegal 'mcast-ttl' option with the 'stop-daemon' command"),
    ];
    for (line, code, msg) in cases {
        assert_eq!(fails(line), (*code, format!("{msg}\n")), "{line}");
    }
}

#[test]
fn tunnel_option_matrix() {
    let base = "-a -t 1.2.3.4:80 -r 5.5.5.5";
    let cases: &[(&str, &str)] = &[
        (
            "-i --tun-type gue",
            "You need to supply the 'tun-port' option for the 'gue' tunnel type",
        ),
        (
            "-i --tun-port 5",
            "Illegal 'tun-port' option with the 'ipip' tunnel type",
        ),
        (
            "-i --tun-csum",
            "Illegal 'tun-csum' option with the 'ipip' tunnel type",
        ),
        (
            "-i --tun-type gre --tun-port 5",
            "Illegal 'tun-port' option with the 'gre' tunnel type",
        ),
        (
            "-i --tun-type gre --tun-remcsum",
            "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
        ),
        (
            "-i --tun-type gue --tun-port 1 --tun-csum --tun-nocsum",
            "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type",
        ),
        (
            "-m --tun-type gre",
            "Tunnel options conflict with forward method",
        ),
        (
            "--tun-nocsum",
            "Tunnel options conflict with forward method",
        ),
        ("-i --tun-type vxlan", "illegal tunnel type specified"),
        (
            "-i --tun-type gue --tun-port 0",
            "illegal tunnel port specified",
        ),
    ];
    for (opts, msg) in cases {
        let line = format!("{base} {opts}");
        assert_eq!(fails(&line), (2, format!("{msg}\n")), "{line}");
    }
    let (_, d) =
        add_dest("-a -t 1.2.3.4:80 -r 5.5.5.5 -i --tun-type gue --tun-port 9 --tun-remcsum");
    assert_eq!(
        (d.tun_type, d.tun_port, d.tun_flags),
        (TunType::Gue, 9, TunCsum::RemCsum)
    );
}

#[test]
fn kernel_errors_exit_255() {
    let ipvs = example();
    let cases: &[(&str, &str)] = &[
        ("-A -t 12.0.0.1:80", "Service already exists"),
        (
            "-A -t 12.0.0.1:81 -s nosuch",
            "Scheduler or persistence engine not found",
        ),
        ("-E -t 12.0.0.1:81", "No such service"),
        ("-D -t 12.0.0.1:81", "No such service"),
        ("-Z -t 12.0.0.1:81", "No such service"),
        ("-a -t 12.0.0.1:81 -r 1.1.1.1", "Service not defined"),
        (
            "-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m",
            "Destination already exists",
        ),
        (
            "-d -t 12.0.0.1:80 -r 192.168.168.12:80",
            "No such destination",
        ),
        (
            "-e -t 12.0.0.1:80 -r 192.168.168.12:80",
            "No such destination",
        ),
        (
            "-d -t 12.0.0.2:80 -r 192.168.168.10:80",
            "Service not defined",
        ),
        (
            "-a -t 12.0.0.1:80 -r 1.1.1.1 -y 5",
            "Numerical result out of range",
        ),
        ("--start-daemon master", NO_SYNC_DAEMON),
        ("--stop-daemon backup", "No daemon is running"),
    ];
    for (line, msg) in cases {
        let o = adm(&ipvs, line);
        assert_eq!(
            (o.code, o.stderr.as_str(), o.stdout.as_str()),
            (255, format!("{msg}\n").as_str(), ""),
            "{line}"
        );
    }
    // Nothing changed.
    assert_eq!(ok(&ipvs, "-S -n").lines().count(), 3);
}

#[test]
fn delete_and_zero_and_flush() {
    let ipvs = example();
    ok(&ipvs, "-d -t 12.0.0.1:80 -r 192.168.168.10");
    assert_eq!(ipvs.services()[0].dests.len(), 1);
    ok(&ipvs, "-Z -t 12.0.0.1:80");
    assert_eq!(ipvs.services()[0].stats, StatsSnapshot::default());
    ok(&ipvs, "-Z");
    ok(&ipvs, "-D -t 12.0.0.1:http");
    assert!(ipvs.services().is_empty());
    ok(&ipvs, "-A -t 1.1.1.1:80");
    ok(&ipvs, "-C");
    assert!(ipvs.services().is_empty());
}

#[test]
fn dest_warning_goes_to_stderr_with_exit_0() {
    let ipvs = example();
    *ipvs.warning.borrow_mut() = Some("warning: DR needs --device tap".into());
    let o = adm(&ipvs, "-a -t 12.0.0.1:80 -r 192.168.168.12");
    assert_eq!(
        (o.code, o.stderr.as_str(), o.stdout.as_str()),
        (0, "warning: DR needs --device tap\n", "")
    );
    let o = adm(&ipvs, "-e -t 12.0.0.1:80 -r 192.168.168.12 -w 3");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (0, "warning: DR needs --device tap\n")
    );
    // No warning when the operation failed.
    let o = adm(&ipvs, "-a -t 12.0.0.1:80 -r 192.168.168.12");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (255, "Destination already exists\n")
    );
}

#[test]
fn help_and_version() {
    let ipvs = FakeIpvs::default();
    assert_eq!(ok(&ipvs, "-v"), format!("{VERSION_LINE}\n"));
    assert_eq!(
        ok(&ipvs, "--version"),
        "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
    );
    let h = ok(&ipvs, "-h");
    assert_eq!(h, ok(&ipvs, "--help -q anything"));
    assert!(h.starts_with(concat!(
        "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n",
        "Usage:\n",
        "  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]\n",
        "  ipvsadm -D virtual-service\n",
    )));
    assert!(h.contains("  ipvsadm -h\n\nCommands:\nEither long or short options are allowed.\n"));
    assert!(h.contains(concat!(
        "  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,\n",
        "                                      the default scheduler is wlc.\n",
    )));
    assert!(h.ends_with(concat!(
        "  --sched-flags  -b flags             scheduler flags (comma-separated)\n",
        "Daemon Options:\n",
        "  --syncid sid                        syncid for connection sync (default=255)\n",
        "  --sync-maxlen length                Max sync message length (default=1472)\n",
        "  --mcast-interface interface         multicast interface for connection sync\n",
        "  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)\n",
        "  --mcast-port port                   UDP port (default=8848)\n",
        "  --mcast-ttl ttl                     Multicast TTL (default=1)\n",
    )));
    assert_eq!(h.lines().count(), 82);
    let t = run_with_names("tunvs adm", &argv("-h"), "", &ipvs, &names());
    assert!(t.stdout.contains("  tunvs adm -C\n"));
}

#[test]
fn parse_list_variants() {
    match parsed("-L -n -t 1.2.3.4:80 --stats") {
        Command::List(l) => {
            assert_eq!(l.what, ListWhat::Service(tcp("1.2.3.4", 80)));
            assert!(l.format.numeric && l.format.stats);
        }
        c => panic!("{c:?}"),
    }
    match parsed("-L -c --persistent-conn") {
        Command::List(l) => assert_eq!(l.what, ListWhat::Conns),
        c => panic!("{c:?}"),
    }
    match parsed("--start-daemon backup --mcast-interface eth1 --syncid 3") {
        Command::StartDaemon(d) => assert_eq!((d.mcast_ifn.as_str(), d.syncid), ("eth1", 3)),
        c => panic!("{c:?}"),
    }
    match parsed("--start-daemon master") {
        Command::StartDaemon(d) => assert_eq!(d.mcast_ifn, "eth0"),
        c => panic!("{c:?}"),
    }
}

// ---------------------------------------------------------------------------
// -R and rules files

#[test]
fn restore_applies_lines_in_order() {
    let ipvs = FakeIpvs::default();
    let input = concat!(
        "# saved by ipvsadm-save\n",
        "\n",
        "ipvsadm -A -t 12.0.0.1:80 -s rr   # comment\n",
        "-a\t-t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1\r\n",
        "   \n",
        "-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2\n",
    );
    let o = adm_in(&ipvs, "-R", input);
    assert_eq!((o.code, o.stderr.as_str(), o.stdout.as_str()), (0, "", ""));
    assert_eq!(
        ok(&ipvs, "-S -n"),
        concat!(
            "-A -t 12.0.0.1:80 -s rr\n",
            "-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1\n",
            "-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2\n",
        )
    );
}

#[test]
fn restore_kernel_errors_print_and_continue() {
    let ipvs = FakeIpvs::default();
    let input =
        "-A -t 1.1.1.1:80\n-A -t 1.1.1.1:80\n-a -t 1.1.1.1:80 -r 2.2.2.2\n-L -n --timeout\n";
    let o = adm_in(&ipvs, "--restore", input);
    assert_eq!(o.stderr, "Service already exists\n");
    assert_eq!(o.stdout, "Timeout (tcp tcpfin udp): 900 120 300\n");
    assert_eq!(o.code, 0);
    assert_eq!(ipvs.services()[0].dests.len(), 1);
    // The exit status is that of the last line.
    let o = adm_in(&ipvs, "-R", "-A -t 1.1.1.1:80\n");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (255, "Service already exists\n")
    );
}

#[test]
fn restore_bad_line_applies_nothing() {
    let ipvs = FakeIpvs::default();
    let input = "-A -t 1.1.1.1:80\n\n-a -t 1.1.1.1:80 -r 2.2.2.2 -w 70000\n-A -t 3.3.3.3:80\n";
    let o = adm_in(&ipvs, "-R", input);
    assert_eq!(
        (o.code, o.stderr.as_str(), o.stdout.as_str()),
        (2, "line 3: illegal weight specified\n", "")
    );
    assert!(ipvs.services().is_empty());
    let o = adm_in(&ipvs, "-R", "-A -t 1.1.1.1:80\n-R\n");
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (
            255,
            "line 2: Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"
        )
    );
    let o = adm_in(&ipvs, "-R", "-t 1.1.1.1:80 -A\n");
    assert_eq!(o.code, 255);
    assert!(ipvs.services().is_empty());
    // -R takes no options.
    assert_eq!(
        fails("-R -n"),
        (
            2,
            "Illegal 'numeric' option with the 'restore' command\n".into()
        )
    );
}

#[test]
fn restore_listing_error_stops() {
    let ipvs = FakeIpvs::default();
    let o = adm_in(&ipvs, "-R", "-L -n -t 9.9.9.9:80\n-A -t 1.1.1.1:80\n");
    assert_eq!((o.code, o.stderr.as_str()), (1, "No such service\n"));
    assert!(ipvs.services().is_empty());
}

/// The commands of a rules file, without their line numbers.
fn parse_rules_with_names(text: &str, n: &Names) -> Result<Vec<Command>, (usize, String)> {
    parse_rules(text, n).map(|v| v.into_iter().map(|(_, c)| c).collect())
}

#[test]
fn parse_rules_reports_line_numbers() {
    let n = names();
    let good = "# rules\n-A -t 12.0.0.1:80 -s rr\n\n-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m\n--set 10 0 0\n";
    let cmds = parse_rules_with_names(good, &n).unwrap();
    assert_eq!(cmds.len(), 3);
    assert!(matches!(cmds[2], Command::SetTimeouts(_)));
    assert_eq!(
        parse_rules_with_names(
            "-A -t 1.1.1.1:80\n\n\n-a -t 1.1.1.1:80 -r 2.2.2.2 -w x\n",
            &n
        ),
        Err((4, "illegal weight specified".into()))
    );
    assert_eq!(
        parse_rules_with_names("-A -t 1.1.1.1:80\n-L -n\n", &n),
        Err((
            2,
            "`-L' is not a rule (a rules file holds only -A -E -D -C -a -e -d -Z --set)".into()
        ))
    );
    assert_eq!(
        parse_rules_with_names("ipvsadm -A -t 1.1.1.1\n", &n),
        Err((1, "Zero port specified for non-persistent service".into()))
    );
}

#[test]
fn apply_executes_rules() {
    let ipvs = FakeIpvs::default();
    let cmds = parse_rules_with_names(
        "-A -t 12.0.0.1:80 -s rr\n-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m\n",
        &names(),
    )
    .unwrap();
    for c in &cmds {
        apply(c, &ipvs).unwrap();
    }
    assert_eq!(apply(&cmds[0], &ipvs), Err("Service already exists".into()));
    assert_eq!(
        apply(&cmds[1], &ipvs),
        Err("Destination already exists".into())
    );
    assert!(apply(&Command::Help, &ipvs).is_err());
    assert_eq!(ipvs.services()[0].dests.len(), 1);
}
