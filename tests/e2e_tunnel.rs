//! End-to-end tunnelling (`-i`) through the daemon, in namespaces: the kernel
//! selftest `ipvs.sh` TUN case (spec §5.4) with `tunvs realserver tunnel` on the
//! real server in place of the kernel's `tunl0`, for IPIP, GUE and GRE; a bulk
//! transfer with the offloads on through a smaller path MTU; and the tun lab.
//! Needs root; CI runs it as root.

mod common;

use common::*;

const VIP: &str = IPVS_SH_VIP;

/// The `ipvs.sh` topology (spec §5.2), TUN variant (§5.4): client ns0 with br0,
/// director ns1, real server ns2 which keeps its direct path to the client.
fn ipvs_sh_tun_topology(lab: &mut Lab) {
    ipvs_sh_base(lab);
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", "172.16.0.1/24", "dev", "veth12"],
    );
    // … ns1: (modprobe ipip; ip link set tunl0 up: not needed by tunvs)
    for s in [
        "net.ipv4.ip_forward=0",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
    ] {
        lab.exec_ok("ns1", &["sysctl", "-qw", s]);
    }
    // … ns2: (modprobe ipip; ip link set tunl0 up: replaced by
    // `tunvs realserver tunnel`), ARP and rp_filter settings, VIP on lo.
    ipvs_sh_realserver_vip(lab, "veth21");
}

/// `ipvsadm -A -t VIP:8080 -s rr; ipvsadm -a -i -t VIP:8080 -r 172.16.0.2:8080
/// TUNOPTS…`, then the VIP on the director's lo (as ipvs.sh does).
fn ipvsadm_tun_service(d: &Daemon, lab: &Lab, tun_opts: &[&str]) {
    d.adm_ok(&["-A", "-t", &format!("{VIP}:8080"), "-s", "rr"]);
    let mut a = vec![
        "-a",
        "-i",
        "-t",
        &format!("{VIP}:8080"),
        "-r",
        "172.16.0.2:8080",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    a.extend(tun_opts.iter().map(|s| s.to_string()));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    d.adm_ok(&a);
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
    );
}

/// The ipvs.sh TUN case with `--tun-type` options `tun_opts` on the director and
/// `rs_args` for the real-server helper; returns the daemon and helper for more
/// checks.
fn ipvs_sh_tun_case(tag: &str, tun_opts: &[&str], rs_args: &[&str], want_info: &str) {
    let mut lab = Lab::new(tag);
    ipvs_sh_tun_topology(&mut lab);
    let rs = start_realserver(&mut lab, "ns2", rs_args);
    let d = lab.start_tunvs("ns1", &["--dev", "tunvs0"]);
    ipvsadm_tun_service(&d, &lab, tun_opts);
    let payload = random_bytes(32);
    let got = transfer_to_vip(&mut lab, &payload, 10);
    assert_eq!(
        got,
        payload,
        "payload differs; daemon log:\n{}\nreal server log:\n{}",
        d.log(),
        rs.log()
    );
    let l = d.adm_ok(&["-L", "-n"]);
    let want = format!(
        "TCP  207.175.44.110:8080 rr\n  -> {:<28} Tunnel  1      ",
        "172.16.0.2:8080"
    );
    assert!(l.contains(&want), "{l}");
    let t = d.adm_ok(&["-L", "-n", "--tun-info"]);
    assert!(
        t.contains(&format!(
            "  -> {:<28} Tunnel  {want_info:<13} 1",
            "172.16.0.2:8080"
        )),
        "{t}"
    );
    let c = d.adm_ok(&["-L", "-n", "-c"]);
    assert!(c.contains("10.0.0.2:"), "{c}");
    assert!(c.contains("207.175.44.110:8080 172.16.0.2:8080"), "{c}");
    // The helper injected what it received and dropped nothing.
    let received = rs.counter(&lab, "received");
    assert!(received >= 3, "handshake + data + fin: {received}");
    assert_eq!(rs.counter(&lab, "injected"), received, "{}", rs.log());
    // Clean shutdown: counters printed, the device (and its VIP) gone.
    let rs_dev_before = lab.exec_ok("ns2", &["ip", "-o", "link"]);
    assert!(rs_dev_before.contains("tunvs-rs0"), "{rs_dev_before}");
    lab.stop_all();
    let log = rs.log();
    assert!(log.contains("shutting down"), "{log}");
    let links = lab.exec_ok("ns2", &["ip", "-o", "link"]);
    assert!(!links.contains("tunvs-rs0"), "{links}");
}

#[test]
fn ipvs_sh_tun_case_ipip_32_random_bytes_arrive_intact() {
    ipvs_sh_tun_case("ti", &[], &[], "ipip");
}

#[test]
fn ipvs_sh_tun_case_gue_32_random_bytes_arrive_intact() {
    ipvs_sh_tun_case(
        "tu",
        &["--tun-type", "gue", "--tun-port", "6080", "--tun-csum"],
        &["--type", "gue", "--port", "6080"],
        "gue:6080:+c",
    );
}

#[test]
fn ipvs_sh_tun_case_gre_32_random_bytes_arrive_intact() {
    ipvs_sh_tun_case(
        "tg",
        &["--tun-type", "gre", "--tun-csum"],
        &["--type", "gre", "--director", "172.16.0.1"],
        "gre:+c",
    );
}

/// 8 MB through the tunnel with the offloads on (the director receives GSO
/// super-packets and must segment them) over a director↔real-server link of MTU
/// 1400, with software checksums on that link: the bytes arrive intact, no
/// encapsulated packet is longer than 1400, DF packets that did not fit made the
/// director send fragmentation-needed to the client, and nobody saw a bad checksum.
fn bulk_case(tag: &str, tun_opts: &[&str], rs_args: &[&str]) {
    let mut lab = Lab::new(tag);
    ipvs_sh_tun_topology(&mut lab);
    for (n, dev) in [("ns1", "veth12"), ("ns2", "veth21")] {
        lab.exec_ok(n, &["ip", "link", "set", dev, "mtu", "1400"]);
        lab.exec_ok(n, &["ethtool", "-K", dev, "rx", "off", "tx", "off"]);
    }
    let rs = start_realserver(&mut lab, "ns2", rs_args);
    let d = lab.start_tunvs("ns1", &["--dev", "tunvs0"]);
    ipvsadm_tun_service(&d, &lab, tun_opts);
    let payload = random_bytes(8 << 20);
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
        drops_row(&d.drops(), "gso_segmented") > 0,
        "offloads gave no GSO: {drops}"
    );
    assert!(drops_row(&d.drops(), "tunnel_frag_needed") > 0, "{drops}");
    let max = rs.counter(&lab, "max_outer_len");
    assert!(
        (1300..=1400).contains(&max),
        "largest encapsulated packet {max}"
    );
    assert_eq!(rs.counter(&lab, "write_failed"), 0);
    assert_eq!(snmp(&lab, "ns2", "Tcp", "InCsumErrors"), 0);
    assert_eq!(snmp(&lab, "ns2", "Ip", "ReasmReqds"), 0, "outer fragments");
    assert_eq!(
        snmp(&lab, "ns1", "Icmp", "OutDestUnreachs"),
        0,
        "the kernel refused a packet"
    );
}

#[test]
fn bulk_ipip_with_offloads_holds_the_path_mtu() {
    bulk_case("bi", &[], &[]);
}

#[test]
fn bulk_gue_remcsum_with_offloads_holds_the_path_mtu() {
    bulk_case(
        "bu",
        &["--tun-type", "gue", "--tun-port", "6080", "--tun-remcsum"],
        &["--type", "gue", "--port", "6080"],
    );
}

/// The real server behind a router whose far link has MTU 1400, while the
/// director's own link has 1500: the director's encapsulated DF packets are too
/// big for the router, which answers the director (not a virtual service) with
/// fragmentation-needed. tunvs learns the path MTU from it and tells the client
/// (spec §3.13 tunnel case), the client's TCP shrinks its segments, and 8 MB
/// arrive intact in packets that fit.
#[test]
fn bulk_through_a_router_learns_the_path_mtu_from_icmp() {
    let mut lab = Lab::new("br");
    for n in ["ns0", "ns1", "nsr", "ns2"] {
        lab.add_ns(n);
    }
    lab.veth("ns0", "veth01", "ns1", "veth10");
    lab.veth("ns0", "veth02", "ns2", "veth20");
    lab.veth("ns1", "veth1r", "nsr", "vethr1");
    lab.veth("nsr", "vethr2", "ns2", "veth2r");
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
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", "172.16.0.1/24", "dev", "veth1r"],
    );
    lab.exec_ok(
        "ns1",
        &["ip", "route", "add", "172.16.1.0/24", "via", "172.16.0.254"],
    );
    lab.exec_ok(
        "nsr",
        &["ip", "addr", "add", "172.16.0.254/24", "dev", "vethr1"],
    );
    lab.exec_ok(
        "nsr",
        &["ip", "addr", "add", "172.16.1.254/24", "dev", "vethr2"],
    );
    lab.exec_ok("nsr", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.exec_ok("nsr", &["ip", "link", "set", "vethr2", "mtu", "1400"]);
    lab.exec_ok("ns2", &["ip", "link", "set", "veth2r", "mtu", "1400"]);
    lab.exec_ok(
        "ns2",
        &["ip", "addr", "add", "172.16.1.2/24", "dev", "veth2r"],
    );
    lab.exec_ok(
        "ns2",
        &["ip", "addr", "add", "10.0.0.3/24", "dev", "veth20"],
    );
    lab.exec_ok(
        "ns2",
        &["ip", "route", "add", "172.16.0.0/24", "via", "172.16.1.254"],
    );
    lab.exec_ok("ns2", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);
    let rs = start_realserver(&mut lab, "ns2", &[]);
    let d = lab.start_tunvs("ns1", &["--dev", "tunvs0"]);
    d.adm_ok(&["-A", "-t", &format!("{VIP}:8080"), "-s", "rr"]);
    d.adm_ok(&[
        "-a",
        "-i",
        "-t",
        &format!("{VIP}:8080"),
        "-r",
        "172.16.1.2:8080",
    ]);
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
    );
    let payload = random_bytes(8 << 20);
    let got = transfer_to_vip(&mut lab, &payload, 60);
    assert!(
        got == payload,
        "bulk payload differs (len {} vs {}); drops:\n{}",
        got.len(),
        payload.len(),
        d.drops()
    );
    assert!(
        snmp(&lab, "nsr", "Icmp", "OutDestUnreachs") > 0,
        "the router never refused a packet: the test did not test PMTU"
    );
    assert!(
        snmp(&lab, "ns0", "Icmp", "InDestUnreachs") > 0,
        "the client never heard of the smaller path MTU"
    );
    // tunvs relayed it (the data path's own check then has nothing to refuse).
    assert!(drops_row(&d.drops(), "icmp_replies") > 0, "{}", d.drops());
    assert!(
        drops_row(&d.drops(), "tunnel_frag_needed") > 0,
        "{}",
        d.drops()
    );
    let max = rs.counter(&lab, "max_outer_len");
    assert!(
        (1300..=1400).contains(&max),
        "largest encapsulated packet {max}"
    );
}

/// The tun lab as a newcomer runs it: requests alternate between the IPIP and
/// the GUE real server, the listing shows both tunnels, an upload through the
/// smaller server-LAN MTU arrives whole, and everything is removed.
#[test]
fn tun_lab_balances_over_ipip_and_gue_and_uploads_through_a_smaller_mtu() {
    require_root();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/netns-lab/tun/run.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .env("TUNVS", TUNVS)
        .env("REQUESTS", "10")
        .env("UPLOAD", "3000000")
        .output()
        .expect("run the lab");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "lab failed:\n{out}\n{err}");
    let section = |name: &str| -> Vec<String> {
        let start = format!("--- {name}");
        let body = out.split(&start).nth(1).expect("section");
        let body = body.split("--- end").next().unwrap();
        body.lines().skip(1).map(str::to_string).collect()
    };
    let rr = section("rr responses");
    assert_eq!(rr.len(), 10, "{out}");
    for w in rr.windows(2) {
        assert_ne!(w[0], w[1], "rr must alternate: {rr:?}");
    }
    assert!(
        rr.iter().all(|l| l == "this is rs1" || l == "this is rs2"),
        "{rr:?}"
    );
    assert!(out.contains("Tunnel  ipip          1"), "{out}");
    assert!(out.contains("Tunnel  gue:6080:+c   1"), "{out}");
    assert!(
        out.contains("--tun-type gue --tun-port 6080 --tun-csum\n"),
        "{out}"
    );
    assert_eq!(section("upload"), ["3000000"], "{out}");
    assert!(out.contains("lab: removed namespaces"), "{out}");
    // Both helpers reported; they dropped nothing and nothing encapsulated
    // exceeded the LAN MTU (the upload filled it).
    let max: Vec<u64> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("max_outer_len"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(max.len(), 2, "one report per real server:\n{out}");
    assert!(!out.contains("  drop_"), "{out}");
    for v in &max {
        assert!(*v <= 1400, "{max:?}");
    }
    assert!(
        max.iter().any(|v| *v >= 1300),
        "the upload filled the MTU: {max:?}"
    );
    // The path MTU was learned from the router's ICMP.
    let icmp: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("router: ICMP destination-unreachable (fragmentation needed) sent to the director: "))
        .expect("router line")
        .trim()
        .parse()
        .unwrap();
    assert!(icmp > 0, "{out}");
}

/// `tunvs realserver tunnel` on its own: what it sets up (device with the VIP,
/// the ARP settings, a loose reverse-path filter on its device when the host's
/// is strict) is there while it runs and gone after SIGTERM; bad invocations
/// fail with a message and change nothing.
#[test]
fn realserver_sets_up_and_removes_everything() {
    let mut lab = Lab::new("rs");
    lab.add_ns("ns2");
    lab.exec_ok("ns2", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    let sysctl = |lab: &Lab, k: &str| lab.exec_ok("ns2", &["sysctl", "-n", k]).trim().to_string();
    assert_eq!(sysctl(&lab, "net.ipv4.conf.all.arp_ignore"), "0");
    let rs = start_realserver(&mut lab, "ns2", &["--dev", "tvrs0"]);
    let addr = lab.exec_ok("ns2", &["ip", "-o", "addr", "show", "dev", "tvrs0"]);
    assert!(addr.contains(&format!("inet {VIP}/32")), "{addr}");
    assert!(lab
        .exec_ok("ns2", &["ip", "-o", "link", "show", "tvrs0"])
        .contains(",UP"));
    assert_eq!(sysctl(&lab, "net.ipv4.conf.all.arp_ignore"), "1");
    assert_eq!(sysctl(&lab, "net.ipv4.conf.all.arp_announce"), "2");
    assert_eq!(sysctl(&lab, "net.ipv4.conf.tvrs0.rp_filter"), "2");
    // A second helper on the same device name refuses to attach to it.
    let o = lab.exec(
        "ns2",
        &[
            TUNVS,
            "realserver",
            "tunnel",
            "--vip",
            VIP,
            "--dev",
            "tvrs0",
        ],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = lab.exec(
        "ns2",
        &[
            TUNVS,
            "realserver",
            "tunnel",
            "--vip",
            VIP,
            "--type",
            "gue",
            "--dev",
            "x0",
        ],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --port"));
    lab.stop_all();
    assert!(rs.log().contains("shutting down"), "{}", rs.log());
    assert!(
        rs.log().contains("drop_not_director"),
        "counters printed on exit"
    );
    let links = lab.exec_ok("ns2", &["ip", "-o", "link"]);
    assert!(!links.contains("tvrs0"), "{links}");
    assert_eq!(sysctl(&lab, "net.ipv4.conf.all.arp_ignore"), "0");
    assert_eq!(sysctl(&lab, "net.ipv4.conf.all.arp_announce"), "0");
}
