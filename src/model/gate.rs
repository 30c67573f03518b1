//! Per-path upload claims: at most one upload of a path runs at a time. A streaming upload
//! claims its path for as long as it streams; a second upload of the same path waits (bounded)
//! for the claim.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Paths with an upload in progress. A claim is released when its guard drops.
#[derive(Default)]
pub struct UploadGate {
    busy: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// The right to upload one path, until dropped.
pub struct PathClaim {
    gate: Arc<UploadGate>,
    path: String,
}

impl UploadGate {
    /// Claims `path` if no upload of it is running.
    pub fn try_claim(self: &Arc<Self>, path: &str) -> Option<PathClaim> {
        let mut busy = self.busy.lock();
        busy.insert(path.to_string()).then(|| PathClaim { gate: self.clone(), path: path.to_string() })
    }

    /// Claims `path`, waiting until `deadline` for a running upload of it to end.
    pub fn claim(self: &Arc<Self>, path: &str, deadline: Instant) -> Option<PathClaim> {
        let mut busy = self.busy.lock();
        while busy.contains(path) {
            if self.freed.wait_until(&mut busy, deadline).timed_out() && busy.contains(path) {
                return None;
            }
        }
        busy.insert(path.to_string());
        Some(PathClaim { gate: self.clone(), path: path.to_string() })
    }
}

impl Drop for PathClaim {
    fn drop(&mut self) {
        self.gate.busy.lock().remove(&self.path);
        self.gate.freed.notify_all();
    }
}
