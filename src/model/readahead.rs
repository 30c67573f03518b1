//! Streaming reads with readahead: one RETR per open file, drained by a thread of its own into a
//! bounded queue of chunks, so the network keeps flowing while the kernel's read requests are
//! answered.
//!
//! The kernel reads a file in parallel, slightly out of order requests; the [`StreamReader`]
//! keeps the last chunks it handed out so such requests are served without a restart, reads
//! through small forward gaps, and asks for a restart (REST) only on a real seek. Memory per open
//! file is bounded by `QUEUE` chunks in flight plus `HISTORY` bytes kept.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::backend::ReadStream;

/// Chunks end at multiples of this many bytes of the file, so the kernel's aligned 1 MiB
/// readahead requests are each answered from one chunk, without joining.
const CHUNK: usize = 1024 * 1024;
/// Chunks that may wait in the queue.
const QUEUE: usize = 6;
/// Bytes of already-served chunks kept for out-of-order requests.
const HISTORY: usize = 8 * 1024 * 1024;
/// Forward gaps up to this size are read through instead of restarting the download.
const SKIP_MAX: u64 = 16 * 1024 * 1024;

/// What the reader thread sends: a buffer with its first `len` bytes valid.
enum Msg {
    Data(Vec<u8>, usize),
    Eof,
    Failed(io::Error),
}

/// A chunk of the file: `len` bytes starting at `start` (the buffer may be longer).
struct Chunk {
    start: u64,
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The reading side of one streaming download.
pub struct StreamReader {
    rx: Receiver<Msg>,
    /// Empty buffers going back to the thread, so chunks are not reallocated.
    recycle: Sender<Vec<u8>>,
    stop: Arc<AtomicBool>,
    /// Set by the thread once its download is over and the connection given back.
    finished: Arc<AtomicBool>,
    /// Chunks received, oldest first; the last ones may not be fully served yet.
    chunks: VecDeque<Chunk>,
    /// Offset just past the last byte received.
    received_end: u64,
    eof: bool,
    since: Instant,
}

/// Reads up to `want` bytes into `buf` (stopping early only at end of stream).
fn fill(dl: &mut dyn ReadStream, buf: &mut [u8], want: usize) -> io::Result<usize> {
    let mut n = 0;
    while n < want {
        match dl.read(&mut buf[n..want]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn pump(
    mut dl: Box<dyn ReadStream>,
    mut pos: u64,
    tx: Sender<Msg>,
    recycled: Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
    finished: &AtomicBool,
) {
    loop {
        if stop.load(Ordering::Relaxed) {
            // Dropped early: the transfer is abandoned cleanly.
            return;
        }
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        // Up to the next CHUNK boundary of the file.
        let want = CHUNK - (pos % CHUNK as u64) as usize;
        match fill(dl.as_mut(), &mut buf, want) {
            Ok(0) => {
                let msg = match dl.finish() {
                    Ok(()) => Msg::Eof,
                    Err(e) => Msg::Failed(io::Error::other(e.to_string())),
                };
                // The connection is back before the last message waits for room in the queue.
                finished.store(true, Ordering::Relaxed);
                let _ = tx.send(msg);
                return;
            }
            Ok(n) => {
                pos += n as u64;
                if tx.send(Msg::Data(buf, n)).is_err() {
                    // The reader went away: end the transfer early.
                    return;
                }
            }
            Err(e) => {
                drop(dl);
                finished.store(true, Ordering::Relaxed);
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        }
    }
}

impl StreamReader {
    /// Starts the reader thread for a download that begins at `offset`.
    pub fn start(dl: Box<dyn ReadStream>, offset: u64) -> io::Result<StreamReader> {
        let (tx, rx) = bounded(QUEUE);
        let (recycle, recycled) = bounded(QUEUE + 2);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let finished = Arc::new(AtomicBool::new(false));
        let thread_finished = finished.clone();
        std::thread::Builder::new().name("ftpfs-read".into()).spawn(move || {
            // `pump` consumes the download: when it returns, the connection is back.
            pump(dl, offset, tx, recycled, thread_stop, &thread_finished);
            thread_finished.store(true, Ordering::Relaxed);
        })?;
        Ok(StreamReader {
            rx,
            recycle,
            stop,
            finished,
            chunks: VecDeque::new(),
            received_end: offset,
            eof: false,
            since: Instant::now(),
        })
    }

    /// How long ago the download started.
    pub fn running_for(&self) -> Duration {
        self.since.elapsed()
    }

    /// True while the download still holds a connection.
    pub fn holds_connection(&self) -> bool {
        !self.finished.load(Ordering::Relaxed)
    }

    fn oldest(&self) -> u64 {
        self.chunks.front().map_or(self.received_end, |c| c.start)
    }

    /// True when a request at `off` can be answered by this stream (now or by reading on).
    pub fn can_serve(&self, off: u64) -> bool {
        off >= self.oldest() && off <= self.received_end + SKIP_MAX
    }

    /// Receives one more chunk. Returns false at end of file.
    fn receive(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        match self.rx.recv() {
            Ok(Msg::Data(buf, len)) => {
                let start = self.received_end;
                self.received_end += len as u64;
                self.chunks.push_back(Chunk { start, buf, len });
                Ok(true)
            }
            Ok(Msg::Eof) => {
                self.eof = true;
                Ok(false)
            }
            Ok(Msg::Failed(e)) => Err(e),
            Err(_) => Err(io::Error::other("reader thread ended")),
        }
    }

    /// Drops old chunks beyond the history that end before `keep_from`.
    fn trim(&mut self, keep_from: u64) {
        let mut held: usize = self.chunks.iter().map(|c| c.len).sum();
        while held > HISTORY {
            match self.chunks.front() {
                Some(c) if c.end() <= keep_from => {
                    held -= c.len;
                    if let Some(old) = self.chunks.pop_front() {
                        let _ = self.recycle.try_send(old.buf);
                    }
                }
                _ => break,
            }
        }
    }

    /// Hands `size` bytes at `off` to `out` (fewer at end of file). The caller checked
    /// [`StreamReader::can_serve`].
    pub fn read_at(&mut self, off: u64, size: usize, out: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let end = off + size as u64;
        while self.received_end < end && self.receive()? {
            self.trim(off);
        }
        // Fast path: the request lies within one chunk (the usual case): no copy here.
        let first = self.chunks.iter().position(|c| c.end() > off);
        if let Some(i) = first {
            let c = &self.chunks[i];
            if c.start <= off && c.end() >= end {
                let from = (off - c.start) as usize;
                out(&c.bytes()[from..from + size]);
                self.trim(end);
                return Ok(());
            }
        }
        let mut joined = Vec::with_capacity(size);
        for c in self.chunks.iter().skip(first.unwrap_or(self.chunks.len())) {
            if c.start >= end {
                break;
            }
            let from = off.saturating_sub(c.start) as usize;
            let to = ((end.min(c.end())) - c.start) as usize;
            if from < to {
                joined.extend_from_slice(&c.bytes()[from..to]);
            }
        }
        out(&joined);
        self.trim(end);
        Ok(())
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Receiving side dropped next: a thread blocked in send() sees the disconnect.
    }
}
