//! Streaming reads with readahead: one RETR per open file, drained by a thread of its own into a
//! bounded queue of chunks, so the network keeps flowing while the kernel's read requests are
//! answered.
//!
//! The kernel reads a file in parallel, slightly out of order requests; the [`StreamReader`]
//! keeps the last chunks it handed out so such requests are served without a restart, reads
//! through small forward gaps, and asks for a restart (REST) only on a real seek. Memory per open
//! file is bounded by `QUEUE` chunks in flight plus `HISTORY` bytes kept; memory of all
//! downloads together by [`TOTAL`] (plus [`MIN_OWN`] chunks each): past it, a download takes no
//! new buffer, and the chunks every download already handed out are dropped first.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use parking_lot::Mutex;

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
/// Bytes of chunk buffers all downloads hold together, at most (beyond [`MIN_OWN`] each).
const TOTAL: usize = 128 * 1024 * 1024;
/// Chunk buffers a download may always have, whatever the others hold: it never waits for
/// another download's reader.
const MIN_OWN: usize = 2;

/// A download that got no buffer back for this long takes a new one past the total.
const OVER_TOTAL_AFTER: Duration = Duration::from_secs(1);

/// Bytes of chunk buffers alive, all downloads together.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// The chunks of every download alive, for [`shed`].
static ALL_CHUNKS: Mutex<Vec<Weak<Mutex<Chunks>>>> = Mutex::new(Vec::new());

/// The read-ahead buffers in one line, for `ftpfs stats`.
pub(super) fn describe() -> String {
    let downloads = ALL_CHUNKS.lock().iter().filter(|w| w.strong_count() > 0).count();
    format!(
        "{downloads} downloads streaming, {} buffered of {} shared",
        crate::stats::bytes(HELD.load(Ordering::Relaxed) as u64),
        crate::stats::bytes(TOTAL as u64)
    )
}

/// Bytes of chunk buffers all downloads hold now.
#[cfg(test)]
fn bytes_held() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// One chunk buffer, counted in [`HELD`] and in its download's own count while it lives.
struct Buffer {
    data: Vec<u8>,
    own: Arc<AtomicUsize>,
}

impl Buffer {
    fn new(own: &Arc<AtomicUsize>) -> Buffer {
        HELD.fetch_add(CHUNK, Ordering::Relaxed);
        own.fetch_add(1, Ordering::Relaxed);
        // Grown (and zeroed) only as far as data arrives: a small file touches little memory.
        Buffer { data: Vec::with_capacity(CHUNK), own: own.clone() }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        HELD.fetch_sub(CHUNK, Ordering::Relaxed);
        self.own.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the reader thread sends: a buffer with its first `len` bytes valid.
enum Msg {
    Data(Buffer, usize),
    Eof,
    Failed(io::Error),
}

/// A chunk of the file: `len` bytes starting at `start` (the buffer may be longer).
struct Chunk {
    start: u64,
    buf: Buffer,
    len: usize,
}

/// The chunks a download received, oldest first, and how far its reader was served.
#[derive(Default)]
struct Chunks {
    list: VecDeque<Chunk>,
    served_end: u64,
}

impl Chunks {
    /// Drops (frees, not recycles) the chunks already handed out.
    fn drop_served(&mut self) {
        while self.list.front().is_some_and(|c| c.end() <= self.served_end) {
            self.list.pop_front();
        }
    }
}

/// Over [`TOTAL`]: every download not in a call right now drops the chunks it handed out.
fn shed() {
    let mut all = ALL_CHUNKS.lock();
    all.retain(|w| w.strong_count() > 0);
    for chunks in all.iter().filter_map(Weak::upgrade) {
        if let Some(mut c) = chunks.try_lock() {
            c.drop_served();
        }
    }
}

/// The next buffer for the reader thread: a recycled one, a new one while the total allows
/// (or the download has fewer than [`MIN_OWN`]), or else one its reader gives back. `None`
/// when the reader went away.
fn next_buffer(recycled: &Receiver<Buffer>, own: &Arc<AtomicUsize>, stop: &AtomicBool) -> Option<Buffer> {
    let room = || own.load(Ordering::Relaxed) < MIN_OWN || HELD.load(Ordering::Relaxed) + CHUNK <= TOTAL;
    let since = Instant::now();
    loop {
        if let Ok(b) = recycled.try_recv() {
            return Some(b);
        }
        if room() {
            return Some(Buffer::new(own));
        }
        shed();
        if room() {
            return Some(Buffer::new(own));
        }
        if since.elapsed() >= OVER_TOTAL_AFTER {
            // Nothing given back for a while: the total is a target, never a reason to stop.
            return Some(Buffer::new(own));
        }
        // Like a full queue: waits for the reader to read on (or to go away).
        match recycled.recv_timeout(Duration::from_millis(50)) {
            Ok(b) => return Some(b),
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => {}
            Err(_) => return None,
        }
    }
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    fn bytes(&self) -> &[u8] {
        &self.buf.data[..self.len]
    }
}

/// The reading side of one streaming download.
pub struct StreamReader {
    rx: Receiver<Msg>,
    /// Empty buffers going back to the thread, so chunks are not reallocated.
    recycle: Sender<Buffer>,
    stop: Arc<AtomicBool>,
    /// Set by the thread once its download is over and the connection given back.
    finished: Arc<AtomicBool>,
    /// Chunks received, oldest first; the last ones may not be fully served yet. Locked by the
    /// reader while it reads, and tried by [`shed`].
    chunks: Arc<Mutex<Chunks>>,
    /// Offset just past the last byte received.
    received_end: u64,
    eof: bool,
    since: Instant,
}

/// Reads up to `want` bytes into `buf` (stopping early only at end of stream).
fn fill(dl: &mut dyn ReadStream, buf: &mut Vec<u8>, want: usize) -> io::Result<usize> {
    /// How far ahead of the data the buffer is grown (and zeroed) at a time.
    const STEP: usize = 64 * 1024;
    let mut n = 0;
    while n < want {
        if buf.len() < want.min(n + STEP) {
            buf.resize(want.min(n + STEP).max(buf.len()), 0);
        }
        let upto = buf.len().min(want);
        match dl.read(&mut buf[n..upto]) {
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
    recycled: Receiver<Buffer>,
    stop: Arc<AtomicBool>,
    finished: &AtomicBool,
) {
    let own = Arc::new(AtomicUsize::new(0));
    loop {
        if stop.load(Ordering::Relaxed) {
            // Dropped early: the transfer is abandoned cleanly.
            return;
        }
        let Some(mut buf) = next_buffer(&recycled, &own, &stop) else { return };
        // Up to the next CHUNK boundary of the file.
        let want = CHUNK - (pos % CHUNK as u64) as usize;
        match fill(dl.as_mut(), &mut buf.data, want) {
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
        let chunks = Arc::new(Mutex::new(Chunks { list: VecDeque::new(), served_end: offset }));
        ALL_CHUNKS.lock().push(Arc::downgrade(&chunks));
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
            chunks,
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
        self.chunks.lock().list.front().map_or(self.received_end, |c| c.start)
    }

    /// True when a request at `off` can be answered by this stream (now or by reading on).
    pub fn can_serve(&self, off: u64) -> bool {
        off >= self.oldest() && off <= self.received_end + SKIP_MAX
    }

    /// Receives one more chunk into `chunks`. Returns false at end of file.
    fn receive(&mut self, chunks: &mut Chunks) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        match self.rx.recv() {
            Ok(Msg::Data(buf, len)) => {
                let start = self.received_end;
                self.received_end += len as u64;
                chunks.list.push_back(Chunk { start, buf, len });
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

    /// Hands the chunks that end before `keep_from` back to the thread.
    fn give_back_served(&self, chunks: &mut Chunks, keep_from: u64) {
        while chunks.list.front().is_some_and(|c| c.end() <= keep_from) {
            if let Some(old) = chunks.list.pop_front() {
                let _ = self.recycle.try_send(old.buf);
            }
        }
    }

    /// Drops old chunks beyond the history that end before `keep_from`.
    fn trim(&self, chunks: &mut Chunks, keep_from: u64) {
        let mut held: usize = chunks.list.iter().map(|c| c.len).sum();
        while held > HISTORY {
            match chunks.list.front() {
                Some(c) if c.end() <= keep_from => {
                    held -= c.len;
                    if let Some(old) = chunks.list.pop_front() {
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
        let shared = self.chunks.clone();
        let mut chunks = shared.lock();
        let end = off + size as u64;
        while self.received_end < end {
            if HELD.load(Ordering::Relaxed) + CHUNK > TOTAL {
                // Over the total, the thread may be waiting for a buffer: what was served
                // before `off` goes back to it before this waits for the thread.
                self.give_back_served(&mut chunks, off);
            }
            if !self.receive(&mut chunks)? {
                break;
            }
            self.trim(&mut chunks, off);
        }
        // Bytes dropped to stay within the total (by `shed`, between `can_serve` and now)
        // are not served from the wrong chunk: the caller reads them again from the server.
        if chunks.list.front().map_or(self.received_end, |c| c.start) > off {
            return Err(io::Error::other("read-ahead gave these bytes up; reading them again"));
        }
        chunks.served_end = chunks.served_end.max(end.min(self.received_end));
        // Fast path: the request lies within one chunk (the usual case): no copy here.
        let first = chunks.list.iter().position(|c| c.end() > off);
        if let Some(i) = first {
            let c = &chunks.list[i];
            if c.start <= off && c.end() >= end {
                let from = (off - c.start) as usize;
                out(&c.bytes()[from..from + size]);
                self.trim(&mut chunks, end);
                return Ok(());
            }
        }
        let mut joined = Vec::with_capacity(size);
        for c in chunks.list.iter().skip(first.unwrap_or(chunks.list.len())) {
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
        self.trim(&mut chunks, end);
        Ok(())
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // Out of the list [`shed`] walks (its entry would keep the allocation alive: one per
        // download ever made, on a mount that reads millions of files).
        ALL_CHUNKS.lock().retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.chunks)));
        self.stop.store(true, Ordering::Relaxed);
        // Receiving side dropped next: a thread blocked in send() sees the disconnect.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendResult;

    /// The tests that fill the process-wide total run one at a time.
    static TOTAL_TESTS: Mutex<()> = Mutex::new(());

    /// A download of `len` bytes of a pattern that tells each byte's offset.
    struct Pattern {
        pos: u64,
        len: u64,
    }

    fn byte_at(pos: u64) -> u8 {
        (pos.wrapping_mul(7) % 251) as u8
    }

    impl io::Read for Pattern {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min((self.len - self.pos) as usize).min(64 * 1024);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = byte_at(self.pos + i as u64);
            }
            self.pos += n as u64;
            Ok(n)
        }
    }

    impl ReadStream for Pattern {
        fn finish(self: Box<Self>) -> BackendResult<()> {
            Ok(())
        }
    }

    /// Idle handles whose downloads hold the whole total (each read a little, its queue full):
    /// a reader reading on still gets every byte, without waiting on them.
    #[test]
    fn a_reader_goes_on_while_idle_downloads_hold_the_total() {
        let _one_at_a_time = TOTAL_TESTS.lock();
        let mut idle = Vec::new();
        for _ in 0..22 {
            let mut r = StreamReader::start(Box::new(Pattern { pos: 0, len: 6 * CHUNK as u64 }), 0).expect("reader");
            r.read_at(0, 4096, &mut |_| {}).expect("read");
            idle.push(r);
        }
        // Their threads fill their queues until the total leaves no room for another chunk.
        let deadline = Instant::now() + Duration::from_secs(30);
        while bytes_held() + CHUNK <= TOTAL {
            assert!(Instant::now() < deadline, "idle downloads hold only {} MiB", bytes_held() >> 20);
            std::thread::sleep(Duration::from_millis(5));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let len = 64 * CHUNK as u64;
            let mut r = StreamReader::start(Box::new(Pattern { pos: 0, len }), 0).expect("reader");
            let mut off = 0;
            while off < len {
                let mut right = true;
                let mut n = 0;
                r.read_at(off, 128 * 1024, &mut |b| {
                    right = b.iter().enumerate().all(|(i, x)| *x == byte_at(off + i as u64));
                    n = b.len();
                })
                .expect("read");
                assert!(right, "bytes at {off}");
                off += n as u64;
                let _ = tx.try_send(off);
            }
            let _ = tx.send(u64::MAX);
        });
        let mut last = 0;
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(u64::MAX) => break,
                Ok(o) => last = o,
                Err(_) => panic!("the reader stopped at {last}"),
            }
        }
        drop(idle);
    }

    /// Chunks dropped to stay within the total between `can_serve` and `read_at` (another
    /// download's `shed`) are never answered from another chunk: the read fails, and the
    /// caller reads those bytes again from the server.
    #[test]
    fn bytes_given_up_are_not_served_from_another_chunk() {
        let _one_at_a_time = TOTAL_TESTS.lock();
        let c = CHUNK as u64;
        let mut r = StreamReader::start(Box::new(Pattern { pos: 0, len: 8 * c }), 0).expect("reader");
        // The kernel's parallel readahead: the second MiB asked before the first.
        r.read_at(c, CHUNK, &mut |_| {}).expect("read");
        assert!(r.can_serve(c / 2));
        r.chunks.lock().drop_served();
        let mut got = Vec::new();
        let res = r.read_at(c / 2, CHUNK, &mut |b| got.extend_from_slice(b));
        assert!(res.is_err() && got.is_empty(), "{} bytes served", got.len());
    }

    /// Downloads that ended leave nothing behind in the list of downloads.
    #[test]
    fn ended_downloads_are_forgotten() {
        let _one_at_a_time = TOTAL_TESTS.lock();
        for _ in 0..1000 {
            let mut r = StreamReader::start(Box::new(Pattern { pos: 0, len: 10 }), 0).expect("reader");
            r.read_at(0, 10, &mut |_| {}).expect("read");
        }
        // Other tests of this process may hold a few downloads at this moment (until they end).
        let deadline = Instant::now() + Duration::from_secs(30);
        while ALL_CHUNKS.lock().len() >= 100 {
            assert!(Instant::now() < deadline, "{} entries", ALL_CHUNKS.lock().len());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn many_downloads_read_and_kept_open_stay_within_the_total() {
        let _one_at_a_time = TOTAL_TESTS.lock();
        const FILES: usize = 32;
        let len = 12 * CHUNK as u64;
        let mut readers = Vec::new();
        for _ in 0..FILES {
            let mut r = StreamReader::start(Box::new(Pattern { pos: 0, len }), 0).expect("reader");
            let mut off = 0;
            while off < len {
                let mut got = Vec::new();
                r.read_at(off, CHUNK, &mut |b| got.extend_from_slice(b)).expect("read");
                assert!(got.iter().enumerate().all(|(i, b)| *b == byte_at(off + i as u64)), "bytes at {off}");
                off += got.len() as u64;
            }
            // Kept open, read to the end: its history stays unless the total needs it.
            readers.push(r);
        }
        // Each would keep HISTORY (8 MiB) on its own: 256 MiB. Other tests of this process may
        // hold a little too.
        let ceiling = TOTAL + FILES * MIN_OWN * CHUNK;
        assert!(bytes_held() <= ceiling, "{} MiB held", bytes_held() >> 20);
        // What was dropped under pressure is no longer offered: read again from the server.
        let last = len - CHUNK as u64;
        assert!(readers.iter().any(|r| !r.can_serve(last)), "nothing was shed");
        drop(readers);
    }
}
