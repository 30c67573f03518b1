#!/usr/bin/env bash
# Installs what the ftpfs build, tests, demo and benchmark need on a fresh Debian/Ubuntu machine.
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

if ! python3 -c 'import pyftpdlib' >/dev/null 2>&1; then
    echo "setup: installing pyftpdlib"
    if ! python3 -m pip install -q pyftpdlib pyopenssl 2>/dev/null; then
        # Debian's system python refuses pip (PEP 668): use its package.
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pyftpdlib python3-openssl
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install a Rust toolchain (rustup) first" >&2
    exit 1
fi
echo "setup: ok"
