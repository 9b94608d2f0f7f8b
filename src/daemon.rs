//! `tunvs run`: the daemon. Opens the device, steers service traffic into
//! it, runs one worker per device queue, serves the control socket, and
//! undoes everything it changed on SIGTERM/SIGINT.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

mod fwmark;

use crate::adm;
use crate::control::{self, Request, Response};
use crate::dataplane::buf::PacketBuf;
use crate::dataplane::device::{Device, DeviceConfig, DeviceKind, Queue};
use crate::dataplane::drop::{Counters, DropReason};
use crate::dataplane::pipeline::{Methods, Pipeline, Verdict};
use crate::dataplane::queue_loop::{self, FrameHandler};
use crate::dataplane::xmit_tunnel::{TunnelConfig, TunnelRoutes, TunnelTx};
use crate::dataplane::{tunnel_icmp, tunnel_route};
use crate::director::{Director, Hooks};
use crate::netcfg::steer::{Steering, DEFAULT_PREF_BASE};
use crate::netcfg::Family;
use crate::packet::vnet::VNET_HDR_LEN;
use crate::service::{DestSpec, FwdMethod, SvcId};

/// Buffer: the largest GSO super-packet plus its header.
const BUF_LEN: usize = 65536 + VNET_HDR_LEN;

/// Every worker's counters, for `tunvs drops` (devices come and go).
pub type Registry = Arc<Mutex<Vec<Arc<Counters>>>>;

/// Options of `tunvs run`.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// tun or tap.
    pub kind: DeviceKind,
    /// Device name.
    pub dev: String,
    /// Number of queues (worker threads).
    pub queues: usize,
    /// Virtio-net header and TSO/CSUM offloads.
    pub offload: bool,
    /// Install policy rules (false: print them for the operator).
    pub routes: bool,
    /// Control socket path.
    pub control: PathBuf,
    /// An `ipvsadm -S` rules file to start with.
    pub config: Option<PathBuf>,
    /// Routing table for steering.
    pub table: u32,
    /// Tap mode: the director's addresses, gateway, bridge, MAC.
    pub tap: crate::tap_daemon::TapOpts,
}

/// The daemon's hooks: every service and NAT destination gets its policy
/// rule (or, with `--no-routes`, the rule is printed for the operator);
/// methods the device mode cannot carry get a warning.
#[derive(Debug)]
struct SteerHooks {
    steering: Mutex<Steering>,
    apply: bool,
    methods: Methods,
    dev: String,
    fwmarks: fwmark::FwmarkDevices,
    routes: Arc<TunnelRoutes>,
    /// One tunnel configuration (hash seed, port range) for every worker of
    /// every device: a flow's GUE source port must not depend on its queue.
    tun_cfg: TunnelConfig,
}

impl SteerHooks {
    fn steer(&self) -> std::sync::MutexGuard<'_, Steering> {
        self.steering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The real server's port for its reply rule (0 = the service port).
    fn reply_port(svc: &SvcId, d: &DestSpec) -> u16 {
        if d.port == 0 {
            svc.port()
        } else {
            d.port
        }
    }
}

impl Hooks for SteerHooks {
    fn service_added(&self, id: &SvcId) -> Result<(), String> {
        let (proto, addr, port) = match *id {
            SvcId::Addr { proto, addr, port } => (proto, addr, port),
            SvcId::Fwmark { mark, v6 } => {
                return self.fwmarks.add(mark, v6, &mut self.steer(), self.apply);
            }
        };
        let mut s = self.steer();
        if !self.apply {
            for line in s.describe_family_once(Family::of(addr)) {
                println!("tunvs: --no-routes: first of its family: {line}");
            }
            println!(
                "tunvs: --no-routes: add: {}",
                s.describe_service(proto, addr, port)
            );
            return Ok(());
        }
        s.add_service(proto, addr, port)
            .map_err(|e| format!("cannot install the policy rule for {addr}:{port}: {e}"))
    }

    fn service_removed(&self, id: &SvcId) {
        if let SvcId::Fwmark { mark, v6 } = *id {
            self.fwmarks.remove(mark, v6, &mut self.steer(), self.apply);
        }
        if let SvcId::Addr { proto, addr, port } = *id {
            let mut s = self.steer();
            if self.apply {
                if let Err(e) = s.del_service(proto, addr, port) {
                    eprintln!("tunvs: cannot remove the policy rule for {addr}:{port}: {e}");
                }
            } else {
                println!(
                    "tunvs: --no-routes: remove: {}",
                    s.describe_service_removal(proto, addr, port)
                );
            }
        }
    }

    fn dest_added(&self, svc: &SvcId, d: &DestSpec) -> Result<(), String> {
        if d.fwd == FwdMethod::Tunnel && d.addr.is_ipv4() {
            // Tunnels need no rules: ask the kernel for the route now so the
            // first packet finds it (housekeeping refreshes it).
            if let Err(e) = tunnel_route::resolve_into(&self.routes, d.addr) {
                eprintln!(
                    "tunvs: warning: no route to tunnel real server {}: {e}",
                    d.addr
                );
            }
        }
        if d.fwd != FwdMethod::Masq {
            return Ok(());
        }
        let port = Self::reply_port(svc, d);
        let mut s = self.steer();
        if !self.apply {
            for line in s.describe_family_once(Family::of(d.addr)) {
                println!("tunvs: --no-routes: first of its family: {line}");
            }
            println!(
                "tunvs: --no-routes: add: {}",
                s.describe_reply(svc.proto(), d.addr, port)
            );
            return Ok(());
        }
        s.add_reply(svc.proto(), d.addr, port)
            .map_err(|e| format!("cannot install the reply rule for {}:{port}: {e}", d.addr))
    }

    fn dest_removed(&self, svc: &SvcId, d: &DestSpec) {
        if d.fwd != FwdMethod::Masq {
            return;
        }
        let port = Self::reply_port(svc, d);
        let mut s = self.steer();
        if self.apply {
            if let Err(e) = s.del_reply(svc.proto(), d.addr, port) {
                eprintln!(
                    "tunvs: cannot remove the reply rule for {}:{port}: {e}",
                    d.addr
                );
            }
        } else {
            println!(
                "tunvs: --no-routes: remove: {}",
                s.describe_reply_removal(svc.proto(), d.addr, port)
            );
        }
    }

    fn dest_warning(&self, d: &DestSpec) -> Option<String> {
        if d.fwd == FwdMethod::Tunnel && d.addr.is_ipv6() {
            return Some(format!(
                "tunvs: warning: tunnelling to IPv6 real servers is not available yet; \
                 connections scheduled to {} are dropped and counted as tunnel_ipv6_outer.",
                d.addr
            ));
        }
        let (ok, flag) = match d.fwd {
            FwdMethod::Masq => (self.methods.masq, "-m"),
            FwdMethod::Route => (self.methods.route, "-g"),
            FwdMethod::Tunnel => (self.methods.tunnel, "-i"),
            FwdMethod::Local => (false, "local"),
        };
        (!ok).then(|| {
            format!(
                "tunvs: warning: forwarding method {} ({flag}) is not available yet on {} (tun mode); \
                 connections scheduled to {} are dropped and counted as method_unavailable. Use -m (NAT), \
                 or run tunvs with --device tap for -g.",
                d.fwd.name(),
                self.dev,
                d.addr
            )
        })
    }
}

/// Block SIGINT/SIGTERM in this thread (and every thread spawned after),
/// so the main thread can wait for them with `sigwait`.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it,
    // and pthread_sigmask only reads it. No pointers escape.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

pub(crate) fn wait_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` was initialised by block_signals and `sig` is a valid
    // out-pointer for the duration of the call.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    sig
}

/// Read the `--config` rules file; reject it whole with the line and reason.
/// Every command is also applied to a scratch director first, so errors the
/// kernel would report (unknown scheduler, undefined service, duplicates)
/// reject the file before anything is created.
fn load_config(path: &PathBuf) -> Result<Vec<(usize, adm::Command)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let at = |line: usize, why: &str| format!("config {} line {line}: {why}", path.display());
    let cmds =
        adm::parse_rules(&text, &adm::Names::system()).map_err(|(line, why)| at(line, &why))?;
    let scratch = Director::new();
    for (line, cmd) in &cmds {
        adm::apply(cmd, &scratch).map_err(|why| at(*line, &why))?;
    }
    Ok(cmds)
}

/// Run the daemon until SIGTERM/SIGINT.
pub fn run(opts: RunOpts) -> Result<(), String> {
    let sigset = block_signals();
    // Validate the configuration before touching anything.
    let config = match &opts.config {
        Some(p) => load_config(p)?,
        None => Vec::new(),
    };
    // A second daemon on the same socket must not touch anything: its
    // steering setup would take over the running daemon's table.
    control::check_free(&opts.control)
        .map_err(|e| format!("cannot use control socket {}: {e}", opts.control.display()))?;
    if opts.kind == DeviceKind::Tap {
        return crate::tap_daemon::run(&opts, config, &sigset);
    }
    let mut dev = Device::open(&DeviceConfig {
        name: opts.dev.clone(),
        kind: opts.kind,
        queues: opts.queues.max(1),
        offload: opts.offload,
    })
    .map_err(|e| format!("cannot open device {}: {e}", opts.dev))?;
    let mut steering = Steering::new(dev.ifindex, &dev.name, opts.table, DEFAULT_PREF_BASE)
        .map_err(|e| format!("steering: {e}"))?;
    if opts.routes {
        steering
            .setup()
            .map_err(|e| format!("cannot set up steering for {}: {e}", dev.name))?;
    } else {
        println!("tunvs: --no-routes: nothing is installed; an operator must run:");
        for line in steering.describe_setup() {
            println!("  {line}");
        }
    }
    let methods = Methods::TUN;
    let hooks = Arc::new(SteerHooks {
        steering: Mutex::new(steering),
        apply: opts.routes,
        methods,
        dev: dev.name.clone(),
        fwmarks: fwmark::FwmarkDevices::default(),
        routes: Arc::new(TunnelRoutes::new()),
        tun_cfg: tunnel_route::host_config(),
    });
    let director = Arc::new(Director::new());
    director.set_hooks(hooks.clone());
    let registry: Registry = Arc::new(Mutex::new(Vec::new()));
    hooks.fwmarks.init(fwmark::Ctx {
        director: Arc::downgrade(&director),
        registry: registry.clone(),
        base_dev: dev.name.clone(),
        queues: opts.queues.max(1),
        offload: opts.offload,
        methods,
        routes: hooks.routes.clone(),
        tun_cfg: hooks.tun_cfg,
    });
    let result = serve(&opts, &mut dev, director, config, &hooks, registry, &sigset);
    // Teardown: mark devices, rules, routes and sysctls back as they were, then the socket.
    hooks.fwmarks.stop_all();
    if opts.routes {
        if let Err(e) = hooks.steer().teardown() {
            eprintln!("tunvs: teardown: {e}");
        }
    }
    let _ = std::fs::remove_file(&opts.control);
    result
}

fn serve(
    opts: &RunOpts,
    dev: &mut Device,
    director: Arc<Director>,
    config: Vec<(usize, adm::Command)>,
    hooks: &SteerHooks,
    registry: Registry,
    sigset: &libc::sigset_t,
) -> Result<(), String> {
    let (methods, routes) = (hooks.methods, hooks.routes.clone());
    apply_config(opts, &director, &config)?;
    let listener = control::bind(&opts.control)
        .map_err(|e| format!("cannot bind control socket {}: {e}", opts.control.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let queues = std::mem::take(&mut dev.queues);
    let nq = queues.len();
    let tun_cfg = hooks.tun_cfg;
    let workers = spawn_workers(
        "tunvs-q",
        queues,
        dev.vnet,
        || {
            Pipeline::new(director.clone(), methods)
                .with_tunnel(TunnelTx::new(routes.clone(), tun_cfg))
        },
        &stop,
        &registry,
    )?;
    {
        let director = director.clone();
        let stop = stop.clone();
        let routes = routes.clone();
        std::thread::Builder::new()
            .name("tunvs-timer".into())
            .spawn(move || housekeeping(&director, &routes, &stop))
            .map_err(|e| e.to_string())?;
    }
    {
        let c = Arc::new(Counters::default());
        registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c.clone());
        if let Err(e) = tunnel_icmp::spawn_listener(director.clone(), routes, c, stop.clone()) {
            eprintln!("tunvs: warning: ICMP errors about tunnel packets will not be handled: {e}");
        }
    }
    {
        let registry = registry.clone();
        spawn_control(listener, director.clone(), move || {
            let counters = registry.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Counters::report(&counters)
        })?;
    }
    println!(
        "tunvs: running on {} ({} queue{}, offload {}), control socket {}",
        dev.name,
        nq,
        if nq == 1 { "" } else { "s" },
        if dev.vnet { "on" } else { "off" },
        opts.control.display()
    );
    wait_then_stop(sigset, &stop, workers);
    Ok(())
}

/// Run the `--config` commands (already validated on a scratch director);
/// an error names the file and the line.
pub(crate) fn apply_config(
    opts: &RunOpts,
    director: &Director,
    config: &[(usize, adm::Command)],
) -> Result<(), String> {
    let file = opts
        .config
        .as_deref()
        .unwrap_or(std::path::Path::new(""))
        .display();
    for (line, cmd) in config {
        adm::apply(cmd, director).map_err(|e| format!("config {file} line {line}: {e}"))?;
    }
    Ok(())
}

/// Serve the control socket on its own thread: `tunvs adm` runs against the
/// director, `tunvs drops` prints the rows `drops` gives.
pub(crate) fn spawn_control(
    listener: std::os::unix::net::UnixListener,
    director: Arc<Director>,
    drops: impl Fn() -> Vec<(&'static str, u64)> + Send + 'static,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("tunvs-control".into())
        .spawn(move || {
            control::serve(listener, |req| match req {
                Request::Adm { prog, args, stdin } => {
                    adm::run(&prog, &args, &stdin, director.as_ref()).into()
                }
                Request::Drops => Response {
                    code: 0,
                    stdout: drops()
                        .into_iter()
                        .map(|(name, v)| format!("{name:<28} {v}\n"))
                        .collect(),
                    stderr: String::new(),
                },
            })
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the control thread: {e}"))
}

/// Wait for SIGTERM/SIGINT/SIGHUP, then stop the workers and wait for them.
pub(crate) fn wait_then_stop(
    sigset: &libc::sigset_t,
    stop: &AtomicBool,
    workers: Vec<JoinHandle<()>>,
) {
    let sig = wait_signal(sigset);
    println!("tunvs: signal {sig}, shutting down");
    stop.store(true, Relaxed);
    for w in workers {
        let _ = w.join();
    }
}

/// Start one worker thread per queue, each with its own pipeline.
fn spawn_workers(
    name: &str,
    queues: Vec<Queue>,
    vnet: bool,
    pipeline: impl Fn() -> Pipeline,
    stop: &Arc<AtomicBool>,
    registry: &Registry,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut workers = Vec::new();
    for (i, q) in queues.into_iter().enumerate() {
        let pipe = pipeline();
        registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pipe.counters());
        let stop = stop.clone();
        let h = std::thread::Builder::new()
            .name(format!("{name}{i}"))
            .spawn(move || worker(q, vnet, pipe, &stop))
            .map_err(|e| format!("cannot start a worker thread: {e}"))?;
        workers.push(h);
    }
    Ok(workers)
}

fn housekeeping(dir: &Director, routes: &TunnelRoutes, stop: &AtomicBool) {
    // Routes toward tunnel real servers (source, MTU) follow the host's.
    housekeeping_with(dir, stop, &|_| {
        tunnel_route::refresh(dir, routes);
    });
}

/// The once-a-second housekeeping loop, with `extra` work (tap mode: the
/// neighbour table's expiry; tun mode: tunnel routes) run on every tick.
pub(crate) fn housekeeping_with(dir: &Director, stop: &AtomicBool, extra: &dyn Fn(u64)) {
    let mut n: u64 = 0;
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_secs(1));
        n += 1;
        dir.tick(dir.now_ms());
        extra(dir.now_ms());
        if n.is_multiple_of(2) {
            dir.estimate_tick();
        }
    }
}

/// Tun mode: each frame goes through the IP pipeline; what results is
/// written back to the same queue.
struct TunFrames {
    pipe: Pipeline,
    vnet: bool,
}

impl TunFrames {
    fn write(&self, q: &Queue, f: &[u8]) {
        if q.write(f).is_err() {
            self.pipe.counters().count_drop(DropReason::WriteFailed);
        }
    }
}

impl FrameHandler for TunFrames {
    fn frame(&mut self, now_ms: u64, buf: &mut PacketBuf, q: &Queue) {
        match self.pipe.handle(now_ms, buf, self.vnet) {
            Verdict::Forward => self.write(q, buf.frame()),
            Verdict::Segments(n) => {
                for f in self
                    .pipe
                    .segments()
                    .into_iter()
                    .flat_map(|s| s.iter())
                    .take(n)
                {
                    self.write(q, f);
                }
            }
            Verdict::Reply(m) => self.write(q, &self.pipe.reply()[..m]),
            Verdict::Drop(_) => {}
        }
    }
}

/// One queue's worker thread (tun mode).
fn worker(q: Queue, vnet: bool, pipe: Pipeline, stop: &AtomicBool) {
    if let Err(e) = queue_loop::run(&q, BUF_LEN, stop, &mut TunFrames { pipe, vnet }) {
        eprintln!("tunvs: worker stopped: {e}");
    }
}
