//! Fuzzes the listing parsers (MLSD, Unix and DOS LIST): no panic, and no entry ever carries a
//! name that could escape its directory or inject a command.
#![no_main]

use ftpfs::ftp::listing::{Dialect, ListContext, is_acceptable_name, parse_listing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = ListContext { now: 1_700_000_000, tz_offset: 3600, encoding: None };
    for dialect in [Dialect::Mlsd, Dialect::List] {
        for e in parse_listing(data, dialect, &ctx) {
            assert!(is_acceptable_name(&e.name), "unsafe name {:?}", e.name);
        }
    }
});
