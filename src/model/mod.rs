//! The filesystem model: inode numbers, listing cache, open handles and the connection pool.
//! It turns path-level requests into FTP commands and errno results; it has no sockets of its
//! own and knows nothing of FUSE.

pub mod cache;
pub mod files;
pub mod fs;
pub mod handle_io;
pub mod inodes;
pub mod pool;
pub mod readahead;

pub use fs::{FsResult, Kind, Model, ModelConfig, Stat};
pub use inodes::ROOT_INO;
pub use pool::Pool;
