//! rtnetlink plumbing: the socket, message building and attribute parsing.
//!
//! Wire format (uapi `linux/netlink.h`, `linux/rtnetlink.h`), host byte order:
//! `struct nlmsghdr { u32 len; u16 type; u16 flags; u32 seq; u32 pid; }`
//! followed by a family header (`ifinfomsg`, `rtmsg`, `fib_rule_hdr`, …)
//! and attributes `struct rtattr { u16 len; u16 type; }` + payload, each
//! padded to 4 bytes. Every request carries a fresh sequence number and asks
//! for an ACK (or is a dump ending in `NLMSG_DONE`); a negative errno in the
//! ACK becomes an [`io::Error`] whose kind follows the errno, with the
//! kernel's extended-ACK message appended when it sends one.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `RTM_NEWLINK`: create or change a link.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_GETLINK`: query a link.
pub const RTM_GETLINK: u16 = 18;
/// `RTM_NEWADDR`: add an address.
pub const RTM_NEWADDR: u16 = 20;
/// `RTM_DELADDR`: delete an address.
pub const RTM_DELADDR: u16 = 21;
/// `RTM_NEWROUTE`: add or replace a route.
pub const RTM_NEWROUTE: u16 = 24;
/// `RTM_DELROUTE`: delete a route.
pub const RTM_DELROUTE: u16 = 25;
/// `RTM_GETROUTE`: query or dump routes.
pub const RTM_GETROUTE: u16 = 26;
/// `RTM_NEWRULE`: add a FIB rule.
pub const RTM_NEWRULE: u16 = 32;
/// `RTM_DELRULE`: delete a FIB rule.
pub const RTM_DELRULE: u16 = 33;
/// `RTM_GETRULE`: dump FIB rules.
pub const RTM_GETRULE: u16 = 34;

/// Message type to ignore.
const NLMSG_NOOP: u16 = 1;
/// Message type of an ACK or error.
pub const NLMSG_ERROR: u16 = 2;
/// Message type ending a dump.
pub const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
/// `NLM_F_MULTI`: part of a multipart reply.
pub const NLM_F_MULTI: u16 = libc::NLM_F_MULTI as u16;
/// `NLM_F_ACK`: ask for an ACK.
pub const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
/// `NLM_F_DUMP_INTR`: the dump was inconsistent (the table changed).
pub const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
/// `NLM_F_REPLACE`: replace an existing object.
pub const NLM_F_REPLACE: u16 = libc::NLM_F_REPLACE as u16;
/// `NLM_F_EXCL`: fail if the object exists.
pub const NLM_F_EXCL: u16 = libc::NLM_F_EXCL as u16;
/// `NLM_F_CREATE`: create if missing.
pub const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
/// On an error message: the request was not echoed in full.
const NLM_F_CAPPED: u16 = libc::NLM_F_CAPPED as u16;
/// On an error message: extended-ACK attributes follow.
const NLM_F_ACK_TLVS: u16 = libc::NLM_F_ACK_TLVS as u16;
/// Extended-ACK attribute: a human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `setsockopt(SOL_NETLINK)` options (uapi values).
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Length of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Length of `struct rtattr`.
const RTA_HDRLEN: usize = 4;

/// How long a request may wait for its answer.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// Rounds up to the 4-byte netlink alignment.
pub const fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message under construction.
#[derive(Debug, Clone)]
pub struct MsgBuf {
    buf: Vec<u8>,
}

impl MsgBuf {
    /// Starts a message; the length is filled in by [`MsgBuf::finish`].
    pub fn new(msg_type: u16, flags: u16, seq: u32) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&msg_type.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid 0: addressed to the kernel
        MsgBuf { buf }
    }

    /// Appends raw bytes (a family header), padded to 4 bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.pad();
    }

    /// Appends one attribute.
    pub fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = (RTA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// Appends a `u8` attribute.
    pub fn attr_u8(&mut self, ty: u16, v: u8) {
        self.attr(ty, &[v]);
    }

    /// Appends a `u32` attribute (host byte order).
    pub fn attr_u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    /// Appends a NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    /// Sets the length and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }
}

/// Iterates over the attributes in `buf` as `(type, payload)`; stops at the
/// first malformed one.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if off + RTA_HDRLEN > buf.len() {
            return None;
        }
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & 0x3fff;
        if len < RTA_HDRLEN || off + len > buf.len() {
            return None;
        }
        let payload = &buf[off + RTA_HDRLEN..off + len];
        off += align(len);
        Some((ty, payload))
    })
}

/// Reads a host-order `u32` from an attribute payload.
pub fn get_u32(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

/// Reads a host-order `u16` from `p` at `off`.
pub fn get_u16(p: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(p.get(off..off + 2)?.try_into().ok()?))
}

/// A NUL-terminated string attribute.
pub fn get_str(p: &[u8]) -> String {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

/// A kernel error answer: the errno, what we asked, and the kernel's
/// extended-ACK text if any. Carried inside an [`io::Error`]; get the errno
/// back with [`crate::netcfg::errno`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    /// Positive errno (`EEXIST`, `ENOENT`, …).
    pub errno: i32,
    /// The request, in words (`add rule …`).
    pub op: String,
    /// The kernel's extended-ACK message.
    pub ext: Option<String>,
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: {os}", self.op)?;
        if let Some(ext) = &self.ext {
            write!(f, " ({ext})")?;
        }
        Ok(())
    }
}

impl std::error::Error for NlError {}

impl NlError {
    /// Wraps into an `io::Error` whose kind follows the errno.
    pub fn into_io(self) -> io::Error {
        let kind = io::Error::from_raw_os_error(self.errno).kind();
        io::Error::new(kind, self)
    }
}

/// One reply message: its type and the bytes after the `nlmsghdr`.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `nlmsg_type`.
    pub msg_type: u16,
    /// The payload (family header and attributes).
    pub payload: Vec<u8>,
}

/// An rtnetlink socket (`NETLINK_ROUTE`), bound to the network namespace of
/// the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    rbuf: Vec<u8>,
}

impl Netlink {
    /// Opens and binds the socket; no privilege is needed until a request
    /// changes something.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `sa` is a valid sockaddr_nl and we pass its exact size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // Best effort: short error echoes, and the kernel's error text.
        for opt in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
            let _ = setsockopt(&fd, libc::SOL_NETLINK, opt, &1 as &libc::c_int);
        }
        let tv = libc::timeval {
            tv_sec: RECV_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;

        // Start from a time-derived sequence so that answers to an earlier
        // socket with the same port id cannot be mistaken for ours.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(Netlink {
            fd,
            seq,
            rbuf: vec![0; 32 * 1024],
        })
    }

    /// Sends `msg` (built with any sequence number; it is replaced by a fresh
    /// one) and collects the answer: the data messages of a dump up to
    /// `NLMSG_DONE`, or of a request up to its ACK. `op` names the request in
    /// error messages.
    pub fn exec(&mut self, op: &str, mut msg: Vec<u8>) -> io::Result<Vec<Reply>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        let flags = u16::from_ne_bytes([msg[6], msg[7]]);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP && flags & NLM_F_ACK == 0;
        self.send(&msg)?;

        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.recv()?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let b = &self.rbuf[off..n];
                let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
                if len < NLMSG_HDRLEN || len > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{op}: malformed netlink answer"),
                    ));
                }
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let mflags = u16::from_ne_bytes([b[6], b[7]]);
                let mseq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
                let payload = &b[NLMSG_HDRLEN..len];
                off += align(len);
                if mseq != seq {
                    continue; // a late answer to an earlier request
                }
                match ty {
                    NLMSG_ERROR => {
                        let err = payload
                            .get(..4)
                            .map(|e| i32::from_ne_bytes(e.try_into().unwrap()))
                            .unwrap_or(-libc::EPROTO);
                        if err == 0 {
                            return Ok(out); // the ACK
                        }
                        return Err(NlError {
                            errno: -err,
                            op: op.to_string(),
                            ext: ext_ack(payload, mflags),
                        }
                        .into_io());
                    }
                    NLMSG_DONE => {
                        let err = payload
                            .get(..4)
                            .map(|e| i32::from_ne_bytes(e.try_into().unwrap()))
                            .unwrap_or(0);
                        if err < 0 {
                            return Err(NlError {
                                errno: -err,
                                op: op.to_string(),
                                ext: None,
                            }
                            .into_io());
                        }
                        if interrupted {
                            return Err(io::Error::new(
                                io::ErrorKind::Interrupted,
                                format!("{op}: dump interrupted by a concurrent change"),
                            ));
                        }
                        return Ok(out);
                    }
                    NLMSG_NOOP => {}
                    _ => {
                        interrupted |= mflags & NLM_F_DUMP_INTR != 0;
                        out.push(Reply {
                            msg_type: ty,
                            payload: payload.to_vec(),
                        });
                        if !dump && mflags & NLM_F_MULTI == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }

    /// Runs a request that only needs its ACK.
    pub fn ack(&mut self, op: &str, msg: Vec<u8>) -> io::Result<()> {
        self.exec(op, msg).map(drop)
    }

    /// Runs a dump, retrying (a few times) when the kernel reports that the
    /// table changed while it was being dumped.
    pub fn dump(&mut self, op: &str, msg: Vec<u8>) -> io::Result<Vec<Reply>> {
        let mut tries = 0;
        loop {
            match self.exec(op, msg.clone()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < 3 => tries += 1,
                r => return r,
            }
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data; all-zero (pid 0) addresses
        // the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `msg` and `sa` are valid for the given lengths during the
        // call; the descriptor is ours.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram into `rbuf`, growing it when the datagram is
    /// larger; returns its length.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // Peek with MSG_TRUNC to learn the real size first.
            // SAFETY: `rbuf` is valid and writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.rbuf.as_mut_ptr().cast(),
                    self.rbuf.len(),
                    libc::MSG_PEEK | libc::MSG_TRUNC,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the kernel on the netlink socket",
                    ));
                }
                return Err(e);
            }
            if n as usize > self.rbuf.len() {
                self.rbuf.resize(n as usize, 0);
            }
            // SAFETY: as above; the datagram now fits.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.rbuf.as_mut_ptr().cast(),
                    self.rbuf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(n as usize);
        }
    }
}

/// The extended-ACK message in an error answer, if the kernel sent one.
fn ext_ack(payload: &[u8], flags: u16) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // struct nlmsgerr { int error; struct nlmsghdr msg; } + (request payload
    // unless capped) + attributes.
    let orig_len = get_u32(payload.get(4..8)?)? as usize;
    let off = 4 + if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        align(orig_len)
    };
    attrs(payload.get(off..)?)
        .find(|&(ty, _)| ty == NLMSGERR_ATTR_MSG)
        .map(|(_, p)| get_str(p))
        .filter(|s| !s.is_empty())
}

/// `setsockopt` with a typed value.
fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live value of exactly size_of::<T>() bytes.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_parsed_back() {
        let mut m = MsgBuf::new(RTM_NEWRULE, NLM_F_REQUEST, 7);
        m.push(&[1, 2, 3]);
        m.attr_u8(22, 6);
        m.attr_str(3, "eth0");
        m.attr_u32(6, 100);
        let b = m.finish();
        assert_eq!(b.len(), 16 + 4 + 8 + 12 + 8);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()),
            b.len() as u32
        );
        let got: Vec<_> = attrs(&b[20..]).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (22, &[6u8][..]));
        assert_eq!(get_str(got[1].1), "eth0");
        assert_eq!(get_u32(got[2].1), Some(100));
    }

    #[test]
    fn ext_ack_text_is_found_in_capped_errors() {
        // nlmsgerr: error, then the echoed header (16 bytes), then TLVs.
        let mut p = Vec::new();
        p.extend_from_slice(&(-17i32).to_ne_bytes());
        p.extend_from_slice(&36u32.to_ne_bytes());
        p.extend_from_slice(&[0; 12]);
        let mut m = MsgBuf::new(0, 0, 0);
        m.attr_str(NLMSGERR_ATTR_MSG, "FIB rule already exists");
        p.extend_from_slice(&m.finish()[NLMSG_HDRLEN..]);
        assert_eq!(
            ext_ack(&p, NLM_F_CAPPED | NLM_F_ACK_TLVS).as_deref(),
            Some("FIB rule already exists")
        );
        assert_eq!(ext_ack(&p, NLM_F_CAPPED), None);
    }

    #[test]
    fn errors_keep_their_errno() {
        let e = NlError {
            errno: libc::EEXIST,
            op: "add rule".into(),
            ext: None,
        }
        .into_io();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(crate::netcfg::errno(&e), Some(libc::EEXIST));
        assert!(e.to_string().starts_with("add rule: File exists"));
    }
}
