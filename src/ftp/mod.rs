//! The FTP wire protocol, implemented here (RFC 959, 2389, 2428, 3659, 2640): replies, commands,
//! control and data connections, listings. This layer knows nothing of FUSE or of the filesystem
//! model above it; it offers a blocking [`Connection`] and one error type with one errno table.

pub mod command;
pub mod control;
pub mod data;
pub mod digest;
pub mod error;
pub mod features;
pub mod keepalive;
pub mod listing;
pub mod proxy;
pub mod reply;
pub mod stat_list;
pub mod stream;
pub mod symlink;
pub mod throttle;
pub mod times;
pub mod tls;
pub mod transfer;
pub mod trust;
pub mod upload;

pub use control::{ConnectOptions, Connection, DataMode, Secret, TransferType};
pub use error::{FtpError, Op, Result};
pub use features::Features;
pub use listing::{Dialect, Entry, EntryKind, ListContext};
pub use proxy::Proxy;
pub use tls::{TlsContext, TlsMode, TlsSettings};
pub use transfer::Download;
pub use trust::Fingerprint;
pub use upload::Upload;
