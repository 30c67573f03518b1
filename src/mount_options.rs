//! The `-o` mount options: one table that the parser checks every option against (an option
//! it accepts is one this table documents), and that the man page and `--help` are made from.

/// Every `-o` option: its form and what it does.
pub const MOUNT_OPTIONS: &[(&str, &str)] = &[
    ("ro", "Mount read-only."),
    (
        "allow_other",
        "Let other users use the mount (for a non-root user, needs user_allow_other in /etc/fuse.conf). \
         Turns default_permissions on.",
    ),
    ("allow_root", "Let root use the mount as well as the user who mounted it."),
    ("uid=N", "The owner shown for every file (default: the user who mounted)."),
    ("gid=N", "The group shown for every file (default: the user's group)."),
    ("umask=OCT", "Permission bits removed from the modes shown."),
    ("connections=N", "Transfers at once, 1 to 32 (default 4); one more connection serves listings."),
    ("cache_timeout=S", "Seconds listings and attributes are trusted (default 20; 0 asks the server every time)."),
    ("timeout=S", "Seconds to wait for a connection, a reply or transfer data (default 30)."),
    (
        "keepalive=S",
        "Seconds of silence on a control connection during a long transfer before a NOOP keeps it \
         alive through NATs and firewalls (default 30; 0: never), on servers known to take one then \
         (vsftpd, ProFTPD, pyftpdlib). TCP keepalive (15 s) is on for every connection regardless.",
    ),
    ("active", "Active mode (PORT/EPRT): the server connects to us for data. Default: passive (EPSV, PASV)."),
    ("no_epsv", "Use PASV only, for servers or firewalls that mishandle EPSV."),
    ("no_mlsd", "List with LIST even when the server offers MLSD."),
    ("pasv_ip", "Connect data connections to the address a PASV reply gives (default: the server's address)."),
    ("list_tz=+HH:MM", "The time zone of LIST times (servers without MLSD show local times); UTC by default."),
    ("tls", "FTPS with AUTH TLS (explicit); also tls=explicit. Data connections are encrypted too."),
    (
        "tls=implicit",
        "FTPS with TLS from the first byte, as ftps:// URLs; on an ftp:// URL without a port it connects to 990.",
    ),
    (
        "cafile=PATH",
        "Trust the certificates in this PEM file instead of the system's; a certificate in it is also \
         trusted as itself, name and dates unchecked, like a pinned one (a self-signed server certificate).",
    ),
    (
        "fingerprint=SHA256:HEX",
        "Trust exactly the server certificate with this SHA-256 fingerprint, as ftpfs --probe or \
         openssl x509 -fingerprint -sha256 print it; name and chain are not checked.",
    ),
    (
        "cert=FILE",
        "Our client certificate (PEM, with its chain), for servers that require one; its private key \
         in the same file or in key=.",
    ),
    ("key=FILE", "The private key (PEM) of cert=; a file other users can read gets a warning, as in ssh."),
    ("no_verify", "Accept any server certificate (insecure: anyone between us and the server can read everything)."),
    ("no_check_certificate", "The same as no_verify (the name curl, wget and rclone users know)."),
    (
        "proxy=URL",
        "Reach the server through a proxy, socks5://[user:password@]host:port or \
         http://[user:password@]host:port (CONNECT); control and data connections alike (passive mode).",
    ),
    ("netrc=PATH", "Where to look up the password (default ~/.netrc)."),
    ("password_file=PATH", "Read the password from the first line of this file."),
    (
        "encoding=CHARSET",
        "The server's character set for names when it is not UTF-8 (latin1, cp1251, shift_jis, gbk, ...).",
    ),
    (
        "disk_cache[=SIZE]",
        "Keep the content of files read through the mount on local disk, in cache_dir, across \
         unmounts: a file read again while the server shows the same size and modification time is \
         served from there. At most SIZE bytes (K, M, G, T suffixes; default 10G or a tenth of the \
         free space there, whichever is smaller), least recently used first out; only the parts \
         read are kept.",
    ),
    (
        "cache_dir=DIR",
        "Where temporary copies of files changed at random offsets, and write-back spools, are kept \
         (default $XDG_CACHE_HOME/ftpfs, else ~/.cache/ftpfs, else /var/tmp/ftpfs-UID). It must \
         belong to you and not be writable by others (a sticky shared directory is used through a \
         private ftpfs-UID directory inside it); what ftpfs creates there is 0700/0600.",
    ),
    ("default_permissions", "Let the kernel check the modes shown (default with allow_other)."),
    ("no_default_permissions", "Let the server alone decide what is allowed."),
    (
        "delay_connect",
        "Mount at once, even while the server is down, and connect in the background (as sshfs): until \
         a connection logs in, each call fails within a second (EIO, EHOSTDOWN for a change, EACCES \
         for a refused login) unless the disk cache holds what it asks for; tried every 2 s (after a \
         refused login every 60 s only).",
    ),
    (
        "transform_symlinks",
        "Show a symbolic link whose target is an absolute server path inside the mounted directory \
         relative to the link, so it leads to the same file through the mount (the default: FTP servers \
         such as proftpd store every target absolute).",
    ),
    ("no_transform_symlinks", "Show link targets exactly as the server lists them."),
    (
        "follow_symlinks",
        "Show each symbolic link as the file or directory it leads to, as the server resolves it \
         (one or two round trips per link in each listing); a link that leads nowhere stays a link. \
         The kernel then never follows a target the server chose on this machine.",
    ),
    (
        "verify_upload",
        "After each whole-file upload, compare the server's SHA-256 (or SHA-512, SHA-1) digest of the \
         file (HASH, XSHA256) with that of the bytes sent; a difference fails the close (EIO), and \
         the upload is tried again at the next flush. Where the server computes none, a warning.",
    ),
    (
        "bwlimit=UP[:DOWN]",
        "Bytes per second for file transfers, all connections together (K, M, G suffixes, powers of \
         1024; one value for both ways, or UP:DOWN, either side may be off or 0), as rclone's --bwlimit.",
    ),
    (
        "max_requests_per_second=N",
        "At most N FTP commands per second over all connections (as rclone's --tpslimit), for servers \
         that ban busy clients.",
    ),
    (
        "ahead_mib=N",
        "Memory for small files fetched ahead of a reader walking a tree, in MiB (0: no work ahead; \
         default 32, used when the server is far away).",
    ),
    (
        "writeback",
        "close() returns once the data is spooled on local disk; uploads run in the background and \
         survive a crash (they are resumed at the next mount).",
    ),
    (
        "ignore_time_errors",
        "A file time the server cannot set (it offers neither MFMT nor the two-argument MDTM) is ignored \
         instead of failing with EPERM (touch, cp -p, rsync -a then report success without effect).",
    ),
    (
        "atomic_upload",
        "Upload each whole file to a hidden temporary name in its directory (.ftpfs-part-...), then rename \
         it over the target once the server holds every byte: other clients never see a half-written \
         file, and a failed upload leaves the old version. Costs two round trips more per upload (three \
         when a replaced file's mode is set again); appends cannot be atomic.",
    ),
];

/// Options of every file system that mount(8), fstab and systemd pass along (mount(8)'s
/// "filesystem-independent mount options"): accepted and ignored, as sshfs does, so that an
/// fstab line copied from another file system mounts.
pub const GENERIC: &[&str] = &[
    "rw",
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "async",
    "sync",
    "dirsync",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "iversion",
    "noiversion",
    "mand",
    "nomand",
    "silent",
    "loud",
    "nosymfollow",
];

/// Whether `opt` (a whole `key` or `key=value`) is one of [`GENERIC`] or of the prefixes
/// mount(8) and systemd use for their own options (`x-`, `X-`, `comment=`), or an SELinux context.
pub fn is_generic(opt: &str) -> bool {
    let key = opt.split_once('=').map_or(opt, |(k, _)| k);
    GENERIC.contains(&opt)
        || opt.starts_with("x-")
        || opt.starts_with("X-")
        || key == "comment"
        || matches!(key, "context" | "fscontext" | "defcontext" | "rootcontext")
}

/// Whether `key` is an option of [`MOUNT_OPTIONS`] (with or without a value there).
pub fn is_documented(key: &str) -> bool {
    MOUNT_OPTIONS.iter().any(|(form, _)| form.split(['=', '[']).next() == Some(key))
}

/// The `-o` text of `--help`: every option's form, from [`MOUNT_OPTIONS`].
pub fn help() -> String {
    let forms: Vec<&str> = MOUNT_OPTIONS.iter().map(|(form, _)| *form).collect();
    format!(
        "Mount options, comma-separated (repeatable): {}; and, ignored, what mount(8) passes \
         (rw, noatime, _netdev, nofail, x-systemd.*, ...). `man ftpfs` says what each does",
        forms.join(", ")
    )
}
