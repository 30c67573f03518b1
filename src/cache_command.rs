//! `ftpfs cache clear TARGET`: empties the disk cache (`-o disk_cache`) of a running mount,
//! through its control channel, or of a server and directory not mounted now, in place (its
//! URL; the cache directory of a live mount of it is locked, and then refused here).

use std::path::{Path, PathBuf};

use crate::disk_cache::DiskCache;

/// Clears the disk cache that `target` names: a mount point, or a URL as the mount was given
/// (`options` may give its `cache_dir=`).
pub fn clear(target: &str, options: &[String]) -> Result<(), String> {
    if !(target.starts_with("ftp://") || target.starts_with("ftps://")) {
        return crate::control_channel::cache_clear(Path::new(target));
    }
    let opts = crate::cli::parse_mount_options(options)?;
    let server = crate::cli::parse_url(target)?;
    let cache_dir: PathBuf = opts.cache_dir.unwrap_or_else(crate::cli::default_cache_dir);
    let dir = cache_dir.join("content").join(crate::journal_dirs::journal_key(&server));
    if std::fs::symlink_metadata(&dir).is_err() {
        println!("no disk cache for {} in {}", server.display_url(), cache_dir.display());
        return Ok(());
    }
    crate::private_files::check_private_dir(&dir)?;
    // Opening takes the directory's lock: a live mount of it holds that lock.
    let cache = DiskCache::open(&dir, u64::MAX)
        .map_err(|e| format!("{e}: it is mounted, clear it with ftpfs cache clear MOUNTPOINT"))?;
    let held = cache.bytes();
    cache.clear();
    println!("cleared the disk cache of {} ({:.1} MiB)", server.display_url(), held as f64 / 1048576.0);
    Ok(())
}
