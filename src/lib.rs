//! ftpfs: mount a remote FTP server as a local directory.
//!
//! Layers, with requests flowing one way:
//!
//! ```text
//! kernel ─▶ adapter ─▶ model ─▶ backend trait ─▶ remote (FTP pool) ─▶ ftp (connection)
//!                                     └────────▶ backend::memory (tests)
//! ```
//!
//! - [`adapter`]: fuser's types in, model calls, errno replies out; nothing else.
//! - [`model`]: inodes, listing cache, open handles, and every filesystem decision.
//! - [`backend`]: the trait the model needs from a server, typed errors ([`error::FsError`]),
//!   and an in-memory server with fault injection.
//! - [`remote`]: the backend over FTP: connection pool, retries, server quirks.
//! - [`ftp`]: the wire protocol (replies, commands, data channels, listings, TLS); no FUSE here.
//! - [`cli`], [`mount`], [`probe`], [`logging`]: command line, mounting, server report, where logs go.
//! - [`allocator`]: no huge pages, freed memory given back to the system (a flat resident size),
//!   and the allocator's figures for `ftpfs stats`.
//! - [`stats`]: counters and gauges every layer feeds; [`control_channel`]: how `ftpfs stats` and `ftpfs refresh` reach a running mount.
//! - [`journal_dirs`]: where a mount's write-back journal lives and which earlier ones it recovers.
//! - [`printable`]: server text escaped for terminals (errors, the log, `--probe`).
//! - [`private_files`]: what ftpfs keeps on local disk is private to the mounting user, and
//!   nothing planted there is trusted.
//! - [`manual`]: the man page and shell completions, from the command line's definition.

pub mod adapter;
pub mod allocator;
pub mod backend;
pub mod cache_command;
pub mod checksum;
pub mod cli;
pub mod control_channel;
pub mod disk_cache;
pub mod error;
pub mod ftp;
pub mod journal_dirs;
pub mod logging;
pub mod manual;
pub mod model;
pub mod mount;
pub mod mount_options;
pub mod mount_table;
pub mod netrc;
pub mod printable;
pub mod private_files;
pub mod probe;
pub mod remote;
pub mod stats;
