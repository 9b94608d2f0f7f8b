//! The daemon's life as an operator sees it (root: each test builds its own
//! network namespace with `tests/common`, and removes it): `--config` rules
//! files (good, and bad ones rejected whole before anything is created),
//! shutdown on SIGTERM/SIGINT putting rules, routes and sysctls back,
//! `--no-routes`, `tunvs adm` without a daemon, the `ipvsadm` symlink, `-h`/`-v`,
//! the control socket's mode and a second daemon on the same socket.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A `tunvs run` we started ourselves (so we can signal it and read its
/// exit status); killed and reaped on drop if still running.
struct Run {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    sock: PathBuf,
}

impl Run {
    /// `tunvs run --control SOCK --dev DEV ARGS…` inside namespace `ns` of `lab`.
    fn start(lab: &Lab, ns: &str, tag: &str, dev: &str, args: &[&str]) -> Run {
        let sock = lab.tmp.join(format!("{tag}.sock"));
        let out = lab.tmp.join(format!("{tag}.out"));
        let err = lab.tmp.join(format!("{tag}.err"));
        let full = lab.ns(ns);
        let child = Command::new("ip")
            .args(["netns", "exec", &full, TUNVS, "run", "--control"])
            .arg(&sock)
            .args(["--dev", dev])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn tunvs run");
        Run {
            child: Some(child),
            out,
            err,
            sock,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Wait (bounded) until the control socket answers.
    fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.sock.exists() && std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tunvs run exited ({st}) before it was ready:\n{}{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tunvs run not ready after 10 s:\n{}{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait (bounded) for the process to exit; its exit code.
    fn wait_exit(&mut self, secs: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let c = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "tunvs run did not exit within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill");
    }

    /// `tunvs adm --control SOCK ARGS`.
    fn adm(&self, args: &[&str]) -> AdmOut {
        adm_at(&self.sock, args)
    }

    fn adm_ok(&self, args: &[&str]) -> String {
        let o = self.adm(args);
        assert_eq!(o.code, 0, "adm {args:?}: {}{}", o.stdout, o.stderr);
        o.stdout
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temporary directory, removed on drop (also when the test fails).
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        let dir = std::env::temp_dir().join(unique_prefix(tag));
        std::fs::create_dir_all(&dir).unwrap();
        TmpDir(dir)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn adm_at(sock: &Path, args: &[&str]) -> AdmOut {
    let o = Command::new(TUNVS)
        .arg("adm")
        .arg("--control")
        .arg(sock)
        .args(args)
        .output()
        .expect("run tunvs adm");
    AdmOut {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Everything the daemon may touch in a namespace, as text.
fn host_state(lab: &Lab, ns: &str) -> String {
    let mut s = String::new();
    for cmd in [
        &["ip", "rule", "show"][..],
        &["ip", "-6", "rule", "show"],
        &["ip", "route", "show", "table", "4242"],
        &["ip", "-6", "route", "show", "table", "4242"],
        &["ip", "-o", "link", "show"],
    ] {
        let o = lab.exec(ns, cmd);
        // A table with no routes does not exist: that is "empty", any other
        // failure is not (before and after would compare equal as blanks).
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || err.contains("FIB table does not exist"),
            "{cmd:?}: {err}"
        );
        s.push_str(&format!(
            "$ {}\n{}",
            cmd.join(" "),
            String::from_utf8_lossy(&o.stdout)
        ));
    }
    for key in [
        "net.ipv4.ip_forward",
        "net.ipv4.conf.all.forwarding",
        "net.ipv4.conf.default.forwarding",
        "net.ipv4.conf.all.rp_filter",
        "net.ipv4.conf.default.rp_filter",
        "net.ipv4.conf.all.accept_local",
        "net.ipv6.conf.all.forwarding",
        "net.ipv6.conf.default.forwarding",
    ] {
        let v = lab.exec_ok(ns, &["sysctl", "-n", key]);
        s.push_str(&format!("{key} = {v}"));
    }
    s
}

/// A lab with one namespace `d`, strict rp_filter (so the daemon has
/// something to change and put back).
fn one_ns(tag: &str) -> Lab {
    let mut lab = Lab::new(tag);
    lab.add_ns("d");
    lab.exec_ok("d", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    lab
}

const GOOD_RULES: &str = "\
-A -t 12.0.0.1:80 -s rr
-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 1
-a -t 12.0.0.1:80 -r 192.168.168.11:80 -m -w 2
-A -u 12.0.0.1:53 -s wlc
-a -u 12.0.0.1:53 -r 192.168.168.10:53 -m -w 1
";

#[test]
fn a_good_config_file_starts_with_its_services() {
    let lab = one_ns("g");
    let cfg = lab.tmp.join("rules");
    std::fs::write(&cfg, format!("# saved by ipvsadm -S -n\n\n{GOOD_RULES}")).unwrap();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut d = Run::start(&lab, "d", "g", "tvg0", &["--config", &cfg_s]);
    d.ready();
    assert_eq!(d.adm_ok(&["-S", "-n"]), GOOD_RULES);
    assert_eq!(
        d.adm_ok(&["-L", "-n"]),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
         Prot LocalAddress:Port Scheduler Flags\n\
         \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
         TCP  12.0.0.1:80 rr\n\
         \x20 -> 192.168.168.10:80            Masq    1      0          0         \n\
         \x20 -> 192.168.168.11:80            Masq    2      0          0         \n\
         UDP  12.0.0.1:53 wlc\n\
         \x20 -> 192.168.168.10:53            Masq    1      0          0         \n"
    );
    // The services are steered: their rules are in place.
    let rules = lab.exec_ok("d", &["ip", "rule", "show"]);
    assert!(
        rules.contains("to 12.0.0.1 ipproto tcp dport 80 lookup 4242"),
        "{rules}"
    );
    assert!(
        rules.contains("from 192.168.168.11 ipproto tcp sport 80 lookup 4242"),
        "{rules}"
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(10), 0, "{}", d.stderr());
}

#[test]
fn a_bad_config_file_is_rejected_whole_and_nothing_is_created() {
    let lab = one_ns("b");
    let before = host_state(&lab, "d");
    let cases: &[(&str, &str, &str)] = &[
        (
            "-A -t 12.0.0.1:80 -s rr\n-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m\n-A -t 12.0.0.2:80 -s nosuch\n",
            "line 3",
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -t 12.0.0.1:80 -s rr\n# a comment\n-a -t 12.0.0.1:80 -r 300.1.1.1:80 -m\n",
            "line 3",
            "illegal real server address[:port] specified",
        ),
        (
            "\n-A -t 12.0.0.1:80 -s rr\n-a -t 12.0.0.9:80 -r 192.168.168.10:80 -m\n",
            "line 3",
            "Service not defined",
        ),
        (
            "-A -t 12.0.0.1:80 -s rr\n\n-A -t 12.0.0.1:80 -s wlc\n",
            "line 3",
            "Service already exists",
        ),
        (
            "-A -t 12.0.0.1:80 -s rr\n-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m\n-L -n\n",
            "line 3",
            "is not a rule",
        ),
        // Accepted by ipvsadm, refused by tun mode: found only once the
        // device exists; everything made so far must be undone.
        (
            "-A -t 12.0.0.1:80 -s rr\n-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m\n-A -f 70000 -s rr\n",
            "line 3",
            "tunvs steers marks 1 to 65535",
        ),
    ];
    for (i, (text, line, reason)) in cases.iter().enumerate() {
        let cfg = lab.tmp.join(format!("bad{i}.rules"));
        std::fs::write(&cfg, text).unwrap();
        let cfg_s = cfg.to_string_lossy().into_owned();
        let mut d = Run::start(&lab, "d", &format!("b{i}"), "tvb0", &["--config", &cfg_s]);
        let code = d.wait_exit(10);
        let err = d.stderr();
        assert_ne!(code, 0, "case {i}: accepted:\n{err}");
        assert!(
            err.contains(&cfg_s) && err.contains(line) && err.contains(reason),
            "case {i}: the message must name the file, {line} and `{reason}`:\n{err}"
        );
        assert!(!d.sock.exists(), "case {i}: control socket left behind");
        assert_eq!(
            host_state(&lab, "d"),
            before,
            "case {i}: the namespace changed:\n{err}"
        );
    }
}

/// Start, add IPv4 and IPv6 NAT services (so the local rules move and IPv6
/// forwarding is switched on), stop with `sig`: exit 0, and rules, routes,
/// links and sysctls are back to what they were.
fn shutdown_restores(sig: i32, tag: &str) {
    let lab = one_ns(tag);
    let before = host_state(&lab, "d");
    let mut d = Run::start(&lab, "d", tag, "tvs0", &[]);
    d.ready();
    d.adm_ok(&["-A", "-t", "12.0.0.1:80", "-s", "rr"]);
    d.adm_ok(&["-a", "-t", "12.0.0.1:80", "-r", "192.168.168.10:80", "-m"]);
    d.adm_ok(&["-A", "-u", "[2001:db8::1]:53", "-s", "rr"]);
    d.adm_ok(&[
        "-a",
        "-u",
        "[2001:db8::1]:53",
        "-r",
        "[2001:db8:1::10]:53",
        "-m",
    ]);
    let during = host_state(&lab, "d");
    assert_ne!(during, before, "the daemon changed nothing?");
    for want in [
        "lookup 4242",
        "default dev tvs0",
        "net.ipv4.ip_forward = 1",
        "net.ipv6.conf.all.forwarding = 1",
    ] {
        assert!(during.contains(want), "{want} missing:\n{during}");
    }
    let v6rules = lab.exec_ok("d", &["ip", "-6", "rule", "show"]);
    assert!(
        v6rules.contains("to 2001:db8::1 ipproto udp dport 53 lookup 4242"),
        "{v6rules}"
    );
    d.signal(sig);
    assert_eq!(d.wait_exit(10), 0, "exit status; stderr:\n{}", d.stderr());
    assert_eq!(
        host_state(&lab, "d"),
        before,
        "not restored after signal {sig}"
    );
    assert!(!d.sock.exists(), "control socket left behind");
    assert!(d.stdout().contains("shutting down"), "{}", d.stdout());
    assert_eq!(d.stderr(), "", "shutdown reported errors");
}

#[test]
fn sigterm_restores_rules_routes_and_sysctls() {
    shutdown_restores(libc::SIGTERM, "t");
}

#[test]
fn sigint_restores_rules_routes_and_sysctls() {
    shutdown_restores(libc::SIGINT, "i");
}

/// Services (and NAT real servers) for the `--no-routes` comparison.
const NO_ROUTES_ADM: &[&[&str]] = &[
    &["-A", "-t", "12.0.0.1:80", "-s", "rr"],
    &["-a", "-t", "12.0.0.1:80", "-r", "192.168.168.10:8080", "-m"],
    &["-A", "-u", "12.0.0.1:53", "-s", "rr"],
    &["-A", "-t", "[2001:db8::1]:80", "-s", "rr"],
    &[
        "-a",
        "-t",
        "[2001:db8::1]:80",
        "-r",
        "[2001:db8:1::10]:8080",
        "-m",
    ],
    &["-A", "-t", "12.0.0.2:80", "-s", "rr"],
    &["-D", "-t", "12.0.0.2:80"],
];

/// The printed commands of a `--no-routes` daemon's stdout (after the
/// `tunvs: --no-routes: …: ` prefixes, and the indented startup block).
fn printed_commands(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            if let Some(c) = l.strip_prefix("  ") {
                return Some(c.to_string());
            }
            l.strip_prefix("tunvs: --no-routes: ")
                .and_then(|r| r.split_once(": "))
                .map(|(_, c)| c.to_string())
        })
        .collect()
}

#[test]
fn no_routes_installs_nothing_and_prints_runnable_commands() {
    let mut lab = one_ns("n");
    lab.add_ns("ref");
    lab.exec_ok("ref", &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    let before = host_state(&lab, "d");
    let mut d = Run::start(&lab, "d", "n", "tvn0", &["--no-routes"]);
    d.ready();
    for args in NO_ROUTES_ADM {
        d.adm_ok(args);
    }
    // Only the device exists; no rule, route or sysctl changed.
    let during = host_state(&lab, "d");
    let strip_link = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains("tvn0"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_link(&during), strip_link(&before));
    let out = d.stdout();
    let cmds = printed_commands(&out);
    let rule_adds = cmds.iter().filter(|c| c.contains(" rule add ")).count();
    assert!(
        rule_adds >= 6,
        "a rule per service and NAT real server:\n{out}"
    );
    // Every printed command runs as it is, in order …
    for c in &cmds {
        let o = lab.sh_in("d", c);
        assert!(
            o.status.success(),
            "`{c}` failed: {}\nall output:\n{out}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // … and leaves the namespace as a daemon that installs things itself
    // leaves its own for the same commands.
    let mut r = Run::start(&lab, "ref", "r", "tvn0", &[]);
    r.ready();
    for args in NO_ROUTES_ADM {
        r.adm_ok(args);
    }
    let strip_idx = |s: String| -> String {
        // Link lines carry interface indexes and flags that differ; rules,
        // routes and sysctls must not.
        s.lines()
            .filter(|l| !l.contains("link/") && !l.contains(": lo:") && !l.contains(": tvn0:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mine = strip_idx(host_state(&lab, "d"));
    // tunvs tags the `lookup local` rule it moves (`proto 76`, to recognise
    // it after a crash); an operator's copy needs no tag.
    let reference = strip_idx(host_state(&lab, "ref")).replace(" proto 76", "");
    assert_eq!(
        mine, reference,
        "printed commands differ from what tunvs installs:\n{out}"
    );
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(10), 0);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(10), 0);
    // Teardown with --no-routes removes nothing the operator added.
    assert!(lab
        .exec_ok("d", &["ip", "rule", "show"])
        .contains("to 12.0.0.1 ipproto tcp dport 80 lookup 4242"));
}

#[test]
fn adm_without_a_daemon_says_it_is_not_running() {
    let tmp = TmpDir::new("nd");
    let dir = &tmp.0;
    let sock = dir.join("none.sock");
    let o = adm_at(&sock, &["-L", "-n"]);
    assert_ne!(o.code, 0);
    assert_eq!(o.stdout, "");
    assert!(o.stderr.contains("not running"), "{}", o.stderr);
    assert!(o.stderr.contains("tunvs run"), "{}", o.stderr);
    assert!(
        o.stderr.contains(&sock.to_string_lossy().into_owned()),
        "{}",
        o.stderr
    );
    // The same through TUNVS_CONTROL and no --control.
    let o = Command::new(TUNVS)
        .args(["adm", "-L", "-n"])
        .env("TUNVS_CONTROL", &sock)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));
}

#[test]
fn help_and_version_work_without_a_daemon() {
    let tmp = TmpDir::new("hv");
    let dir = &tmp.0;
    let link = dir.join("ipvsadm");
    std::os::unix::fs::symlink(TUNVS, &link).unwrap();
    let nosock = dir.join("none.sock");
    for prog in [
        vec![TUNVS.to_string(), "adm".into()],
        vec![link.to_string_lossy().into_owned()],
    ] {
        let run = |arg: &str| {
            Command::new(&prog[0])
                .args(&prog[1..])
                .arg(arg)
                .env("TUNVS_CONTROL", &nosock)
                .output()
                .unwrap()
        };
        let v = run("-v");
        assert_eq!(v.status.code(), Some(0), "{prog:?} -v");
        assert_eq!(
            String::from_utf8_lossy(&v.stdout),
            "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)\n"
        );
        let h = run("-h");
        assert_eq!(h.status.code(), Some(0), "{prog:?} -h");
        let h = String::from_utf8_lossy(&h.stdout).into_owned();
        assert!(h.starts_with("ipvsadm v1.31 2019/12/24"), "{h}");
        assert!(h.contains("Usage:\n"), "{h}");
        assert!(
            h.contains("ipvsadm -A|E virtual-service [-s scheduler]"),
            "{h}"
        );
        // A usage error needs no daemon either: an unknown first option is
        // ipvsadm's "Try `ipvsadm -h'" with exit 255 (spec §4.1).
        let bad = run("--bogus");
        assert_eq!(bad.status.code(), Some(255));
        assert!(String::from_utf8_lossy(&bad.stderr).starts_with("Try `ipvsadm -h'"));
    }
}

#[test]
fn the_ipvsadm_symlink_is_tunvs_adm() {
    let lab = one_ns("s");
    let mut d = Run::start(&lab, "d", "s", "tvl0", &[]);
    d.ready();
    let link = lab.tmp.join("ipvsadm");
    std::os::unix::fs::symlink(TUNVS, &link).unwrap();
    let ipvsadm = |args: &[&str]| {
        let o = Command::new(&link)
            .args(args)
            .env("TUNVS_CONTROL", &d.sock)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(ipvsadm(&["-A", "-t", "12.0.0.1:80", "-s", "rr"]).0, 0);
    assert_eq!(
        ipvsadm(&[
            "-a",
            "-t",
            "12.0.0.1:80",
            "-r",
            "192.168.168.10:80",
            "-m",
            "-w",
            "3"
        ])
        .0,
        0
    );
    let (code, out, _) = ipvsadm(&["-S", "-n"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "-A -t 12.0.0.1:80 -s rr\n-a -t 12.0.0.1:80 -r 192.168.168.10:80 -m -w 3\n"
    );
    assert_eq!(out, d.adm_ok(&["-S", "-n"]));
    // Errors come back with ipvsadm's message and exit code.
    let (code, out, err) = ipvsadm(&["-A", "-t", "12.0.0.1:80", "-s", "rr"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (255, "", "Service already exists\n")
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(10), 0);
}

#[test]
fn the_control_socket_is_private_and_a_second_daemon_is_refused() {
    let lab = one_ns("c");
    let mut d = Run::start(&lab, "d", "c", "tvc0", &[]);
    d.ready();
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "control socket mode {mode:o}");
    d.adm_ok(&["-A", "-t", "12.0.0.1:80", "-s", "rr"]);
    d.adm_ok(&["-a", "-t", "12.0.0.1:80", "-r", "192.168.168.10:80", "-m"]);
    let state = host_state(&lab, "d");
    // Same socket, another device, same namespace: refused before it touches
    // anything (the first daemon's rules and routes stay as they are).
    let sock_s = d.sock.to_string_lossy().into_owned();
    let full = lab.ns("d");
    let o = Command::new("timeout")
        .args([
            "10",
            "ip",
            "netns",
            "exec",
            &full,
            TUNVS,
            "run",
            "--control",
            &sock_s,
            "--dev",
            "tvc1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_ne!(o.status.code(), Some(0), "second daemon started:\n{err}");
    assert_ne!(
        o.status.code(),
        Some(124),
        "second daemon did not exit:\n{err}"
    );
    assert!(err.contains("already"), "{err}");
    assert_eq!(
        host_state(&lab, "d"),
        state,
        "the second daemon changed the namespace:\n{err}"
    );
    // The first daemon still answers and still owns its socket.
    assert!(d.adm_ok(&["-L", "-n"]).contains("TCP  12.0.0.1:80 rr"));
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(10), 0);
}

/// Running without root, as the README describes: an operator pre-creates
/// the device for the user; the user runs `tunvs run --no-routes` with no
/// capability but the one this machine's `/dev/net/tun` (mode 0600, often
/// 0666 elsewhere) needs to be opened; services can be added and nothing is
/// installed.
#[test]
fn an_unprivileged_user_runs_the_daemon_on_a_precreated_device() {
    let lab = one_ns("u");
    lab.exec_ok(
        "d",
        &[
            "ip",
            "tuntap",
            "add",
            "dev",
            "tvu0",
            "mode",
            "tun",
            "user",
            "65534",
            "multi_queue",
            "vnet_hdr",
        ],
    );
    let dir = lab.tmp.join("user");
    std::fs::create_dir_all(&dir).unwrap();
    must(&["chown", "65534:65534", &dir.to_string_lossy()]);
    let sock = dir.join("tunvs.sock");
    let before = host_state(&lab, "d");
    let full = lab.ns("d");
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &full,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"])
        .args([TUNVS, "run", "--dev", "tvu0", "--no-routes", "--control"])
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            panic!(
                "exited {st}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = adm_at(&sock, &["-A", "-t", "12.0.0.1:80", "-s", "rr"]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = adm_at(
        &sock,
        &["-a", "-t", "12.0.0.1:80", "-r", "192.168.168.10:80", "-m"],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let l = adm_at(&sock, &["-L", "-n"]);
    assert!(l.stdout.contains("TCP  12.0.0.1:80 rr"), "{}", l.stdout);
    // The daemon really runs as nobody, and changed nothing on the host.
    let pid = child.id().to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line")
        .to_string();
    assert_eq!(host_state(&lab, "d"), before);
    // SAFETY: kill with the pid of a child this test spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("ip rule add pref 10 to 12.0.0.1/32 ipproto 6 dport 80 lookup 4242"),
        "{out}"
    );
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("65534"),
        "{uid_line}"
    );
}
