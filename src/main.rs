//! The `ftpfs` command. The mount itself arrives with the filesystem layer; until then the binary
//! only reports its version.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("ftpfs {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("ftpfs {}: mounting is not available in this build yet", env!("CARGO_PKG_VERSION"));
            std::process::exit(2);
        }
    }
}
