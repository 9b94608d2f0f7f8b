//! The control socket between `tunvs adm` and the daemon: a Unix stream
//! socket (mode 0600), one request and one response per connection.
//!
//! Wire format (both ways): a u32 count of fields, then each field as a u32
//! length and its bytes (little-endian lengths, UTF-8 text). A request's first
//! field names it (`adm`, `drops`); `adm` carries the arguments and then the
//! standard input (for `-R`). A response is `[exit code, stdout, stderr]`.

use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/tunvs/tunvs.sock";
/// Environment variable naming the socket for `tunvs adm`.
pub const SOCKET_ENV: &str = "TUNVS_CONTROL";
/// Largest frame accepted (a big `-R` restore fits easily).
const MAX_FRAME: usize = 16 << 20;

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run an `ipvsadm` invocation.
    Adm {
        /// Program name for messages (`ipvsadm`).
        prog: String,
        /// Arguments.
        args: Vec<String>,
        /// Standard input (for `-R`).
        stdin: String,
    },
    /// Report the data path's counters (forwarded, drops by reason).
    Drops,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Exit code for the client.
    pub code: i32,
    /// Standard output text.
    pub stdout: String,
    /// Standard error text.
    pub stderr: String,
}

impl From<crate::adm::AdmOutput> for Response {
    fn from(o: crate::adm::AdmOutput) -> Self {
        Response {
            code: o.code,
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }
}

fn write_fields(w: &mut impl Write, fields: &[&str]) -> io::Result<()> {
    let mut buf = Vec::new();
    buf.extend_from_slice(&(fields.len() as u32).to_le_bytes());
    for f in fields {
        buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
        buf.extend_from_slice(f.as_bytes());
    }
    w.write_all(&buf)?;
    w.flush()
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn read_fields(r: &mut impl Read) -> io::Result<Vec<String>> {
    let n = read_u32(r)? as usize;
    if n > 65536 {
        return Err(bad("too many fields"));
    }
    let mut total = 0usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = read_u32(r)? as usize;
        total += len;
        if total > MAX_FRAME {
            return Err(bad("frame too large"));
        }
        let mut b = vec![0u8; len];
        r.read_exact(&mut b)?;
        out.push(String::from_utf8(b).map_err(|_| bad("field is not UTF-8"))?);
    }
    Ok(out)
}

impl Request {
    /// Encode.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Request::Adm { prog, args, stdin } => {
                let mut f: Vec<&str> = vec!["adm", prog, stdin];
                f.extend(args.iter().map(String::as_str));
                write_fields(w, &f)
            }
            Request::Drops => write_fields(w, &["drops"]),
        }
    }

    /// Decode.
    pub fn read_from(r: &mut impl Read) -> io::Result<Request> {
        let f = read_fields(r)?;
        match f.first().map(String::as_str) {
            Some("adm") if f.len() >= 3 => Ok(Request::Adm {
                prog: f[1].clone(),
                stdin: f[2].clone(),
                args: f[3..].to_vec(),
            }),
            Some("drops") => Ok(Request::Drops),
            _ => Err(bad("unknown request")),
        }
    }
}

impl Response {
    /// Encode.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        write_fields(w, &[&self.code.to_string(), &self.stdout, &self.stderr])
    }

    /// Decode.
    pub fn read_from(r: &mut impl Read) -> io::Result<Response> {
        let f = read_fields(r)?;
        if f.len() != 3 {
            return Err(bad("bad response"));
        }
        Ok(Response {
            code: f[0].parse().map_err(|_| bad("bad exit code"))?,
            stdout: f[1].clone(),
            stderr: f[2].clone(),
        })
    }
}

/// Send one request and wait (bounded) for the answer.
pub fn call(path: &Path, req: &Request) -> io::Result<Response> {
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    req.write_to(&mut s)?;
    Response::read_from(&mut s)
}

/// The socket path: explicit, else `$TUNVS_CONTROL`, else the default.
pub fn socket_path(explicit: Option<&str>) -> PathBuf {
    explicit
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Fail with `AddrInUse` if a daemon already answers on `path` (a stale
/// socket file is fine: [`bind`] replaces it).
pub fn check_free(path: &Path) -> io::Result<()> {
    if path.exists() && UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "a tunvs daemon is already listening on {} (use --control to pick another socket)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Bind the control socket: create its directory, refuse to steal the socket
/// of a running daemon, replace a stale one, and set mode 0600.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    check_free(path)?;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serve requests forever (run on its own thread). Each connection carries
/// one request; a broken client never stops the server.
pub fn serve(listener: UnixListener, handler: impl Fn(Request) -> Response) {
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let resp = match Request::read_from(&mut s) {
            Ok(req) => handler(req),
            Err(e) => Response {
                code: 2,
                stdout: String::new(),
                stderr: format!("tunvs: bad control request: {e}\n"),
            },
        };
        let _ = resp.write_to(&mut s);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn request_and_response_round_trip() {
        let req = Request::Adm {
            prog: "ipvsadm".into(),
            args: vec!["-A".into(), "-t".into(), "12.0.0.1:80".into()],
            stdin: "-C\n".into(),
        };
        let mut buf = Vec::new();
        req.write_to(&mut buf).unwrap();
        assert_eq!(Request::read_from(&mut &buf[..]).unwrap(), req);
        let resp = Response {
            code: 255,
            stdout: String::new(),
            stderr: "Service already exists\n".into(),
        };
        let mut buf = Vec::new();
        resp.write_to(&mut buf).unwrap();
        assert_eq!(Response::read_from(&mut &buf[..]).unwrap(), resp);
    }

    #[test]
    fn truncated_and_hostile_frames_are_errors() {
        let mut buf = Vec::new();
        Request::Drops.write_to(&mut buf).unwrap();
        for n in 0..buf.len() {
            assert!(Request::read_from(&mut &buf[..n]).is_err());
        }
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert!(Request::read_from(&mut &huge[..]).is_err());
    }

    #[test]
    fn socket_serves_a_request() {
        let dir = std::env::temp_dir().join(format!("tunvs-ctl-{}", std::process::id()));
        let path = dir.join("t.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::thread::spawn(move || {
            serve(l, |r| Response {
                code: 0,
                stdout: format!("{r:?}"),
                stderr: String::new(),
            })
        });
        let r = call(&path, &Request::Drops).unwrap();
        assert_eq!(r.stdout, "Drops");
        assert!(bind(&path).is_err(), "a live socket must not be stolen");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
