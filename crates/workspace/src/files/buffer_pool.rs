//! Buffers a transfer reuses instead of allocating one per read or write.
//!
//! A long upload or download moves a megabyte at a time; a fresh buffer
//! each time meant fresh pages from the kernel (page faults and zeroing
//! were 8–9 % of a transfer's time in the profiles), while only the few
//! buffers in flight are ever needed at once. A pool belongs to one
//! transfer and goes with it, so an idle server holds none.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The buffers of one transfer, each given back when done with.
#[derive(Clone, Default)]
pub(super) struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BufferPool {
    /// An empty buffer with room for at least `len` bytes.
    pub(super) fn take(&self, len: usize) -> Vec<u8> {
        let reused = self.0.lock().ok().and_then(|mut free| free.pop());
        match reused {
            Some(mut buf) => {
                buf.reserve(len);
                buf
            }
            None => Vec::with_capacity(len),
        }
    }

    pub(super) fn give_back(&self, mut buf: Vec<u8>) {
        buf.clear();
        if let Ok(mut free) = self.0.lock() {
            free.push(buf);
        }
    }

    /// `buf` as a response chunk that comes back here when dropped.
    pub(super) fn wrap(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}
