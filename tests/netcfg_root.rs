//! Root tests for the device and the host network configuration.
//!
//! Each test works in a private, unnamed network namespace: a thread calls
//! `unshare(CLONE_NEWNET)` (namespaces are per thread) and does everything
//! from there, sockets, `/proc/sys` and child processes included. When the
//! thread ends, the namespace and everything in it (devices, rules, routes)
//! is gone, so nothing leaks into the host.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use tunvs::dataplane::device::{Device, DeviceConfig, DeviceKind, VNET_HDR_LEN};
use tunvs::netcfg::rule::RT_TABLE_LOCAL;
use tunvs::netcfg::steer::{Change, Steering, DEFAULT_PREF_BASE, DEFAULT_TABLE, RTPROT_TUNVS};
use tunvs::netcfg::{sysctl, Family, Netlink, Route, Rule};
use tunvs::service::Proto;

// ---- harness ---------------------------------------------------------------

/// Fails clearly unless running as root.
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (CAP_NET_ADMIN): run as root");
    }
}

/// Runs `f` on a fresh thread inside a new, unnamed network namespace.
fn in_netns<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    require_root();
    let host_ns = ns_id("/proc/self/ns/net");
    std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespaces.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            r,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        assert_ne!(
            ns_id(&this_ns_path()),
            host_ns,
            "still in the host namespace"
        );
        let mut nl = Netlink::open().unwrap();
        let lo = nl.link_index("lo").unwrap();
        nl.link_set_up(lo, true).unwrap();
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// `/proc/PID/task/TID/ns/net` of the calling thread.
fn this_ns_path() -> String {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    format!("/proc/{}/task/{tid}/ns/net", std::process::id())
}

/// The `net:[inode]` identity of a namespace file.
fn ns_id(path: &str) -> String {
    std::fs::read_link(path)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Runs a shell script inside the calling thread's namespace through
/// `nsenter`; the script refuses to run anywhere else. Returns stdout.
fn sh_in_ns(script: &str) -> String {
    let path = this_ns_path();
    let guard = format!(
        "[ \"$(readlink /proc/self/ns/net)\" = '{}' ] || {{ echo wrong namespace >&2; exit 99; }}\n",
        ns_id(&path)
    );
    let out = Command::new("nsenter")
        .arg(format!("--net={path}"))
        .args(["sh", "-ec"])
        .arg(guard + script)
        .output()
        .expect("running nsenter");
    assert!(
        out.status.success(),
        "script failed ({}):\n{script}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Opens a TUN device with two queues and offload, and brings it up.
fn open_tun(nl: &mut Netlink, name: &str) -> Device {
    let cfg = DeviceConfig {
        name: name.into(),
        kind: DeviceKind::Tun,
        queues: 2,
        offload: true,
    };
    let dev = Device::open(&cfg).unwrap();
    assert_eq!(dev.queues.len(), 2);
    assert!(dev.vnet);
    assert_eq!(nl.link_index(name).unwrap(), dev.ifindex);
    nl.link_set_up(dev.ifindex, true).unwrap();
    dev
}

/// Reads one packet from any queue of `dev`, waiting up to two seconds.
fn read_any(dev: &Device) -> Vec<u8> {
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    for _ in 0..200 {
        for q in &dev.queues {
            match q.read(&mut buf) {
                Ok(n) => return buf[..n].to_vec(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading the tun: {e}"),
            }
        }
        dev.queues[0]
            .wait_readable(Some(Duration::from_millis(10)))
            .unwrap();
    }
    panic!("no packet arrived on {}", dev.name);
}

/// Reads packets until one matches `want` (the kernel may send others, such
/// as IPv6 router solicitations); returns it without the vnet header.
fn read_matching(dev: &Device, want: impl Fn(&[u8]) -> bool) -> (Vec<u8>, Vec<u8>) {
    for _ in 0..20 {
        let p = read_any(dev);
        let (hdr, pkt) = p.split_at(VNET_HDR_LEN);
        if want(pkt) {
            return (hdr.to_vec(), pkt.to_vec());
        }
    }
    panic!("no matching packet arrived on {}", dev.name);
}

/// For an IPv4 packet: (protocol, source, destination, source port,
/// destination port).
fn v4_summary(pkt: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr, u16, u16)> {
    if pkt.len() < 24 || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = (pkt[0] & 0xf) as usize * 4;
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    let sport = u16::from_be_bytes([pkt[ihl], pkt[ihl + 1]]);
    let dport = u16::from_be_bytes([pkt[ihl + 2], pkt[ihl + 3]]);
    Some((pkt[9], src, dst, sport, dport))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (priority, rule without priority/protocol): what rules do, and where.
fn shape(rules: &[Rule]) -> Vec<(Option<u32>, Rule)> {
    rules.iter().map(|r| (r.priority, r.selectors())).collect()
}

// ---- tests -----------------------------------------------------------------

/// The rules a fresh namespace starts with, as the kernel dumps them.
#[test]
fn fresh_namespace_has_the_kernel_default_rules() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let v4 = nl.rule_list(Family::V4).unwrap();
        let prefs: Vec<_> = v4
            .iter()
            .map(|r| (r.priority, r.table, r.protocol))
            .collect();
        assert_eq!(
            prefs,
            [
                (Some(0), 255, 2),
                (Some(32766), 254, 2),
                (Some(32767), 253, 2)
            ]
        );
        assert!(v4.iter().all(|r| r.is_plain_lookup(r.table)), "{v4:#?}");
        let v6 = nl.rule_list(Family::V6).unwrap();
        let prefs: Vec<_> = v6.iter().map(|r| (r.priority, r.table)).collect();
        assert_eq!(prefs, [(Some(0), 255), (Some(32766), 254)]);
    });
}

/// A datagram routed into the device comes out of a queue behind a 10-byte
/// virtio header; a packet written into a queue is routed to a local socket.
#[test]
fn tun_queue_round_trip_with_vnet_header() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let dev = open_tun(&mut nl, "tvst0");
        nl.addr_add(dev.ifindex, ip("10.200.0.1"), 24).unwrap();
        nl.link_set_mtu(dev.ifindex, 9000).unwrap();
        nl.link_set_txqueuelen(dev.ifindex, 5000).unwrap();
        let link = nl.link_get("tvst0").unwrap();
        assert_eq!((link.mtu, link.txqlen, link.is_up()), (9000, 5000, true));

        // Out: socket → route 10.200.0.0/24 dev tvst0 → queue.
        let sock = UdpSocket::bind("10.200.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        sock.send_to(b"hello tun", "10.200.0.2:9999").unwrap();
        let (hdr, pkt) = read_matching(&dev, |p| {
            v4_summary(p).is_some_and(|s| s.0 == 17 && s.4 == 9999)
        });
        let s = v4_summary(&pkt).unwrap();
        assert_eq!(
            (s.1, s.2, s.3),
            (
                Ipv4Addr::new(10, 200, 0, 1),
                Ipv4Addr::new(10, 200, 0, 2),
                port
            )
        );
        assert_eq!(&pkt[28..], b"hello tun");
        // virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset.
        assert_eq!(
            hdr[1], 0,
            "gso_type must be NONE for one small datagram: {hdr:?}"
        );
        if hdr[0] & 1 != 0 {
            // NEEDS_CSUM: the checksum is left to us, at csum_start + csum_offset.
            assert_eq!(u16::from_le_bytes([hdr[6], hdr[7]]), 20);
            assert_eq!(u16::from_le_bytes([hdr[8], hdr[9]]), 6);
        }

        // In: queue → routed to the local socket.
        let mut frame = vec![0u8; VNET_HDR_LEN];
        etherparse::PacketBuilder::ipv4([10, 200, 0, 2], [10, 200, 0, 1], 64)
            .udp(9999, port)
            .write(&mut frame, b"hello socket")
            .unwrap();
        assert_eq!(dev.queues[1].write(&frame).unwrap(), frame.len());
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello socket");
        assert_eq!(from, "10.200.0.2:9999".parse::<SocketAddr>().unwrap());
    });
}

/// Setup, services and real servers, then teardown: the rules, routes and
/// sysctls end exactly as they started.
#[test]
fn steering_installs_rules_and_teardown_restores_everything() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let dev = open_tun(&mut nl, "tvst0");
        let orig4 = nl.rule_list(Family::V4).unwrap();
        let orig6 = nl.rule_list(Family::V6).unwrap();
        // Strict reverse-path filtering, as on many distributions.
        sysctl::write("net.ipv4.conf.all.rp_filter", "1").unwrap();
        let sysctls = [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.tvst0.accept_local",
            "net.ipv4.conf.tvst0.rp_filter",
            "net.ipv6.conf.all.forwarding",
        ];
        let before: Vec<String> = sysctls.iter().map(|k| sysctl::read(k).unwrap()).collect();

        let mut st =
            Steering::new(dev.ifindex, &dev.name, DEFAULT_TABLE, DEFAULT_PREF_BASE).unwrap();
        let changed = st.setup().unwrap();
        assert!(changed.contains(&Change::RouteAdded(Route::default_dev(
            Family::V4,
            dev.ifindex,
            DEFAULT_TABLE
        ))));
        assert_eq!(
            st.setup().unwrap(),
            vec![],
            "setup twice changes nothing more"
        );
        for (k, v) in sysctls[..3].iter().zip(["1", "1", "2"]) {
            assert_eq!(sysctl::read(k).unwrap(), v, "{k}");
        }
        for fam in [Family::V4, Family::V6] {
            let routes = nl.route_list(fam, DEFAULT_TABLE).unwrap();
            assert_eq!(
                routes,
                [Route::default_dev(fam, dev.ifindex, DEFAULT_TABLE)]
            );
        }

        st.add_service(Proto::Tcp, ip("10.201.0.1"), 80).unwrap();
        st.add_service(Proto::Udp, ip("10.201.0.1"), 0).unwrap();
        assert_eq!(
            st.add_service(Proto::Tcp, ip("10.201.0.1"), 80)
                .unwrap_err()
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        st.add_reply(Proto::Tcp, ip("10.202.0.5"), 8080).unwrap();
        st.add_reply(Proto::Tcp, ip("10.202.0.5"), 8080).unwrap(); // a second service
        st.add_service(Proto::Tcp, ip("2001:db8::1"), 443).unwrap();
        st.add_reply(Proto::Tcp, ip("2001:db8:1::5"), 8443).unwrap();
        assert_eq!(sysctl::read("net.ipv6.conf.all.forwarding").unwrap(), "1");

        let v4: Vec<String> = nl
            .rule_list(Family::V4)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            v4,
            [
                "pref 10 to 10.201.0.1/32 ipproto 6 dport 80 lookup 4242",
                "pref 10 to 10.201.0.1/32 ipproto 17 lookup 4242",
                "pref 20 protocol 76 lookup local",
                "pref 21 from 10.202.0.5/32 ipproto 6 sport 8080 lookup 4242",
                "pref 32766 protocol 2 lookup main",
                "pref 32767 protocol 2 lookup default",
            ]
        );
        let v6: Vec<String> = nl
            .rule_list(Family::V6)
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            v6,
            [
                "-6 pref 10 to 2001:db8::1/128 ipproto 6 dport 443 lookup 4242",
                "-6 pref 20 protocol 76 lookup local",
                "-6 pref 21 from 2001:db8:1::5/128 ipproto 6 sport 8443 lookup 4242",
                "-6 pref 32766 protocol 2 lookup main",
            ]
        );
        // The same, as `ip` sees it from inside the namespace.
        let shown = sh_in_ns("ip rule show; ip -6 rule show");
        for want in [
            "10:\tfrom all to 10.201.0.1 ipproto tcp dport 80 lookup 4242",
            "10:\tfrom all to 10.201.0.1 ipproto udp lookup 4242",
            "20:\tfrom all lookup local proto 76",
            "21:\tfrom 10.202.0.5 ipproto tcp sport 8080 lookup 4242",
            "10:\tfrom all to 2001:db8::1 ipproto tcp dport 443 lookup 4242",
        ] {
            assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
        }
        assert!(!shown.lines().any(|l| l.starts_with("0:")), "{shown}");

        // Shared real server: the rule stays until the last reference goes.
        st.del_reply(Proto::Tcp, ip("10.202.0.5"), 8080).unwrap();
        assert!(nl
            .rule_list(Family::V4)
            .unwrap()
            .iter()
            .any(|r| r.sport == Some((8080, 8080))));
        st.del_reply(Proto::Tcp, ip("10.202.0.5"), 8080).unwrap();
        assert!(!nl
            .rule_list(Family::V4)
            .unwrap()
            .iter()
            .any(|r| r.sport.is_some()));
        assert_eq!(
            st.del_reply(Proto::Tcp, ip("10.202.0.5"), 8080)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        st.del_service(Proto::Udp, ip("10.201.0.1"), 0).unwrap();

        st.teardown().unwrap();
        assert_eq!(nl.rule_list(Family::V4).unwrap(), orig4);
        assert_eq!(nl.rule_list(Family::V6).unwrap(), orig6);
        for fam in [Family::V4, Family::V6] {
            assert_eq!(nl.route_list(fam, DEFAULT_TABLE).unwrap(), []);
        }
        let after: Vec<String> = sysctls.iter().map(|k| sysctl::read(k).unwrap()).collect();
        assert_eq!(after, before);
        assert!(st.changes().is_empty());
        st.teardown().unwrap(); // idempotent
        assert_eq!(nl.rule_list(Family::V4).unwrap(), orig4);
    });
}

/// Service traffic to a VIP that is a local address goes into the device;
/// other ports of the same address stay local. Real-server traffic goes into
/// the device unless it is addressed to the director itself.
#[test]
fn steered_traffic_enters_the_device() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let dev = open_tun(&mut nl, "tvst0");
        nl.addr_add(dev.ifindex, ip("10.200.0.1"), 24).unwrap();
        let lo = nl.link_index("lo").unwrap();
        nl.addr_add(lo, ip("10.201.0.1"), 32).unwrap(); // VIP, local
        nl.addr_add(lo, ip("10.202.0.5"), 32).unwrap(); // stands in for a real server
        let mut st =
            Steering::new(dev.ifindex, &dev.name, DEFAULT_TABLE, DEFAULT_PREF_BASE).unwrap();
        st.add_service(Proto::Udp, ip("10.201.0.1"), 5353).unwrap();
        st.add_reply(Proto::Udp, ip("10.202.0.5"), 8080).unwrap();

        let client = UdpSocket::bind("10.200.0.1:0").unwrap();
        let vip_other = UdpSocket::bind("10.201.0.1:5354").unwrap();
        vip_other
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();

        // To VIP:5353 → the device.
        client.send_to(b"to service", "10.201.0.1:5353").unwrap();
        let (_, pkt) = read_matching(&dev, |p| v4_summary(p).is_some_and(|s| s.4 == 5353));
        assert_eq!(v4_summary(&pkt).unwrap().2, Ipv4Addr::new(10, 201, 0, 1));
        // To VIP:5354 → local delivery.
        client.send_to(b"to host", "10.201.0.1:5354").unwrap();
        let mut buf = [0u8; 64];
        let n = vip_other.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to host");

        // From RIP:8080 to a client → the device.
        let rip = UdpSocket::bind("10.202.0.5:8080").unwrap();
        rip.send_to(b"reply", "10.203.0.9:40000").unwrap();
        let (_, pkt) = read_matching(&dev, |p| v4_summary(p).is_some_and(|s| s.3 == 8080));
        let s = v4_summary(&pkt).unwrap();
        assert_eq!(
            (s.1, s.2),
            (Ipv4Addr::new(10, 202, 0, 5), Ipv4Addr::new(10, 203, 0, 9))
        );
        // From RIP:8080 to the director itself (a health check) → local.
        let checker = UdpSocket::bind("10.200.0.1:7777").unwrap();
        checker
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        rip.send_to(b"health", "10.200.0.1:7777").unwrap();
        let n = checker.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"health");

        st.teardown().unwrap();
        // Without steering, VIP:5353 is local again.
        let vip_svc = UdpSocket::bind("10.201.0.1:5353").unwrap();
        vip_svc
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        client.send_to(b"local now", "10.201.0.1:5353").unwrap();
        let n = vip_svc.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"local now");
    });
}

/// The `--no-routes` commands, run with `ip` and `sysctl` inside the
/// namespace, produce the same rules and routes as [`Steering`] itself; the
/// undo commands bring the namespace back to where it started.
#[test]
fn no_routes_commands_are_runnable_and_equivalent() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let dev = open_tun(&mut nl, "tvst0");
        let orig = [
            nl.rule_list(Family::V4).unwrap(),
            nl.rule_list(Family::V6).unwrap(),
        ];
        let services = [
            (Proto::Tcp, ip("10.201.0.1"), 80),
            (Proto::Udp, ip("10.201.0.1"), 0),
            (Proto::Tcp, ip("2001:db8::1"), 443),
        ];
        let replies = [
            (Proto::Tcp, ip("10.202.0.5"), 8080),
            (Proto::Tcp, ip("10.202.0.5"), 8080),
            (Proto::Udp, ip("2001:db8:1::5"), 53),
        ];

        let mut st =
            Steering::new(dev.ifindex, &dev.name, DEFAULT_TABLE, DEFAULT_PREF_BASE).unwrap();
        for &(p, a, port) in &services {
            st.add_service(p, a, port).unwrap();
        }
        for &(p, a, port) in &replies {
            st.add_reply(p, a, port).unwrap();
        }
        let ours = [
            shape(&nl.rule_list(Family::V4).unwrap()),
            shape(&nl.rule_list(Family::V6).unwrap()),
        ];
        let local = nl.rule_list(Family::V4).unwrap();
        let moved = local.iter().find(|r| r.table == RT_TABLE_LOCAL).unwrap();
        assert_eq!((moved.priority, moved.protocol), (Some(20), RTPROT_TUNVS));
        st.teardown().unwrap();

        let script = st.describe(&services, &replies);
        sh_in_ns(&script);
        let theirs = [
            shape(&nl.rule_list(Family::V4).unwrap()),
            shape(&nl.rule_list(Family::V6).unwrap()),
        ];
        assert_eq!(theirs, ours, "script:\n{script}");
        for fam in [Family::V4, Family::V6] {
            let routes = nl.route_list(fam, DEFAULT_TABLE).unwrap();
            assert_eq!(
                routes,
                [Route::default_dev(fam, dev.ifindex, DEFAULT_TABLE)]
            );
        }

        sh_in_ns(&st.describe_teardown(&services, &replies).join("\n"));
        let back = [
            nl.rule_list(Family::V4).unwrap(),
            nl.rule_list(Family::V6).unwrap(),
        ];
        assert_eq!(shape(&back[0]), shape(&orig[0]));
        assert_eq!(shape(&back[1]), shape(&orig[1]));
        for fam in [Family::V4, Family::V6] {
            assert_eq!(nl.route_list(fam, DEFAULT_TABLE).unwrap(), []);
        }
    });
}

/// A run that died without teardown left its rules behind: the next setup
/// cleans them up, and its teardown gives the kernel its pref-0 local rule
/// back.
#[test]
fn setup_recovers_from_a_run_without_teardown() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let dev = open_tun(&mut nl, "tvst0");
        let orig = nl.rule_list(Family::V4).unwrap();
        let mut st =
            Steering::new(dev.ifindex, &dev.name, DEFAULT_TABLE, DEFAULT_PREF_BASE).unwrap();
        st.add_service(Proto::Tcp, ip("10.201.0.1"), 80).unwrap();
        std::mem::forget(st); // "crash"

        let mut st =
            Steering::new(dev.ifindex, &dev.name, DEFAULT_TABLE, DEFAULT_PREF_BASE).unwrap();
        st.setup().unwrap();
        assert!(
            !nl.rule_list(Family::V4)
                .unwrap()
                .iter()
                .any(|r| r.table == DEFAULT_TABLE),
            "stale service rule left behind"
        );
        st.add_service(Proto::Tcp, ip("10.201.0.1"), 443).unwrap();
        drop(st); // Drop tears down
        assert_eq!(nl.rule_list(Family::V4).unwrap(), orig);
    });
}

/// A foreign rule between pref 1 and the reply pref would change meaning
/// once `lookup local` moves; steering refuses and says which rule.
#[test]
fn foreign_rules_in_the_way_are_reported() {
    in_netns(|| {
        let mut nl = Netlink::open().unwrap();
        let dev = open_tun(&mut nl, "tvst0");
        let foreign = Rule::lookup(Family::V4, 100)
            .pref(15)
            .from_prefix(ip("192.0.2.0"), 24);
        nl.rule_add(&foreign).unwrap();
        let mut st =
            Steering::new(dev.ifindex, &dev.name, DEFAULT_TABLE, DEFAULT_PREF_BASE).unwrap();
        let e = st
            .add_service(Proto::Tcp, ip("10.201.0.1"), 80)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .contains("pref 15 from 192.0.2.0/24 lookup 100"),
            "{e}"
        );
        // A base below the foreign rule works.
        drop(st);
        let mut st = Steering::new(dev.ifindex, &dev.name, DEFAULT_TABLE, 1).unwrap();
        st.add_service(Proto::Tcp, ip("10.201.0.1"), 80).unwrap();
        st.teardown().unwrap();
        nl.rule_del(&foreign).unwrap();
        let v4 = nl.rule_list(Family::V4).unwrap();
        assert_eq!(v4.len(), 3);
        assert_eq!(v4[0].priority, Some(0));
    });
}

/// Drops this thread (only) to uid/gid `nobody`, keeping CAP_DAC_OVERRIDE
/// alone: `/dev/net/tun` is mode 0600 on this machine (most distributions
/// make it 0666), and the point is to run without CAP_NET_ADMIN.
fn drop_privileges_of_this_thread() {
    const NOBODY: libc::c_long = 65534;
    const CAP_DAC_OVERRIDE: u32 = 1;
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // Raw syscalls: glibc's setresuid() would change every thread of the
    // test process; the kernel's changes the calling thread only.
    // SAFETY: prctl/setres[ug]id take integer arguments only.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY),
            0
        );
        assert_eq!(
            libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY),
            0
        );
    }
    let hdr = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let keep = 1 << CAP_DAC_OVERRIDE;
    let data = [
        CapData {
            effective: keep,
            permitted: keep,
            inheritable: 0,
        },
        CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads one header and two data structs (version 3),
    // which live across the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", io::Error::last_os_error());
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    assert!(status.contains("CapEff:\t0000000000000002"), "{status}");
    assert!(status.contains("Uid:\t65534\t65534\t65534"), "{status}");
}

/// An unprivileged user attaches to a multi-queue vnet device pre-created for
/// it (`ip tuntap add … user nobody multi_queue vnet_hdr`), and gets clear
/// errors for everything it may not do.
#[test]
fn unprivileged_user_attaches_to_a_precreated_device() {
    in_netns(|| {
        sh_in_ns(
            "ip tuntap add dev tvsu0 mode tun user nobody multi_queue vnet_hdr\n\
             ip tuntap add dev tvsu1 mode tun user nobody\n\
             ip tuntap add dev tvsu2 mode tun user root multi_queue vnet_hdr",
        );
        // A thread started here shares this thread's namespace.
        std::thread::spawn(|| {
            drop_privileges_of_this_thread();
            let cfg = |name: &str, queues| DeviceConfig {
                name: name.into(),
                kind: DeviceKind::Tun,
                queues,
                offload: true,
            };

            let dev = Device::open(&cfg("tvsu0", 2)).expect("attach as the owner");
            assert_eq!((dev.queues.len(), dev.vnet), (2, true));
            drop(dev);
            // Without offload: the persistent device's offload mask is cleared.
            let dev = Device::open(&DeviceConfig {
                offload: false,
                ..cfg("tvsu0", 2)
            })
            .unwrap();
            assert!(!dev.vnet);
            drop(dev);

            // One queue on a single-queue device: falls back to no multi_queue.
            let dev = Device::open(&cfg("tvsu1", 1)).expect("single-queue fallback");
            drop(dev);

            let e = Device::open(&cfg("tvsu1", 2)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(
                e.to_string()
                    .contains("device tvsu1 exists with different flags"),
                "{e}"
            );
            assert!(e.to_string().contains("multi_queue vnet_hdr`"), "{e}");

            let e = Device::open(&cfg("tvsu2", 2)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("belongs to another user"), "{e}");

            let e = Device::open(&cfg("tvsu9", 2)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains("needs CAP_NET_ADMIN"), "{e}");
            assert!(
                e.to_string()
                    .contains("ip tuntap add dev tvsu9 mode tun user 65534 multi_queue vnet_hdr"),
                "{e}"
            );
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
        // The devices are persistent: still there, and gone with the namespace.
        let mut nl = Netlink::open().unwrap();
        for name in ["tvsu0", "tvsu1", "tvsu2"] {
            nl.link_index(name).unwrap();
        }
        assert!(nl.link_index("tvsu9").is_err());
    });
}

/// A second process cannot take a device that is in use with other flags.
#[test]
fn busy_and_mismatched_devices_are_explained() {
    in_netns(|| {
        let single = DeviceConfig {
            name: "tvsb0".into(),
            kind: DeviceKind::Tun,
            queues: 1,
            offload: false,
        };
        // Multi-queue device held without vnet header by "someone else".
        let other = Device::open(&single).unwrap();
        let e = Device::open(&DeviceConfig {
            offload: true,
            ..single.clone()
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("already in use with flags tun multi_queue"),
            "{e}"
        );
        drop(other);
        // TAP asked for where a TUN exists.
        let keep = Device::open(&single).unwrap();
        let e = Device::open(&DeviceConfig {
            kind: DeviceKind::Tap,
            ..single.clone()
        })
        .unwrap_err();
        assert!(e.to_string().contains("exists with different flags"), "{e}");
        drop(keep);
    });
}

/// True when the UDP checksum of an IPv4 packet verifies (the sum over the
/// pseudo-header and the segment folds to 0xffff).
fn udp4_checksum_ok(pkt: &[u8]) -> bool {
    let ihl = (pkt[0] & 0xf) as usize * 4;
    let seg = &pkt[ihl..];
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
        }
    };
    add(&pkt[12..20]);
    add(&[0, 17]);
    add(&(seg.len() as u16).to_be_bytes());
    add(seg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// A persistent device keeps its offload mask between users: opened once
/// with offload (checksums left partial, to be finished by us), then without
/// it, packets must carry complete checksums again.
#[test]
fn reopening_a_persistent_device_without_offload_clears_the_mask() {
    in_netns(|| {
        sh_in_ns("ip tuntap add dev tvsp0 mode tun multi_queue vnet_hdr");
        let mut nl = Netlink::open().unwrap();
        let idx = nl.link_index("tvsp0").unwrap();
        nl.addr_add(idx, ip("10.210.0.1"), 24).unwrap();
        nl.link_set_up(idx, true).unwrap();
        let sock = UdpSocket::bind("10.210.0.1:0").unwrap();
        let is_probe = |p: &[u8]| v4_summary(p).is_some_and(|s| s.0 == 17 && s.4 == 9);
        let mut cfg = DeviceConfig::new("tvsp0", DeviceKind::Tun);

        let dev = Device::open(&cfg).unwrap();
        // Attaching turns the carrier on asynchronously: a datagram sent in
        // between is dropped by the kernel, so send again until one arrives.
        let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
        let frame = (0..50)
            .find_map(|_| {
                let _ = sock.send_to(b"partial", "10.210.0.2:9");
                let p = read_some_raw(&dev, &mut buf, Duration::from_millis(100))?;
                is_probe(&p[VNET_HDR_LEN..]).then_some(p)
            })
            .expect("probe packet");
        let (hdr, pkt) = frame.split_at(VNET_HDR_LEN);
        assert_eq!(hdr[0] & 1, 1, "NEEDS_CSUM expected with offload: {hdr:?}");
        assert!(!udp4_checksum_ok(pkt), "a partial checksum does not verify");
        drop(dev);

        cfg.offload = false;
        let dev = Device::open(&cfg).unwrap();
        // Reattaching turns the carrier back on asynchronously: a datagram sent
        // in between is dropped by the kernel, so send again until one arrives.
        let mut buf = vec![0u8; 65536];
        let pkt = (0..50)
            .find_map(|_| {
                let _ = sock.send_to(b"complete", "10.210.0.2:9");
                let p = read_some_raw(&dev, &mut buf, Duration::from_millis(100))?;
                is_probe(&p).then_some(p)
            })
            .expect("probe packet");
        assert!(
            udp4_checksum_ok(&pkt),
            "offload mask still set: checksum left partial"
        );
        assert_eq!(&pkt[28..], b"complete");
    });
}

/// Reads one packet (no vnet header expected) from any queue within `wait`.
fn read_some_raw(dev: &Device, buf: &mut [u8], wait: Duration) -> Option<Vec<u8>> {
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        for q in &dev.queues {
            match q.read(buf) {
                Ok(n) => return Some(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading the tun: {e}"),
            }
        }
        dev.queues[0]
            .wait_readable(Some(Duration::from_millis(10)))
            .unwrap();
    }
    None
}

/// The shared sysctl helpers: ARP settings are raised, never lowered (an
/// operator's `arp_ignore=2` stays), and strict reverse-path filtering on a
/// device is made loose only when it is in force.
#[test]
fn arp_settings_are_raised_never_lowered_and_rp_filter_loosened_only_if_strict() {
    in_netns(|| {
        sysctl::write("net.ipv4.conf.all.arp_ignore", "2").unwrap();
        sysctl::write("net.ipv4.conf.all.arp_announce", "0").unwrap();
        let changed = tunvs::realserver::arp::apply().unwrap();
        assert_eq!(sysctl::read("net.ipv4.conf.all.arp_ignore").unwrap(), "2");
        assert_eq!(sysctl::read("net.ipv4.conf.all.arp_announce").unwrap(), "2");
        assert_eq!(changed.len(), 1, "{changed:?}");
        tunvs::realserver::arp::restore(&changed);
        assert_eq!(sysctl::read("net.ipv4.conf.all.arp_announce").unwrap(), "0");

        sysctl::write("net.ipv4.conf.all.rp_filter", "0").unwrap();
        sysctl::write("net.ipv4.conf.lo.rp_filter", "0").unwrap();
        assert_eq!(sysctl::loosen_rp_filter("lo").unwrap(), None);
        sysctl::write("net.ipv4.conf.all.rp_filter", "1").unwrap();
        let c = sysctl::loosen_rp_filter("lo")
            .unwrap()
            .expect("strict via all");
        assert_eq!((c.old.as_str(), c.new.as_str()), ("0", "2"));
        assert_eq!(sysctl::read("net.ipv4.conf.lo.rp_filter").unwrap(), "2");
    });
}
