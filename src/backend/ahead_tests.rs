//! Tests of the work done ahead, on the in-memory server: what is fetched ahead is served only
//! while the server's listing and our own changes say it is still the file's content.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::ahead::{Ahead, AheadConfig};
use super::memory::MemoryBackend;
use super::{Backend, BackendResult, Entry, ReadStream, WriteMode, WriteStream};

fn setup(connections: usize) -> (Arc<MemoryBackend>, Ahead) {
    let be = Arc::new(MemoryBackend::new(connections));
    for i in 1..=10 {
        be.put_file(&format!("d/f{i:02}"), format!("content of file {i}").as_bytes());
    }
    let ahead =
        Ahead::new(be.clone(), AheadConfig { max_age: Duration::from_secs(60), workers: 2, ..AheadConfig::default() });
    (be, ahead)
}

fn read_all(b: &dyn Backend, path: &str) -> Vec<u8> {
    let mut s = b.read(path, 0, Duration::from_secs(5)).expect("read").expect("a connection");
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read to end");
    s.finish().expect("finish");
    v
}

/// Waits until the files fetched ahead hold at least `bytes` (or fails after 5 s).
fn wait_held(a: &Ahead, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.bytes_held() < bytes {
        assert!(Instant::now() < deadline, "only {} bytes fetched ahead", a.bytes_held());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (10 s at most) until `done` holds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Holds the work-ahead threads where they call it until the test lets them go. After 30 s it
/// opens by itself and says so in `held_too_long`: a test that waits for what it holds fails
/// instead of hanging.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
    /// Threads waiting in it now.
    waiting: AtomicUsize,
    held_too_long: AtomicBool,
}

impl Gate {
    fn pass(&self) {
        if std::thread::current().name() != Some("ftpfs-ahead") {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut open = self.open.lock();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while !*open {
            if self.cond.wait_until(&mut open, deadline).timed_out() {
                self.held_too_long.store(true, Ordering::SeqCst);
                *open = true;
                self.cond.notify_all();
            }
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    fn let_go(&self) {
        *self.open.lock() = true;
        self.cond.notify_all();
    }
}

fn server_reads(be: &MemoryBackend, path: &str) -> usize {
    be.calls().iter().filter(|c| c.starts_with(&format!("read {path} "))).count()
}

/// Reads f01 and f02 whole, in listing order: f03… are fetched ahead.
fn start_reading(be: &MemoryBackend, a: &Ahead) {
    a.list("d").expect("list");
    assert_eq!(read_all(a, "d/f01"), b"content of file 1");
    assert_eq!(read_all(a, "d/f02"), b"content of file 2");
    wait_held(a, 8 * 17);
    be.clear_calls();
}

#[test]
fn the_next_files_are_served_from_memory() {
    let (be, a) = setup(4);
    start_reading(&be, &a);
    for i in 3..=10 {
        let p = format!("d/f{i:02}");
        assert_eq!(read_all(&a, &p), format!("content of file {i}").as_bytes());
        assert_eq!(server_reads(&be, &p), 0, "{p} was read from the server again");
    }
}

#[test]
fn a_file_changed_on_the_server_is_not_served_once_a_listing_shows_it() {
    let (be, a) = setup(4);
    start_reading(&be, &a);
    be.put_file("d/f04", b"changed by another client, longer");
    a.list("d").expect("list");
    assert_eq!(read_all(&a, "d/f04"), b"changed by another client, longer");
    assert_eq!(server_reads(&be, "d/f04"), 1);
    // The others are still good.
    assert_eq!(read_all(&a, "d/f05"), b"content of file 5");
    assert_eq!(server_reads(&be, "d/f05"), 0);
}

#[test]
fn a_file_changed_on_the_server_is_not_served_once_a_lookup_of_its_name_shows_it() {
    // A mount whose server answers MLST (or SIZE) looks one name up instead of listing the
    // directory: that answer drops what was fetched ahead just as a listing would.
    let (be, a) = setup(4);
    be.set_stat_one_supported(true);
    start_reading(&be, &a);
    be.put_file("d/f04", b"changed by another client, longer");
    a.stat_one("d/f04").expect("stat").expect("an entry");
    be.put_file("d/f05", b"changed too");
    assert_eq!(a.size("d/f05").expect("size"), Some(11));
    be.delete("d/f06").expect("delete");
    a.stat_one("d/f06").expect_err("gone");
    be.put_file("d/f06", b"made again, longer");
    // The same size, a later time (MDTM).
    be.put_file("d/f08", b"CONTENT OF FILE 8");
    a.modified("d/f08").expect("mdtm").expect("a time");
    // One whose answer confirms it is still served.
    a.stat_one("d/f07").expect("stat").expect("an entry");
    be.clear_calls();
    assert_eq!(read_all(&a, "d/f04"), b"changed by another client, longer");
    assert_eq!(read_all(&a, "d/f05"), b"changed too");
    assert_eq!(read_all(&a, "d/f06"), b"made again, longer");
    assert_eq!(read_all(&a, "d/f08"), b"CONTENT OF FILE 8");
    for p in ["d/f04", "d/f05", "d/f06", "d/f08"] {
        // (Twice when a fetch ahead of it was still running: its result is not kept.)
        assert!(server_reads(&be, p) >= 1, "{p} served from memory after the server showed another file");
    }
    assert_eq!(read_all(&a, "d/f07"), b"content of file 7");
    assert_eq!(server_reads(&be, "d/f07"), 0);
}

#[test]
fn our_own_changes_are_never_hidden() {
    let (be, a) = setup(4);
    start_reading(&be, &a);
    let mut up = a.write("d/f03", WriteMode::Replace, Duration::from_secs(5)).unwrap().unwrap();
    up.write_all(b"written by us").unwrap();
    up.finish().unwrap();
    assert_eq!(read_all(&a, "d/f03"), b"written by us");
    a.rename("d/f06", "d/f04").unwrap();
    assert_eq!(read_all(&a, "d/f04"), b"content of file 6");
    a.delete("d/f05").unwrap();
    be.put_file("d/f05", b"recreated");
    assert_eq!(read_all(&a, "d/f05"), b"recreated");
    a.set_mtime("d/f07", 1).unwrap();
    assert_eq!(read_all(&a, "d/f07"), b"content of file 7");
    assert_eq!(server_reads(&be, "d/f07"), 1, "a changed file is read from the server");
}

#[test]
fn nothing_ahead_without_a_spare_connection() {
    let (be, a) = setup(1);
    a.list("d").unwrap();
    read_all(&a, "d/f01");
    read_all(&a, "d/f02");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.bytes_held(), 0);
    assert_eq!(server_reads(&be, "d/f03"), 0);
}

#[test]
fn reads_out_of_order_fetch_nothing() {
    let (be, a) = setup(4);
    a.list("d").unwrap();
    read_all(&a, "d/f07");
    read_all(&a, "d/f02");
    read_all(&a, "d/f09");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.bytes_held(), 0);
    assert_eq!(be.calls().iter().filter(|c| c.starts_with("read ")).count(), 3);
}

#[test]
fn memory_stays_within_its_bound() {
    let be = Arc::new(MemoryBackend::new(4));
    for i in 1..=20 {
        be.put_file(&format!("d/f{i:02}"), &vec![b'x'; 1000]);
    }
    let a = Ahead::new(be.clone(), AheadConfig { bytes: 3500, files: 10, workers: 2, ..AheadConfig::default() });
    a.list("d").unwrap();
    for i in 1..=12 {
        assert_eq!(read_all(&a, &format!("d/f{i:02}")).len(), 1000);
        assert!(a.bytes_held() <= 3500, "{} bytes held", a.bytes_held());
    }
}

#[test]
fn listings_ahead_during_a_walk() {
    let be = Arc::new(MemoryBackend::new(4));
    for d in ["t/a/x", "t/a/y", "t/b/z", "t/c"] {
        be.mkdir_all(d);
    }
    be.put_file("t/b/z/file", b"1");
    // A request for a listing still on its way waits for it: however long a loaded machine
    // takes to finish it, not long enough to ask the server itself.
    be.set_wait_limit(Duration::from_secs(30));
    let a = Ahead::new(be.clone(), AheadConfig { workers: 3, ..AheadConfig::default() });
    // Resolving a path lists its directories one after another: no walk, nothing ahead.
    a.list("").unwrap();
    a.list("t").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!be.calls().iter().any(|c| c.starts_with("list t/")), "listed ahead for lookups: {:?}", be.calls());
    // "t" read right after its parent: a walk. Its subdirectories are listed ahead.
    a.opened_dir("");
    a.opened_dir("t");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !["list t/a", "list t/b", "list t/c"].iter().all(|c| be.calls().iter().any(|k| k == c)) {
        assert!(Instant::now() < deadline, "not listed ahead: {:?}", be.calls());
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    be.clear_calls();
    let names = |d: &str| a.list(d).unwrap().into_iter().map(|e| e.name).collect::<Vec<_>>();
    assert_eq!(names("t/b"), ["z"]);
    assert!(!be.calls().iter().any(|c| c == "list t/b"), "served from the listing fetched ahead");
    // A change of ours in a directory listed ahead: its listing comes from the server.
    a.mkdir("t/c/new").unwrap();
    assert_eq!(names("t/c"), ["new"]);
    // A link made there too (refused by this server, whose answer may still have come after
    // the link was made).
    let _ = a.symlink(super::LinkTarget::InMount("t/b/z"), "t/a/link");
    be.clear_calls();
    names("t/a");
    assert!(be.calls().iter().any(|c| c == "list t/a"), "a listing from before the link was served");
    // Served once only: the next listing asks the server.
    be.clear_calls();
    names("t/b");
    assert!(be.calls().iter().any(|c| c == "list t/b"));
}

/// Where the server lists several directories in one go, a walk's directory is listed in one
/// batch with its siblings, by the request for it (not one job each, nor behind a worker), and
/// the siblings are then served without asking again; a change spoils one listed ahead.
#[test]
fn a_walk_lists_siblings_in_one_batch() {
    let be = Arc::new(MemoryBackend::new(4));
    for d in ["t/a/x", "t/b", "t/c"] {
        be.mkdir_all(d);
    }
    be.put_file("t/b/f", b"1");
    be.set_lists_at_once(32);
    be.set_wait_limit(Duration::from_secs(30));
    // No worker may take the batch first: the request for "t/a" lists it.
    let a = Ahead::new(be.clone(), AheadConfig { workers: 0, ..AheadConfig::default() });
    a.list("").unwrap();
    a.list("t").unwrap();
    a.opened_dir("");
    a.opened_dir("t");
    a.opened_dir("t/a"); // told before its listing, as opendir does
    be.clear_calls();
    let names = |d: &str| a.list(d).unwrap().into_iter().map(|e| e.name).collect::<Vec<_>>();
    assert_eq!(names("t/a"), ["x"]);
    let calls = be.calls();
    assert_eq!(calls.first().map(String::as_str), Some("several t/a,t/b,t/c"), "{calls:?}");
    be.clear_calls();
    assert_eq!(names("t/b"), ["f"]);
    assert!(be.calls().is_empty(), "served from the batch: {:?}", be.calls());
    a.mkdir("t/c/new").unwrap();
    be.clear_calls();
    assert_eq!(names("t/c"), ["new"]);
    assert!(be.calls().iter().any(|c| c == "list t/c"), "a changed directory is asked again");
}

/// With a worker free, the batch is listed in the background; a request for one of its
/// directories waits for it rather than asking again.
#[test]
fn a_walk_batch_taken_by_a_worker_serves_the_request() {
    let be = Arc::new(MemoryBackend::new(4));
    for d in ["t/a", "t/b", "t/c"] {
        be.mkdir_all(d);
    }
    be.put_file("t/c/g", b"1");
    be.set_lists_at_once(32);
    be.set_wait_limit(Duration::from_secs(30));
    let a = Ahead::new(be.clone(), AheadConfig { workers: 2, ..AheadConfig::default() });
    a.list("").unwrap();
    a.list("t").unwrap();
    a.opened_dir("");
    a.opened_dir("t");
    be.clear_calls();
    a.opened_dir("t/a");
    wait_until("the batch listed by a worker", || be.calls().iter().any(|c| c.starts_with("several ")));
    wait_until("the batch landed", || be.calls().iter().filter(|c| c.starts_with("list ")).count() == 3);
    let listed: Vec<String> = a.list("t/c").unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(listed, ["g"]);
    let calls = be.calls();
    assert_eq!(calls.iter().filter(|c| c.starts_with("several ")).count(), 1, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| *c == "list t/c").count(), 1, "listed once, in the batch: {calls:?}");
}

/// Downloads on the work-ahead threads whose data arrives only when the test lets it (a far
/// server): the server took its snapshot of the file when the download opened.
struct SlowAhead {
    inner: Arc<MemoryBackend>,
    gate: Gate,
}

impl Backend for SlowAhead {
    fn list(&self, d: &str) -> BackendResult<Vec<Entry>> {
        self.inner.list(d)
    }
    fn size(&self, p: &str) -> BackendResult<Option<u64>> {
        self.inner.size(p)
    }
    fn read(&self, p: &str, o: u64, w: Duration) -> BackendResult<Option<Box<dyn ReadStream>>> {
        let r = self.inner.read(p, o, w);
        self.gate.pass();
        r
    }
    fn write(&self, p: &str, m: WriteMode, w: Duration) -> BackendResult<Option<Box<dyn WriteStream>>> {
        self.inner.write(p, m, w)
    }
    fn mkdir(&self, p: &str) -> BackendResult<()> {
        self.inner.mkdir(p)
    }
    fn rmdir(&self, p: &str) -> BackendResult<()> {
        self.inner.rmdir(p)
    }
    fn delete(&self, p: &str) -> BackendResult<()> {
        self.inner.delete(p)
    }
    fn rename(&self, a: &str, b: &str) -> BackendResult<()> {
        self.inner.rename(a, b)
    }
    fn can_set_mtime(&self) -> bool {
        true
    }
    fn set_mtime(&self, p: &str, s: i64) -> BackendResult<()> {
        self.inner.set_mtime(p, s)
    }
    fn chmod(&self, p: &str, m: u32) -> BackendResult<()> {
        self.inner.chmod(p, m)
    }
    fn can_append(&self) -> bool {
        true
    }
    fn can_chmod(&self) -> bool {
        true
    }
    fn can_name(&self, n: &str) -> bool {
        self.inner.can_name(n)
    }
    fn wait_limit(&self) -> Duration {
        self.inner.wait_limit()
    }
    fn spare_connections(&self) -> usize {
        self.inner.spare_connections()
    }
    fn close_idle(&self) {}
    fn shut_down(&self) {
        self.inner.shut_down()
    }
}

/// A listing that arrives while a fetch ahead is in flight and shows the file changed spoils
/// that fetch: the old content is never served.
#[test]
fn a_listing_during_a_fetch_ahead_spoils_it() {
    let be = Arc::new(MemoryBackend::new(8));
    for i in 1..=5 {
        be.put_file(&format!("d/f{i}"), format!("old content {i}").as_bytes());
    }
    let slow = Arc::new(SlowAhead { inner: be.clone(), gate: Gate::default() });
    let a = Ahead::new(
        slow.clone(),
        AheadConfig { max_age: Duration::from_secs(10), workers: 2, ..AheadConfig::default() },
    );
    a.list("d").expect("list");
    read_all(&a, "d/f1");
    read_all(&a, "d/f2");
    // f3 is being fetched ahead: the old content is on its way.
    wait_until("f3 fetched ahead", || be.calls().iter().any(|c| c == "read d/f3 0"));
    be.put_file("d/f3", b"NEW content written by another client, longer");
    let listed = a.list("d").expect("list");
    let new_size = listed.iter().find(|e| e.name == "f3").and_then(|e| e.size);
    // The fetches ahead end (f4 and f5 are kept) after that listing, before the next one.
    slow.gate.let_go();
    let old = |i: usize| format!("old content {i}").len() as u64;
    wait_until("fetches ahead over", || be.open_streams() == 0 && a.bytes_held() >= old(4) + old(5));
    a.list("d").expect("list");
    let got = read_all(&a, "d/f3");
    assert_eq!(Some(got.len() as u64), new_size, "served {:?}", String::from_utf8_lossy(&got));
    assert!(!slow.gate.held_too_long.load(Ordering::SeqCst), "the fetches ahead were held for 30 s");
}

/// A request never waits behind fetches that are only queued: it cancels its own and asks.
#[test]
fn a_request_does_not_wait_behind_the_queue() {
    let be = Arc::new(MemoryBackend::new(8));
    for i in 0..200 {
        be.mkdir_all(&format!("t/d{i:03}/x"));
    }
    // Longer than the gate holds: a request that waits for the queue outlasts the gate.
    be.set_wait_limit(Duration::from_secs(60));
    let gate = Arc::new(Gate::default());
    let held = gate.clone();
    be.set_list_hook(Some(Box::new(move |_: &str| held.pass())));
    let a = Ahead::new(be.clone(), AheadConfig { workers: 4, ..AheadConfig::default() });
    // A walk: every subdirectory of t is queued to be listed ahead, d000… first.
    a.list("").expect("list");
    a.list("t").expect("list");
    a.opened_dir("");
    a.opened_dir("t");
    // Each worker holds one listing; the other 196 stay queued while the gate is shut.
    wait_until("4 listings ahead running", || gate.waiting.load(Ordering::SeqCst) == 4);
    be.clear_calls();
    a.list("t/d199").expect("list");
    // Its own listing (the queued one was cancelled), not one after 190 others: done while the
    // workers were still held.
    assert!(!gate.held_too_long.load(Ordering::SeqCst), "the request waited behind the queued listings");
    assert_eq!(gate.waiting.load(Ordering::SeqCst), 4, "the workers went on before the request ended");
    assert_eq!(be.calls(), ["list t/d199"]);
    // The queued listing of d199 was cancelled: the workers never list it.
    gate.let_go();
    wait_until("the queue listed", || be.calls().iter().any(|c| c == "list t/d198"));
    assert_eq!(be.calls().iter().filter(|c| *c == "list t/d199").count(), 1, "d199 was listed again");
    be.set_list_hook(None);
}

/// Files fetched ahead that grew too old to be served are let go at the next read, so they do
/// not hold memory (up to the budget) until something newer pushes them out.
#[test]
fn files_too_old_to_serve_are_let_go() {
    let be = Arc::new(MemoryBackend::new(4));
    for i in 1..=10 {
        be.put_file(&format!("d/f{i:02}"), format!("content of file {i}").as_bytes());
    }
    be.put_file("e/x", b"elsewhere");
    let max_age = Duration::from_millis(300);
    let a = Ahead::new(be.clone(), AheadConfig { max_age, workers: 2, ..AheadConfig::default() });
    a.list("d").expect("list");
    assert_eq!(read_all(&a, "d/f01"), b"content of file 1");
    assert_eq!(read_all(&a, "d/f02"), b"content of file 2");
    // The eight next files are fetched (each read on the server, every stream closed; some may
    // already have been let go as too old on a slow machine), then they age past max_age
    // (sleeping longer only helps).
    wait_until("the next files fetched", || {
        (3..=10).all(|i| server_reads(&be, &format!("d/f{i:02}")) == 1) && be.open_streams() == 0
    });
    std::thread::sleep(max_age + Duration::from_secs(1));
    assert_eq!(read_all(&a, "e/x"), b"elsewhere");
    assert_eq!(a.bytes_held(), 0, "files too old to be served still held");
    // And they are not served: f05 is read from the server.
    be.clear_calls();
    assert_eq!(read_all(&a, "d/f05"), b"content of file 5");
    assert_eq!(server_reads(&be, "d/f05"), 1);
}

fn upload(b: &dyn Backend, path: &str, mode: WriteMode, body: &[u8]) {
    let mut up = b.write(path, mode, Duration::from_secs(5)).expect("write").expect("a connection");
    up.write_all(body).expect("upload");
    up.finish().expect("finish");
}

#[test]
fn a_small_file_we_just_uploaded_is_read_back_without_a_download() {
    let (be, a) = setup(4);
    upload(&a, "d/new", WriteMode::Replace, b"what we wrote");
    be.clear_calls();
    assert_eq!(read_all(&a, "d/new"), b"what we wrote");
    assert_eq!(server_reads(&be, "d/new"), 0, "read from the server again");
    // Served once: the next read asks the server.
    assert_eq!(read_all(&a, "d/new"), b"what we wrote");
    assert_eq!(server_reads(&be, "d/new"), 1);
}

#[test]
fn an_uploaded_copy_gives_way_to_a_listing_that_shows_another_file() {
    let (be, a) = setup(4);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
    be.set_clock(now as i64);
    upload(&a, "d/new", WriteMode::Replace, b"what we wrote");
    // A listing that shows our size confirms it (and gives it its time) ...
    a.list("d").expect("list");
    upload(&a, "d/other", WriteMode::Replace, b"ours");
    // ... one that shows another size drops it: another client wrote there since.
    be.put_file("d/other", b"another client's, longer");
    a.list("d").expect("list");
    be.clear_calls();
    assert_eq!(read_all(&a, "d/new"), b"what we wrote");
    assert_eq!(server_reads(&be, "d/new"), 0);
    assert_eq!(read_all(&a, "d/other"), b"another client's, longer");
    assert_eq!(server_reads(&be, "d/other"), 1);
}

#[test]
fn an_uploaded_copy_gives_way_to_a_lookup_that_shows_another_file() {
    // Found by the model's property test: our upload kept, another client's shorter file put
    // there, the name looked up alone (MLST): the open read our upload back instead.
    let (be, a) = setup(4);
    be.set_stat_one_supported(true);
    upload(&a, "d/new", WriteMode::Replace, b"what we wrote");
    be.put_file("d/new", b"x");
    a.stat_one("d/new").expect("stat").expect("an entry");
    upload(&a, "d/sized", WriteMode::Replace, b"what we wrote");
    be.put_file("d/sized", b"y");
    assert_eq!(a.size("d/sized").expect("size"), Some(1));
    be.clear_calls();
    assert_eq!(read_all(&a, "d/new"), b"x");
    assert_eq!(read_all(&a, "d/sized"), b"y");
    assert_eq!(server_reads(&be, "d/new") + server_reads(&be, "d/sized"), 2, "our upload served over another file");
}

#[test]
fn an_uploaded_copy_is_not_taken_for_a_same_size_file_older_than_the_upload() {
    // A listing showing our size with a time before the upload began is not our upload (a
    // same-size file of another client's, or the old one): the copy is dropped.
    let (be, a) = setup(4);
    upload(&a, "d/new", WriteMode::Replace, b"what we wrote");
    a.list("d").expect("list");
    be.clear_calls();
    assert_eq!(read_all(&a, "d/new"), b"what we wrote");
    assert_eq!(server_reads(&be, "d/new"), 1, "the copy was served although the listing did not show our upload");
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

#[test]
fn an_uploaded_copy_is_not_taken_for_a_same_size_file_made_after_the_upload() {
    // Another client's file of our size, made seconds after our upload ended: not ours.
    let (be, a) = setup(4);
    be.set_stat_one_supported(true);
    be.set_clock(now_secs());
    upload(&a, "d/new", WriteMode::Replace, b"what we wrote");
    be.set_clock(now_secs() + 10);
    be.put_file("d/new", b"what THEY put");
    a.stat_one("d/new").expect("stat").expect("an entry");
    assert_eq!(read_all(&a, "d/new"), b"what THEY put");
}

#[test]
fn an_uploaded_copy_gives_way_to_an_older_time() {
    // MDTM shows a time from before our upload (another client's older file of our size moved
    // over it): not ours.
    let (be, a) = setup(4);
    be.set_clock(now_secs());
    upload(&a, "d/new", WriteMode::Replace, b"what we wrote");
    be.set_clock(now_secs() - 100);
    be.put_file("d/new", b"an older file");
    a.modified("d/new").expect("mdtm").expect("a time");
    assert_eq!(read_all(&a, "d/new"), b"an older file");
}

#[test]
fn a_lookup_keeps_files_in_the_order_they_landed() {
    // What is too old to serve goes oldest first; a lookup that confirms a file must not make
    // it look younger than what landed after it.
    let be = Arc::new(MemoryBackend::new(4));
    let max_age = Duration::from_millis(600);
    let a = Ahead::new(be.clone(), AheadConfig { max_age, workers: 2, ..AheadConfig::default() });
    be.put_file("d/seed", b"");
    be.put_file("f/seed", b"");
    let now = now_secs();
    be.set_clock(now);
    upload(&a, "d/old", WriteMode::Replace, b"landed first");
    std::thread::sleep(Duration::from_millis(300));
    upload(&a, "f/young", WriteMode::Replace, b"later");
    // Confirms d/old (its size and a time while the upload ran).
    be.set_clock(now);
    a.list("d").expect("list");
    std::thread::sleep(Duration::from_millis(350));
    // d/old is past its age, f/young not (unless the machine stalled: then both are gone).
    be.put_file("e/x", b"x");
    read_all(&a, "e/x");
    assert!(a.bytes_held() <= 5, "{} bytes held: an expired file stayed behind a younger one", a.bytes_held());
}

#[test]
fn appends_and_big_or_failed_uploads_are_not_kept() {
    let (be, a) = setup(4);
    upload(&a, "d/f01", WriteMode::Append, b" and more");
    let big = vec![7u8; (AheadConfig::default().file_max + 1) as usize];
    upload(&a, "d/big", WriteMode::Replace, &big);
    be.fail_finish_next(super::FsError::Broken);
    let mut up = a.write("d/failed", WriteMode::Replace, Duration::from_secs(5)).expect("write").expect("a connection");
    up.write_all(b"never confirmed").expect("upload");
    up.finish().expect_err("the finish fails");
    be.clear_calls();
    assert_eq!(read_all(&a, "d/f01"), b"content of file 1 and more");
    assert_eq!(read_all(&a, "d/big").len(), big.len());
    read_all(&a, "d/failed");
    for p in ["d/f01", "d/big", "d/failed"] {
        assert_eq!(server_reads(&be, p), 1, "{p} served from memory");
    }
}
