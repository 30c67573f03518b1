//! What a running mount tells `ftpfs stats`: counters that every layer bumps (listing cache
//! hits and misses, retries, errors by kind, connections opened and lost), the transfers in
//! flight with their bytes and rates, and gauges that components register for their queues
//! (connections, read-ahead, files fetched ahead, write-back).
//!
//! A leaf module: it knows nothing of the layers that feed it, so each of them may use it
//! without an import cycle. One process serves one mount, so the numbers are process-wide
//! (tests that build several models in one process only ever add to them). Nothing here
//! blocks on the network: a report reads atomics and takes short locks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use parking_lot::Mutex;

/// The counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A directory's listing was served from the cache.
    ListingHit,
    /// A directory was listed on the server.
    ListingMiss,
    /// A name was looked up alone on the server (MLST) instead of listing its directory.
    SingleLookup,
    /// An operation was tried again on a fresh connection after the first one broke.
    Retry,
    ConnectionOpened,
    /// A connection was closed after an error (not at unmount or as idle).
    ConnectionLost,
    /// A file was served from the files fetched ahead.
    PrefetchServed,
    BytesRead,
    BytesWritten,
}

/// How many counters there are: the last one's index, plus one.
const COUNTERS: usize = Counter::BytesWritten as usize + 1;

struct Registry {
    started: Instant,
    counters: [AtomicU64; COUNTERS],
    errors: Mutex<BTreeMap<&'static str, u64>>,
    transfers: Mutex<BTreeMap<u64, Arc<Transfer>>>,
    next_transfer: AtomicU64,
    gauges: Mutex<Vec<Gauge>>,
}

/// Reads a gauge: `None` once its component is gone.
type ReadGauge = Arc<dyn Fn() -> Option<String> + Send + Sync>;

struct Gauge {
    name: &'static str,
    read: ReadGauge,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    started: Instant::now(),
    counters: Default::default(),
    errors: Mutex::new(BTreeMap::new()),
    transfers: Mutex::new(BTreeMap::new()),
    next_transfer: AtomicU64::new(1),
    gauges: Mutex::new(Vec::new()),
});

/// Starts the clock of the report's "up" time (at mount; otherwise at first use).
pub fn start() {
    LazyLock::force(&REGISTRY);
}

/// Adds one to `c`.
pub fn count(c: Counter) {
    add(c, 1);
}

/// Adds `n` to `c`.
pub fn add(c: Counter, n: u64) {
    REGISTRY.counters[c as usize].fetch_add(n, Ordering::Relaxed);
}

/// The value of `c` now.
pub fn get(c: Counter) -> u64 {
    REGISTRY.counters[c as usize].load(Ordering::Relaxed)
}

/// Notes a failed operation by the kind of its failure (`not found`, `timed out`, …).
pub fn error(kind: &'static str) {
    *REGISTRY.errors.lock().entry(kind).or_insert(0) += 1;
}

/// Registers a gauge: `read` describes a queue or pool in one line, `None` once it is gone
/// (then it is dropped from the registry). A later gauge of the same name replaces it.
pub fn gauge(name: &'static str, read: impl Fn() -> Option<String> + Send + Sync + 'static) {
    let mut gauges = REGISTRY.gauges.lock();
    gauges.retain(|g| g.name != name);
    gauges.push(Gauge { name, read: Arc::new(read) });
}

/// A transfer in flight.
struct Transfer {
    path: String,
    upload: bool,
    started: Instant,
    bytes: AtomicU64,
}

/// Counts a transfer's bytes; it is in flight until dropped.
pub struct TransferMeter {
    id: u64,
    transfer: Arc<Transfer>,
}

/// Starts counting a download (`upload` false) or an upload of `path`.
pub fn transfer(path: &str, upload: bool) -> TransferMeter {
    let id = REGISTRY.next_transfer.fetch_add(1, Ordering::Relaxed);
    let transfer =
        Arc::new(Transfer { path: path.to_string(), upload, started: Instant::now(), bytes: AtomicU64::new(0) });
    REGISTRY.transfers.lock().insert(id, transfer.clone());
    TransferMeter { id, transfer }
}

impl TransferMeter {
    /// `n` more bytes moved.
    pub fn moved(&self, n: usize) {
        self.transfer.bytes.fetch_add(n as u64, Ordering::Relaxed);
        add(if self.transfer.upload { Counter::BytesWritten } else { Counter::BytesRead }, n as u64);
    }
}

impl Drop for TransferMeter {
    fn drop(&mut self) {
        REGISTRY.transfers.lock().remove(&self.id);
    }
}

/// A name from the server, safe to print: control characters (a line break that would forge a
/// line of the report, a terminal escape) shown as `?`.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The report `ftpfs stats` prints, after a first line `header`.
pub fn report(header: &str) -> String {
    let r = &*REGISTRY;
    let mut out = String::new();
    let _ = writeln!(out, "{header}, up {}", duration(r.started.elapsed().as_secs()));
    // Read outside the registry's lock: a gauge takes its component's locks, and a component
    // dropped meanwhile is dropped here, with whatever its drop does.
    let readers: Vec<(&'static str, ReadGauge)> = r.gauges.lock().iter().map(|g| (g.name, g.read.clone())).collect();
    let mut gauges = Vec::new();
    let mut gone: Vec<ReadGauge> = Vec::new();
    for (name, read) in readers {
        match read() {
            Some(line) => gauges.push((name, line)),
            None => gone.push(read),
        }
    }
    if !gone.is_empty() {
        // Exactly the gauges that said they were gone (not one registered since in their place).
        r.gauges.lock().retain(|g| !gone.iter().any(|d| Arc::ptr_eq(d, &g.read)));
    }
    let line = |out: &mut String, name: &str, text: &str| {
        let _ = writeln!(out, "{name:<13} {text}");
    };
    for (name, text) in gauges.iter().filter(|(n, _)| *n == "connections") {
        line(&mut out, name, text);
    }
    let c = get;
    line(
        &mut out,
        "",
        &format!(
            "opened {}, lost to errors {}, operations retried {}",
            c(Counter::ConnectionOpened),
            c(Counter::ConnectionLost),
            c(Counter::Retry)
        ),
    );
    let transfers: Vec<Arc<Transfer>> = r.transfers.lock().values().cloned().collect();
    line(&mut out, "transfers", &format!("{} in flight", transfers.len()));
    for t in &transfers {
        let moved = t.bytes.load(Ordering::Relaxed);
        let secs = t.started.elapsed().as_secs_f64().max(0.001);
        let _ = writeln!(
            out,
            "  {:<8} {}  {} in {:.1}s, {}/s",
            if t.upload { "upload" } else { "download" },
            printable(&t.path),
            bytes(moved),
            secs,
            bytes((moved as f64 / secs) as u64)
        );
    }
    line(
        &mut out,
        "moved",
        &format!("{} read, {} written", bytes(c(Counter::BytesRead)), bytes(c(Counter::BytesWritten))),
    );
    let (hits, misses) = (c(Counter::ListingHit), c(Counter::ListingMiss));
    let ratio = if hits + misses > 0 {
        format!(" ({:.0}% hits)", 100.0 * hits as f64 / (hits + misses) as f64)
    } else {
        String::new()
    };
    line(
        &mut out,
        "listings",
        &format!("cache hits {hits}, misses {misses}{ratio}; names looked up alone {}", c(Counter::SingleLookup)),
    );
    for (name, text) in gauges.iter().filter(|(n, _)| *n != "connections") {
        line(&mut out, name, text);
    }
    if let Some(m) = crate::allocator::usage() {
        // Exact byte counts too: the soak (scripts/soak_load.py) reads them to find leaks.
        let resident = crate::allocator::resident().map(|r| format!("resident {}; ", bytes(r))).unwrap_or_default();
        line(
            &mut out,
            "memory",
            &format!(
                "{resident}allocated {} ({} B in arenas + {} B mapped; mostly the request threads' \
                 buffers, resident only where touched), arenas hold {}",
                bytes(m.in_arenas + m.mapped),
                m.in_arenas,
                m.mapped,
                bytes(m.arenas_held)
            ),
        );
    }
    let errors = r.errors.lock();
    let text = if errors.is_empty() {
        "none".to_string()
    } else {
        errors.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    };
    line(&mut out, "errors", &text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_shows_transfers_in_flight_and_forgets_them() {
        let odd = transfer("/stats-test/odd\nerrors        none\x1b[2J", true);
        assert!(report("ftpfs test").contains("/stats-test/odd?errors        none?[2J"));
        drop(odd);
        let meter = transfer("/stats-test/big.iso", false);
        meter.moved(3 << 20);
        gauge("stats-test-gauge", || Some("3 queued".into()));
        error("stats-test kind");
        let text = report("ftpfs test");
        assert!(text.starts_with("ftpfs test, up "), "{text}");
        assert!(text.contains("download /stats-test/big.iso  3.0 MiB in"), "{text}");
        assert!(text.contains("stats-test-gauge 3 queued"), "{text}");
        assert!(text.contains("stats-test kind 1"), "{text}");
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(text.contains(" B in arenas + ") && text.contains("resident "), "{text}");
        drop(meter);
        gauge("stats-test-gauge", || None);
        let text = report("ftpfs test");
        assert!(!text.contains("/stats-test/big.iso") && !text.contains("stats-test-gauge"), "{text}");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(duration(3725), "1h02m");
    }
}
