//! Fuzzes the 227/229 reply parsers: nonsense is rejected, never a panic or a port 0.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(addr) = ftpfs::ftp::data::parse_227(&text) {
        assert_ne!(addr.port(), 0);
    }
    if let Some(port) = ftpfs::ftp::data::parse_229(&text) {
        assert_ne!(port, 0);
    }
});
