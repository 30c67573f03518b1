//! The server side of the backend trait: a pool of logged-in FTP control connections
//! ([`pool`]) and [`FtpBackend`], which turns the model's requests into FTP commands on them.
//! Retrying after a broken connection happens here, in one place, and reply codes have become
//! [`crate::error::FsError`] kinds before anything leaves this module.

mod exact_times;
mod ftp_backend;
mod landed;
pub mod offline;
pub mod pool;
mod symlinks;
mod verify;

pub use ftp_backend::{FtpBackend, FtpBackendConfig};
pub use pool::Pool;
