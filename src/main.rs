//! The `ftpfs` command: parse the command line, resolve the password, then hand over to
//! [`ftpfs::mount::run`]. Errors are printed as one line and end with exit code 1.

mod argv_scrub;

use ftpfs::cli::{self, Args, Command};
use ftpfs::mount::{self, MountPlan};

fn start(args: Args) -> Result<(), String> {
    if let Some(what) = args.generate {
        return match ftpfs::manual::generate(what, &mut std::io::stdout().lock()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
            _ => Ok(()),
        };
    }
    match &args.command {
        Some(Command::Stats { mountpoint }) => return ftpfs::control_channel::print(mountpoint),
        Some(Command::Cache { action: cli::CacheAction::Clear { target, options } }) => {
            return ftpfs::cache_command::clear(target, options);
        }
        Some(Command::Refresh { mountpoint, path, recursive }) => {
            return ftpfs::control_channel::refresh(mountpoint, path.as_deref(), *recursive);
        }
        None => {}
    }
    let opts = cli::parse_mount_options(&args.options)?;
    let url = args.url.as_deref().ok_or("the FTP URL is needed")?;
    let mut target = cli::parse_url(url)?;
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
    // Before any thread: the mount's background process inherits it.
    ftpfs::allocator::configure();
    let args = cli::parse_args();
    argv_scrub::scrub();
    let background = !args.foreground && !args.probe && args.command.is_none() && args.generate.is_none();
    ftpfs::logging::init(args.verbose, background);
    let res = start(args);
    ftpfs::logging::flush();
    if let Err(e) = res {
        eprintln!("ftpfs: {e}");
        std::process::exit(1);
    }
}
