//! The `tunvs` binary: `tunvs run` (the daemon), `tunvs adm` (ipvsadm),
//! `tunvs drops` (data-path counters), `tunvs realserver` (real-server helpers).
//! Invoked as `ipvsadm`, it is `tunvs adm`.

use std::io::{Read, Write};
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
    /// L2 device: direct routing (coming).
    Tap,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the daemon.
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
        /// Routing table that steers service traffic into the device.
        #[arg(long, default_value_t = tunvs::netcfg::steer::DEFAULT_TABLE)]
        table: u32,
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
    /// Helpers for real servers.
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
            eprintln!(
                "tunvs: cannot reach the tunvs daemon at {}: {e}\n\
                 Is it running? Start it with `tunvs run` (as root, or on a pre-created device),\n\
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
        } => {
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
                    TunTypeArg::Ipip => tunvs::realserver::tunnel::Kind::Ipip,
                    TunTypeArg::Gue => tunvs::realserver::tunnel::Kind::Gue,
                    TunTypeArg::Gre => tunvs::realserver::tunnel::Kind::Gre,
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
