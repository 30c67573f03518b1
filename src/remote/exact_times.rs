//! Exact file times where the server's listing is coarse: a LIST shows times to the minute
//! (to the day for files older than six months), so a time set exactly (`cp -p`, `rsync -a`,
//! `tar x`) would read back wrong and rsync would copy every file again. Where the server has
//! MDTM, the times of a coarse listing's files are asked for with MDTM, pipelined on the
//! listing's own connection (see [`crate::ftp::times`]), and cached with the listing.
//!
//! An MDTM time is taken only when it falls within the listing's own time for the entry (the
//! true time lies in `[listed, listed + step)`): a file changed between the two commands keeps
//! the listing's time, consistent with the listing's size, and a server whose MDTM is off by a
//! time zone (vsftpd with `use_localtime=YES` answers in local time, like its LIST, which
//! `list_tz` corrects) is read with that same correction, or not at all.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::ftp::{self, Connection, EntryKind};

/// A listing with more coarse files than this keeps its coarse times: a directory of a hundred
/// thousand files would otherwise cost as many MDTMs at every refresh of its listing.
pub const MAX_FILES: usize = 20_000;

/// What the mount learned about MDTM on this server.
pub struct ExactTimes {
    /// The server has MDTM (FEAT).
    available: bool,
    /// Said once in the log that MDTM times disagree with the listing.
    told_disagreement: AtomicBool,
}

impl ExactTimes {
    pub fn new(available: bool) -> ExactTimes {
        ExactTimes { available, told_disagreement: AtomicBool::new(false) }
    }

    /// Replaces the coarse times of the files in `entries` (listed in `dir`, a server path) by
    /// their MDTM times where those are consistent with the listing. `tz_offset` is the
    /// listing's offset from UTC (`list_tz`). Fails only when the connection broke.
    pub fn refine(&self, c: &mut Connection, dir: &str, entries: &mut [ftp::Entry], tz_offset: i64) -> ftp::Result<()> {
        self.refine_many(c, &mut [(dir, entries)], tz_offset)
    }

    /// [`ExactTimes::refine`] for several listings at once: their MDTMs go in one pipeline (one
    /// per group of listings with at most [`MAX_FILES`] coarse files), so a batch of
    /// directories costs about one round trip more, not one per directory. A listing with more
    /// than [`MAX_FILES`] coarse files keeps its coarse times, as alone.
    pub fn refine_many(
        &self,
        c: &mut Connection,
        listings: &mut [(&str, &mut [ftp::Entry])],
        tz_offset: i64,
    ) -> ftp::Result<()> {
        if !self.available {
            return Ok(());
        }
        // (listing, entry) of each coarse file, in groups.
        let mut groups: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
        for (l, (_, entries)) in listings.iter().enumerate() {
            let coarse: Vec<(usize, usize)> = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.kind == EntryKind::File && e.mtime.is_some() && e.mtime_step > 1)
                .map(|(i, _)| (l, i))
                .collect();
            if coarse.len() > MAX_FILES {
                continue;
            }
            let last = groups.last_mut().filter(|g| g.len() + coarse.len() <= MAX_FILES);
            match last {
                Some(g) => g.extend(coarse),
                None => groups.push(coarse),
            }
        }
        let mut disagreed = 0;
        for group in groups.iter().filter(|g| !g.is_empty()) {
            let paths: Vec<String> = group.iter().map(|&(l, i)| join(listings[l].0, &listings[l].1[i].name)).collect();
            let times = c.mdtm_many(&paths)?;
            for (&(l, i), exact) in group.iter().zip(times) {
                let Some((secs, nanos)) = exact else { continue };
                let e = &mut listings[l].1[i];
                let Some(listed) = e.mtime else { continue };
                let Some(t) = consistent_time(listed, e.mtime_step, secs, tz_offset) else {
                    disagreed += 1;
                    continue;
                };
                e.mtime = Some(t);
                e.mtime_nanos = nanos;
                e.mtime_step = 1;
            }
        }
        if disagreed > 0 && !self.told_disagreement.swap(true, Ordering::Relaxed) {
            let dirs: Vec<&str> = listings.iter().map(|(d, _)| *d).collect();
            log::info!(
                "{disagreed} MDTM times in {} disagree with the listing (changed meanwhile, or a time zone: \
                 see list_tz); their listed times are kept",
                dirs.join(", ")
            );
        }
        Ok(())
    }
}

/// The MDTM time `mdtm` as UTC when it lies within the listing's `[listed, listed + step)`:
/// as sent (RFC 3659: MDTM is UTC), or corrected by the listing's time zone `tz_offset` (a
/// server that answers MDTM in the same local time as its LIST). `None`: it does not fit.
fn consistent_time(listed: i64, step: u32, mdtm: i64, tz_offset: i64) -> Option<i64> {
    let within = |t: i64| (listed..listed + i64::from(step)).contains(&t);
    [mdtm, mdtm - tz_offset].into_iter().find(|&t| within(t))
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mdtm_time_is_taken_only_within_the_listed_one() {
        let listed = 1_700_000_040; // a LIST time to the minute
        assert_eq!(consistent_time(listed, 60, listed + 17, 0), Some(listed + 17));
        assert_eq!(consistent_time(listed, 60, listed, 0), Some(listed));
        assert_eq!(consistent_time(listed, 60, listed + 60, 0), None, "the next minute: changed meanwhile");
        assert_eq!(consistent_time(listed, 60, listed - 1, 0), None);
        // A server answering MDTM in the local time of its LIST (list_tz=+03:00).
        assert_eq!(consistent_time(listed, 60, listed + 3 * 3600 + 5, 3 * 3600), Some(listed + 5));
        assert_eq!(consistent_time(listed, 60, listed + 5, 3 * 3600), Some(listed + 5), "or in UTC as RFC 3659 says");
        // To the day for files older than six months.
        let day = 1_546_387_200; // 2019-01-02 00:00 UTC
        assert_eq!(consistent_time(day, 86_400, day + 11_045, 0), Some(day + 11_045));
        assert_eq!(consistent_time(day, 86_400, day + 86_400, 0), None);
    }

    #[test]
    fn joins_server_paths() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/d", "a b"), "/d/a b");
        assert_eq!(join("/d/", "a"), "/d/a");
    }
}
