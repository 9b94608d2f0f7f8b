//! `ipvsadm` (`adm::run`) against the real `Director`, not the in-memory
//! fake: the §4.14 worked example byte for byte with counters made by packets
//! pushed through a `Pipeline`, every §4.12 error with its exact message and
//! exit code (and the tables unchanged), `-E`/`-e` complete-record semantics
//! (§4.4), `-D`/`-C` keeping connections (§3.12), the wrr reset (§2.2) and `-Z`.

mod virt;

use std::net::SocketAddr;

use tunvs::adm::api::Ipvs;
use tunvs::dataplane::drop::DropReason;
use tunvs::dataplane::pipeline::Verdict;
use virt::*;

const VIP: &str = "12.0.0.1:80";
const R10: &str = "192.168.168.10:80";
const R11: &str = "192.168.168.11:80";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The §4.14 commands.
fn worked_example() -> Virt {
    let v = Virt::new();
    v.adm_ok("-A -t 12.0.0.1:80 -s rr");
    v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1");
    v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2 -x 100 -y 50");
    v
}

/// Packet and byte totals per destination, summed from what the test sends.
#[derive(Default, Debug, Clone, Copy, PartialEq)]
struct Tally {
    conns: u64,
    inpkts: u64,
    outpkts: u64,
    inbytes: u64,
    outbytes: u64,
}

/// Sends packets of one flow and tallies them for its destination.
struct Traffic<'a> {
    v: &'a mut Virt,
    t: u64,
    tally: std::collections::HashMap<SocketAddr, Tally>,
}

impl Traffic<'_> {
    /// A new connection from `client`; returns the flow with the RS it got.
    fn open(&mut self, client: &str) -> Flow {
        let f = Flow::new(client, VIP, "0.0.0.0:0");
        let p = f.c2v(SYN);
        let out = self.v.fwd(self.t, &p);
        let f = f.to(dst_of(&out));
        let e = self.tally.entry(f.rs).or_default();
        e.conns += 1;
        e.inpkts += 1;
        e.inbytes += p.len() as u64;
        f
    }
    fn c2v(&mut self, f: &Flow, p: Vec<u8>) {
        self.v.fwd(self.t, &p);
        let e = self.tally.entry(f.rs).or_default();
        e.inpkts += 1;
        e.inbytes += p.len() as u64;
    }
    fn r2c(&mut self, f: &Flow, p: Vec<u8>) {
        self.v.fwd(self.t, &p);
        let e = self.tally.entry(f.rs).or_default();
        e.outpkts += 1;
        e.outbytes += p.len() as u64;
    }
    /// SYN/ACK, ACK, a request and a response: ESTABLISHED.
    fn establish(&mut self, f: &Flow) {
        self.r2c(f, f.r2c(SYN | TCP_ACK));
        self.c2v(f, f.c2v(TCP_ACK));
        self.c2v(f, f.c2v_data(b"GET / HTTP/1.0\r\n\r\n"));
        self.r2c(f, f.r2c_data(&[b'x'; 700]));
    }
}

/// Traffic for the §4.14 listings: .10 ends with 2 active / 0 inactive,
/// .11 with 1 active / 3 inactive (rr alternates .11, .10, …).
fn worked_traffic(v: &mut Virt) -> std::collections::HashMap<SocketAddr, Tally> {
    let mut tr = Traffic {
        v,
        t: s(1),
        tally: Default::default(),
    };
    let f1 = tr.open("10.0.0.2:41234"); // .11
    let f2 = tr.open("10.0.0.2:41235"); // .10
    let f3 = tr.open("10.0.0.2:41236"); // .11
    let f4 = tr.open("10.0.0.5:50000"); // .10
    let f5 = tr.open("10.0.0.5:50001"); // .11
    let f6 = tr.open("10.0.0.5:50002"); // .10
    assert_eq!(
        [f1.rs, f2.rs, f3.rs, f4.rs, f5.rs, f6.rs],
        [sa(R11), sa(R10), sa(R11), sa(R10), sa(R11), sa(R10)],
        "rr starts with the newest destination and alternates"
    );
    for f in [&f1, &f2, &f3, &f4, &f5, &f6] {
        tr.establish(f);
    }
    // f3: the client closes (CLOSE_WAIT); f5: both close (TIME_WAIT).
    tr.c2v(&f3, f3.c2v(TCP_FIN | TCP_ACK));
    tr.c2v(&f5, f5.c2v(TCP_FIN | TCP_ACK));
    tr.r2c(&f5, f5.r2c(TCP_FIN | TCP_ACK));
    // f6 is reset and expires (CLOSE, 10 s).
    tr.c2v(&f6, f6.c2v(TCP_RST));
    tr.v.tick(s(12));
    tr.t = s(12);
    // f7 (.11): reset, CLOSE.
    let f7 = tr.open("10.0.0.6:40000");
    assert_eq!(f7.rs, sa(R11));
    tr.establish(&f7);
    tr.r2c(&f7, f7.r2c(TCP_RST));
    tr.v.at(s(12));
    tr.tally
}

#[test]
fn worked_example_listings_are_byte_exact() {
    let mut v = worked_example();
    let tally = worked_traffic(&mut v);
    let (t10, t11) = (tally[&sa(R10)], tally[&sa(R11)]);
    assert_eq!((t10.conns, t11.conns), (3, 4));

    assert_eq!(
        v.adm_ok("-L -n"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  12.0.0.1:80 rr\n\
         \x20 -> 192.168.168.10:80            Masq    1      2          0         \n\
         \x20 -> 192.168.168.11:80            Masq    2      1          3         \n"
    );
    assert_eq!(
        v.adm_ok("-S -n"),
        "-A -t 12.0.0.1:80 -s rr\n\
         -a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1\n\
         -a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2\n"
    );
    assert_eq!(
        v.adm_ok("-L -n --thresholds"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n\
         \x20 -> RemoteAddress:Port\n\
         TCP  12.0.0.1:80 rr\n\
         \x20 -> 192.168.168.10:80            0          0          2          0         \n\
         \x20 -> 192.168.168.11:80            100        50         1          3         \n"
    );
    assert_eq!(
        v.adm_ok("-L -n --persistent-conn"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n\
         \x20 -> RemoteAddress:Port\n\
         TCP  12.0.0.1:80 rr\n\
         \x20 -> 192.168.168.10:80            1         0           2          0         \n\
         \x20 -> 192.168.168.11:80            2         0           1          3         \n"
    );
    assert_eq!(
        v.adm_ok("-L -n --tun-info"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n\
         TCP  12.0.0.1:80 rr\n\
         \x20 -> 192.168.168.10:80            Masq    n/a           1      2          0         \n\
         \x20 -> 192.168.168.11:80            Masq    n/a           2      1          3         \n"
    );
    // --stats: the counters are exactly the packets and bytes sent.
    let row = |name: &str, t: Tally| {
        format!(
            "{name:<33}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
            t.conns, t.inpkts, t.outpkts, t.inbytes, t.outbytes
        )
    };
    let sum = Tally {
        conns: t10.conns + t11.conns,
        inpkts: t10.inpkts + t11.inpkts,
        outpkts: t10.outpkts + t11.outpkts,
        inbytes: t10.inbytes + t11.inbytes,
        outbytes: t10.outbytes + t11.outbytes,
    };
    assert_eq!(
        v.adm_ok("-L -n --stats"),
        format!(
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
             \x20 -> RemoteAddress:Port\n{}{}{}",
            row("TCP  12.0.0.1:80", sum),
            row("  -> 192.168.168.10:80", t10),
            row("  -> 192.168.168.11:80", t11)
        )
    );
    // -L -t VIP: the same without the version line.
    assert_eq!(
        v.adm_ok("-L -n -t 12.0.0.1:80"),
        "Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  12.0.0.1:80 rr\n\
         \x20 -> 192.168.168.10:80            Masq    1      2          0         \n\
         \x20 -> 192.168.168.11:80            Masq    2      1          3         \n"
    );
    // -L -n -c: one row per live connection, in the §4.8 layout.
    let rows = v.conn_rows();
    assert_eq!(
        rows,
        vec![
            "TCP 00:10  CLOSE       10.0.0.6:40000     12.0.0.1:80        192.168.168.11:80",
            "TCP 00:49  CLOSE_WAIT  10.0.0.2:41236     12.0.0.1:80        192.168.168.11:80",
            "TCP 01:49  TIME_WAIT   10.0.0.5:50001     12.0.0.1:80        192.168.168.11:80",
            "TCP 14:49  ESTABLISHED 10.0.0.2:41234     12.0.0.1:80        192.168.168.11:80",
            "TCP 14:49  ESTABLISHED 10.0.0.2:41235     12.0.0.1:80        192.168.168.10:80",
            "TCP 14:49  ESTABLISHED 10.0.0.5:50000     12.0.0.1:80        192.168.168.10:80",
        ]
    );
    assert_eq!(
        v.adm_ok("-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
}

/// Every operation error of §4.12 on the real director: exact message, exit
/// 255, and nothing changed (tables, counters, connections).
#[test]
fn kernel_errors_have_exact_messages_and_change_nothing() {
    let mut v = worked_example();
    v.adm_ok("-A -u 12.0.0.1:53 -s wrr -p 100");
    v.adm_ok("-a -u 12.0.0.1:53 -r 192.168.168.10:53 -m -w 3");
    worked_traffic(&mut v);
    let snapshot = |v: &Virt| {
        (
            v.adm_ok("-S -n"),
            v.adm_ok("-L -n"),
            v.adm_ok("-L -n --stats"),
            v.adm_ok("-L -n --thresholds"),
            v.conn_rows(),
            v.adm_ok("-L --timeout"),
        )
    };
    let before = snapshot(&v);
    let errors: &[(&str, i32, &str)] = &[
        ("-A -t 12.0.0.1:80 -s rr", 255, "Service already exists\n"),
        (
            "-A -t 12.0.0.1:80 -s wlc -p",
            255,
            "Service already exists\n",
        ),
        (
            "-A -t 12.0.0.9:80 -s nosuch",
            255,
            "Scheduler or persistence engine not found\n",
        ),
        (
            "-E -t 12.0.0.1:80 -s nosuch",
            255,
            "Scheduler or persistence engine not found\n",
        ),
        ("-E -t 12.0.0.9:80 -s rr", 255, "No such service\n"),
        ("-D -t 12.0.0.9:80", 255, "No such service\n"),
        ("-D -u 12.0.0.1:80", 255, "No such service\n"),
        ("-Z -t 12.0.0.9:80", 255, "No such service\n"),
        (
            "-a -t 12.0.0.9:80 -r 192.168.168.10:80 -m",
            255,
            "Service not defined\n",
        ),
        (
            "-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 5",
            255,
            "Destination already exists\n",
        ),
        (
            "-e -t 12.0.0.9:80 -r 192.168.168.10:80 -m",
            255,
            "Service not defined\n",
        ),
        (
            "-e -t 12.0.0.1:80 -r 192.168.168.99:80 -m",
            255,
            "No such destination\n",
        ),
        (
            "-d -t 12.0.0.1:80 -r 192.168.168.99:80",
            255,
            "No such destination\n",
        ),
        (
            "-d -t 12.0.0.1:80 -r 192.168.168.10:81",
            255,
            "No such destination\n",
        ),
        (
            "-d -t 12.0.0.9:80 -r 192.168.168.10:80",
            255,
            "Service not defined\n",
        ),
        (
            "-a -t 12.0.0.1:80 -r 224.0.0.1:80 -m",
            255,
            "Invalid operation.  Possibly wrong module version, address not unicast, ...\n",
        ),
        (
            "-a -t 12.0.0.1:80 -r 192.168.168.12:80 -m -x 10 -y 20",
            255,
            "Numerical result out of range\n",
        ),
        (
            "-e -t 12.0.0.1:80 -r 192.168.168.10:80 -m -x 10 -y 20",
            255,
            "Numerical result out of range\n",
        ),
        ("-L -n -t 12.0.0.9:80", 1, "No such service\n"),
        ("-L -n -u 12.0.0.1:80", 1, "No such service\n"),
    ];
    for (line, code, stderr) in errors {
        let o = v.adm(line);
        assert_eq!(
            (o.code, o.stderr.as_str(), o.stdout.as_str()),
            (*code, *stderr, ""),
            "ipvsadm {line}"
        );
        assert_eq!(snapshot(&v), before, "ipvsadm {line} changed the tables");
    }
    // Validation errors never reach the director (exit 2), and change nothing.
    for line in [
        "-A -t 12.0.0.1:80 -s rr -w 3",
        "-a -t 12.0.0.1:80 -r 192.168.168.10:80 -w 70000",
        "-A -t 12.0.0.9 -s rr",
        "-a -t 12.0.0.1:80 -r [2001:db8::1]:80 -m",
    ] {
        let o = v.adm(line);
        assert_eq!(o.code, 2, "ipvsadm {line}: {}", o.stderr);
        assert_eq!(snapshot(&v), before, "ipvsadm {line} changed the tables");
    }
}

/// §4.4: `-E`/`-e` send complete records; omitted options revert to defaults.
#[test]
fn edit_commands_replace_the_whole_record() {
    let v = Virt::new();
    v.adm_ok("-A -t 12.0.0.5:80 -s sh -p 100 -M 255.255.255.0 -b sh-port");
    v.adm_ok("-a -t 12.0.0.5:80 -r 192.168.168.10:8080 -m -w 3 -x 10 -y 5");
    assert_eq!(
        v.adm_ok("-S -n"),
        "-A -t 12.0.0.5:80 -s sh -p 100 -M 255.255.255.0 -b sh-port\n\
         -a -t 12.0.0.5:80 -r 192.168.168.10:8080 -m -w 3\n"
    );
    // -E with only a scheduler: persistence, mask and flags are gone.
    v.adm_ok("-E -t 12.0.0.5:80 -s rr");
    // -e without -x/-y: the thresholds go back to 0.
    v.adm_ok("-e -t 12.0.0.5:80 -r 192.168.168.10:8080 -m -w 5");
    assert_eq!(
        v.adm_ok("-S -n"),
        "-A -t 12.0.0.5:80 -s rr\n-a -t 12.0.0.5:80 -r 192.168.168.10:8080 -m -w 5\n"
    );
    assert!(v
        .adm_ok("-L -n --thresholds")
        .contains("  -> 192.168.168.10:8080          0          0          0          0"));
    // -e without -w: weight 1; without -m: DR (ipvsadm forces a DR dest's
    // port to the service port, so this dest sits on port 80).
    v.adm_ok("-a -t 12.0.0.5:80 -r 192.168.168.11:80 -m -w 4 -x 8");
    v.adm_ok("-e -t 12.0.0.5:80 -r 192.168.168.11:80");
    assert_eq!(
        v.adm_ok("-S -n"),
        "-A -t 12.0.0.5:80 -s rr\n\
         -a -t 12.0.0.5:80 -r 192.168.168.10:8080 -m -w 5\n\
         -a -t 12.0.0.5:80 -r 192.168.168.11:80 -g -w 1\n"
    );
    assert_eq!(
        v.adm_ok("-L -n"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  12.0.0.5:80 rr\n\
         \x20 -> 192.168.168.10:8080          Masq    5      0          0         \n\
         \x20 -> 192.168.168.11:80            Route   1      0          0         \n"
    );
    // -E back to persistent: -p alone means 360 s.
    v.adm_ok("-E -t 12.0.0.5:80 -s wlc -p");
    assert!(v
        .adm_ok("-L -n")
        .contains("TCP  12.0.0.5:80 wlc persistent 360\n"));
}

/// §3.12: `-D` and `-C` do not delete connections; their packets are dropped
/// while the destination is gone, and re-adding the service and destination
/// revives the same destination with its counters.
#[test]
fn delete_and_clear_keep_connections() {
    for cmd in ["-D -t 12.0.0.1:80", "-C"] {
        let mut v = worked_example();
        worked_traffic(&mut v);
        let conns_before = v.conn_rows();
        let stats_before = v.adm_ok("-L -n --stats");
        // Destination rows of --stats as numbers: (name, [conns, inpkts, …]).
        let dest_rows = |s: &str| -> Vec<(String, Vec<u64>)> {
            s.lines()
                .filter(|l| l.starts_with("  -> 192"))
                .map(|l| {
                    let mut w = l.split_whitespace().skip(1);
                    let name = w.next().unwrap().to_string();
                    (name, w.map(|n| n.parse().unwrap()).collect())
                })
                .collect()
        };
        v.adm_ok(cmd);
        assert_eq!(
            v.adm_ok("-L -n"),
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n\
             \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "{cmd}"
        );
        assert_eq!(v.adm_ok("-S -n"), "", "{cmd}");
        assert_eq!(v.conn_rows(), conns_before, "{cmd} must keep connections");
        // A client packet of a kept connection is dropped (kernel ip_vs_in);
        // a reply from its real server is still translated (ip_vs_out has no
        // destination check) and counted; a new SYN finds no service.
        let f2 = Flow::new("10.0.0.2:41235", VIP, R10);
        let (verdict, _) = v.send(s(13), &f2.c2v_data(b"more"));
        assert_eq!(verdict, Verdict::Drop(DropReason::DestDeleted), "{cmd}");
        let reply = f2.r2c_data(b"more");
        let out = v.fwd(s(13), &reply);
        assert_eq!(
            tunvs::packet::parse_ip(&out).unwrap().src.to_string(),
            "12.0.0.1"
        );
        let (verdict, _) = v.send(s(13), &Flow::new("10.0.0.9:1", VIP, R10).c2v(SYN));
        assert_eq!(verdict, Verdict::Drop(DropReason::NoMatch), "{cmd}");
        // Re-create the service and its destinations: the same destination
        // objects come back with their counters; the service's own are new.
        v.adm_ok("-A -t 12.0.0.1:80 -s rr");
        v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1");
        v.adm_ok("-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2 -x 100 -y 50");
        let stats_after = v.adm_ok("-L -n --stats");
        let mut want = dest_rows(&stats_before);
        want[0].1[2] += 1; // .10 OutPkts: the reply
        want[0].1[4] += reply.len() as u64; // .10 OutBytes
        assert_eq!(dest_rows(&stats_after), want, "{cmd}");
        assert!(
            stats_after.contains(&format!("{:<33}{:>9}", "TCP  12.0.0.1:80", 0)),
            "{stats_after}"
        );
        assert!(v
            .adm_ok("-L -n")
            .contains("  -> 192.168.168.10:80            Masq    1      2          0         \n"));
        // The kept connection flows again.
        let out = v.fwd(s(14), &f2.c2v_data(b"more"));
        assert_eq!(dst_of(&out), sa(R10));
        v.fwd(s(14), &f2.r2c_data(b"more"));
        // And expiry still moves the revived destinations' counters.
        v.tick(s(14 + 900));
        assert!(v.dir.conns.is_empty(), "{:?}", v.conn_rows());
        assert!(v
            .adm_ok("-L -n")
            .contains("  -> 192.168.168.10:80            Masq    1      0          0         \n"));
        assert!(v
            .adm_ok("-L -n")
            .contains("  -> 192.168.168.11:80            Masq    2      0          0         \n"));
    }
}

/// Names of the destinations new connections go to, one SYN each.
fn picks(v: &mut Virt, t: u64, n: usize, first_port: u16) -> String {
    (0..n)
        .map(|i| {
            let f = Flow::new(
                &format!("10.1.0.1:{}", first_port + i as u16),
                "12.0.0.7:80",
                "0.0.0.0:0",
            );
            let d = dst_of(&v.fwd(t, &f.c2v(SYN)));
            match d.ip().to_string().as_str() {
                "192.168.7.1" => 'A',
                "192.168.7.2" => 'B',
                "192.168.7.3" => 'C',
                "192.168.7.4" => 'D',
                other => panic!("{other}"),
            }
        })
        .collect()
}

fn wrr_lab() -> Virt {
    let v = Virt::new();
    v.adm_ok("-A -t 12.0.0.7:80 -s wrr");
    v.adm_ok("-a -t 12.0.0.7:80 -r 192.168.7.1:80 -m -w 4");
    v.adm_ok("-a -t 12.0.0.7:80 -r 192.168.7.2:80 -m -w 3");
    v.adm_ok("-a -t 12.0.0.7:80 -r 192.168.7.3:80 -m -w 2");
    v
}

/// §2.2: the kernel's wrr sequence after `-a A -w 4; -a B -w 3; -a C -w 2`,
/// and its reset (cursor to the head, cw kept) on every -a/-e/-d.
#[test]
fn wrr_sequence_and_reset_on_destination_changes() {
    let mut v = wrr_lab();
    assert_eq!(picks(&mut v, s(1), 21, 1000), "CBAABACBACBAABACBACBA");

    // After 6 picks (cw = 3, cursor at A), an edit that changes nothing but
    // resets the cursor repeats the cw = 3 pass from the head.
    let mut v = wrr_lab();
    assert_eq!(picks(&mut v, s(1), 6, 1000), "CBAABA");
    v.adm_ok("-e -t 12.0.0.7:80 -r 192.168.7.2:80 -m -w 3");
    assert_eq!(picks(&mut v, s(1), 10, 2000), "BACBACBAAB");

    // Adding D (weight 1) resets the same way and D joins the last pass.
    let mut v = wrr_lab();
    assert_eq!(picks(&mut v, s(1), 6, 1000), "CBAABA");
    v.adm_ok("-a -t 12.0.0.7:80 -r 192.168.7.4:80 -m -w 1");
    assert_eq!(picks(&mut v, s(1), 12, 2000), "BACBADCBAABA");

    // Deleting C: gcd of 4 and 3 is 1, mw 4, cw stays 3; cursor to the head.
    let mut v = wrr_lab();
    assert_eq!(picks(&mut v, s(1), 6, 1000), "CBAABA");
    v.adm_ok("-d -t 12.0.0.7:80 -r 192.168.7.3:80");
    assert_eq!(picks(&mut v, s(1), 9, 2000), "BABABAABA");
}

/// `-Z`: counters and rates to zero (one service, or all and the totals);
/// connections and their ActiveConn/InActConn are untouched.
#[test]
fn zero_clears_counters_but_not_connections() {
    let mut v = worked_example();
    v.adm_ok("-A -u 12.0.0.1:53 -s rr");
    v.adm_ok("-a -u 12.0.0.1:53 -r 192.168.168.10:53 -m");
    worked_traffic(&mut v);
    let u = Flow::new("10.0.0.2:5000", "12.0.0.1:53", "192.168.168.10:53");
    v.fwd(s(12), &u.uc2v(b"q"));
    v.fwd(s(12), &u.ur2c(b"a"));
    v.dir.estimate_tick();
    let listing = v.adm_ok("-L -n");
    let conns = v.conn_rows();
    let rate_before = v.adm_ok("-L -n --rate");
    // One estimator tick after 7 connections: cps = ((7 << 9) >> 2 + 0x1ff) >> 10 = 1.
    assert!(
        rate_before.contains("TCP  12.0.0.1:80                         1"),
        "{rate_before}"
    );
    // -Z of one service leaves the other's counters.
    v.adm_ok("-Z -t 12.0.0.1:80");
    let st = v.adm_ok("-L -n --stats");
    let zero = format!("{:>9}{:>9}{:>9}{:>9}{:>9}\n", 0, 0, 0, 0, 0);
    for name in [
        "TCP  12.0.0.1:80",
        "  -> 192.168.168.10:80",
        "  -> 192.168.168.11:80",
    ] {
        assert!(st.contains(&format!("{name:<33}{zero}")), "{name}: {st}");
    }
    let udp_line = |st: &str| {
        st.lines()
            .find(|l| l.starts_with("UDP  12.0.0.1:53"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        udp_line(&st),
        format!(
            "{:<33}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "UDP  12.0.0.1:53", 1, 1, 1, 29, 29
        )
    );
    let rate = v.adm_ok("-L -n --rate");
    assert!(
        rate.contains(&format!("{:<33}{zero}", "TCP  12.0.0.1:80")),
        "{rate}"
    );
    // Connections and the Active/InAct columns are not counters: unchanged.
    assert_eq!(v.adm_ok("-L -n"), listing);
    assert_eq!(v.conn_rows(), conns);
    // -Z alone: everything, and the global totals.
    v.adm_ok("-Z");
    assert!(v
        .adm_ok("-L -n --stats")
        .contains(&format!("{:<33}{zero}", "UDP  12.0.0.1:53")));
    let g = v.dir.stats.snapshot();
    assert_eq!(
        (g.conns, g.inpkts, g.outpkts, g.inbytes, g.outbytes),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(v.dir.services().len(), 2);
    // Counting resumes from zero.
    let f = Flow::new("10.0.0.2:41234", VIP, R11);
    let p = f.c2v_data(b"again");
    v.fwd(s(13), &p);
    let st = v.adm_ok("-L -n --stats");
    assert!(
        st.contains(&format!(
            "{:<33}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "  -> 192.168.168.11:80",
            0,
            1,
            0,
            p.len(),
            0
        )),
        "{st}"
    );
}
