//! End to end (netns, root): scheduling behaviour that needs real
//! connections — source hashing and persistence pin a client, lc/wlc steer
//! away from a server holding long connections, firewall-mark services.

mod common;

use common::*;

const VIP: &str = "12.0.0.1";

fn add_nat_service(d: &Daemon, svc: &[&str]) {
    let mut a = vec!["-A"];
    a.extend_from_slice(svc);
    d.adm_ok(&a);
}

fn add_dests(d: &Daemon, svc_flag: &str, svc: &str) {
    for rs in ["192.168.168.10", "192.168.168.20"] {
        d.adm_ok(&["-a", svc_flag, svc, "-r", rs, "-m"]);
    }
}

fn requests(lab: &Lab, n: usize, url: &str) -> Vec<String> {
    (0..n).map(|_| http_get(lab, "client", url)).collect()
}

#[test]
fn sh_and_persistence_keep_a_client_on_one_real_server() {
    let mut lab = Lab::new("s");
    nat_lab_topology(&mut lab);
    let d = lab.start_tunvs("director", &["--dev", "tunvs0"]);
    // sh: the source address decides; every connection of this client lands
    // on the same server.
    add_nat_service(&d, &["-t", "12.0.0.1:80", "-s", "sh"]);
    add_dests(&d, "-t", "12.0.0.1:80");
    let got = requests(&lab, 12, "http://12.0.0.1/");
    assert!(got[0].starts_with("this is nginx"), "{got:?}\n{}", d.log());
    assert!(
        got.iter().all(|g| *g == got[0]),
        "sh must pin the client: {got:?}"
    );
    // rr with -p: the first pick is pinned by the template …
    add_nat_service(&d, &["-t", "12.0.0.1:8080", "-s", "rr", "-p", "30"]);
    add_dests(&d, "-t", "12.0.0.1:8080");
    let got = requests(&lab, 12, "http://12.0.0.1:8080/");
    assert!(
        got.iter().all(|g| *g == got[0] && g.starts_with("this is")),
        "{got:?}"
    );
    // … which shows in the connection listing (client port 0, NONE/ASSURED).
    let c = d.adm_ok(&["-L", "-n", "-c"]);
    assert!(
        c.lines().any(|l| l.starts_with("TCP")
            && l.contains("12.0.0.10:0")
            && l.contains("12.0.0.1:8080")),
        "{c}"
    );
    let p = d.adm_ok(&["-L", "-n", "--persistent-conn"]);
    assert!(p.contains("TCP  12.0.0.1:8080 rr persistent 30"), "{p}");
    // Without persistence rr alternates, so the pinning above is the template's doing.
    d.adm_ok(&["-E", "-t", "12.0.0.1:8080", "-s", "rr"]);
    let got = requests(&lab, 4, "http://12.0.0.1:8080/");
    // The template still exists (it outlives its connections), but -E removed
    // persistence, so new connections are scheduled by rr.
    assert!(got.windows(2).all(|w| w[0] != w[1]), "{got:?}");
}

#[test]
fn lc_and_wlc_send_new_connections_away_from_a_busy_server() {
    for sched in ["lc", "wlc"] {
        let mut lab = Lab::new("l");
        nat_lab_topology(&mut lab);
        let d = lab.start_tunvs("director", &["--dev", "tunvs0"]);
        add_nat_service(&d, &["-t", "12.0.0.1:8080", "-s", sched]);
        add_dests(&d, "-t", "12.0.0.1:8080");
        // A long connection: socat holds it open (it sends nothing and waits).
        lab.spawn(
            "client",
            &["socat", "-u", "EXEC:sleep 30", "TCP:12.0.0.1:8080"],
            None,
        );
        lab.wait_until("the long connection to be established", 10, || {
            d.adm_ok(&["-L", "-n"]).contains("      1          ")
        });
        let listing = d.adm_ok(&["-L", "-n"]);
        // Whichever server holds it (the newest, .20, on a tie), new short
        // connections must all go to the other one.
        let busy = if listing.contains(&format!(
            "  -> {:<28} Masq    1      1 ",
            "192.168.168.20:8080"
        )) {
            "this is nginx2"
        } else {
            "this is nginx1"
        };
        let got = requests(&lab, 8, "http://12.0.0.1:8080/");
        assert!(
            got.iter().all(|g| g.starts_with("this is") && g != busy),
            "{sched}: new connections must avoid the busy server ({busy}): {got:?}\n{listing}"
        );
        lab.stop_all();
    }
}

#[test]
fn firewall_mark_service_balances_marked_traffic() {
    let mut lab = Lab::new("f");
    nat_lab_topology(&mut lab);
    // Mark client traffic to the VIP on ports 80 and 8080 with mark 1.
    let nft = "add table ip tvt\n\
               add chain ip tvt pre { type filter hook prerouting priority -150; }\n\
               add rule ip tvt pre ip daddr 12.0.0.1 tcp dport { 80, 8080 } meta mark set 1\n";
    let f = lab.tmp.join("mark.nft");
    std::fs::write(&f, nft).unwrap();
    lab.exec_ok("director", &["nft", "-f", &f.to_string_lossy()]);
    let d = lab.start_tunvs("director", &["--dev", "tunvs0"]);
    d.adm_ok(&["-A", "-f", "1", "-s", "rr"]);
    d.adm_ok(&["-a", "-f", "1", "-r", "192.168.168.10", "-m"]);
    d.adm_ok(&["-a", "-f", "1", "-r", "192.168.168.20", "-m"]);
    let l = d.adm_ok(&["-L", "-n"]);
    assert!(l.contains("FWM  1 rr\n"), "{l}");
    assert_eq!(
        d.adm_ok(&["-S", "-n"]).lines().next(),
        Some("-A -f 1 -s rr")
    );
    // Both marked ports reach the real servers' same port, alternating.
    for port in ["80", "8080"] {
        let got = requests(&lab, 6, &format!("http://{VIP}:{port}/"));
        assert!(
            got.iter().all(|g| g.starts_with("this is")),
            "port {port}: {got:?}\n{}",
            d.log()
        );
        assert!(got.windows(2).all(|w| w[0] != w[1]), "port {port}: {got:?}");
    }
    // The mark has its own device, removed with the service.
    let links = lab.exec_ok("director", &["ip", "-o", "link"]);
    assert!(links.contains("tunvs0m1"), "{links}");
    // … and its own rule and table (4242 + mark), ahead of the local table.
    let rules = lab.exec_ok("director", &["ip", "rule"]);
    assert!(
        rules.contains("10:\tfrom all fwmark 0x1 lookup 4243"),
        "{rules}"
    );
    d.adm_ok(&["-D", "-f", "1"]);
    lab.wait_until("the mark device to go", 5, || {
        !lab.exec_ok("director", &["ip", "-o", "link"])
            .contains("tunvs0m1")
    });
    let rules = lab.exec_ok("director", &["ip", "rule"]);
    assert!(!rules.contains("fwmark"), "{rules}");
}
