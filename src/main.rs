//! The `ftpfs` command: parse the command line, resolve the password, then hand over to
//! [`ftpfs::mount::run`]. Errors are printed as one line and end with exit code 1.

mod argv_scrub;

use clap::Parser;
use ftpfs::cli::{self, Args};
use ftpfs::mount::{self, MountPlan};

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let env = env_logger::Env::default().default_filter_or(format!("ftpfs={level},fuser=error"));
    let mut builder = env_logger::Builder::from_env(env);
    builder.format_timestamp_millis();
    // A background mount has no terminal: FTPFS_LOG_FILE keeps its log.
    if let Some(path) = std::env::var_os("FTPFS_LOG_FILE") {
        match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => {
                builder.target(env_logger::Target::Pipe(Box::new(f)));
            }
            Err(e) => eprintln!("ftpfs: cannot open log file {}: {e}", path.to_string_lossy()),
        }
    }
    builder.init();
}

fn start(args: Args) -> Result<(), String> {
    let opts = cli::parse_mount_options(&args.options)?;
    let mut target = cli::parse_url(&args.url)?;
    let password = cli::resolve_password(&mut target, &opts)?;
    argv_scrub::scrub_env();
    let connect = cli::connect_options(&target, password, &opts)?;
    if args.probe {
        return ftpfs::probe::run(&connect, &target, &opts);
    }
    let mountpoint = args.mountpoint.ok_or("a mountpoint is needed")?;
    mount::run(MountPlan { target, opts, connect, mountpoint, foreground: args.foreground })
}

fn main() {
    let args = Args::parse();
    argv_scrub::scrub();
    init_logging(args.verbose);
    if let Err(e) = start(args) {
        eprintln!("ftpfs: {e}");
        std::process::exit(1);
    }
}
