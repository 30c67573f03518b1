#!/usr/bin/env bash
# A long-lived mount under mixed load: memory must stay flat.
#
#   scripts/soak.sh [--seconds N] [--names N] [--every S] [--warmup S] [--sample S]
#                   [--options OPTS] [--leak BYTES]
#
# Mounts a local vsftpd (the release build, default options, or -o OPTS) and runs
# scripts/soak_load.py on it: creates, writes, reads, stats, listings, renames, deletes,
# mkdir/rmdir over --names distinct names (default 200 000) in 200 directories, for --seconds
# (default 1800; longer if the machine is too slow to do enough operations in that time). Every
# --every seconds (default 60) it prints ftpfs's memory and asks the kernel to drop its dentry
# and inode caches (so it forgets inodes, as it does under memory pressure on a long-lived
# machine); memory is sampled every --sample seconds (default 1). After the warm-up (--warmup,
# default a sixth of the run, and 10 operations per name), the slope of the resident size and of
# the allocator's bytes in use against the operations done must stay under a budget in bytes
# per operation (soak_load.py says how and why). The server's disk is checked against what the
# load thinks it wrote. Exit status: 0 flat and right, 3 memory grows, 1 anything else.
#
# --leak BYTES is the soak's own test: the mount leaks BYTES per answered request
# (FTPFS_TEST_LEAK_BYTES), and the soak must then say that memory grows (exit status 3).
#
# CI runs a 60-second version and a 20-second leak (scripts/test.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

seconds=1800; names=200000; every=60; warmup=""; options=""; sample=""; leak=""
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift ;;
        --names) names=$2; shift ;;
        --every) every=$2; shift ;;
        --warmup) warmup=$2; shift ;;
        --options) options=$2; shift ;;
        --sample) sample=$2; shift ;;
        --leak) leak=$2; shift ;;
        *) echo "usage: $0 [--seconds N] [--names N] [--every S] [--warmup S] [--sample S] [--options OPTS] [--leak BYTES]" >&2; exit 2 ;;
    esac
    shift
done

bash scripts/setup.sh >/dev/null
cargo build --release --locked -q
bin=$top/target/release/ftpfs
user=ftpfstest; pass=t3st-Pa55word

work=$(mktemp -d /tmp/ftpfs-soak-XXXXXX)
root=$work/root; mnt=$work/mnt
mkdir -p "$root" "$mnt"
chmod 755 "$work" "$root"
server_pid=""
cleanup() {
    fusermount3 -u -z "$mnt" 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pasv_lo=$(( (port % 500) * 40 + 10000 )); pasv_hi=$(( pasv_lo + 39 ))
# shellcheck source=scripts/local_vsftpd.sh
. scripts/local_vsftpd.sh
local_vsftpd "$work/vsftpd.conf" "$root" "$port" "$pasv_lo" "$pasv_hi" $user $pass
/usr/sbin/vsftpd "$work/vsftpd.conf" > "$work/server.log" 2>&1 &
server_pid=$!
up=""
for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && { up=1; break; }; sleep 0.05; done
[ -n "$up" ] || { echo "soak: vsftpd does not answer on port $port after 30 s" >&2; cat "$work/server.log" >&2; exit 1; }

# glibc's per-thread caches off: each of the ~40 threads keeps up to 7 freed blocks of each
# small size, which glibc counts as in use; filling slowly as threads meet new sizes, they made
# up nearly all of the honest growth (3 B/operation of in use with them, 0.2 without).
GLIBC_TUNABLES=glibc.malloc.tcache_count=0 FTPFS_TEST_LEAK_BYTES=${leak:-0} FTPFS_PASSWORD=$pass "$bin" ${options:+-o "$options"} "ftp://$user@127.0.0.1:$port/" \
    "$mnt"
pid=""
for p in /proc/[0-9]*; do # the background ftpfs serving $mnt (no pgrep on minimal systems)
    if tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -qF "ftp://$user@127.0.0.1:$port/ $mnt"; then
        pid=${p#/proc/}
        break
    fi
done
[ -n "$pid" ] || { echo "soak: ftpfs is not running" >&2; exit 1; }

python3 scripts/soak_load.py --mount "$mnt" --server-root "$root" --seconds "$seconds" --names "$names" \
    --every "$every" --pid "$pid" --ftpfs "$bin" ${warmup:+--warmup "$warmup"} ${sample:+--sample "$sample"}
fusermount3 -u "$mnt"
