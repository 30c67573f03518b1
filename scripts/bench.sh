#!/usr/bin/env bash
# Benchmark: ftpfs through the kernel vs. raw curl against the same local FTP server, in one run.
# Prints workload, mount seconds, curl seconds and ratio (curl time / mount time, median of the
# rounds; 1.0 = as fast as raw FTP), plus the peak RSS of ftpfs during the big sequential read.
#
#   scripts/bench.sh [--quick] [--pyftpdlib] [--rounds N] [--rtt MS [--rate MBIT] [--apps] | --scale] [--opts "-o a,b"]
# --opts: mount options added to every mount (to compare settings in one run each)
#
# Needs root (vsftpd logs in a local user the script creates). Data written through the mount is
# checked on the server's disk after each write workload.
#
# With --rtt, runs the WAN workload set instead (scripts/bench_wan.sh): the server sits behind
# examples/wan_proxy on 127.0.0.2, which delays each direction by MS/2 (and models a link of MBIT
# with --rate); ftpfs, curl and lftp all go through it.
#
# It ends with the applications set (scripts/bench_apps.sh: git, touch, appends, cp -r, sort -T)
# against sshfs over the same link; --apps runs that set alone.
#
# With --scale, runs the scale set instead (scripts/bench_scale.sh): a 100 000-entry directory, a
# 10 GiB file, 16 parallel readers, CPU per GiB and RSS per cached entry (about 40 GiB of disk).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

quick=0; server=vsftpd; rounds=3; rtt=""; rate=""; extra_opts=""; scale=0; apps_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --pyftpdlib) server=pyftpdlib ;;
        --rounds) rounds=$2; shift ;;
        --rtt) rtt=$2; shift ;;
        --rate) rate=$2; shift ;;
        --opts) extra_opts=$2; shift ;;
        --scale) scale=1 ;;
        --apps) apps_only=1 ;;
        *) echo "usage: $0 [--quick] [--pyftpdlib] [--rounds N] [--rtt MS [--rate MBIT] [--apps] | --scale] [--opts \"-o a,b\"]" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$rate" ] && [ -z "$rtt" ]; then echo "bench: --rate needs --rtt" >&2; exit 2; fi
if [ $scale = 1 ] && [ -n "$rtt" ]; then echo "bench: --scale runs on loopback, without --rtt" >&2; exit 2; fi

if [ $quick = 1 ]; then
    big_mib=64; write_mib=32; many=1000; small=100; cp_files=50; par_mib=16
else
    big_mib=1024; write_mib=512; many=10000; small=1000; cp_files=500; par_mib=256
fi
# The WAN set (--rtt): small files read one after another, a tree of dirs x files copied out and
# listed, small files copied in, one big read and one big write.
if [ $quick = 1 ]; then
    w_small=50; w_dirs=5; w_per_dir=10; w_up=25; w_read_mib=16; w_write_mib=8
else
    w_small=200; w_dirs=10; w_per_dir=20; w_up=100; w_read_mib=64; w_write_mib=32
fi
# The scale set (--scale): entries in one directory, a big file (random reads go past 4 GiB),
# random reads, parallel readers of files of s_reader_mib, a big write.
if [ $quick = 1 ]; then
    s_entries=20000; s_big_gib=5; s_random=50; s_readers=16; s_reader_mib=32; s_write_gib=1
else
    s_entries=100000; s_big_gib=10; s_random=200; s_readers=16; s_reader_mib=256; s_write_gib=4
fi

bash scripts/setup.sh >/dev/null
cargo build --release --locked -q
bin=$top/target/release/ftpfs
if [ -n "$rtt" ]; then
    cargo build --release --locked -q --example wan_proxy
    if ! command -v lftp >/dev/null 2>&1; then
        echo "bench: installing lftp" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lftp >/dev/null 2>&1 || {
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lftp >/dev/null
        }
    fi
fi
user=ftpfstest; pass=t3st-Pa55word

work=$(mktemp -d /tmp/ftpfs-bench-XXXXXX)
root=$work/root; mnt=$work/mnt; local=$work/local
mkdir -p "$root" "$mnt" "$local"
chmod 755 "$work" "$root"
server_pid=""; proxy_pid=""
cleanup() {
    fusermount3 -u -z "$mnt" 2>/dev/null || true
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    pkill -f "$work/vsftpd.conf" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "bench: creating data in $root" >&2
if [ $scale = 1 ]; then
    head -c $((s_big_gib << 30)) /dev/urandom > "$root/big.bin"
    head -c $((s_write_gib << 30)) /dev/urandom > "$local/write.bin"
    mkdir "$root/huge" "$root/r" "$root/up"
    ( cd "$root/huge" && seq -f "file-%06g.txt" 1 $s_entries | xargs touch )
    for i in $(seq $s_readers); do head -c $((s_reader_mib << 20)) /dev/urandom > "$root/r/p$i.bin"; done
elif [ -z "$rtt" ]; then
    head -c $((big_mib << 20)) /dev/urandom > "$root/big.bin"
    for i in 1 2 3 4; do head -c $((par_mib << 20)) /dev/urandom > "$root/par$i.bin"; done
    mkdir "$root/many" "$root/small" "$root/up"
    ( cd "$root/many" && seq -f "file-%05g.txt" 1 $many | xargs touch )
    for i in $(seq -f "%04g" 1 $small); do head -c 4096 /dev/urandom > "$root/small/f$i"; done
    head -c $((write_mib << 20)) /dev/urandom > "$local/write.bin"
    mkdir "$local/tree"
    for i in $(seq -f "%04g" 1 $cp_files); do head -c 2048 /dev/urandom > "$local/tree/s$i"; done
else
    head -c $((w_read_mib << 20)) /dev/urandom > "$root/big.bin"
    head -c $((w_write_mib << 20)) /dev/urandom > "$local/write.bin"
    mkdir "$root/small" "$root/tree" "$root/up" "$local/up"
    for i in $(seq -f "%04g" 1 $w_small); do head -c 4096 /dev/urandom > "$root/small/f$i"; done
    for d in $(seq -f "d%02g" 1 $w_dirs); do
        mkdir "$root/tree/$d"
        for i in $(seq -f "%03g" 1 $w_per_dir); do head -c 4096 /dev/urandom > "$root/tree/$d/f$i"; done
    done
    for i in $(seq -f "%04g" 1 $w_up); do head -c 4096 /dev/urandom > "$local/up/s$i"; done
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pasv_lo=$(( (port % 500) * 40 + 10000 )); pasv_hi=$(( pasv_lo + 39 ))
if [ $server = vsftpd ]; then
    # shellcheck source=scripts/local_vsftpd.sh
    . scripts/local_vsftpd.sh
    local_vsftpd "$work/vsftpd.conf" "$root" "$port" "$pasv_lo" "$pasv_hi" $user $pass
    if [ -n "$rtt" ]; then # log every command, to count what each workload costs
        sed -i 's/^xferlog_enable=NO$/xferlog_enable=YES/' "$work/vsftpd.conf"
        printf '%s\n' xferlog_std_format=NO log_ftp_protocol=YES "vsftpd_log_file=$work/commands.log" \
            >> "$work/vsftpd.conf"
    fi
    /usr/sbin/vsftpd "$work/vsftpd.conf" > "$work/server.log" 2>&1 &
else
    py=/opt/ftpfs-test/venv/bin/python; [ -x "$py" ] || py=python3 # scripts/setup.sh pins pyftpdlib there
    "$py" tests/support/pyftpd_server.py --port "$port" --root "$root" --user $user \
        --password $pass --pasv "$pasv_lo-$pasv_hi" ${rtt:+--verbose} > "$work/server.log" 2>&1 &
fi
server_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done

host=127.0.0.1
[ -z "$rtt" ] || host=127.0.0.2 # through the proxy
url="ftp://$user:$pass@$host:$port"
export FTPFS_PASSWORD=$pass
now() { date +%s.%N; }
# shellcheck disable=SC2086 # extra_opts is split into words on purpose
mount_fs() { "$bin" "ftp://$user@$host:$port/" "$mnt" $extra_opts "$@"; }
umount_fs() { fusermount3 -u "$mnt"; for _ in $(seq 100); do mountpoint -q "$mnt" || return 0; sleep 0.05; done; }
ftpfs_pid() { pgrep -f "$bin ftp://$user@$host:$port/ $mnt" | head -1; }
# time_cmd CMD...: seconds taken
time_cmd() { local t0; t0=$(now); "$@"; echo "$(now) - $t0" | bc -l; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
check_same() { cmp -s "$1" "$2" || { echo "bench: DATA MISMATCH $1 vs $2" >&2; exit 1; }; }

results=(); name_width=52
[ $scale = 0 ] || name_width=64
record() { # name mount_times curl_times
    local name=$1 m c
    m=$(median $2); c=$(median $3)
    results+=("$(printf '%-*s %9.3f %9.3f %7.2f' "$name_width" "$name" "$m" "$c" "$(echo "$c / $m" | bc -l)")")
}

if [ -n "$rtt" ]; then
    . scripts/bench_wan.sh
    exit 0
fi
if [ $scale = 1 ]; then
    . scripts/bench_scale.sh
    exit 0
fi

rss_peak=0
echo "bench: sequential read" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_fs
    M+=" $(time_cmd dd if="$mnt/big.bin" of=/dev/null bs=1M status=none)"
    pid=$(ftpfs_pid); hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status); [ "$hwm" -gt "$rss_peak" ] && rss_peak=$hwm
    umount_fs
    C+=" $(time_cmd curl -s -o /dev/null "$url/big.bin")"
done
record "sequential read ${big_mib} MiB (dd bs=1M)" "$M" "$C"

echo "bench: sequential write" >&2
M=""; C=""
mount_fs
for r in $(seq $rounds); do
    M+=" $(time_cmd dd if="$local/write.bin" of="$mnt/up/w$r.bin" bs=1M status=none)"
    check_same "$local/write.bin" "$root/up/w$r.bin"
    C+=" $(time_cmd curl -s -T "$local/write.bin" "$url/up/c$r.bin")"
    check_same "$local/write.bin" "$root/up/c$r.bin"
    rm -f "$root/up/w$r.bin" "$root/up/c$r.bin"
done
umount_fs
record "sequential write ${write_mib} MiB" "$M" "$C"

echo "bench: ls -l" >&2
M=""; C=""; M2=""; C2=""
for r in $(seq $rounds); do
    mount_fs
    M+=" $(time_cmd sh -c "ls -l '$mnt/many' > /dev/null")"
    M2+=" $(time_cmd sh -c "ls -l '$mnt/many' > /dev/null")"
    umount_fs
    C+=" $(time_cmd curl -s -o /dev/null "$url/many/")"
    C2+=" $(time_cmd curl -s -o /dev/null "$url/many/")"
done
record "ls -l of a $many-file dir, fresh mount" "$M" "$C"
record "the same ls -l again (cached)" "$M2" "$C2"

echo "bench: small files" >&2
M=""; C=""
mkdir -p "$work/out"
for r in $(seq $rounds); do
    mount_fs
    M+=" $(time_cmd sh -c "cat '$mnt'/small/* > /dev/null")"
    umount_fs
    C+=" $(time_cmd curl -s "$url/small/f[0001-$(printf %04d $small)]" -o "$work/out/#1")"
    rm -f "$work/out"/*
done
record "cat $small small files one after another" "$M" "$C"

echo "bench: tail" >&2
M=""; C=""
size=$(stat -c %s "$root/big.bin")
for r in $(seq $rounds); do
    mount_fs
    M+=" $(time_cmd sh -c "tail -c 4096 '$mnt/big.bin' > '$work/tail.m'")"
    umount_fs
    C+=" $(time_cmd curl -s -r $((size - 4096))- -o "$work/tail.c" "$url/big.bin")"
    check_same "$work/tail.m" "$work/tail.c"
done
record "tail -c 4096 of a ${big_mib} MiB file, fresh mount" "$M" "$C"

echo "bench: cp -r small files in" >&2
M=""; C=""
list=$(cd "$local/tree" && ls | paste -sd, -)
mount_fs
for r in $(seq $rounds); do
    M+=" $(time_cmd cp -r "$local/tree" "$mnt/up/m$r")"
    diff -r "$local/tree" "$root/up/m$r" >/dev/null || { echo "bench: DATA MISMATCH in cp -r" >&2; exit 1; }
    mkdir -p "$root/up/c$r"; chown $user "$root/up/c$r" 2>/dev/null || true
    C+=" $(cd "$local/tree" && time_cmd curl -s -T "{$list}" "$url/up/c$r/")"
    diff -r "$local/tree" "$root/up/c$r" >/dev/null || { echo "bench: DATA MISMATCH in curl upload" >&2; exit 1; }
done
umount_fs
record "cp -r $cp_files small files into the mount" "$M" "$C"

echo "bench: parallel readers" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_fs
    M+=" $(time_cmd sh -c "for i in 1 2 3 4; do dd if=\"$mnt/par\$i.bin\" of=/dev/null bs=1M status=none & done; wait")"
    umount_fs
    C+=" $(time_cmd sh -c "for i in 1 2 3 4; do curl -s -o /dev/null \"$url/par\$i.bin\" & done; wait")"
done
record "4 parallel readers, 4 files of ${par_mib} MiB" "$M" "$C"

echo "bench: bandwidth limit" >&2
# -o bwlimit=4M against curl --limit-rate 4M, both reading bw_mib MiB: the goal is bw_mib/4 s
# (16 s for 64 MiB) within 10 %.
bw_mib=$((quick == 1 ? 16 : 64))
M=""; C=""
for r in $(seq $rounds); do
    mount_fs -o bwlimit=4M
    M+=" $(time_cmd dd if="$mnt/big.bin" of=/dev/null bs=1M count=$bw_mib status=none)"
    umount_fs
    C+=" $(time_cmd curl -s --limit-rate 4M -r 0-$((bw_mib * 1048576 - 1)) -o /dev/null "$url/big.bin")"
done
record "read $bw_mib MiB with -o bwlimit=4M (goal $((bw_mib / 4)) s +-10%)" "$M" "$C"

echo
echo "ftpfs benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, server: $server on 127.0.0.1, median of $rounds"
printf '%-52s %9s %9s %7s\n' "workload" "mount s" "curl s" "ratio"
printf '%s\n' "${results[@]}"
echo "peak RSS of ftpfs during the sequential read: $((rss_peak / 1024)) MiB"
