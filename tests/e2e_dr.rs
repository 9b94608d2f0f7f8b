//! End-to-end tap mode through the daemon, in namespaces: the kernel
//! selftest `ipvs.sh` DR case (spec §5.4), the same topology with NAT over
//! tap, the DR lab, and `tunvs realserver dr` with its undo.
//! Needs root; CI runs it as root.
//!
//! The `ipvs.sh` topology is kept for the client (ns0) and the real server
//! (ns2): same namespaces, addresses, sysctls and check (32 random bytes
//! through VIP:8080 arrive intact). On the director (ns1) **tunvs's TAP
//! shares a bridge (`br12`) with veth12**: tunvs is the director on that
//! LAN with the spec's DIP 172.16.0.1/24, and ns1's kernel, which keeps
//! 10.0.0.1 on veth10 as in the selftest, now only routes: the VIP via the
//! DIP, from its own address 172.16.0.254 on the bridge. (In the selftest
//! the VIP is on ns1's `lo` and IPVS takes it from there; here ns1 must not
//! own the VIP, or its kernel would keep the packets.)

mod common;

use common::*;

const VIP: &str = IPVS_SH_VIP;

/// `ipvs.sh` §5.2 with tunvs's bridge on the director; `nat` prepares the
/// real server as the NAT case does (no direct path, default route via the
/// director).
fn ipvs_sh_tap_topology(lab: &mut Lab, nat: bool) {
    ipvs_sh_base(lab);
    ipvs_sh_tap_lan(lab);
    if nat {
        lab.exec_ok("ns2", &["ip", "link", "del", "veth20"]);
        let via = [
            "ip",
            "route",
            "add",
            "default",
            "via",
            "172.16.0.1",
            "dev",
            "veth21",
        ];
        lab.exec_ok("ns2", &via);
    } else {
        // ipvs.sh test_dr, ns2: no ARP for the VIP, no reverse-path filter.
        ipvs_sh_realserver_vip(lab, "veth21");
    }
}

#[test]
fn ipvs_sh_dr_case_over_tap_32_random_bytes_arrive_intact() {
    let mut lab = Lab::new("d");
    ipvs_sh_tap_topology(&mut lab, false);
    let d = start_tap_director(&mut lab);
    // ipvs.sh test_dr: no method flag, so -g.
    d.adm_ok(&["-A", "-t", &format!("{VIP}:8080"), "-s", "rr"]);
    d.adm_ok(&["-a", "-t", &format!("{VIP}:8080"), "-r", "172.16.0.2:8080"]);
    let payload = random_bytes(32);
    let got = transfer_to_vip(&mut lab, &payload, 20);
    assert_eq!(got, payload, "payload differs; daemon log:\n{}", d.log());
    let l = d.adm_ok(&["-L", "-n"]);
    let want = format!(
        "TCP  207.175.44.110:8080 rr\n  -> {:<28} Route   1      ",
        "172.16.0.2:8080"
    );
    assert!(l.contains(&want), "{l}");
    // The director saw the client's packets only (the reply left by veth20).
    let (inp, outp) = service_pkts(&d.adm_ok(&["-L", "-n", "--stats"]), "207.175.44.110:8080");
    assert!(inp >= 4, "SYN, ACK, data, FIN at least: {inp}");
    assert_eq!(outp, 0);
    let drops = d.drops();
    assert_eq!(drops_row(&drops, "forwarded"), inp, "{drops}");
    assert_eq!(drops_row(&drops, "l2_ip_in"), inp, "{drops}");
    // Input-only state table (spec §3.3): after the client's FIN, FIN_WAIT.
    lab.wait_until("the connection to reach FIN_WAIT", 5, || {
        d.adm_ok(&["-L", "-n", "-c"]).contains("FIN_WAIT")
    });
    // Firewall-mark services need a device per mark: tap mode says no, and
    // nothing is added.
    let o = d.adm(&["-A", "-f", "1", "-s", "rr"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("tap mode"), "{}", o.stderr);
    assert!(!d.adm_ok(&["-S", "-n"]).contains("-f 1"));
}

#[test]
fn nat_over_tap_32_random_bytes_arrive_intact() {
    let mut lab = Lab::new("e");
    ipvs_sh_tap_topology(&mut lab, true);
    let d = start_tap_director(&mut lab);
    d.adm_ok(&["-A", "-t", &format!("{VIP}:8080"), "-s", "rr"]);
    d.adm_ok(&[
        "-a",
        "-m",
        "-t",
        &format!("{VIP}:8080"),
        "-r",
        "172.16.0.2:8080",
    ]);
    let payload = random_bytes(32);
    let got = transfer_to_vip(&mut lab, &payload, 20);
    assert_eq!(got, payload, "payload differs; daemon log:\n{}", d.log());
    // Both directions went through tunvs: replies to the client through
    // the gateway (ns1's kernel on br12).
    let (inp, outp) = service_pkts(&d.adm_ok(&["-L", "-n", "--stats"]), "207.175.44.110:8080");
    assert!(inp >= 4 && outp >= 2, "in {inp} out {outp}");
    let drops = d.drops();
    assert_eq!(drops_row(&drops, "forwarded"), inp + outp, "{drops}");
}

/// The DR lab as a newcomer runs it: 10 requests alternate between the two
/// real servers, and no reply crosses tunvs.
#[test]
fn dr_lab_balances_and_no_reply_crosses_tunvs() {
    require_root();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/netns-lab/dr/run.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .env("TUNVS", TUNVS)
        .env("REQUESTS", "10")
        .output()
        .expect("run the lab");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "lab failed:\n{out}\n{err}");
    let section = |name: &str| -> String {
        let body = out
            .split(&format!("--- {name}"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section {name}:\n{out}"));
        body.split("--- end").next().unwrap().to_string()
    };
    let responses: Vec<String> = section("dr responses")
        .lines()
        .filter(|l| l.starts_with("this is") || l.contains("failed"))
        .map(str::to_string)
        .collect();
    assert_eq!(responses.len(), 10, "{out}");
    for w in responses.windows(2) {
        assert_ne!(w[0], w[1], "rr must alternate: {responses:?}");
    }
    let rs1 = responses.iter().filter(|l| *l == "this is rs1").count();
    let rs2 = responses.iter().filter(|l| *l == "this is rs2").count();
    assert_eq!((rs1, rs2), (5, 5), "{responses:?}");
    // The director's counters show inbound packets only …
    let (inp, outp) = service_pkts(&out, "203.0.113.80:80");
    assert!(inp >= 40, "about 5 client packets per request: {inp}");
    assert_eq!(outp, 0, "{out}");
    for rs in ["192.168.50.11:80", "192.168.50.12:80"] {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("-> {rs}")) && l.split_whitespace().count() == 7)
            .unwrap_or_else(|| panic!("no stats line for {rs}:\n{out}"));
        let outpkts: u64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert_eq!(outpkts, 0, "{line}");
    }
    // … and every IP frame tunvs read was a client packet it forwarded:
    // not one reply reached it.
    let drops = section("tunvs drops");
    assert_eq!(drops_row(&drops, "forwarded"), inp, "{drops}");
    assert_eq!(drops_row(&drops, "l2_ip_in"), inp, "{drops}");
    assert!(
        out.contains("via 192.168.50.1"),
        "replies go to the router: {out}"
    );
    assert!(out.contains("lab: removed namespaces"), "{out}");
}

/// `tunvs realserver dr` changes what the LVS-DR recipe needs, records it,
/// and `--undo` puts back exactly that (two VIPs share the sysctls).
#[test]
fn realserver_dr_applies_and_undoes_exactly() {
    let mut lab = Lab::new("r");
    lab.add_ns("rs");
    // A known start (a new namespace inherits the host's IPv4 conf/all and
    // conf/default values).
    for kv in [
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.conf.lo.rp_filter=0",
        "net.ipv4.conf.all.arp_ignore=0",
    ] {
        lab.exec_ok("rs", &["sysctl", "-qw", kv]);
    }
    lab.exec_ok(
        "rs",
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ],
    );
    lab.exec_ok("rs", &["ip", "link", "set", "eth0", "up"]);
    // A strict reverse-path filter on eth0, and lo down.
    lab.exec_ok("rs", &["sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=1"]);
    lab.exec_ok("rs", &["sysctl", "-qw", "net.ipv4.conf.all.arp_announce=1"]);
    lab.exec_ok("rs", &["ip", "link", "set", "lo", "down"]);
    let state = lab.tmp.join("state");
    let state_s = state.to_string_lossy().into_owned();
    let rs = |lab: &Lab, args: &[&str]| -> std::process::Output {
        let mut v = vec![TUNVS, "realserver", "dr", "--state-dir", &state_s];
        v.extend_from_slice(args);
        lab.exec("rs", &v)
    };
    let sysctls = |lab: &Lab| -> String {
        lab.exec_ok(
            "rs",
            &[
                "sysctl",
                "-n",
                "net.ipv4.conf.all.arp_ignore",
                "net.ipv4.conf.all.arp_announce",
                "net.ipv4.conf.eth0.rp_filter",
                "net.ipv4.conf.all.rp_filter",
            ],
        )
    };
    let addrs = |lab: &Lab| lab.exec_ok("rs", &["ip", "-o", "addr", "show", "dev", "lo"]);
    let before = sysctls(&lab);
    assert_eq!(
        before.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "1", "0"]
    );

    let o = rs(&lab, &["--vip", "198.18.0.80"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        sysctls(&lab).split_whitespace().collect::<Vec<_>>(),
        ["1", "2", "2", "0"]
    );
    assert!(addrs(&lab).contains("198.18.0.80/32"));
    assert!(lab
        .exec_ok("rs", &["ip", "link", "show", "lo"])
        .contains(",UP"));
    // A second VIP: the sysctls are already right, only its address is new.
    let o = rs(&lab, &["--vip", "198.18.0.81"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("already 1"));
    // Undo the first: its address goes, the shared settings stay for the second.
    let o = rs(&lab, &["--vip", "198.18.0.80", "--undo"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!addrs(&lab).contains("198.18.0.80/32"));
    assert!(addrs(&lab).contains("198.18.0.81/32"));
    assert_eq!(
        sysctls(&lab).split_whitespace().collect::<Vec<_>>(),
        ["1", "2", "2", "0"]
    );
    // Undo the second: everything as before, lo down again.
    let o = rs(&lab, &["--vip", "198.18.0.81", "--undo"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sysctls(&lab), before);
    assert!(!lab
        .exec_ok("rs", &["ip", "link", "show", "lo"])
        .contains(",UP"));
    // Nothing left to undo, and it says so.
    let o = rs(&lab, &["--vip", "198.18.0.81", "--undo"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to undo"));
    // Without privilege: a clear message, and nothing changed.
    // (setpriv is util-linux; require_root checks that it is there.)
    let full = lab.ns("rs");
    let o = sh(&[
        "ip",
        "netns",
        "exec",
        &full,
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        TUNVS,
        "realserver",
        "dr",
        "--state-dir",
        &state_s,
        "--vip",
        "198.18.0.82",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("needs root"), "{e}");
    assert_eq!(sysctls(&lab), before);
}
