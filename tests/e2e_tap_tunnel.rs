//! End-to-end tunnelling (`-i`) over a tap-mode director, in namespaces: the
//! kernel selftest `ipvs.sh` TUN case (spec §5.4) for IPIP, GUE and GRE with
//! `tunvs realserver tunnel` on the real server; a bulk transfer with the
//! offloads on over a LAN of MTU 1400 (GSO super-packets cut into frames
//! that fit the link); and a real server behind a router whose smaller MTU
//! the director learns from the router's ICMP, read from its own TAP.
//! Needs root; CI runs it as root.
//!
//! The topology is `e2e_dr.rs`'s: `ipvs.sh`'s client (ns0) and real server
//! (ns2) unchanged; on the director (ns1) **tunvs's TAP shares a bridge
//! (`br12`) with veth12**, tunvs owns the DIP 172.16.0.1/24 on it, and ns1's
//! kernel only routes: the VIP via the DIP, from its own 172.16.0.254 on the
//! bridge (also tunvs's `--gateway`). The real server keeps its direct path
//! to the client (veth20), so replies bypass the director as in the
//! selftest.

mod common;

use common::*;

const VIP: &str = IPVS_SH_VIP;

/// `ipvs.sh` §5.2 with tunvs's bridge on the director and the TUN case's
/// real-server settings (§5.4: ARP for the VIP off, no reverse-path filter,
/// VIP on lo; `tunvs realserver tunnel` stands in for `tunl0`).
fn ipvs_sh_tap_tun_topology(lab: &mut Lab) {
    ipvs_sh_base(lab);
    ipvs_sh_tap_lan(lab);
    ipvs_sh_realserver_vip(lab, "veth21");
}

/// `ipvsadm -A -t VIP:8080 -s rr; ipvsadm -a -i -t VIP:8080 -r RIP:8080 OPTS…`;
/// no warning may come back (tap mode carries `-i`).
fn tun_service(d: &Daemon, rip: &str, tun_opts: &[&str]) {
    d.adm_ok(&["-A", "-t", &format!("{VIP}:8080"), "-s", "rr"]);
    let svc = format!("{VIP}:8080");
    let rs = format!("{rip}:8080");
    let mut a = vec!["-a", "-i", "-t", &svc, "-r", &rs];
    a.extend_from_slice(tun_opts);
    let o = d.adm(&a);
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(
        !o.stderr.contains("warning"),
        "tap mode warned about -i: {}",
        o.stderr
    );
}

/// The ipvs.sh TUN case over the tap director with `--tun-type` options
/// `tun_opts` and `rs_args` for the real-server helper.
fn ipvs_sh_tun_case_over_tap(tag: &str, tun_opts: &[&str], rs_args: &[&str], want_info: &str) {
    let mut lab = Lab::new(tag);
    ipvs_sh_tap_tun_topology(&mut lab);
    let rs = start_realserver(&mut lab, "ns2", rs_args);
    let d = start_tap_director(&mut lab);
    tun_service(&d, "172.16.0.2", tun_opts);
    let payload = random_bytes(32);
    let got = transfer_to_vip(&mut lab, &payload, 10);
    assert_eq!(
        got,
        payload,
        "payload differs; daemon log:\n{}\ndrops:\n{}\nreal server log:\n{}",
        d.log(),
        d.drops(),
        rs.log()
    );
    let t = d.adm_ok(&["-L", "-n", "--tun-info"]);
    assert!(
        t.contains(&format!(
            "  -> {:<28} Tunnel  {want_info:<13} 1",
            "172.16.0.2:8080"
        )),
        "{t}"
    );
    let c = d.adm_ok(&["-L", "-n", "-c"]);
    assert!(c.contains("207.175.44.110:8080 172.16.0.2:8080"), "{c}");
    // Only the client's packets crossed tunvs, each encapsulated once; the
    // replies went from the real server straight to the client.
    let (inp, outp) = service_pkts(&d.adm_ok(&["-L", "-n", "--stats"]), "207.175.44.110:8080");
    assert!(inp >= 4, "SYN, ACK, data, FIN at least: {inp}");
    assert_eq!(outp, 0);
    let drops = d.drops();
    assert_eq!(drops_row(&drops, "forwarded"), inp, "{drops}");
    assert_eq!(drops_row(&drops, "l2_ip_in"), inp, "{drops}");
    assert_eq!(drops_row(&drops, "tunnel_no_route"), 0, "{drops}");
    assert_eq!(drops_row(&drops, "method_unavailable"), 0, "{drops}");
    // The helper received every one of them and injected it.
    let received = rs.counter(&lab, "received");
    assert_eq!(received, inp, "{}", rs.log());
    assert_eq!(rs.counter(&lab, "injected"), received, "{}", rs.log());
}

#[test]
fn ipvs_sh_tun_case_over_tap_ipip_32_random_bytes_arrive_intact() {
    ipvs_sh_tun_case_over_tap("pi", &[], &[], "ipip");
}

#[test]
fn ipvs_sh_tun_case_over_tap_gue_32_random_bytes_arrive_intact() {
    ipvs_sh_tun_case_over_tap(
        "pu",
        &["--tun-type", "gue", "--tun-port", "6080", "--tun-csum"],
        &["--type", "gue", "--port", "6080"],
        "gue:6080:+c",
    );
}

#[test]
fn ipvs_sh_tun_case_over_tap_gre_32_random_bytes_arrive_intact() {
    ipvs_sh_tun_case_over_tap(
        "pg",
        &["--tun-type", "gre", "--tun-csum"],
        &["--type", "gre", "--director", "172.16.0.1"],
        "gre:+c",
    );
}

/// 4 MB through the tunnel with the offloads on over a LAN of MTU 1400
/// (veth12 and veth21; the bridge follows its smallest port), software
/// checksums on that LAN: ns1's kernel hands the TAP GSO super-packets, which
/// tunvs cuts into segments, each encapsulated into an Ethernet frame that
/// fits the link (a bigger one would be dropped by the bridge); DF packets
/// that did not fit got fragmentation-needed; the bytes arrive intact and
/// nobody saw a bad checksum or a fragment.
#[test]
fn bulk_over_tap_with_offloads_holds_the_link_mtu() {
    let mut lab = Lab::new("pb");
    ipvs_sh_tap_tun_topology(&mut lab);
    for (n, dev) in [("ns1", "veth12"), ("ns2", "veth21")] {
        lab.exec_ok(n, &["ip", "link", "set", dev, "mtu", "1400"]);
        lab.exec_ok(n, &["ethtool", "-K", dev, "rx", "off", "tx", "off"]);
    }
    let rs = start_realserver(&mut lab, "ns2", &[]);
    let d = start_tap_director(&mut lab);
    assert!(d.log().contains("MTU 1400"), "{}", d.log());
    tun_service(&d, "172.16.0.2", &[]);
    let payload = random_bytes(4 << 20);
    let got = transfer_to_vip(&mut lab, &payload, 60);
    assert!(
        got == payload,
        "bulk payload differs (len {} vs {}); drops:\n{}\nreal server:\n{}",
        got.len(),
        payload.len(),
        d.drops(),
        rs.log()
    );
    let drops = d.drops();
    assert!(
        drops_row(&drops, "gso_segmented") > 0,
        "offloads gave no GSO: {drops}"
    );
    assert!(drops_row(&drops, "tunnel_frag_needed") > 0, "{drops}");
    assert_eq!(drops_row(&drops, "write_failed"), 0, "{drops}");
    let max = rs.counter(&lab, "max_outer_len");
    assert!(
        (1300..=1400).contains(&max),
        "largest encapsulated packet {max}"
    );
    assert_eq!(rs.counter(&lab, "write_failed"), 0);
    assert_eq!(snmp(&lab, "ns2", "Tcp", "InCsumErrors"), 0);
    assert_eq!(snmp(&lab, "ns2", "Ip", "ReasmReqds"), 0, "outer fragments");
}

/// The real server 172.16.1.2 behind ns1 as a router, on a link of MTU 1400,
/// while the director's LAN has 1500: tunvs reaches it through its
/// `--gateway`; its encapsulated DF packets are too big for the router, which
/// answers the DIP with fragmentation-needed. That ICMP arrives on the TAP:
/// tunvs learns the path MTU and tells the client, whose TCP shrinks its
/// segments, and 4 MB arrive intact in packets that fit.
#[test]
fn bulk_through_a_router_learns_the_path_mtu_from_icmp_on_the_tap() {
    let mut lab = Lab::new("pr");
    for n in ["ns0", "ns1", "ns2"] {
        lab.add_ns(n);
    }
    lab.veth("ns0", "veth01", "ns1", "veth10");
    lab.veth("ns0", "veth02", "ns2", "veth20");
    lab.veth("ns1", "veth1r", "ns2", "veth2r");
    lab.exec_ok("ns0", &["ip", "link", "add", "br0", "type", "bridge"]);
    lab.exec_ok("ns0", &["ip", "link", "set", "veth01", "master", "br0"]);
    lab.exec_ok("ns0", &["ip", "link", "set", "veth02", "master", "br0"]);
    lab.exec_ok("ns0", &["ip", "link", "set", "br0", "up"]);
    lab.exec_ok("ns0", &["ip", "addr", "add", "10.0.0.2/24", "dev", "br0"]);
    lab.exec_ok("ns0", &["ip", "route", "add", VIP, "via", "10.0.0.1"]);
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", "10.0.0.1/24", "dev", "veth10"],
    );
    // The director's LAN: only tunvs's TAP on the bridge, and ns1's address.
    lab.exec_ok("ns1", &["ip", "link", "add", "br12", "type", "bridge"]);
    lab.exec_ok("ns1", &["ip", "link", "set", "br12", "up"]);
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", "172.16.0.254/24", "dev", "br12"],
    );
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", "172.16.1.254/24", "dev", "veth1r"],
    );
    lab.exec_ok("ns1", &["ip", "link", "set", "veth1r", "mtu", "1400"]);
    lab.exec_ok("ns1", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.exec_ok("ns2", &["ip", "link", "set", "veth2r", "mtu", "1400"]);
    lab.exec_ok(
        "ns2",
        &["ip", "addr", "add", "172.16.1.2/24", "dev", "veth2r"],
    );
    lab.exec_ok(
        "ns2",
        &["ip", "addr", "add", "10.0.0.3/24", "dev", "veth20"],
    );
    ipvs_sh_realserver_vip(&lab, "veth2r");
    let rs = start_realserver(&mut lab, "ns2", &[]);
    let d = start_tap_director(&mut lab);
    tun_service(&d, "172.16.1.2", &[]);
    let payload = random_bytes(4 << 20);
    let got = transfer_to_vip(&mut lab, &payload, 60);
    assert!(
        got == payload,
        "bulk payload differs (len {} vs {}); drops:\n{}\nreal server:\n{}",
        got.len(),
        payload.len(),
        d.drops(),
        rs.log()
    );
    assert!(
        snmp(&lab, "ns1", "Icmp", "OutDestUnreachs") > 0,
        "the router never refused a packet: the test did not test PMTU"
    );
    assert!(
        snmp(&lab, "ns0", "Icmp", "InDestUnreachs") > 0,
        "the client never heard of the smaller path MTU"
    );
    let drops = d.drops();
    assert!(drops_row(&drops, "icmp_replies") > 0, "{drops}");
    assert!(drops_row(&drops, "tunnel_frag_needed") > 0, "{drops}");
    let max = rs.counter(&lab, "max_outer_len");
    assert!(
        (1300..=1400).contains(&max),
        "largest encapsulated packet {max}"
    );
}
