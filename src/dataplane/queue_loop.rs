//! The loop every device queue's worker runs: wait on the queue with mio,
//! drain it until it is empty (edge-triggered), hand each frame to the mode's
//! handler, and let the handler do timed work between wakeups.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::dataplane::buf::PacketBuf;
use crate::dataplane::device::Queue;

/// Frames handled per wakeup before polling again (keeps queues fair).
pub const MAX_BATCH: usize = 256;
/// The longest a worker sleeps, so a stop request is seen in time.
pub const MAX_WAIT_MS: u64 = 200;

/// What a worker does with its frames (tun mode: the IP pipeline; tap mode:
/// the L2 layer around it).
pub trait FrameHandler {
    /// Handle one frame read from `q` (in place) and write what results to `q`.
    fn frame(&mut self, now_ms: u64, buf: &mut PacketBuf, q: &Queue);

    /// How long to sleep at most when the queue is empty.
    fn wait_ms(&mut self, _now_ms: u64) -> u64 {
        MAX_WAIT_MS
    }

    /// Timed work after each batch (tap mode: the smoltcp host).
    fn after_batch(&mut self, _now_ms: u64, _q: &Queue) {}
}

/// Run a queue until `stop` is set or the device fails.
pub fn run(
    q: &Queue,
    buf_len: usize,
    stop: &AtomicBool,
    h: &mut impl FrameHandler,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let fd = q.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let mut buf = PacketBuf::new(buf_len);
    // Edge-triggered: start by draining, and drain again after a full batch.
    let mut pending = true;
    while !stop.load(Relaxed) {
        if !pending {
            let wait = h.wait_ms(crate::util::now_ms()).min(MAX_WAIT_MS);
            match poll.poll(&mut events, Some(Duration::from_millis(wait))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        pending = false;
        // One clock read per batch: a batch takes far less than a millisecond.
        let now = crate::util::now_ms();
        for _ in 0..MAX_BATCH {
            match buf.fill(|d| q.read(d)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            h.frame(now, &mut buf, q);
            pending = true;
        }
        h.after_batch(now, q);
    }
    Ok(())
}
