# The applications set of scripts/bench.sh --rtt (sourced by scripts/bench_wan.sh, not run alone):
# everyday programs that make many small files, run in the mount and in an sshfs mount of the
# same directory through the same emulated link, each in a fresh mount, with their result
# checked on the server's disk. Uses bench_wan.sh's helpers and variables (mount_cold, unmount,
# timed_fs, median, cmdlog, verbs, histogram, host, rtt, rate, root, local, work, rounds, user).
#
# sshfs: a throwaway sshd on 127.0.0.1 (its own host key and a client key made here, for the
# FTP user), reached through a second examples/wan_proxy with the same delay and rate.
# Each row: the mount's time, sshfs's, their ratio (sshfs / ftpfs), and the round trips of the
# link the mount's time amounts to for each item (a new file, a touch, an append): the floor is
# one round trip per item, since each is a close(2) that must come back with the server's word.

echo "bench: applications, setting up sshd and sshfs" >&2
need() { # need COMMAND PACKAGE: installs PACKAGE unless COMMAND is there
    command -v "$1" >/dev/null 2>&1 && return 0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    }
}
need /usr/sbin/sshd openssh-server
need sshfs sshfs
need git git
ssh_dir=$work/ssh
mkdir -p "$ssh_dir" /run/sshd
chmod 700 "$ssh_dir"
ssh-keygen -q -t ed25519 -N '' -f "$ssh_dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$ssh_dir/client_key"
home=$(getent passwd "$user" | cut -d: -f6)
mkdir -p "$home/.ssh"
[ ! -f "$home/.ssh/authorized_keys" ] || cp -p "$home/.ssh/authorized_keys" "$ssh_dir/authorized_keys.saved"
cp "$ssh_dir/client_key.pub" "$home/.ssh/authorized_keys"
chown -R "$user" "$home/.ssh"
chmod 700 "$home/.ssh"
chmod 600 "$home/.ssh/authorized_keys"
ssh_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$ssh_dir/sshd_config" <<EOF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $ssh_dir/host_key
PidFile $ssh_dir/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers $user
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -f "$ssh_dir/sshd_config" -E "$ssh_dir/sshd.log"
# Not a coproc (bash keeps one at a time, the FTP proxy's): its stdin is a sleep that ends
# with the bench at the latest.
(sleep 21600 | exec "$top/target/release/examples/wan_proxy" --listen "$host" --to 127.0.0.1 \
    --ports "$ssh_port" --rtt-ms "$rtt" ${rate:+--rate-mbit "$rate"} --max-seconds 21600 \
    > "$work/sshproxy.out" 2> "$work/sshproxy.log") &
for _ in $(seq 100); do grep -q ready "$work/sshproxy.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$work/sshproxy.out" || { echo "bench: wan_proxy for ssh did not start" >&2; exit 1; }
smnt=$work/smnt
mkdir -p "$smnt"
stop_ssh() {
    fusermount3 -u -z "$smnt" 2>/dev/null || true
    pkill -f -- "--ports $ssh_port --rtt-ms" 2>/dev/null || true
    [ -f "$ssh_dir/sshd.pid" ] && kill "$(cat "$ssh_dir/sshd.pid")" 2>/dev/null || true
    rm -f "$home/.ssh/authorized_keys"
    [ ! -f "$ssh_dir/authorized_keys.saved" ] || cp -p "$ssh_dir/authorized_keys.saved" "$home/.ssh/authorized_keys"
}
trap 'stop_ssh; cleanup' EXIT
mount_sshfs() {
    sshfs -p "$ssh_port" -o "IdentityFile=$ssh_dir/client_key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null" \
        -o LogLevel=ERROR "$user@$host:$root" "$smnt"
}
umount_sshfs() { fusermount3 -u "$smnt"; for _ in $(seq 100); do mountpoint -q "$smnt" || return 0; sleep 0.05; done; }

# The data: a source tree of 33 files for git, 200 000 lines for sort.
mkdir -p "$local/src33"
for d in 1 2 3; do
    mkdir -p "$local/src33/sub$d"
    for i in $(seq 11); do head -c $((1500 + (i * 397 + d * 911) % 5000)) /dev/urandom | base64 > "$local/src33/sub$d/f$i.txt"; done
done
seq 200000 | sort -R --random-source=<(yes) > "$local/lines"
sort "$local/lines" > "$local/lines.sorted"

app_rows=()
# run_app NAME ITEMS GOAL_RTTS SETUP_CHECK CMD: CMD runs with $1 = a fresh directory in a mount
# (created by the harness on the server's disk first), CHECK with $1 = the same directory on
# the server's disk; ITEMS: new files/touches/appends the workload makes (for round trips per
# item); GOAL: the issue's ceiling of round trips per item ("-": none).
run_app() {
    local name=$1 items=$2 goal=$3 check=$4 cmd=$5 M="" S="" r dir m s per ok cmds
    for r in $(seq "$rounds"); do
        dir=app$RANDOM$r
        mkdir "$root/$dir" "$root/s$dir"
        chown "$user" "$root/$dir" "$root/s$dir"
        mount_cold
        ls "$mnt/$dir" > /dev/null
        timed_fs bash -c "$cmd" _ "$mnt/$dir"
        unmount
        bash -c "$check" _ "$root/$dir" || mismatch "$name through ftpfs"
        if [ "$r" = 1 ]; then # sshfs takes two to five times longer: one round of it
            mount_sshfs
            ls "$smnt/s$dir" > /dev/null
            S+=" $(time_cmd bash -c "$cmd" _ "$smnt/s$dir")"
            umount_sshfs
            bash -c "$check" _ "$root/s$dir" || mismatch "$name through sshfs"
        fi
        rm -rf "${root:?}/$dir" "${root:?}/s$dir"
    done
    m=$(median $M); s=$(median $S)
    per=$(echo "$m * 1000 / $rtt / $items" | bc -l)
    ok=""
    [ "$goal" = "-" ] || ok=$(echo "$per <= $goal" | bc -l | sed 's/1/ ✓/; s/0/ ✗/')
    cmds=$(printf '%s\n' "$fs_verbs" | grep . | histogram)
    app_rows+=("$(printf '%-44s %8.2f %8.2f %6.2f %7.2f %6s%s' "$name" "$m" "$s" "$(echo "$s / $m" | bc -l)" \
        "$per" "$goal" "$ok")")
    app_rows+=("$(printf '      commands (last round): %s' "$cmds")")
}

echo "bench: git init, add, commit" >&2
run_app "git init; cp -r 33 files; git add -A; commit" 71 4 \
    'cd "$1" && git -c safe.directory="*" fsck --strict >/dev/null 2>&1 && [ "$(git -c safe.directory="*" ls-files | wc -l)" = 33 ]' \
    'cd "$1" && git init -q && cp -r '"'$local/src33'"'/* . && git -c safe.directory="*" add -A &&
        git -c safe.directory="*" -c user.name=b -c user.email=b@b commit -qm bench'
echo "bench: touch" >&2
run_app "200 x touch of a new file" 200 1.2 '[ "$(ls "$1" | wc -l)" = 200 ]' \
    'cd "$1" && for i in $(seq 200); do touch n$i; done'
run_app "1500 x touch of a new file" 1500 1.2 '[ "$(ls "$1" | wc -l)" = 1500 ]' \
    'cd "$1" && for i in $(seq 1500); do touch n$i; done'
echo "bench: appends" >&2
run_app "200 x echo >> one file" 200 1.2 '[ "$(cat "$1/log")" = "$(seq 200)" ]' \
    'for i in $(seq 200); do echo $i >> "$1/log"; done'
echo "bench: cp -r in" >&2
run_app "cp -r of 100 files of 4 KiB in" 100 1.2 'diff -r '"'$local/up'"' "$1/up" >/dev/null' \
    'cp -r '"'$local/up'"' "$1/up"'
echo "bench: sort -T" >&2
run_app "sort -S 64K -T MNT of 200 000 lines" 1 - 'cmp -s "$1/out" '"'$local/lines.sorted'"'' \
    'mkdir "$1/tmp" && sort -S 64K -T "$1/tmp" '"'$local/lines'"' > "$1/out"'

print_apps() {
    echo
    echo "applications through the same link, ftpfs vs sshfs $(sshfs --version 2>&1 | sed -n 's/SSHFS version //p' | head -1)," \
        "median of $rounds for ftpfs, one round of sshfs (RTT/it: the mount's time in round trips per new file, touch or append)"
    printf '%-44s %8s %8s %6s %7s %6s\n' "workload" "ftpfs s" "sshfs s" "ratio" "RTT/it" "goal"
    printf '%s\n' "${app_rows[@]}"
    echo "ratio: sshfs s / ftpfs s"
}
