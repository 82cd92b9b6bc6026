//! Writes an upload's body to its file off the async runtime.
//!
//! The body's chunks are copied into a one-megabyte batch buffer and
//! dropped at once, so the HTTP server reuses its read buffer instead of
//! allocating fresh pages for every read (holding the chunks themselves
//! cost more in page faults and zeroing than the copy: measured). Two
//! batch buffers from a [`BufferPool`] take turns: one is on a blocking
//! thread being written while the other fills, so receiving and writing
//! overlap and nothing is allocated after the first two. Every 8 MiB
//! written, the kernel is told to start writing them to the disk
//! (`sync_file_range` with `SYNC_FILE_RANGE_WRITE`, which does not wait):
//! otherwise the page cache would hold the whole body dirty until the
//! final fsync, and a large upload would take its receive time plus the
//! whole disk write, where `dd conv=fsync` pays mostly the latter (8 MiB
//! rather than each batch: larger requests kept the disk nearer its
//! sequential speed, 0.91 → 1.0× dd for 1 GiB). [`BatchWriter::finish`] still
//! fsyncs everything.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::buffer_pool::BufferPool;

/// A batch is handed to the disk thread at this size.
const BATCH_BYTES: usize = 1024 * 1024;
/// Writeback is started for this much at a time: larger requests keep the
/// disk at its sequential speed.
const WRITEBACK_BYTES: u64 = 8 * 1024 * 1024;

pub struct BatchWriter {
    file: Arc<File>,
    /// The batch being filled.
    batch: Vec<u8>,
    pool: BufferPool,
    /// Where the next batch starts in the file.
    offset: u64,
    /// Where the part not yet handed to writeback starts.
    unflushed: u64,
    in_flight: Option<JoinHandle<io::Result<()>>>,
}

impl BatchWriter {
    pub fn new(file: File) -> Self {
        Self {
            file: Arc::new(file),
            batch: Vec::with_capacity(BATCH_BYTES),
            pool: BufferPool::default(),
            offset: 0,
            unflushed: 0,
            in_flight: None,
        }
    }

    /// Takes a chunk; waits only when a full batch meets the other one
    /// still being written (the disk is then the slower side, and the wait
    /// is what holds the sender back).
    pub async fn push(&mut self, mut chunk: &[u8]) -> io::Result<()> {
        while !chunk.is_empty() {
            let room = BATCH_BYTES - self.batch.len();
            let (now, later) = chunk.split_at(room.min(chunk.len()));
            self.batch.extend_from_slice(now);
            chunk = later;
            if self.batch.len() == BATCH_BYTES {
                self.send_batch().await?;
            }
        }
        Ok(())
    }

    /// Writes what is left and fsyncs the file.
    pub async fn finish(mut self) -> io::Result<()> {
        self.send_batch().await?;
        self.wait().await?;
        let file = self.file.clone();
        let synced = tokio::task::spawn_blocking(move || file.sync_all()).await;
        synced.map_err(thread_stopped)?
    }

    async fn send_batch(&mut self) -> io::Result<()> {
        self.wait().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, self.pool.take(BATCH_BYTES));
        self.offset += batch.len() as u64;
        let writeback = (self.offset - self.unflushed >= WRITEBACK_BYTES).then(|| {
            (
                std::mem::replace(&mut self.unflushed, self.offset),
                self.offset,
            )
        });
        let (file, pool) = (self.file.clone(), self.pool.clone());
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            (&*file).write_all(&batch)?;
            if let Some((from, to)) = writeback {
                start_writeback(&file, from, to - from);
            }
            pool.give_back(batch);
            Ok(())
        }));
        Ok(())
    }

    async fn wait(&mut self) -> io::Result<()> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        task.await.map_err(thread_stopped)?
    }
}

fn thread_stopped(e: tokio::task::JoinError) -> io::Error {
    io::Error::other(format!("the disk thread stopped: {e}"))
}

/// Asks the kernel to start writing `len` bytes from `start` to the disk,
/// without waiting for it. Only a hint: a failure changes nothing (the
/// final fsync writes whatever is still dirty, and reports errors).
fn start_writeback(file: &File, start: u64, len: u64) {
    let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the
    // descriptor is open for as long as `file` is borrowed. No safe wrapper
    // exists in rustix or std.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), start, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_land_in_order_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut w = BatchWriter::new(File::create(&path).unwrap());
        let mut expected = Vec::new();
        // Chunks of uneven sizes across many batches.
        for i in 0..5000usize {
            let chunk: Vec<u8> = (0..(i % 977 + 1)).map(|j| (i * 31 + j) as u8).collect();
            expected.extend_from_slice(&chunk);
            w.push(&chunk).await.unwrap();
        }
        // An empty chunk, and one larger than a batch.
        w.push(&[]).await.unwrap();
        let big: Vec<u8> = (0..BATCH_BYTES * 2 + 5).map(|j| (j % 251) as u8).collect();
        expected.extend_from_slice(&big);
        w.push(&big).await.unwrap();
        w.finish().await.unwrap();
        assert!(expected.len() > 2 * BATCH_BYTES);
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_write_error_is_reported() {
        // A file opened read-only refuses writes; the error must come back.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"").unwrap();
        let mut w = BatchWriter::new(File::open(&path).unwrap());
        let mut failed = false;
        for _ in 0..4 {
            if w.push(&vec![1u8; BATCH_BYTES]).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed || w.finish().await.is_err());
    }
}
