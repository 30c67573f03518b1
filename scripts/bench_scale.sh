# The scale workload set of scripts/bench.sh (--scale); sourced by it, not run alone.
# Uses its variables and helpers: url, mnt, root, work, rounds, s_* sizes, mount_fs, umount_fs,
# ftpfs_pid, time_cmd, median, check_same, record.
#
# Rows: a directory of s_entries names (ls -l cold and warm, find, stat of one name in it while
# the directory is not cached), a file of s_big_gib GiB (sequential read, tail, random 4 KiB
# reads past 4 GiB), s_readers parallel readers, CPU seconds per GiB read and written (ftpfs's
# own CPU against curl's), and RSS per cached entry.

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$(ftpfs_pid)/status"; }
# cpu_ticks PID: user + system CPU of a process, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
# curl_cpu ARGS...: CPU seconds (user + system) one curl run took
curl_cpu() {
    local TIMEFORMAT='%U %S' t
    t=$({ time curl -s "$@" > /dev/null; } 2>&1)
    echo "$t" | awk '{print $1 + $2}'
}

echo "bench: ${s_entries}-entry directory" >&2
M=""; C=""; M2=""; C2=""; F=""; FL=""; S=""; SC=""; per_entry=""
for r in $(seq "$rounds"); do
    mount_fs
    ls "$mnt" > /dev/null
    before=$(rss_kib)
    M+=" $(time_cmd sh -c "ls -l '$mnt/huge' > /dev/null")"
    after=$(rss_kib)
    per_entry+=" $(( (after - before) * 1024 / s_entries ))"
    M2+=" $(time_cmd sh -c "ls -l '$mnt/huge' > /dev/null")"
    umount_fs
    # The raw listing plus a local ls -l of the same names (its page cache warm): what a
    # mount costs at least.
    ls -l "$root/huge" > /dev/null
    C+=" $(echo "$(time_cmd curl -s -o /dev/null "$url/huge/") + $(time_cmd sh -c "ls -l '$root/huge' > /dev/null")" | bc -l)"
    C2+=" $(time_cmd sh -c "ls -l '$root/huge' > /dev/null")"

    mount_fs
    F+=" $(time_cmd sh -c "find '$mnt/huge' > /dev/null")"
    umount_fs
    FL+=" $(echo "$(time_cmd curl -s -o /dev/null "$url/huge/") + $(time_cmd sh -c "find '$root/huge' > /dev/null")" | bc -l)"

    mount_fs
    ls "$mnt" > /dev/null
    name=$(printf 'file-%06d.txt' $(( s_entries / 2 )))
    S+=" $(time_cmd sh -c "stat '$mnt/huge/$name' > /dev/null")"
    [ "$(stat -c %s "$mnt/huge/$name")" = "$(stat -c %s "$root/huge/$name")" ] || { echo "bench: wrong size of $name" >&2; exit 1; }
    umount_fs
    SC+=" $(time_cmd curl -s -I -o /dev/null "$url/huge/$name")"
done
record "ls -l of ${s_entries} entries, cold (vs LIST + local ls -l)" "$M" "$C"
record "the same ls -l again, cached (vs local ls -l)" "$M2" "$C2"
record "find in ${s_entries} entries, cold (vs LIST + local find)" "$F" "$FL"
record "stat of one of ${s_entries} names, dir not cached (vs curl -I)" "$S" "$SC"
rss_per_entry=$(median $per_entry)

echo "bench: ${s_big_gib} GiB file" >&2
size=$((s_big_gib << 30))
M=""; C=""; CPU_M=""; CPU_C=""
for r in $(seq "$rounds"); do
    mount_fs
    pid=$(ftpfs_pid); c0=$(cpu_ticks "$pid")
    M+=" $(time_cmd dd if="$mnt/big.bin" of=/dev/null bs=1M status=none)"
    CPU_M+=" $(echo "($(cpu_ticks "$pid") - $c0) / $tick / $s_big_gib" | bc -l)"
    umount_fs
    C+=" $(time_cmd curl -s -o /dev/null "$url/big.bin")"
    CPU_C+=" $(echo "$(curl_cpu -o /dev/null "$url/big.bin") / $s_big_gib" | bc -l)"
done
record "sequential read of ${s_big_gib} GiB (dd bs=1M)" "$M" "$C"
record "CPU seconds per GiB read: ftpfs vs curl" "$CPU_M" "$CPU_C"

M=""; C=""
for r in $(seq "$rounds"); do
    mount_fs
    M+=" $(time_cmd sh -c "tail -c 4096 '$mnt/big.bin' > '$work/tail.m'")"
    umount_fs
    C+=" $(time_cmd curl -s -r $((size - 4096))- -o "$work/tail.c" "$url/big.bin")"
    check_same "$work/tail.m" "$work/tail.c"
    check_same "$work/tail.m" <(tail -c 4096 "$root/big.bin")
done
record "tail -c 4096 of ${s_big_gib} GiB, fresh mount" "$M" "$C"

# Random 4 KiB reads at offsets past 4 GiB: through the mount, and with curl asking each range
# on one connection (a config of url/range/next entries); both checked against the disk.
M=""; C=""
for r in $(seq "$rounds"); do
    python3 - "$size" "$s_random" "$r" > "$work/offsets" <<'EOF'
import random, sys
size, n, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
for _ in range(n):
    print(rnd.randrange(4 << 30, size - 4096) // 4096 * 4096)
EOF
    random_reads() { # FILE OUT: the 4 KiB blocks at the offsets, one after another
        python3 - "$1" "$work/offsets" "$2" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
with open(sys.argv[3], "wb") as out:
    for line in open(sys.argv[2]):
        out.write(os.pread(fd, 4096, int(line)))
EOF
    }
    random_reads "$root/big.bin" "$work/random.disk"
    mount_fs
    M+=" $(time_cmd random_reads "$mnt/big.bin" "$work/random.m")"
    umount_fs
    check_same "$work/random.m" "$work/random.disk"
    i=0
    while read -r off; do
        i=$((i + 1))
        [ $i = 1 ] || echo next
        printf 'url = "%s"\nrange = "%s-%s"\noutput = "%s"\n' "$url/big.bin" "$off" $((off + 4095)) "$work/r.$i"
    done < "$work/offsets" > "$work/curl.cfg"
    C+=" $(time_cmd curl -s -K "$work/curl.cfg")"
    for j in $(seq "$i"); do cat "$work/r.$j"; done > "$work/random.c"
    rm -f "$work"/r.*
    check_same "$work/random.c" "$work/random.disk"
done
record "$s_random random 4 KiB reads past 4 GiB, fresh mount" "$M" "$C"

echo "bench: ${s_readers} parallel readers" >&2
M=""; C=""
for r in $(seq "$rounds"); do
    mount_fs
    M+=" $(time_cmd sh -c "for i in \$(seq $s_readers); do dd if=\"$mnt/r/p\$i.bin\" of=/dev/null bs=1M status=none & done; wait")"
    umount_fs
    C+=" $(time_cmd sh -c "for i in \$(seq $s_readers); do curl -s -o /dev/null \"$url/r/p\$i.bin\" & done; wait")"
done
record "$s_readers parallel readers of ${s_reader_mib} MiB files" "$M" "$C"

echo "bench: write ${s_write_gib} GiB" >&2
M=""; C=""; CPU_M=""; CPU_C=""
mount_fs
mountpoint -q "$mnt" || { echo "bench: not mounted" >&2; exit 1; }
pid=$(ftpfs_pid)
for r in $(seq "$rounds"); do
    c0=$(cpu_ticks "$pid")
    M+=" $(time_cmd dd if="$local/write.bin" of="$mnt/up/w.bin" bs=1M status=none)"
    CPU_M+=" $(echo "($(cpu_ticks "$pid") - $c0) / $tick / $s_write_gib" | bc -l)"
    check_same "$local/write.bin" "$root/up/w.bin"
    rm -f "$root/up/w.bin"
    C+=" $(time_cmd curl -s -T "$local/write.bin" "$url/up/c.bin")"
    CPU_C+=" $(echo "$(curl_cpu -T "$local/write.bin" "$url/up/c.bin") / $s_write_gib" | bc -l)"
    check_same "$local/write.bin" "$root/up/c.bin"
    rm -f "$root/up/c.bin"
done
umount_fs
record "sequential write of ${s_write_gib} GiB" "$M" "$C"
record "CPU seconds per GiB written: ftpfs vs curl" "$CPU_M" "$CPU_C"

echo
echo "ftpfs scale benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), server: $server on 127.0.0.1, median of $rounds"
echo "(ratio = other / mount: above 1 the mount is faster; for CPU rows, above 1 the mount uses less)"
printf '%-64s %9s %9s %7s\n' "workload" "mount" "other" "ratio"
printf '%s\n' "${results[@]}"
echo "RSS per cached entry after the cold ls -l: $rss_per_entry bytes"
