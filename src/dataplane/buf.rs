//! A reusable packet buffer with headroom in front of the frame, so a
//! rewrite that grows the headers (tunnel encapsulation) can prepend in
//! place instead of copying. One per worker; never reallocated per packet.

/// Bytes kept free in front of every frame read from the device (an outer
/// IPv6 header + UDP + GUE + a virtio header fit easily).
pub const HEADROOM: usize = 128;

/// A frame (`data[start..end]`) inside a larger buffer.
#[derive(Debug, Clone)]
pub struct PacketBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl PacketBuf {
    /// A buffer able to hold frames of up to `cap` bytes after the headroom.
    pub fn new(cap: usize) -> Self {
        PacketBuf {
            data: vec![0u8; HEADROOM + cap].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// A buffer holding a copy of `frame` (tests, benches).
    pub fn from_frame(frame: &[u8]) -> Self {
        let mut b = PacketBuf::new(frame.len().max(2048));
        b.set(frame);
        b
    }

    /// Fill the buffer from a reader (the device): the frame starts after
    /// the headroom and is as long as the read said.
    pub fn fill<E>(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        self.start = HEADROOM;
        let n = read(&mut self.data[HEADROOM..])?;
        self.end = HEADROOM + n.min(self.data.len() - HEADROOM);
        Ok(n)
    }

    /// Replace the frame with a copy of `frame` (truncated to the capacity).
    pub fn set(&mut self, frame: &[u8]) {
        let n = frame.len().min(self.data.len() - HEADROOM);
        self.start = HEADROOM;
        self.end = HEADROOM + n;
        self.data[HEADROOM..HEADROOM + n].copy_from_slice(&frame[..n]);
    }

    /// The frame.
    pub fn frame(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The frame, writable.
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Free bytes in front of the frame.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Grow the frame by `n` bytes at the front; returns the new frame, or
    /// `None` when the headroom is too small (nothing changes then).
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.start {
            return None;
        }
        self.start -= n;
        Some(&mut self.data[self.start..self.end])
    }

    /// Drop `n` bytes from the front of the frame (decapsulation).
    pub fn advance(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Cut the frame to `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.end = self.end.min(self.start + len);
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn prepend_and_advance_move_the_frame_start() {
        let mut b = PacketBuf::from_frame(&[1, 2, 3]);
        assert_eq!(b.headroom(), HEADROOM);
        let f = b.prepend(2).unwrap();
        f[0] = 9;
        f[1] = 8;
        assert_eq!(b.frame(), &[9, 8, 1, 2, 3]);
        assert!(b.prepend(HEADROOM).is_none());
        assert_eq!(b.frame(), &[9, 8, 1, 2, 3]);
        b.advance(2);
        assert_eq!(b.frame(), &[1, 2, 3]);
        b.truncate(1);
        assert_eq!(b.frame(), &[1]);
        let n = b.fill(|d| -> Result<usize, ()> {
            d[..2].copy_from_slice(&[7, 7]);
            Ok(2)
        });
        assert_eq!(n, Ok(2));
        assert_eq!(b.frame(), &[7, 7]);
    }
}
