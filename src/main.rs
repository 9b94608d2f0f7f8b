//! The `tunvs` binary: `tunvs run` (the daemon), `tunvs adm` (ipvsadm),
//! `tunvs drops` (data-path counters), `tunvs realserver` (real-server
//! helpers). Invoked as `ipvsadm`, it is `tunvs adm`.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tunvs::control::{self, Request};
use tunvs::daemon::{self, RunOpts};
use tunvs::dataplane::device::DeviceKind;

#[derive(Parser, Debug)]
#[command(
    name = "tunvs",
    version,
    about = "Linux IPVS/LVS in user space, over a TUN/TAP device",
    after_help = "`tunvs adm ARGS…` takes ipvsadm's arguments (also as a link named `ipvsadm`)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DevArg {
    /// L3 device: NAT (and later tunnelling).
    Tun,
    /// L2 device: direct routing and NAT; needs --address.
    Tap,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon.
    #[command(after_help = RUN_HELP)]
    Run {
        /// Device mode.
        #[arg(long, value_enum, default_value = "tun")]
        device: DevArg,
        /// Device name (created if missing; a pre-created device is attached to).
        #[arg(long, default_value = "tunvs0")]
        dev: String,
        /// Number of device queues, one worker thread each.
        #[arg(long, default_value_t = 1)]
        queues: usize,
        /// Disable the virtio-net header and TSO/checksum offloads (debugging).
        #[arg(long)]
        no_offload: bool,
        /// Install no policy rules or sysctls; print what an operator must add.
        #[arg(long)]
        no_routes: bool,
        /// Control socket.
        #[arg(long, env = "TUNVS_CONTROL", default_value = control::DEFAULT_SOCKET)]
        control: PathBuf,
        /// Start with the services of this `ipvsadm -S` rules file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Routing table that steers service traffic into the device (tun mode).
        #[arg(long, default_value_t = tunvs::netcfg::steer::DEFAULT_TABLE)]
        table: u32,
        /// Tap mode: the director's own address on the LAN (the DIP), repeatable.
        #[arg(long = "address", value_name = "ADDR/PREFIX", value_parser = tunvs::tap_daemon::parse_cidr)]
        addresses: Vec<(IpAddr, u8)>,
        /// Tap mode: next hop for destinations beyond the --address prefixes (NAT clients).
        #[arg(long, value_name = "IP")]
        gateway: Option<IpAddr>,
        /// Tap mode: enslave the TAP device to this (existing) bridge.
        #[arg(long, value_name = "BR")]
        bridge: Option<String>,
        /// Tap mode: the director's MAC [default: derived from --dev and --address].
        #[arg(long, value_name = "MAC", value_parser = tunvs::tap_daemon::parse_mac)]
        mac: Option<[u8; 6]>,
    },
    /// The ipvsadm command line: `tunvs adm [--control PATH] -A -t VIP:80 -s rr`.
    #[command(disable_help_flag = true)]
    Adm {
        /// Arguments for ipvsadm (use `tunvs adm -h` for its help).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Data-path counters: packets forwarded, drops by reason.
    Drops {
        /// Control socket.
        #[arg(long, env = "TUNVS_CONTROL")]
        control: Option<String>,
    },
    /// Helpers for real servers: direct-routing settings, tunnel decapsulation.
    Realserver {
        #[command(subcommand)]
        cmd: RealserverCmd,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TunTypeArg {
    /// IP in IP (protocol 4).
    Ipip,
    /// Generic UDP Encapsulation (needs --port).
    Gue,
    /// GRE (protocol 47).
    Gre,
}

#[derive(Subcommand, Debug)]
enum RealserverCmd {
    /// Apply (or with --undo, reverse) the classic LVS-DR settings: the VIP
    /// on lo, arp_ignore=1, arp_announce=2, strict rp_filter made loose.
    #[command(after_help = tunvs::realserver::DR_HELP)]
    Dr {
        /// The virtual IP this real server serves.
        #[arg(long, value_name = "VIP")]
        vip: IpAddr,
        /// Device that holds the VIP.
        #[arg(long, default_value = "lo")]
        dev: String,
        /// Reverse exactly what an earlier `tunvs realserver dr --vip VIP` changed.
        #[arg(long)]
        undo: bool,
        /// Where the record of the changes is kept.
        #[arg(long, env = "TUNVS_STATE_DIR", default_value = tunvs::realserver::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Decapsulate the director's tunnel packets in user space (no ipip/gre/fou
    /// module needed) and hand them to the local stack through a TUN device that
    /// owns the VIP. Runs until SIGTERM/SIGINT; SIGUSR1 prints the counters.
    Tunnel {
        /// The virtual IP of the service.
        #[arg(long)]
        vip: std::net::IpAddr,
        /// Encapsulation, as the director's --tun-type.
        #[arg(long = "type", value_enum, default_value = "ipip")]
        kind: TunTypeArg,
        /// GUE: UDP port, as the director's --tun-port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Name of the TUN device to create (must not exist).
        #[arg(long, default_value = "tunvs-rs0")]
        dev: String,
        /// Accept encapsulated packets only from this address (the director's).
        #[arg(long)]
        director: Option<std::net::IpAddr>,
    },
}

const RUN_HELP: &str = "\
Device modes:
  --device tun (default)  an L3 device; tunvs installs one policy rule per
                          service (and per NAT real server) to steer that
                          traffic into it. Methods: NAT (-m).
  --device tap            an L2 device: tunvs is a host on the LAN with its
                          own MAC and the --address(es) (the DIPs), answering
                          ARP and ping for them and for every VIP. Enslave
                          the TAP to the real servers' bridge with --bridge
                          (its kernel side carries no address). No rules or
                          routes are installed: route each VIP to a DIP on
                          the router, or let the director answer ARP for it.
                          Methods: direct routing (-g, the ipvsadm default),
                          NAT (-m, next hop --gateway for clients beyond
                          the LAN) and tunnelling (-i, outer source the DIP
                          toward the real server, MTU the TAP link's).

Example (tap mode, direct routing):
  tunvs run --device tap --dev tunvs0 --bridge br0 --address 172.16.0.1/24
  ipvsadm -A -t 207.175.44.110:8080 -s rr
  ipvsadm -a -t 207.175.44.110:8080 -r 172.16.0.2:8080 -g
  # on each real server:
  tunvs realserver dr --vip 207.175.44.110";

/// `tunvs adm`: `--control PATH` (or `--control=PATH`) may lead the arguments.
fn adm(mut args: Vec<String>) -> ExitCode {
    let mut explicit = None;
    if let Some(first) = args.first() {
        if first == "--control" && args.len() >= 2 {
            explicit = Some(args[1].clone());
            args.drain(..2);
        } else if let Some(p) = first.strip_prefix("--control=") {
            explicit = Some(p.to_string());
            args.remove(0);
        }
    }
    // Parse locally first: help, version and usage errors need no daemon.
    let cmd = match tunvs::adm::parse("ipvsadm", &args, &tunvs::adm::Names::system()) {
        Ok(c) => c,
        Err(e) => return finish(e.code, "", &e.stderr()),
    };
    if matches!(
        cmd,
        tunvs::adm::Command::Help | tunvs::adm::Command::Version
    ) {
        let out = tunvs::adm::run("ipvsadm", &args, "", &tunvs::director::Director::new());
        return finish(out.code, &out.stdout, &out.stderr);
    }
    let mut stdin = String::new();
    if matches!(cmd, tunvs::adm::Command::Restore) {
        let _ = std::io::stdin().read_to_string(&mut stdin);
    }
    let path = control::socket_path(explicit.as_deref());
    let req = Request::Adm {
        prog: "ipvsadm".into(),
        args,
        stdin,
    };
    match control::call(&path, &req) {
        Ok(r) => finish(r.code, &r.stdout, &r.stderr),
        Err(e) => {
            let what = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    "the tunvs daemon is not running"
                }
                _ => "cannot reach the tunvs daemon",
            };
            eprintln!(
                "tunvs: {what} (control socket {}: {e}).\n\
                 Start it with `tunvs run` (as root, or on a pre-created device),\n\
                 or point at its socket with `tunvs adm --control PATH` or TUNVS_CONTROL=PATH.",
                path.display()
            );
            ExitCode::from(2)
        }
    }
}

fn finish(code: i32, out: &str, err: &str) -> ExitCode {
    let _ = std::io::stdout().write_all(out.as_bytes());
    let _ = std::io::stderr().write_all(err.as_bytes());
    ExitCode::from((code & 0xff) as u8)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("tunvs");
    if prog == "ipvsadm" {
        return adm(argv[1..].to_vec());
    }
    // `tunvs adm …` is handled before clap so ipvsadm's own -h/-v work.
    if argv.get(1).map(String::as_str) == Some("adm") {
        return adm(argv[2..].to_vec());
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            device,
            dev,
            queues,
            no_offload,
            no_routes,
            control,
            config,
            table,
            addresses,
            gateway,
            bridge,
            mac,
        } => {
            let tap = tunvs::tap_daemon::TapOpts {
                addresses,
                gateway,
                bridge,
                mac,
            };
            if matches!(device, DevArg::Tun) && tap != tunvs::tap_daemon::TapOpts::default() {
                eprintln!("tunvs: --address, --gateway, --bridge and --mac are for --device tap");
                return ExitCode::from(2);
            }
            let opts = RunOpts {
                kind: match device {
                    DevArg::Tun => DeviceKind::Tun,
                    DevArg::Tap => DeviceKind::Tap,
                },
                dev,
                queues,
                offload: !no_offload,
                routes: !no_routes,
                control,
                config,
                table,
                tap,
            };
            match daemon::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tunvs: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Adm { args } => adm(args),
        Cmd::Realserver {
            cmd:
                RealserverCmd::Dr {
                    vip,
                    dev,
                    undo,
                    state_dir,
                },
        } => {
            let r = if undo {
                tunvs::realserver::dr_undo(vip, &dev, &state_dir)
            } else {
                tunvs::realserver::dr_apply(vip, &dev, &state_dir)
            };
            match r {
                Ok(lines) => {
                    for l in lines {
                        println!("{l}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tunvs realserver dr: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Realserver {
            cmd:
                RealserverCmd::Tunnel {
                    vip,
                    kind,
                    port,
                    dev,
                    director,
                },
        } => {
            let opts = tunvs::realserver::tunnel::Opts {
                vip,
                kind: match kind {
                    TunTypeArg::Ipip => tunvs::service::TunType::Ipip,
                    TunTypeArg::Gue => tunvs::service::TunType::Gue,
                    TunTypeArg::Gre => tunvs::service::TunType::Gre,
                },
                port,
                dev,
                director,
            };
            match tunvs::realserver::tunnel::run(&opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tunvs realserver: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Drops { control } => {
            let path = control::socket_path(control.as_deref());
            match control::call(&path, &Request::Drops) {
                Ok(r) => finish(r.code, &r.stdout, &r.stderr),
                Err(e) => {
                    eprintln!(
                        "tunvs: cannot reach the tunvs daemon at {}: {e}",
                        path.display()
                    );
                    ExitCode::from(2)
                }
            }
        }
    }
}
