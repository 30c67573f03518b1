#!/usr/bin/env bash
# Installs what the ftpfs build, tests, demo and benchmark need on a fresh Debian/Ubuntu machine:
# fuse3, vsftpd, curl, rsync, openssl, python3 + pyftpdlib, pure-ftpd + proftpd extracted
# under /opt/ftpfs-test, and groff, zsh and fish (to check the man page and completions).
# Idempotent: a second run only checks. Uses sudo when not root.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
[ -x /usr/sbin/vsftpd ] || need_apt+=(vsftpd)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The man page and shell completions are checked with the tools that read them.
command -v groff >/dev/null 2>&1 || need_apt+=(groff-base)
command -v zsh >/dev/null 2>&1 || need_apt+=(zsh)
command -v fish >/dev/null 2>&1 || need_apt+=(fish)

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# vsftpd's package may start a system instance on port 21; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now vsftpd >/dev/null 2>&1 || true
fi
mkdir -p /var/run/vsftpd/empty 2>/dev/null || $SUDO mkdir -p /var/run/vsftpd/empty

if ! python3 -c 'import pyftpdlib, OpenSSL' >/dev/null 2>&1; then
    echo "setup: installing pyftpdlib and pyopenssl (pyftpdlib's TLS)"
    if ! python3 -m pip install -q pyftpdlib pyopenssl 2>/dev/null; then
        # Debian's system python refuses pip (PEP 668): use its package.
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pyftpdlib python3-openssl
    fi
fi

# pure-ftpd and proftpd conflict with vsftpd as packages (all provide ftp-server): the tests run
# them from extracted packages under /opt/ftpfs-test, beside vsftpd.
servers=/opt/ftpfs-test
if [ ! -x $servers/pure/usr/sbin/pure-ftpd ] || [ ! -x $servers/pure/usr/bin/pure-pw ] || [ ! -x $servers/proftpd/usr/sbin/proftpd ]; then
    echo "setup: extracting pure-ftpd and proftpd into $servers"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download pure-ftpd pure-ftpd-common proftpd-core >/dev/null 2>&1) || {
        $SUDO apt-get update -qq
        (cd "$tmp" && apt-get download pure-ftpd pure-ftpd-common proftpd-core >/dev/null)
    }
    $SUDO mkdir -p $servers/pure $servers/proftpd
    $SUDO dpkg -x "$tmp"/pure-ftpd_*.deb $servers/pure
    $SUDO dpkg -x "$tmp"/pure-ftpd-common_*.deb $servers/pure
    $SUDO dpkg -x "$tmp"/proftpd-core_*.deb $servers/proftpd
    rm -rf "$tmp"
fi
# proftpd's libraries (these packages do not conflict with anything).
missing=$(ldd $servers/proftpd/usr/sbin/proftpd $servers/pure/usr/sbin/pure-ftpd 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
if [ -n "$missing" ]; then
    echo "setup: installing libraries for proftpd/pure-ftpd: $missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3 libsodium23
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
    exit 1
fi
echo "setup: ok"
