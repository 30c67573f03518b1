//! The filesystem model: inode numbers, the listing cache, open handles and the rules that keep
//! their data safe. It turns kernel-level requests into calls of the [`crate::backend::Backend`]
//! trait and errno results; it has no sockets, sees no reply codes, and knows nothing of FUSE.
//!
//! Inside, dependencies go one way: `fs` and `namespace` (the requests) → `handle_io` (reads and
//! writes of one handle) → `core` (backend, listing cache, handle registry) → `files`,
//! `open_file`, `gate`, `cache`, `inodes`, `readahead`.

pub mod cache;
mod core;
mod deferred;
mod files;
mod fs;
mod gate;
mod handle_io;
pub mod inodes;
mod link_targets;
mod namespace;
mod new_file_mode;
mod open_file;
mod readahead;
mod refresh;
mod rescue;
mod symlink;
mod writeback;
mod xattr;

pub use self::core::ModelConfig;
pub use fs::{DirItem, Kind, Model, Opened, OpenedDir, SetTime, Stat};
pub use inodes::ROOT_INO;
pub use refresh::Refreshed;

/// errno-valued results, as the kernel wants them.
pub type FsResult<T> = Result<T, i32>;

#[cfg(test)]
mod listing_race_tests;
#[cfg(test)]
mod lookup_tests;
#[cfg(test)]
mod lost_reply_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod round_trip_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod times_tests;
#[cfg(test)]
mod writeback_order_tests;
#[cfg(test)]
mod writeback_prop_tests;
#[cfg(test)]
mod writeback_tests;
