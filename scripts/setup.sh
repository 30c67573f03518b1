#!/usr/bin/env bash
# Installs what the ftpfs build, tests, demo and benchmark need on a fresh Debian 12 machine
# (package names are Debian 12's; other distributions are not tested):
#   scripts/setup.sh          everything the suite and the benchmark use: fuse3, vsftpd, curl,
#                             rsync, make, openssl, procps, bc, gcc, groff, zsh, fish; pure-ftpd and
#                             proftpd extracted under /opt/ftpfs-test; pyftpdlib pinned in a
#                             virtual environment there
#   scripts/setup.sh --demo   only what scripts/demo.sh needs: fuse3 and that pyftpdlib
# Idempotent: a second run only checks. It needs root (apt-get, files under /opt; the suite
# itself also adds a user): run it as root, or it runs the root parts through sudo.
set -euo pipefail

demo=false
[ "${1:-}" = "--demo" ] && demo=true

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# The virtual environment of pyftpdlib: Debian's python3 cannot make one without this (its
# ensurepip is a stub that fails).
python3 -m ensurepip --version >/dev/null 2>&1 || need_apt+=(python3-venv)
if ! $demo; then
[ -x /usr/sbin/vsftpd ] || need_apt+=(vsftpd)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The man page and shell completions are checked with the tools that read them.
command -v groff >/dev/null 2>&1 || need_apt+=(groff-base)
command -v zsh >/dev/null 2>&1 || need_apt+=(zsh)
command -v fish >/dev/null 2>&1 || need_apt+=(fish)
# pgrep/pkill (tests and bench) and bc (bench).
command -v pgrep >/dev/null 2>&1 || need_apt+=(procps)
command -v bc >/dev/null 2>&1 || need_apt+=(bc)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# vsftpd's package may start a system instance on port 21; the tests run their own.
if ! $demo && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now vsftpd >/dev/null 2>&1 || true
fi
$demo || mkdir -p /var/run/vsftpd/empty 2>/dev/null || $SUDO mkdir -p /var/run/vsftpd/empty

# pyftpdlib at the version the suite's expectations were made on (pjdfstest's expected failures
# depend on its behaviour), with pyOpenSSL for its TLS, in a virtual environment of the harness:
# Debian's system python refuses pip (PEP 668) and its python3-pyftpdlib is older. The tests,
# the demo and the bench run pyftpdlib with this environment's python.
venv=/opt/ftpfs-test/venv
pins="pyftpdlib==2.2.0 pyopenssl==26.4.0 cryptography==50.0.2"
if ! "$venv/bin/python" -c 'import sys, pyftpdlib, OpenSSL; sys.exit(pyftpdlib.__ver__ != "2.2.0")' >/dev/null 2>&1; then
    echo "setup: installing $pins into $venv"
    $SUDO rm -rf "$venv"
    $SUDO mkdir -p /opt/ftpfs-test
    $SUDO python3 -m venv "$venv"
    $SUDO "$venv/bin/python" -m pip install -q --disable-pip-version-check $pins
fi
if $demo; then
    echo "setup: ok (demo)"
    exit 0
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
