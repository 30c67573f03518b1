//! ftpfs: mount a remote FTP server as a local directory.
//!
//! Layers, with data flowing one way (kernel → adapter → model → pool → connection):
//! - [`ftp`]: the wire protocol (replies, commands, data channels, listings); no FUSE here.

pub mod adapter;
pub mod cli;
pub mod ftp;
pub mod model;
pub mod mount;
pub mod probe;
