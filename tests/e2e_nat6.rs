//! End-to-end NAT over IPv6 (tun mode, root): the `ipvs.sh` NAT shape with
//! IPv6 addresses — a client, the director, a real server whose only way
//! back is the director.

mod common;

use common::*;

const VIP6: &str = "fd00:100::1";

#[test]
fn ipv6_nat_case_payload_arrives_intact_and_lists_bracketed() {
    let mut lab = Lab::new("6");
    for n in ["ns0", "ns1", "ns2"] {
        lab.add_ns(n);
    }
    lab.veth("ns0", "veth01", "ns1", "veth10");
    lab.veth("ns1", "veth12", "ns2", "veth21");
    let addr = |ns: &str, a: &str, dev: &str| {
        lab.exec_ok(ns, &["ip", "-6", "addr", "add", a, "dev", dev, "nodad"]);
    };
    addr("ns0", "fd00:1::2/64", "veth01");
    addr("ns1", "fd00:1::1/64", "veth10");
    addr("ns1", "fd00:2::1/64", "veth12");
    addr("ns2", "fd00:2::2/64", "veth21");
    lab.exec_ok(
        "ns0",
        &["ip", "-6", "route", "add", "default", "via", "fd00:1::1"],
    );
    lab.exec_ok(
        "ns2",
        &["ip", "-6", "route", "add", "default", "via", "fd00:2::1"],
    );
    lab.exec_ok(
        "ns1",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{VIP6}/128"),
            "dev",
            "lo",
            "nodad",
        ],
    );
    let d = lab.start_tunvs("ns1", &["--dev", "tunvs0"]);
    d.adm_ok(&["-A", "-t", &format!("[{VIP6}]:8080"), "-s", "rr"]);
    d.adm_ok(&[
        "-a",
        "-t",
        &format!("[{VIP6}]:8080"),
        "-r",
        "[fd00:2::2]:8080",
        "-m",
    ]);

    let payload = random_bytes(256 << 10);
    let infile = lab.tmp.join("in6");
    let outfile = lab.tmp.join("out6");
    std::fs::write(&infile, &payload).unwrap();
    let out_s = outfile.to_string_lossy().into_owned();
    lab.spawn(
        "ns2",
        &[
            "sh",
            "-c",
            &format!("timeout 20 socat -u -6 TCP-LISTEN:8080,reuseaddr STDOUT > {out_s}"),
        ],
        None,
    );
    lab.wait_until("the server to listen", 5, || {
        let o = lab.exec("ns2", &["ss", "-ltn", "sport = :8080"]);
        String::from_utf8_lossy(&o.stdout).contains("8080")
    });
    let o = lab.sh_in(
        "ns0",
        &format!(
            "timeout 20 socat -u -6 STDIN TCP:[{VIP6}]:8080 < {}",
            infile.to_string_lossy()
        ),
    );
    assert!(
        o.status.success(),
        "client: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    let mut got = Vec::new();
    lab.wait_until("the server to write everything", 20, || {
        got = std::fs::read(&outfile).unwrap_or_default();
        got.len() >= payload.len()
    });
    assert!(got == payload, "IPv6 payload differs");
    let l = d.adm_ok(&["-L", "-n"]);
    assert!(
        l.contains(&format!("TCP  [{VIP6}]:8080 rr\n  -> [fd00:2::2]:8080")),
        "{l}"
    );
    let c = d.adm_ok(&["-L", "-n", "-c"]);
    assert!(c.contains("[fd00:1::2]:"), "{c}");
}
