//! End-to-end NAT through the daemon, in namespaces: the kernel selftest
//! `ipvs.sh` NAT case (spec §5), the partial-checksum check, and the NAT lab.
//! Needs root; CI runs it as root.

mod common;

use common::*;

const VIP: &str = IPVS_SH_VIP;

/// The `ipvs.sh` topology (spec §5.2), NAT variant (§5.4): the real
/// server's direct path to the client is removed, so replies come through us.
fn ipvs_sh_nat_topology(lab: &mut Lab) {
    ipvs_sh_base(lab);
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", "172.16.0.1/24", "dev", "veth12"],
    );
    lab.exec_ok("ns1", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab.exec_ok("ns2", &["ip", "link", "del", "veth20"]);
    lab.exec_ok(
        "ns2",
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            "172.16.0.1",
            "dev",
            "veth21",
        ],
    );
}

fn ipvsadm_nat_service(d: &Daemon, lab: &Lab) {
    d.adm_ok(&["-A", "-t", &format!("{VIP}:8080"), "-s", "rr"]);
    d.adm_ok(&[
        "-a",
        "-m",
        "-t",
        &format!("{VIP}:8080"),
        "-r",
        "172.16.0.2:8080",
    ]);
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", &format!("{VIP}/32"), "dev", "lo"],
    );
}

#[test]
fn ipvs_sh_nat_case_32_random_bytes_arrive_intact() {
    let mut lab = Lab::new("n");
    ipvs_sh_nat_topology(&mut lab);
    let d = lab.start_tunvs("ns1", &["--dev", "tunvs0"]);
    ipvsadm_nat_service(&d, &lab);
    let payload = random_bytes(32);
    let got = transfer_to_vip(&mut lab, &payload, 20);
    assert_eq!(got, payload, "payload differs; daemon log:\n{}", d.log());
    // The listing shows the NAT destination and the connection it carried.
    let l = d.adm_ok(&["-L", "-n"]);
    let want = format!(
        "TCP  207.175.44.110:8080 rr\n  -> {:<28} Masq    1      ",
        "172.16.0.2:8080"
    );
    assert!(l.contains(&want), "{l}");
    let stats = d.adm_ok(&["-L", "-n", "--stats"]);
    let svc_line = stats
        .lines()
        .find(|l| l.starts_with("TCP  207.175.44.110:8080"))
        .expect("service line");
    let conns: u64 = svc_line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(conns, 1, "{stats}");
    // Direct routing needs L2: tun mode accepts and lists a -g real server
    // but says clearly that its connections will be dropped.
    let o = d.adm(&[
        "-a",
        "-t",
        &format!("{VIP}:8080"),
        "-r",
        "172.16.0.3:8080",
        "-g",
    ]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("forwarding method Route (-g) is not available")
            && o.stderr.contains("method_unavailable"),
        "{}",
        o.stderr
    );
    let route = format!("  -> {:<28} Route   1 ", "172.16.0.3:8080");
    assert!(d.adm_ok(&["-L", "-n"]).contains(&route));
    let c = d.adm_ok(&["-L", "-n", "-c"]);
    assert!(c.contains("10.0.0.2:"), "{c}");
    assert!(c.contains("207.175.44.110:8080 172.16.0.2:8080"), "{c}");
}

/// With checksum offload off on the receiving veth, the receiver verifies
/// every TCP checksum in software: a wrong partial-checksum seed would show
/// up as InCsumErrors (crates-and-tun.md §6.6).
#[test]
fn partial_checksums_are_right_on_a_bulk_transfer() {
    let mut lab = Lab::new("c");
    ipvs_sh_nat_topology(&mut lab);
    // Software checksums on the director's egress and the receiver's ingress.
    lab.exec_ok("ns1", &["ethtool", "-K", "veth12", "tx", "off"]);
    lab.exec_ok(
        "ns2",
        &["ethtool", "-K", "veth21", "rx", "off", "tx", "off"],
    );
    lab.exec_ok("ns1", &["ethtool", "-K", "veth10", "tx", "off"]);
    lab.exec_ok("ns0", &["ethtool", "-K", "veth01", "rx", "off"]);
    let d = lab.start_tunvs("ns1", &["--dev", "tunvs0"]);
    ipvsadm_nat_service(&d, &lab);
    let before = snmp(&lab, "ns2", "Tcp", "InCsumErrors");
    let payload = random_bytes(8 << 20);
    let got = transfer_to_vip(&mut lab, &payload, 20);
    assert!(
        got == payload,
        "bulk payload differs (len {} vs {})",
        got.len(),
        payload.len()
    );
    let after = snmp(&lab, "ns2", "Tcp", "InCsumErrors");
    assert_eq!(after, before, "receiver counted TCP checksum errors");
    assert_eq!(
        snmp(&lab, "ns0", "Tcp", "InCsumErrors"),
        0,
        "client counted TCP checksum errors"
    );
    // Every packet of the flow, both ways, went through the pipeline.
    let drops = d.drops();
    let (inp, outp) = service_pkts(&d.adm_ok(&["-L", "-n", "--stats"]), &format!("{VIP}:8080"));
    // (GSO super-packets count once, as the kernel counts an skb.)
    assert!(inp > 10 && outp > 10, "{inp} {outp}");
    assert_eq!(drops_row(&drops, "forwarded"), inp + outp, "{drops}");
}

/// The NAT lab as a newcomer runs it, with 30 requests per scheduler:
/// rr alternates strictly, wrr 2:1 gives 20/10.
#[test]
fn nat_lab_balances_rr_and_wrr() {
    require_root();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/netns-lab/nat/run.sh");
    let o = std::process::Command::new("bash")
        .arg(script)
        .env("TUNVS", TUNVS)
        .env("REQUESTS", "30")
        .output()
        .expect("run the lab");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "lab failed:\n{out}\n{err}");
    let section = |name: &str| -> Vec<String> {
        let start = format!("--- {name} responses");
        let body = out.split(&start).nth(1).expect("section");
        let body = body.split("--- end").next().unwrap();
        body.lines()
            .filter(|l| l.starts_with("this is") || l.contains("failed"))
            .map(str::to_string)
            .collect()
    };
    let rr = section("rr");
    assert_eq!(rr.len(), 30, "{out}");
    // As the lab's README says: the newest real server (nginx2) first.
    assert_eq!(rr[0], "this is nginx2", "{rr:?}");
    for w in rr.windows(2) {
        assert_ne!(w[0], w[1], "rr must alternate: {rr:?}");
    }
    let wrr = section("wrr");
    let n1 = wrr.iter().filter(|l| *l == "this is nginx1").count();
    let n2 = wrr.iter().filter(|l| *l == "this is nginx2").count();
    assert_eq!((n1, n2), (20, 10), "wrr 2:1 over 30 requests: {wrr:?}");
    let wlc = section("wlc");
    assert_eq!(wlc.len(), 30);
    assert!(
        wlc.iter().all(|l| l.starts_with("this is nginx")),
        "{wlc:?}"
    );
    assert!(out.contains("lab: removed namespaces"), "{out}");
}

/// The same NAT case with two device queues (one worker each; the two
/// directions of a flow may land on different queues and share the table),
/// and with the offloads off (plain packets, final checksums).
#[test]
fn nat_case_with_two_queues_and_without_offload() {
    for extra in [&["--queues", "2"][..], &["--no-offload"][..]] {
        let mut lab = Lab::new("q");
        ipvs_sh_nat_topology(&mut lab);
        let mut args = vec!["--dev", "tunvs0"];
        args.extend_from_slice(extra);
        let d = lab.start_tunvs("ns1", &args);
        ipvsadm_nat_service(&d, &lab);
        let payload = random_bytes(1 << 20);
        let got = transfer_to_vip(&mut lab, &payload, 20);
        assert!(
            got == payload,
            "{extra:?}: payload differs; log:\n{}",
            d.log()
        );
        let log = d.log();
        let want = if extra[0] == "--queues" {
            "2 queues, offload on"
        } else {
            "1 queue, offload off"
        };
        assert!(log.contains(want), "{extra:?}: {log}");
        assert!(drops_row(&d.drops(), "forwarded") > 0);
    }
}
