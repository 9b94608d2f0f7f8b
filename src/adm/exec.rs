//! Executing one `ipvsadm` invocation against an [`Ipvs`]: listings, kernel
//! operations with ipvsadm's error messages (spec §4.12), `-R` restore
//! (§4.11), and the rules-file loader the daemon's `--config` uses.

use super::api::{Ipvs, IpvsError};
use super::format::{self, VERSION_LINE};
use super::names::Names;
use super::parse::{parse, Command, ListWhat};

/// What one invocation printed and its exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmOutput {
    /// Text for stdout.
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
    /// Process exit code (0, 1, 2 or 255).
    pub code: i32,
}

/// Printed for `--start-daemon`: tunvs has no connection sync daemon
/// (decision: a clear message, exit 255 like any failed kernel operation).
pub const NO_SYNC_DAEMON: &str = "Connection sync daemon is not supported by tunvs";

/// The kernel operation an error came from (libipvs `ipvs_func`), which
/// selects the `ipvs_strerror` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AddService,
    EditService,
    DelService,
    Zero,
    AddDest,
    EditDest,
    DelDest,
    Other,
}

/// libipvs `ipvs_strerror` (spec §4.12): per-operation messages first, then
/// the generic ones, then glibc's `strerror`.
fn strerror(op: Op, e: &IpvsError) -> String {
    use IpvsError as E;
    let specific = match (op, e) {
        (Op::AddService, E::Exists) => Some("Service already exists"),
        (Op::AddService | Op::EditService, E::NotFound) => {
            Some("Scheduler or persistence engine not found")
        }
        (Op::EditService | Op::DelService | Op::Zero, E::NoService) => Some("No such service"),
        (Op::AddDest | Op::EditDest | Op::DelDest, E::NoService) => Some("Service not defined"),
        (Op::AddDest, E::Exists) => Some("Destination already exists"),
        (Op::EditDest | Op::DelDest, E::NotFound) => Some("No such destination"),
        _ => None,
    };
    if let Some(m) = specific {
        return m.to_string();
    }
    match e {
        E::Permission => "Permission denied (you must be root)",
        E::Invalid => "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        E::NotSupported => "Operation not supported with IPv6",
        E::AfNotSupported => "Operation not supported with specified address family",
        E::Exists => "File exists",
        E::NotFound => "No such file or directory",
        E::NoService => "No such process",
        E::Range => "Numerical result out of range",
        E::Other(s) => return s.clone(),
    }
    .to_string()
}

/// Apply one table-changing command. Errors carry ipvsadm's message.
/// Commands that only print (`-L`, `-S`, `-h`, `-v`, `-R`) are refused.
pub fn apply(cmd: &Command, ipvs: &dyn Ipvs) -> Result<(), String> {
    let (op, r) = match cmd {
        Command::AddService(s) => (Op::AddService, ipvs.add_service(s)),
        Command::EditService(s) => (Op::EditService, ipvs.edit_service(s)),
        Command::DelService(id) => (Op::DelService, ipvs.del_service(id)),
        Command::Flush => (Op::Other, ipvs.flush()),
        Command::AddDest(id, d) => (Op::AddDest, ipvs.add_dest(id, d)),
        Command::EditDest(id, d) => (Op::EditDest, ipvs.edit_dest(id, d)),
        Command::DelDest(id, a, p) => (Op::DelDest, ipvs.del_dest(id, *a, *p)),
        Command::Zero(id) => (Op::Zero, ipvs.zero(id.as_ref())),
        Command::SetTimeouts(t) => (Op::Other, ipvs.set_timeouts(*t)),
        Command::StartDaemon(_) => return Err(NO_SYNC_DAEMON.to_string()),
        // Truthful: no sync daemon ever runs in tunvs (ESRCH for stop-daemon).
        Command::StopDaemon(_) => return Err("No daemon is running".to_string()),
        Command::List(_) | Command::Save { .. } | Command::Help | Command::Version => {
            return Err("not a table operation (it only prints)".to_string())
        }
        Command::Restore => return Err("not a table operation (-R reads commands)".to_string()),
    };
    r.map_err(|e| strerror(op, &e))
}

/// Whether the caller must stop after this command (ipvsadm `exit()`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Execute one parsed command (not `-R`), appending to `out` and setting
/// `out.code` to this command's status.
fn execute(prog: &str, cmd: &Command, ipvs: &dyn Ipvs, names: &Names, out: &mut AdmOutput) -> Flow {
    out.code = 0;
    match cmd {
        Command::Help => {
            out.stdout.push_str(&format::usage(prog));
            Flow::Stop
        }
        Command::Version => {
            out.stdout.push_str(VERSION_LINE);
            out.stdout.push('\n');
            Flow::Stop
        }
        Command::List(l) => {
            let f = &l.format;
            match &l.what {
                ListWhat::All => out.stdout.push_str(&format::list_all(
                    &ipvs.services(),
                    ipvs.conn_tab_size(),
                    f,
                    names,
                )),
                ListWhat::Service(id) => {
                    match ipvs.services().into_iter().find(|s| s.spec.id == *id) {
                        Some(s) => out.stdout.push_str(&format::list_service(&s, f, names)),
                        None => {
                            // list_service: ipvs_get_service fails with ESRCH, exit(1).
                            out.stderr.push_str("No such service\n");
                            out.code = 1;
                            return Flow::Stop;
                        }
                    }
                }
                ListWhat::Conns => {
                    out.stdout
                        .push_str(&format::list_conns(&ipvs.conns(), f, names))
                }
                ListWhat::Timeout => out.stdout.push_str(&format::list_timeout(ipvs.timeouts())),
                // No sync daemon runs in tunvs, so there is nothing to print.
                ListWhat::Daemon => {}
            }
            Flow::Continue
        }
        Command::Save { numeric } => {
            out.stdout
                .push_str(&format::save(&ipvs.services(), *numeric, names));
            Flow::Continue
        }
        Command::Restore => {
            // -R inside -R: tryhelp_exit (spec §4.11).
            out.stderr.push_str(&tryhelp(prog));
            out.code = 255;
            Flow::Stop
        }
        _ => {
            match apply(cmd, ipvs) {
                Ok(()) => {
                    if let Command::AddDest(id, d) | Command::EditDest(id, d) = cmd {
                        if let Some(w) = ipvs.dest_warning(id, d) {
                            out.stderr.push_str(&w);
                            if !w.ends_with('\n') {
                                out.stderr.push('\n');
                            }
                        }
                    }
                }
                Err(m) => {
                    out.stderr.push_str(&m);
                    out.stderr.push('\n');
                    out.code = 255;
                }
            }
            Flow::Continue
        }
    }
}

fn tryhelp(prog: &str) -> String {
    format!("Try `{prog} -h' or '{prog} --help' for more information.\n")
}

/// `config_stream_read`: split text into lines of tokens. Tokens are separated
/// by space, tab and CR; `#` starts a comment; tokens `ipvsadm` are dropped;
/// lines without tokens are skipped. Returns (1-based line number, tokens).
fn tokenize(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let toks: Vec<String> = line
            .split([' ', '\t', '\r'])
            .filter(|t| !t.is_empty() && *t != "ipvsadm")
            .map(str::to_string)
            .collect();
        if !toks.is_empty() {
            out.push((i + 1, toks));
        }
    }
    out
}

/// `-R`: every line is an invocation. Deliberate improvement over 1.31:
/// all lines are parsed and validated first; if one fails, nothing is
/// executed and `line N: <message>` is reported with that line's exit code.
/// Otherwise lines run in order, kernel-operation errors are printed and
/// the restore goes on, and the exit status is the last line's (spec §4.11).
fn restore(prog: &str, stdin: &str, ipvs: &dyn Ipvs, names: &Names, out: &mut AdmOutput) {
    let mut cmds = Vec::new();
    for (n, toks) in tokenize(stdin) {
        match parse(prog, &toks, names) {
            Ok(Command::Restore) => {
                out.stderr = format!("line {n}: {}", tryhelp(prog));
                out.code = 255;
                return;
            }
            Ok(c) => cmds.push(c),
            Err(e) => {
                out.stderr = format!("line {n}: {}", e.stderr());
                out.code = e.code;
                return;
            }
        }
    }
    out.code = 0;
    for c in &cmds {
        if execute(prog, c, ipvs, names, out) == Flow::Stop {
            return;
        }
    }
}

/// Run one `ipvsadm` invocation (`args` without the program name; `prog`
/// is the name used in messages), reading `-R` input from `stdin`, with the
/// system name database (`/etc/hosts`, `/etc/services`).
pub fn run(prog: &str, args: &[String], stdin: &str, ipvs: &dyn Ipvs) -> AdmOutput {
    run_with_names(prog, args, stdin, ipvs, &Names::system())
}

/// [`run`] with an explicit name database (deterministic tests).
pub fn run_with_names(
    prog: &str,
    args: &[String],
    stdin: &str,
    ipvs: &dyn Ipvs,
    names: &Names,
) -> AdmOutput {
    let mut out = AdmOutput::default();
    match parse(prog, args, names) {
        Err(e) => {
            out.stderr = e.stderr();
            out.code = e.code;
        }
        Ok(Command::Restore) => restore(prog, stdin, ipvs, names, &mut out),
        Ok(cmd) => {
            execute(prog, &cmd, ipvs, names, &mut out);
        }
    }
    out
}

/// Why a listing/help/daemon command is refused in a rules file.
const NOT_A_RULE: &str = "is not a rule (a rules file holds only -A -E -D -C -a -e -d -Z --set)";

/// True for commands a rules file may contain.
fn is_rule(c: &Command) -> bool {
    matches!(
        c,
        Command::AddService(_)
            | Command::EditService(_)
            | Command::DelService(_)
            | Command::Flush
            | Command::AddDest(..)
            | Command::EditDest(..)
            | Command::DelDest(..)
            | Command::Zero(_)
            | Command::SetTimeouts(_)
    )
}

/// Parse an `ipvsadm -S` rules file (the daemon's `--config`), with the `-R`
/// tokenisation; each command comes with its 1-based line number (so later
/// errors, e.g. from a dry run, can name the line too). The whole file is
/// rejected on the first bad line: returns (line number, reason). Only table
/// commands (`-A -E -D -C -a -e -d -Z --set`) are accepted; kernel-level
/// consistency (e.g. `-a` for an undefined service) is left to [`apply`].
pub fn parse_rules(text: &str, names: &Names) -> Result<Vec<(usize, Command)>, (usize, String)> {
    let mut cmds = Vec::new();
    for (n, toks) in tokenize(text) {
        match parse("ipvsadm", &toks, names) {
            Ok(c) if is_rule(&c) => cmds.push((n, c)),
            Ok(_) => return Err((n, format!("`{}' {NOT_A_RULE}", toks[0]))),
            Err(e) => return Err((n, e.message)),
        }
    }
    Ok(cmds)
}
