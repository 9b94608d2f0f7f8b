//! Opening the TUN/TAP device: a small raw-ioctl module over `/dev/net/tun`.
//!
//! Why not the `tun-tap` crate: it hard-codes the `TUNSETIFF` flags in a C
//! shim, so it can neither open more than one queue (`IFF_MULTI_QUEUE`) nor
//! ask for the virtio-net header (`IFF_VNET_HDR`) and the offloads
//! (`TUNSETOFFLOAD`) that make the data path 6–10× faster (see
//! `shared/design/crates-and-tun.md` §2, §6). The whole job is four ioctls, so
//! a crate (tun-rs would do it) buys little; doing it here keeps the error
//! messages specific to how tunvs is deployed.
//!
//! What [`Device::open`] does, per queue:
//! 1. `open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)`;
//! 2. `ioctl(TUNSETIFF)` with `IFF_TUN | IFF_NO_PI` (or `IFF_TAP | IFF_NO_PI`),
//!    `| IFF_MULTI_QUEUE` (always: one queue is a valid multi-queue device),
//!    `| IFF_VNET_HDR` when offload is on. With one queue and a pre-created
//!    single-queue device, it falls back to attaching without
//!    `IFF_MULTI_QUEUE`.
//!
//! Then, once for the device: `TUNSETVNETHDRSZ` = 10 when offload is on, and
//! `TUNSETOFFLOAD` = `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6` (or 0: a
//! persistent device keeps its offload mask from the previous user, and
//! without the virtio header a GSO packet could not be described). Finally
//! `TUNGETIFF` checks that the device really has the flags we rely on: a
//! multi-queue device that another process already holds keeps the flags of
//! its first user.
//!
//! Creating a device needs CAP_NET_ADMIN. Attaching to an existing persistent
//! device does not, if the caller is its owner (or in its group):
//! `ip tuntap add dev tunvs0 mode tun user tunvs multi_queue vnet_hdr`
//! (`/dev/net/tun` must be readable and writable by that user; it usually is
//! mode 0666).

use std::ffi::CString;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// Size of the virtio-net header (`struct virtio_net_hdr`).
pub use crate::packet::vnet::VNET_HDR_LEN;

/// The offloads tunvs asks for: checksum offload plus TCP segmentation for
/// IPv4 and IPv6 (the kernel then hands us GSO super-packets of up to 64 KiB).
pub const OFFLOAD_FLAGS: u32 = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

/// The kernel's limit on queues per device (`MAX_TAP_QUEUES`).
pub const MAX_QUEUES: usize = 256;

/// The control device every queue is opened from.
const TUN_PATH: &str = "/dev/net/tun";

/// Longest interface name (`IFNAMSIZ` - 1 for the NUL).
const MAX_NAME_LEN: usize = libc::IFNAMSIZ - 1;

/// Layer of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// L3 point-to-point device: packets start with the IP header.
    Tun,
    /// L2 Ethernet device: packets start with the Ethernet header.
    Tap,
}

impl DeviceKind {
    /// The word `ip tuntap` uses for this kind (`tun`, `tap`).
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Tun => "tun",
            DeviceKind::Tap => "tap",
        }
    }

    /// The `TUNSETIFF` type flag.
    fn flag(self) -> libc::c_int {
        match self {
            DeviceKind::Tun => libc::IFF_TUN,
            DeviceKind::Tap => libc::IFF_TAP,
        }
    }
}

/// What to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Interface name (at most 15 bytes); a `%d` in it lets the kernel pick
    /// the number when the device is created.
    pub name: String,
    /// TUN (L3) or TAP (L2).
    pub kind: DeviceKind,
    /// Number of queues (file descriptors), 1 to [`MAX_QUEUES`].
    pub queues: usize,
    /// Open with the virtio-net header and TSO/checksum offload.
    pub offload: bool,
}

impl DeviceConfig {
    /// One queue with offload on: the defaults of `tunvs run`.
    pub fn new(name: &str, kind: DeviceKind) -> Self {
        DeviceConfig {
            name: name.to_string(),
            kind,
            queues: 1,
            offload: true,
        }
    }
}

/// One queue of the device: a non-blocking file descriptor that reads and
/// writes whole packets (preceded by the virtio header when offload is on).
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
}

impl Queue {
    /// Reads one packet into `buf`; `WouldBlock` when the queue is empty.
    ///
    /// A packet longer than `buf` is truncated by the kernel, so with offload
    /// the buffer must hold 64 KiB + [`VNET_HDR_LEN`].
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for
        // the duration of the call, and `self.fd` is an open descriptor we own.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes one packet (the kernel takes it whole or not at all).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a valid, readable region of `buf.len()` bytes for
        // the duration of the call, and `self.fd` is an open descriptor we own.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Waits until the queue has a packet to read (`Ok(false)` on timeout;
    /// `None` waits forever). For tests and the control path; workers use mio.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_millis().min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: `pfd` is one valid pollfd that lives across the call, and
        // we pass a count of 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n > 0)
        }
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An open TUN/TAP device: its queues and what they carry.
#[derive(Debug)]
pub struct Device {
    /// Interface name as the kernel knows it (a `%d` template is resolved).
    pub name: String,
    /// Interface index, for routes and rules.
    pub ifindex: u32,
    /// TUN or TAP.
    pub kind: DeviceKind,
    /// The queues, in attach order; a worker thread takes one each.
    pub queues: Vec<Queue>,
    /// Every packet read or written starts with a [`VNET_HDR_LEN`]-byte
    /// `virtio_net_hdr`.
    pub vnet: bool,
}

impl Device {
    /// Creates the device (or attaches to an existing one of that name) and
    /// opens `cfg.queues` queues; see the module documentation.
    pub fn open(cfg: &DeviceConfig) -> io::Result<Device> {
        validate(cfg)?;
        let base =
            cfg.kind.flag() | libc::IFF_NO_PI | if cfg.offload { libc::IFF_VNET_HDR } else { 0 };

        let mut flags = base | libc::IFF_MULTI_QUEUE;
        let (first, name) = match attach(&cfg.name, flags) {
            Ok(q) => q,
            // A pre-created single-queue device: good enough for one queue.
            Err(e)
                if cfg.queues == 1
                    && e.raw_os_error() == Some(libc::EINVAL)
                    && ifindex_of(&cfg.name).is_some() =>
            {
                flags = base;
                attach(&cfg.name, flags).map_err(|e| explain(e, cfg, flags))?
            }
            Err(e) => return Err(explain(e, cfg, flags)),
        };
        let mut queues = Vec::with_capacity(cfg.queues);
        queues.push(first);
        for _ in 1..cfg.queues {
            let (q, _) = attach(&name, flags).map_err(|e| explain(e, cfg, flags))?;
            queues.push(q);
        }

        // Device-wide settings, through the first queue.
        let fd = queues[0].as_raw_fd();
        if cfg.offload {
            let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer,
            // which points to a live local.
            let r = unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ, &size) };
            check(r).map_err(|e| ctx(e, format_args!("TUNSETVNETHDRSZ on {name}")))?;
        }
        let mask: libc::c_ulong = if cfg.offload { OFFLOAD_FLAGS.into() } else { 0 };
        // SAFETY: TUNSETOFFLOAD takes the mask by value (no pointer), and `fd`
        // is an open tun descriptor.
        let r = unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, mask) };
        check(r).map_err(|e| ctx(e, format_args!("TUNSETOFFLOAD {mask:#x} on {name}")))?;

        // The flags we rely on must really be in effect: the first process to
        // attach to a multi-queue device sets them for everyone.
        let actual = get_flags(fd).map_err(|e| ctx(e, format_args!("TUNGETIFF on {name}")))?;
        let must = libc::IFF_NO_PI | libc::IFF_VNET_HDR | cfg.kind.flag();
        if actual & must != flags & must {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "device {name} is already in use with flags {} but tunvs needs {}: \
                     stop the other user of the device (or recreate it with \
                     `ip tuntap add dev {name} mode {} user <USER> multi_queue{}`)",
                    describe_flags(actual),
                    describe_flags(flags),
                    cfg.kind.name(),
                    if cfg.offload { " vnet_hdr" } else { "" },
                ),
            ));
        }

        let ifindex = ifindex_of(&name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("device {name} was attached but has no interface index"),
            )
        })?;
        Ok(Device {
            name,
            ifindex,
            kind: cfg.kind,
            queues,
            vnet: cfg.offload,
        })
    }
}

/// Rejects configurations the kernel would reject with a vaguer error.
fn validate(cfg: &DeviceConfig) -> io::Result<()> {
    let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
    if cfg.name.is_empty() || cfg.name.len() > MAX_NAME_LEN {
        return bad(format!(
            "device name {:?} must be 1 to {MAX_NAME_LEN} bytes",
            cfg.name
        ));
    }
    if cfg
        .name
        .bytes()
        .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
    {
        return bad(format!(
            "device name {:?} must not contain '/', NUL or white space",
            cfg.name
        ));
    }
    if cfg.queues == 0 || cfg.queues > MAX_QUEUES {
        return bad(format!(
            "device {}: queues must be 1 to {MAX_QUEUES}, not {}",
            cfg.name, cfg.queues
        ));
    }
    Ok(())
}

/// Opens `/dev/net/tun` and attaches it to device `name` with `flags`;
/// returns the queue and the device's real name.
fn attach(name: &str, flags: libc::c_int) -> io::Result<(Queue, String)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(TUN_PATH)?;
    let fd = OwnedFd::from(file);
    let mut ifr = ifreq_named(name);
    ifr.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes back one `struct ifreq`; `ifr` is a
    // live, properly sized and aligned libc::ifreq.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    check(r)?;
    Ok((Queue { fd }, ifreq_name(&ifr)))
}

/// The device flags as `TUNGETIFF` reports them.
fn get_flags(fd: RawFd) -> io::Result<libc::c_int> {
    let mut ifr = ifreq_named("");
    // SAFETY: TUNGETIFF writes one `struct ifreq` into the live `ifr`.
    let r = unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut ifr) };
    check(r)?;
    // SAFETY: TUNGETIFF filled the flags member of the union; every bit
    // pattern is a valid c_short.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok(flags as u16 as libc::c_int)
}

/// A zeroed `ifreq` carrying `name`.
fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: libc::ifreq is plain old data (arrays, integers, and a union of
    // such and a raw pointer), for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes().take(MAX_NAME_LEN)) {
        *dst = src as libc::c_char;
    }
    ifr
}

/// The NUL-terminated name in an `ifreq`.
fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The interface index of `name` in the calling thread's network namespace.
fn ifindex_of(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// `Ok` for a non-negative ioctl result, the errno otherwise.
fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Prefixes an error with what was being done, keeping its kind.
fn ctx(e: io::Error, what: fmt::Arguments<'_>) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Human-readable `TUNSETIFF` flags, in `ip tuntap` words.
fn describe_flags(flags: libc::c_int) -> String {
    let mut words = vec![if flags & libc::IFF_TAP != 0 {
        "tap"
    } else {
        "tun"
    }];
    if flags & libc::IFF_MULTI_QUEUE != 0 {
        words.push("multi_queue");
    }
    if flags & libc::IFF_VNET_HDR != 0 {
        words.push("vnet_hdr");
    }
    if flags & libc::IFF_NO_PI == 0 {
        words.push("pi");
    }
    words.join(" ")
}

/// Turns a failed open/`TUNSETIFF` into a message that says what to do.
fn explain(e: io::Error, cfg: &DeviceConfig, flags: libc::c_int) -> io::Error {
    let name = &cfg.name;
    let kind = cfg.kind.name();
    let vnet = if cfg.offload { " vnet_hdr" } else { "" };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let recreate = format!(
        "`ip tuntap del dev {name} mode {kind}` then \
         `ip tuntap add dev {name} mode {kind} user {uid} multi_queue{vnet}`"
    );
    let exists = ifindex_of(name).is_some();
    let msg = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) if !exists => format!(
            "{TUN_PATH}: {e}: the tun driver is missing (modprobe tun, or in a container \
             bind-mount /dev/net/tun)"
        ),
        Some(libc::EACCES) => format!(
            "{TUN_PATH}: {e}: the device node must be readable and writable by uid {uid} \
             (it is usually mode 0666), or run as root"
        ),
        Some(libc::EPERM) if exists => format!(
            "device {name} exists but belongs to another user or group, and attaching to it \
             needs its owner or CAP_NET_ADMIN: run as that user, or recreate it with {recreate}"
        ),
        Some(libc::EPERM) => format!(
            "creating {kind} device {name} needs CAP_NET_ADMIN: run as root, or pre-create it \
             with `ip tuntap add dev {name} mode {kind} user {uid} multi_queue{vnet}`"
        ),
        Some(libc::EINVAL) if exists => format!(
            "device {name} exists with different flags (tun/tap mode or multi_queue mismatch; \
             tunvs asked for {}): recreate it with {recreate}",
            describe_flags(flags)
        ),
        Some(libc::EBUSY) => format!(
            "device {name} is busy: another process holds it (a single-queue device takes one \
             file descriptor only); stop that process or recreate the device with {recreate}"
        ),
        Some(libc::E2BIG) => format!("device {name}: too many queues attached ({e})"),
        _ => format!(
            "attaching to {kind} device {name} ({}): {e}",
            describe_flags(flags)
        ),
    };
    io::Error::new(e.kind(), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_bad_configs() {
        let mut cfg = DeviceConfig::new("tunvs0", DeviceKind::Tun);
        cfg.queues = 0;
        assert!(validate(&cfg).is_err());
        cfg.queues = MAX_QUEUES + 1;
        assert!(validate(&cfg).is_err());
        cfg.queues = 2;
        assert!(validate(&cfg).is_ok());
        cfg.name = "0123456789abcdef".into();
        assert_eq!(
            validate(&cfg).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        cfg.name = "a b".into();
        assert!(validate(&cfg).is_err());
    }

    #[test]
    fn ifreq_round_trips_names() {
        let ifr = ifreq_named("tunvs%d");
        assert_eq!(ifreq_name(&ifr), "tunvs%d");
        assert_eq!(std::mem::size_of::<libc::ifreq>(), 40);
    }

    #[test]
    fn flags_are_described_in_ip_tuntap_words() {
        let f = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE | libc::IFF_VNET_HDR;
        assert_eq!(describe_flags(f), "tun multi_queue vnet_hdr");
        assert_eq!(describe_flags(libc::IFF_TAP), "tap pi");
        assert_eq!(OFFLOAD_FLAGS, 0x7);
    }
}
