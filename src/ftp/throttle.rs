//! Bandwidth and request limits (`-o bwlimit=UP[:DOWN]`, `-o max_requests_per_second=N`), shared
//! by every connection of a mount: the bytes of file transfers each way, and the commands sent
//! on control connections, are paced to a rate, as rclone's `--bwlimit` and `--tpslimit` do.
//!
//! Each limit is a virtual clock: taking `n` units moves the time the limit is free again
//! `n / rate` further, and the caller sleeps until its units fit. Up to [`BURST`] of unused time
//! is kept (an idle mount starts a transfer at full speed for that long), never more, so the
//! average over any longer span stays within the rate. A wait is bounded by what the caller
//! takes (one read or write buffer, one line of commands) and by the takers ahead of it.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How much unused time a limit keeps for a burst.
pub const BURST: Duration = Duration::from_millis(250);

/// One rate: units (bytes, commands) per second.
#[derive(Debug)]
pub struct Rate {
    per_second: u64,
    /// When the units taken so far are paid for.
    free_at: Mutex<Instant>,
}

impl Rate {
    pub fn new(per_second: u64) -> Rate {
        Rate { per_second: per_second.max(1), free_at: Mutex::new(Instant::now()) }
    }

    pub fn per_second(&self) -> u64 {
        self.per_second
    }

    /// The most to move in one read or write: a burst's worth (at least 512), so that the wait
    /// after it stays within about [`BURST`].
    pub fn chunk(&self) -> usize {
        ((self.per_second as f64 * BURST.as_secs_f64()) as usize).max(512)
    }

    /// Waits until `units` more fit the rate.
    pub fn take(&self, units: u64) {
        let wait = {
            let mut free_at = self.free_at.lock();
            let now = Instant::now();
            let earliest = now.checked_sub(BURST).unwrap_or(now);
            let start = (*free_at).max(earliest);
            *free_at = start + Duration::from_secs_f64(units as f64 / self.per_second as f64);
            free_at.saturating_duration_since(now)
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// The limits of a mount; `None`: no limit that way.
#[derive(Debug, Default)]
pub struct Limits {
    /// Bytes uploaded per second.
    pub up: Option<Rate>,
    /// Bytes downloaded per second.
    pub down: Option<Rate>,
    /// Commands sent per second.
    pub commands: Option<Rate>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.up.is_none() && self.down.is_none() && self.commands.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_paces_what_is_taken_beyond_the_burst() {
        let r = Rate::new(1000);
        let t0 = Instant::now();
        // 600 units at 1000/s: 0.6 s, less the burst kept (0.25 s) at most.
        for _ in 0..60 {
            r.take(10);
        }
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(600 - 250), "{took:?}");
        // Idle for longer than the burst: no more than the burst is kept.
        std::thread::sleep(Duration::from_millis(600));
        let t1 = Instant::now();
        r.take(500);
        assert!(t1.elapsed() >= Duration::from_millis(500 - 250), "{:?}", t1.elapsed());
    }

    #[test]
    fn takers_on_several_threads_share_one_rate() {
        let r = std::sync::Arc::new(Rate::new(2000));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || (0..25).for_each(|_| r.take(10)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        // 1000 units at 2000/s: 0.5 s, less the burst.
        assert!(t0.elapsed() >= Duration::from_millis(500 - 250), "{:?}", t0.elapsed());
    }
}
