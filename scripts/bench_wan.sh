# The WAN workload set of scripts/bench.sh (--rtt MS [--rate MBIT]); sourced by it, not run alone.
# Uses its variables and helpers: server, port, pasv_lo/hi, host (127.0.0.2), url, mnt, root,
# local, work, rounds, w_* sizes, mount_fs, umount_fs, ftpfs_pid, time_cmd, median, check_same.
#
# The server listens on 127.0.0.1; examples/wan_proxy listens on 127.0.0.2 in front of its control
# port and whole passive range, delays each direction by rtt/2 (plus serialization at --rate) and
# rewrites PASV replies to name 127.0.0.2. ftpfs (a fresh, cold mount per round), curl and lftp
# all connect to 127.0.0.2. Each row compares ftpfs with the plain client that suits the workload.

coproc PROXY {
    exec "$top/target/release/examples/wan_proxy" --listen "$host" --to 127.0.0.1 \
        --ports "$port,$pasv_lo-$pasv_hi" --rtt-ms "$rtt" ${rate:+--rate-mbit "$rate"} \
        --max-seconds 21600 2> "$work/proxy.log"
}
proxy_pid=$PROXY_PID # it also exits when this script dies (end of its stdin)
ready=""
read -r -t 10 -u "${PROXY[0]}" ready || true
[ "$ready" = ready ] || { echo "bench: wan_proxy did not start" >&2; cat "$work/proxy.log" >&2; exit 1; }

# The server's log of FTP commands, to count what ftpfs sends for each workload.
if [ "$server" = vsftpd ]; then
    cmdlog=$work/commands.log
    verbs() { sed -n 's/.*FTP command: Client "[^"]*", "\([A-Za-z]*\).*/\1/p'; }
else
    cmdlog=$work/server.log
    verbs() { sed -n 's/.* <- \([A-Za-z]*\).*/\1/p'; }
fi
log_pos() { { wc -l < "$cmdlog"; } 2>/dev/null || echo 0; }
histogram() { sort | uniq -c | sort -k1,1nr -k2 | awk '{printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1}'; }
mismatch() { echo "bench: DATA MISMATCH in $1" >&2; exit 1; }
lftp_cmd() { # lftp_cmd 'COMMANDS': one lftp session through the proxy
    lftp -c "set ftp:ssl-allow no; set net:max-retries 2; set net:timeout 30; set cmd:fail-exit yes;
        open -u $user,$pass -p $port $host; $1" > /dev/null
}

rss_peak=0; MNT=""
mount_cold() { # a fresh mount (cold caches), its time noted; arguments go to ftpfs
    local t0; t0=$(now)
    mount_fs "$@"
    MNT+=" $(echo "$(now) - $t0" | bc -l)"
}
unmount() { # notes the peak RSS, then unmounts
    local pid hwm
    pid=$(ftpfs_pid)
    if [ -n "$pid" ]; then
        hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
        if [ "$hwm" -gt "$rss_peak" ]; then rss_peak=$hwm; fi
    fi
    umount_fs
}
# timed_fs CMD...: times CMD through the mount into M, and keeps the commands it cost in fs_verbs.
timed_fs() {
    local p0 t
    p0=$(log_pos)
    t=$(time_cmd "$@")
    M+=" $t"
    fs_verbs=$(sed -n "$((p0 + 1)),\$p" "$cmdlog" | verbs)
}
timed_client() { C+=" $(time_cmd "$@")"; }

wan_rows=(); wan_notes=()
record_wan() { # name client [floor_s]: one row from M, C and fs_verbs
    local name=$1 client=$2 floor=${3:-} m c ratio="-" cmds
    m=$(median $M)
    c="-"
    if [ -n "$C" ]; then c=$(printf '%.2f' "$(median $C)"); ratio=$(printf '%.2f' "$(echo "$c / $m" | bc -l)"); fi
    [ -z "$floor" ] || floor=$(printf '%.2f' "$floor")
    cmds=$(printf '%s\n' "$fs_verbs" | grep -c . || true)
    wan_rows+=("$(printf '%-42s %8.2f %8s  %-20s %6s %7s %6s' "$name" "$m" "$c" "$client" "$ratio" "${floor:--}" "$cmds")")
    wan_notes+=("$(printf '  %-40s %s' "$name:" "$(printf '%s\n' "$fs_verbs" | grep . | histogram)")")
}
# link_floor MIB: the time the link alone needs for MIB, one way (size*8/rate + rtt); empty without --rate
link_floor() { [ -z "$rate" ] || echo "$1 * 8.388608 / $rate + $rtt / 1000" | bc -l; }

if [ "$apps_only" = 1 ]; then
    # shellcheck source=scripts/bench_apps.sh
    . "$top/scripts/bench_apps.sh"
    print_apps
    return 0
fi

echo "bench: cat of small files" >&2
M=""; C=""
want=$(cat "$root"/small/* | sha256sum)
for r in $(seq $rounds); do
    mount_cold
    timed_fs sh -c "cat '$mnt'/small/* | sha256sum > '$work/sum'"
    [ "$(cat "$work/sum")" = "$want" ] || mismatch "cat of small files"
    unmount
    rm -rf "$work/out"; mkdir "$work/out"
    timed_client curl -s "$url/small/f[0001-$(printf %04d $w_small)]" -o "$work/out/f#1"
    diff -r "$root/small" "$work/out" > /dev/null || mismatch "curl of small files"
done
record_wan "cat $w_small files of 4 KiB, fresh mount" "curl, 1 connection"

echo "bench: cp -r out" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_cold
    timed_fs cp -r "$mnt/tree" "$work/cpout"
    diff -r "$root/tree" "$work/cpout" > /dev/null || mismatch "cp -r out"
    unmount
    timed_client lftp_cmd "mirror --parallel=8 tree '$work/lout'"
    diff -r "$root/tree" "$work/lout" > /dev/null || mismatch "lftp mirror"
    rm -rf "$work/cpout" "$work/lout"
done
record_wan "cp -r out, $w_dirs dirs x $w_per_dir files, fresh" "lftp mirror -P8"

echo "bench: ls -lR" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_cold
    timed_fs sh -c "ls -lR '$mnt/tree' > '$work/ls.out'"
    [ "$(grep -c '^-' "$work/ls.out")" = $((w_dirs * w_per_dir)) ] || mismatch "ls -lR"
    unmount
    timed_client lftp_cmd "find -l tree"
done
record_wan "ls -lR of that tree, fresh mount" "lftp find -l"

echo "bench: cp -r in" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_cold
    timed_fs cp -r "$local/up" "$mnt/up/m$r"
    diff -r "$local/up" "$root/up/m$r" > /dev/null || mismatch "cp -r in"
    unmount
    timed_client lftp_cmd "mirror -R --parallel=8 '$local/up' up/l$r"
    diff -r "$local/up" "$root/up/l$r" > /dev/null || mismatch "lftp mirror -R"
done
record_wan "cp -r in, $w_up files of 4 KiB" "lftp mirror -R -P8"
per_file_cmds=$(echo "$(printf '%s\n' "$fs_verbs" | grep -c . || true) / $w_up" | bc -l)
per_file_rtts=$(echo "$(median $M) * 1000 / $rtt / $w_up" | bc -l)

echo "bench: cp -r in, write-back" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_cold -o writeback
    pid=$(ftpfs_pid)
    # Timed until every file is on the server: cp, then the unmount, which waits for the uploads
    # (the ftpfs process ends once they landed). A process that ended but is not reaped yet
    # (a zombie: some init processes reap orphans seconds late) has ended.
    timed_fs sh -c "cp -r '$local/up' '$mnt/up/b$r' && fusermount3 -u '$mnt' &&
        while kill -0 $pid 2>/dev/null && [ \"\$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)\" != Z ]; do sleep 0.01; done"
    diff -r "$local/up" "$root/up/b$r" > /dev/null || mismatch "cp -r in with write-back"
    timed_client lftp_cmd "mirror -R --parallel=8 '$local/up' up/k$r"
    diff -r "$local/up" "$root/up/k$r" > /dev/null || mismatch "lftp mirror -R"
done
record_wan "cp -r in, $w_up files, writeback, landed" "lftp mirror -R -P8"

echo "bench: sequential read" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_cold
    timed_fs sh -c "dd if='$mnt/big.bin' bs=1M status=none | cmp - '$root/big.bin'"
    unmount
    timed_client sh -c "curl -s '$url/big.bin' | cmp - '$root/big.bin'"
done
record_wan "dd read $w_read_mib MiB, fresh mount" "curl" "$(link_floor $w_read_mib)"

echo "bench: sequential write" >&2
M=""; C=""
for r in $(seq $rounds); do
    mount_cold
    timed_fs dd if="$local/write.bin" of="$mnt/up/w$r.bin" bs=1M status=none
    check_same "$local/write.bin" "$root/up/w$r.bin"
    unmount
    timed_client curl -s -T "$local/write.bin" "$url/up/c$r.bin"
    check_same "$local/write.bin" "$root/up/c$r.bin"
    rm -f "$root/up/w$r.bin" "$root/up/c$r.bin"
done
record_wan "dd write $w_write_mib MiB, fresh mount" "curl -T" "$(link_floor $w_write_mib)"

echo "bench: disk cache" >&2
dc="$work/diskcache"; mkdir -p "$dc"; chmod 700 "$dc"
want=$(cat "$root"/small/* | sha256sum)
M=""; C=""; M2=""; C2=""; M3=""; C3=""
for r in $(seq $rounds); do
    rm -rf "$dc/content"
    # The first read with the cache (it fills it) against the same read without one.
    mount_cold
    C+=" $(time_cmd sh -c "cat '$mnt'/small/* > /dev/null && cat '$mnt/big.bin' > /dev/null")"
    unmount
    mount_cold -o disk_cache,cache_dir="$dc"
    M+=" $(time_cmd sh -c "cat '$mnt'/small/* > /dev/null && cat '$mnt/big.bin' > /dev/null")"
    unmount
    # After a remount: served from the cache, against the same reads from the local disk.
    mount_cold -o disk_cache,cache_dir="$dc"
    M2+=" $(time_cmd sh -c "cat '$mnt'/small/* | sha256sum > '$work/sum'")"
    [ "$(cat "$work/sum")" = "$want" ] || mismatch "cat from the disk cache"
    M3+=" $(time_cmd sh -c "dd if='$mnt/big.bin' bs=1M status=none | cmp - '$root/big.bin'")"
    unmount
    C2+=" $(time_cmd sh -c "cat '$root'/small/* | sha256sum > /dev/null")"
    C3+=" $(time_cmd sh -c "dd if='$root/big.bin' bs=1M status=none | cmp - '$root/big.bin'")"
done
fs_verbs=""
record_wan "first cat + big read, disk_cache (fills it)" "the same, no cache"
M=$M2; C=$C2
record_wan "cat $w_small files after a remount, disk cache" "local disk"
M=$M3; C=$C3
record_wan "dd $w_read_mib MiB after a remount, disk cache" "local disk"

M=$MNT; C=""; fs_verbs=""
record_wan "mount (connect, log in; not in the above)" "-"

echo
echo "ftpfs WAN benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, server: $server behind wan_proxy," \
    "rtt $rtt ms${rate:+, $rate Mbit/s}, median of $rounds"
printf '%-42s %8s %8s  %-20s %6s %7s %6s\n' "workload" "ftpfs s" "client s" "best plain client" "ratio" \
    "floor s" "cmds"
printf '%s\n' "${wan_rows[@]}"
echo "ratio: client s / ftpfs s (1.0 = as fast as the plain client); floor: size*8/rate + rtt;"
echo "cmds: FTP commands ftpfs sent during the workload (last round; logins of extra connections included)"
printf 'cp -r in through the mount: %.1f commands and %.1f RTTs of time per file\n' "$per_file_cmds" "$per_file_rtts"
echo "peak RSS of ftpfs: $((rss_peak / 1024)) MiB"
echo "commands ftpfs sent, per workload (last round):"
printf '%s\n' "${wan_notes[@]}" | grep -v '^  mount' || true

# shellcheck source=scripts/bench_apps.sh
. "$top/scripts/bench_apps.sh"
print_apps
