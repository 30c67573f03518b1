//! Fuzzes the reply reader: any byte stream gives replies or errors, never a panic, and never
//! more than the bounded amount of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    for _ in 0..64 {
        match ftpfs::ftp::reply::read_reply(&mut cursor) {
            Ok(reply) => {
                assert!((100..600).contains(&reply.code));
                let _ = ftpfs::ftp::features::Features::parse(&reply.lines);
                let _ = ftpfs::ftp::control::parse_257(&reply.text());
            }
            Err(_) => break,
        }
    }
});
