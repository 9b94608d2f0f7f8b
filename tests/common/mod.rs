//! Helpers for the end-to-end tests that move real traffic through the
//! daemon inside network namespaces this test made itself.
//!
//! Every name carries a unique per-run prefix; `Drop` removes namespaces,
//! kills what was started in them and deletes temporary files, also when the
//! test fails. Every wait is bounded.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The tunvs binary cargo built for these tests.
pub const TUNVS: &str = env!("CARGO_BIN_EXE_tunvs");

/// Fail clearly unless running as root (CI runs as root, so these tests run there).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (it creates network namespaces, veth pairs and a TUN device): \
         run `sudo cargo test` or the README's test command as root"
    );
    for tool in [
        "ip", "ss", "socat", "curl", "ethtool", "nft", "setpriv", "timeout",
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false),
            "this test needs `{tool}`: run netns-lab/deps.sh (iproute2 socat curl ethtool nftables)"
        );
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique prefix for this test's names (short: interface names are ≤ 15 bytes).
pub fn unique_prefix(tag: &str) -> String {
    format!(
        "tvt{}{}{}",
        tag,
        std::process::id() % 100_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run a command, returning its output; panics with the command line when it
/// cannot be started.
pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

/// Run a command that must succeed.
pub fn must(args: &[&str]) -> String {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A set of namespaces and processes, all removed on drop.
pub struct Lab {
    /// Unique prefix.
    pub prefix: String,
    /// Temporary directory (control socket, payload files).
    pub tmp: PathBuf,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    /// A new, empty lab.
    pub fn new(tag: &str) -> Lab {
        require_root();
        let prefix = unique_prefix(tag);
        let tmp = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).expect("temp dir");
        Lab {
            prefix,
            tmp,
            namespaces: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Full name of namespace `n`.
    pub fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    /// Create namespace `n` with `lo` up.
    pub fn add_ns(&mut self, n: &str) {
        let full = self.ns(n);
        must(&["ip", "netns", "add", &full]);
        self.namespaces.push(full);
        self.exec_ok(n, &["ip", "link", "set", "lo", "up"]);
    }

    /// Run a command inside namespace `n`.
    pub fn exec(&self, n: &str, args: &[&str]) -> Output {
        let full = self.ns(n);
        let mut v = vec!["ip", "netns", "exec", &full];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Run a command inside namespace `n` that must succeed; its stdout.
    pub fn exec_ok(&self, n: &str, args: &[&str]) -> String {
        let full = self.ns(n);
        let mut v = vec!["ip", "netns", "exec", &full];
        v.extend_from_slice(args);
        must(&v)
    }

    /// Run a shell snippet inside namespace `n`.
    pub fn sh_in(&self, n: &str, script: &str) -> Output {
        self.exec(n, &["sh", "-c", script])
    }

    /// A veth pair `a:ifa` — `b:ifb`, both up.
    pub fn veth(&self, a: &str, ifa: &str, b: &str, ifb: &str) {
        let (na, nb) = (self.ns(a), self.ns(b));
        must(&[
            "ip", "link", "add", ifa, "netns", &na, "type", "veth", "peer", "name", ifb, "netns",
            &nb,
        ]);
        self.exec_ok(a, &["ip", "link", "set", ifa, "up"]);
        self.exec_ok(b, &["ip", "link", "set", ifb, "up"]);
    }

    /// Start a background process inside namespace `n`; killed on drop.
    pub fn spawn(&mut self, n: &str, args: &[&str], log: Option<&Path>) -> u32 {
        let full = self.ns(n);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &full]).args(args);
        c.stdin(Stdio::null());
        match log {
            Some(p) => {
                let f = std::fs::File::create(p).expect("log file");
                c.stdout(f.try_clone().expect("log")).stderr(f);
            }
            None => {
                c.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = c.spawn().unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Start the tunvs daemon in namespace `n`; waits (bounded) for its socket.
    pub fn start_tunvs(&mut self, n: &str, extra: &[&str]) -> Daemon {
        let sock = self.tmp.join("tunvs.sock");
        let log = self.tmp.join("tunvs.log");
        let sock_s = sock.to_string_lossy().into_owned();
        let mut args = vec![TUNVS, "run", "--control", &sock_s];
        args.extend_from_slice(extra);
        let pid = self.spawn(n, &args, Some(&log));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            let alive = self
                .children
                .last_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_none());
            if !alive || Instant::now() > deadline {
                panic!(
                    "tunvs did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { sock, log, pid }
    }

    /// Wait (bounded) until `check` returns true.
    pub fn wait_until(&self, what: &str, secs: u64, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the processes started so far (SIGTERM, bounded wait, SIGKILL).
    pub fn stop_all(&mut self) {
        for c in &self.children {
            // SAFETY: kill with a pid we spawned; at worst the process is gone.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.children {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_all();
        for n in self.namespaces.iter().rev() {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", n]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// A running daemon.
pub struct Daemon {
    /// Control socket.
    pub sock: PathBuf,
    /// Its log.
    pub log: PathBuf,
    /// Its pid (the `ip netns exec` wrapper execs into tunvs, so this is tunvs).
    pub pid: u32,
}

/// Result of one `tunvs adm` call.
pub struct AdmOut {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Daemon {
    /// `tunvs adm ARGS` against this daemon (the socket is a file: no namespace needed).
    pub fn adm(&self, args: &[&str]) -> AdmOut {
        let o = Command::new(TUNVS)
            .arg("adm")
            .arg("--control")
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("run tunvs adm");
        AdmOut {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// `tunvs adm ARGS` that must succeed; its stdout.
    pub fn adm_ok(&self, args: &[&str]) -> String {
        let o = self.adm(args);
        assert_eq!(o.code, 0, "adm {args:?} failed: {}{}", o.stdout, o.stderr);
        o.stdout
    }

    /// The daemon's drop counters as text.
    pub fn drops(&self) -> String {
        let o = Command::new(TUNVS)
            .arg("drops")
            .arg("--control")
            .arg(&self.sock)
            .output()
            .expect("run tunvs drops");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// 32 random bytes (the kernel selftest's payload).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut f = std::fs::File::open("/dev/urandom").expect("urandom");
    std::io::Read::read_exact(&mut f, &mut v).expect("urandom");
    v
}

/// The NAT lab topology (netns-lab/nat): client 12.0.0.10, director 12.0.0.1
/// (and 192.168.168.50 on a bridge), real servers 192.168.168.10 and .20
/// whose HTTP servers on ports 80 and 8080 answer `this is nginx1` / `nginx2`.
pub fn nat_lab_topology(lab: &mut Lab) {
    for n in ["client", "director", "rs1", "rs2"] {
        lab.add_ns(n);
    }
    lab.veth("client", "eth0", "director", "eth0");
    lab.exec_ok(
        "client",
        &["ip", "addr", "add", "12.0.0.10/24", "dev", "eth0"],
    );
    lab.exec_ok(
        "client",
        &["ip", "route", "add", "default", "via", "12.0.0.1"],
    );
    lab.exec_ok(
        "director",
        &["ip", "addr", "add", "12.0.0.1/24", "dev", "eth0"],
    );
    lab.exec_ok("director", &["ip", "link", "add", "lan0", "type", "bridge"]);
    lab.exec_ok("director", &["ip", "link", "set", "lan0", "up"]);
    lab.exec_ok(
        "director",
        &["ip", "addr", "add", "192.168.168.50/24", "dev", "lan0"],
    );
    lab.exec_ok("director", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (i, rs) in ["rs1", "rs2"].iter().enumerate() {
        let port = format!("{rs}p");
        let addr = format!("192.168.168.{}", 10 * (i + 1));
        lab.veth(rs, "eth0", "director", &port);
        lab.exec_ok("director", &["ip", "link", "set", &port, "master", "lan0"]);
        lab.exec_ok(
            rs,
            &["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        );
        lab.exec_ok(
            rs,
            &["ip", "route", "add", "default", "via", "192.168.168.50"],
        );
        let name = format!("nginx{}", i + 1);
        let reply = lab.tmp.join(format!("reply-{name}.sh"));
        std::fs::write(
            &reply,
            format!(
                "#!/bin/sh\ncr=$(printf '\\r')\nwhile IFS= read -r l; do l=${{l%$cr}}; [ -z \"$l\" ] && break; done\n\
                 printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nthis is {name}\\n'\n"
            ),
        )
        .unwrap();
        must(&["chmod", "+x", &reply.to_string_lossy()]);
        for p in ["80", "8080"] {
            lab.spawn(
                rs,
                &[
                    "socat",
                    &format!("TCP4-LISTEN:{p},bind={addr},reuseaddr,fork"),
                    &format!("EXEC:{}", reply.to_string_lossy()),
                ],
                None,
            );
        }
    }
    for (rs, addr) in [("rs1", "192.168.168.10"), ("rs2", "192.168.168.20")] {
        lab.wait_until(&format!("{rs}'s HTTP servers"), 10, || {
            let o = lab.exec(
                "director",
                &[
                    "curl",
                    "-s",
                    "--max-time",
                    "1",
                    &format!("http://{addr}:8080/"),
                ],
            );
            let o2 = lab.exec(
                "director",
                &["curl", "-s", "--max-time", "1", &format!("http://{addr}/")],
            );
            o.status.success() && o2.status.success()
        });
    }
}

/// One HTTP request from namespace `n`; the body's first line, or "failed".
pub fn http_get(lab: &Lab, n: &str, url: &str) -> String {
    let o = lab.exec(n, &["curl", "-s", "--max-time", "3", url]);
    if !o.status.success() {
        return "failed".into();
    }
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// The kernel selftest's VIP (spec §5.2).
pub const IPVS_SH_VIP: &str = "207.175.44.110";

/// The part of the `ipvs.sh` topology (spec §5.2) every mode shares: client
/// ns0 (`br0` 10.0.0.2/24 over veth01 and veth02), director ns1 (veth10
/// 10.0.0.1/24; veth12 left to the caller), real server ns2 (veth21
/// 172.16.0.2/24, veth20 10.0.0.3/24), and the client's route to the VIP via
/// 10.0.0.1. Each mode then does what its `test_*` function does.
pub fn ipvs_sh_base(lab: &mut Lab) {
    for n in ["ns0", "ns1", "ns2"] {
        lab.add_ns(n);
    }
    lab.veth("ns0", "veth01", "ns1", "veth10");
    lab.veth("ns0", "veth02", "ns2", "veth20");
    lab.veth("ns1", "veth12", "ns2", "veth21");
    for cmd in [
        "ip link add br0 type bridge",
        "ip link set veth01 master br0",
        "ip link set veth02 master br0",
        "ip link set br0 up",
        "ip addr add 10.0.0.2/24 dev br0",
    ] {
        lab.exec_ok("ns0", &cmd.split(' ').collect::<Vec<_>>());
    }
    lab.exec_ok(
        "ns1",
        &["ip", "addr", "add", "10.0.0.1/24", "dev", "veth10"],
    );
    lab.exec_ok(
        "ns2",
        &["ip", "addr", "add", "172.16.0.2/24", "dev", "veth21"],
    );
    lab.exec_ok(
        "ns2",
        &["ip", "addr", "add", "10.0.0.3/24", "dev", "veth20"],
    );
    lab.exec_ok(
        "ns0",
        &[
            "ip",
            "route",
            "add",
            IPVS_SH_VIP,
            "via",
            "10.0.0.1",
            "dev",
            "br0",
        ],
    );
}

/// The selftest's check (spec §5.3): `payload` from ns0 to VIP:8080 with
/// socat, received by socat listening on 8080 in ns2; returns what arrived.
/// Every wait is bounded by `secs`.
pub fn transfer_to_vip(lab: &mut Lab, payload: &[u8], secs: u64) -> Vec<u8> {
    let infile = lab.tmp.join("in");
    let outfile = lab.tmp.join("out");
    std::fs::write(&infile, payload).unwrap();
    let _ = std::fs::remove_file(&outfile);
    let out_s = outfile.to_string_lossy().into_owned();
    lab.spawn(
        "ns2",
        &[
            "sh",
            "-c",
            &format!("timeout {secs} socat -u -4 TCP-LISTEN:8080,reuseaddr STDOUT > {out_s}"),
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
            "timeout {secs} socat -u -4 STDIN TCP:{IPVS_SH_VIP}:8080 < {}",
            infile.to_string_lossy()
        ),
    );
    assert!(
        o.status.success(),
        "client socat failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut got = Vec::new();
    lab.wait_until("the server to write everything", secs, || {
        got = std::fs::read(&outfile).unwrap_or_default();
        got.len() >= payload.len()
    });
    got
}

/// A named row of `tunvs drops` output.
pub fn drops_row(drops: &str, name: &str) -> u64 {
    drops
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no row {name} in:\n{drops}"))
}

/// A `/proc/net/snmp` counter (e.g. `Tcp` `InCsumErrors`) inside a namespace.
pub fn snmp(lab: &Lab, n: &str, group: &str, name: &str) -> u64 {
    let snmp = lab.exec_ok(n, &["cat", "/proc/net/snmp"]);
    let prefix = format!("{group}:");
    let mut rows = snmp.lines().filter(|l| l.starts_with(&prefix));
    let head: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    let vals: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    let i = head.iter().position(|h| *h == name).unwrap();
    vals[i].parse().unwrap()
}

/// InPkts and OutPkts of a TCP service's line in `ipvsadm -L -n --stats`.
pub fn service_pkts(stats: &str, svc: &str) -> (u64, u64) {
    let line = stats
        .lines()
        .find(|l| l.starts_with(&format!("TCP  {svc}")))
        .unwrap_or_else(|| panic!("no service {svc} in:\n{stats}"));
    let w: Vec<u64> = line
        .split_whitespace()
        .skip(2)
        .map(|x| x.parse().unwrap())
        .collect();
    (w[1], w[2])
}

/// tunvs in tap mode in ns1 on the bridge `br12` (shared with veth12, the
/// selftest's director port) with DIP 172.16.0.1, and ns1's kernel route that
/// hands the VIP to that DIP.
pub fn start_tap_director(lab: &mut Lab) -> Daemon {
    let d = lab.start_tunvs(
        "ns1",
        &[
            "--device",
            "tap",
            "--dev",
            "tunvs0",
            "--bridge",
            "br12",
            "--address",
            "172.16.0.1/24",
            "--gateway",
            "172.16.0.254",
        ],
    );
    let vip = format!("{IPVS_SH_VIP}/32");
    lab.exec_ok(
        "ns1",
        &[
            "ip",
            "route",
            "add",
            &vip,
            "via",
            "172.16.0.1",
            "dev",
            "br12",
        ],
    );
    d
}

/// A running `tunvs realserver tunnel` and its log.
pub struct RealServer {
    /// Its log (stdout and stderr).
    pub log: std::path::PathBuf,
    /// Its pid.
    pub pid: u32,
}

impl RealServer {
    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGUSR1, then the counter `name` from the report it prints.
    pub fn counter(&self, lab: &Lab, name: &str) -> u64 {
        // A report ends with drop_not_director: wait for one more complete one.
        let before = self.log().matches("\ndrop_not_director ").count();
        // SAFETY: kill with the pid of a child this test started.
        unsafe {
            libc::kill(self.pid as i32, libc::SIGUSR1);
        }
        lab.wait_until("the real server's counters", 5, || {
            let l = self.log();
            l.matches("\ndrop_not_director ").count() > before && l.ends_with('\n')
        });
        let l = self.log();
        let report = l.rsplit("\nreceived ").next().unwrap();
        let text = format!("received {report}");
        text.lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(name)).then(|| it.next().unwrap().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no counter {name} in {l}"))
    }
}

/// Start `tunvs realserver tunnel --vip VIP ARGS…` in namespace `ns` and wait
/// (bounded) until it decapsulates.
pub fn start_realserver(lab: &mut Lab, ns: &str, args: &[&str]) -> RealServer {
    let log = lab.tmp.join(format!("rs-{ns}.log"));
    let mut v = vec![TUNVS, "realserver", "tunnel", "--vip", IPVS_SH_VIP];
    v.extend_from_slice(args);
    let pid = lab.spawn(ns, &v, Some(&log));
    let rs = RealServer { log, pid };
    lab.wait_until("the real server's decapsulator", 10, || {
        rs.log().contains("decapsulating") || rs.log().contains("tunvs realserver:")
    });
    assert!(rs.log().contains("decapsulating"), "{}", rs.log());
    rs
}

/// The selftest's real-server settings for DR and TUN (spec §5.4, ns2): no
/// ARP for the VIP, no reverse-path filter on `all` and `dev`, the VIP on lo.
pub fn ipvs_sh_realserver_vip(lab: &Lab, dev: &str) {
    for s in [
        "net.ipv4.conf.all.arp_ignore=1".to_string(),
        "net.ipv4.conf.all.arp_announce=2".to_string(),
        "net.ipv4.conf.all.rp_filter=0".to_string(),
        format!("net.ipv4.conf.{dev}.rp_filter=0"),
    ] {
        lab.exec_ok("ns2", &["sysctl", "-qw", &s]);
    }
    lab.exec_ok(
        "ns2",
        &[
            "ip",
            "addr",
            "add",
            &format!("{IPVS_SH_VIP}/32"),
            "dev",
            "lo",
        ],
    );
}

/// The director's LAN for tap mode: veth12 on a bridge `br12` (tunvs's TAP
/// joins it; see [`start_tap_director`]) with 172.16.0.254 for ns1's kernel,
/// and forwarding on in ns1.
pub fn ipvs_sh_tap_lan(lab: &Lab) {
    for cmd in [
        "ip link add br12 type bridge",
        "ip link set veth12 master br12",
        "ip link set br12 up",
        "ip addr add 172.16.0.254/24 dev br12",
        "sysctl -qw net.ipv4.ip_forward=1",
    ] {
        lab.exec_ok("ns1", &cmd.split(' ').collect::<Vec<_>>());
    }
}
