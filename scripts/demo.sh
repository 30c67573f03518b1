#!/usr/bin/env bash
# Demo: installs only what it needs (fuse3, pyftpdlib: scripts/setup.sh --demo), builds ftpfs, starts a local FTP server (pyftpdlib) with sample
# files in a temp dir, and mounts it at ./mnt (or the directory given as $1).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
mnt=${1:-$top/mnt}

bash scripts/setup.sh --demo
cargo build --release --locked
bin=$top/target/release/ftpfs

root=$(mktemp -d /tmp/ftpfs-demo-XXXXXX)
mkdir -p "$root/docs" "$root/photos"
echo "Hello from the FTP server" > "$root/hello.txt"
printf 'line %s\n' $(seq 1 100) > "$root/docs/lines.txt"
echo "a hidden file" > "$root/.hidden"
head -c 5242880 /dev/urandom > "$root/photos/random-5MiB.bin"
echo "unicode name" > "$root/docs/résumé – 2024.txt"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pasv_lo=$(( (port % 1000) * 20 + 30000 )); pasv_hi=$(( pasv_lo + 19 ))
# pyftpdlib as scripts/setup.sh installed it (pinned, in its own virtual environment).
nohup /opt/ftpfs-test/venv/bin/python tests/support/pyftpd_server.py --port "$port" --root "$root" \
    --user demo --password demo --pasv "$pasv_lo-$pasv_hi" > "$root.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then break; fi
    sleep 0.1
done

mkdir -p "$mnt"
FTPFS_PASSWORD=demo "$bin" "ftp://demo@127.0.0.1:$port/" "$mnt"

cat <<MSG

ftpfs is mounted:  ftp://demo@127.0.0.1:$port/  →  $mnt
(server files live in $root, server pid $server_pid)

Try:
  ls -la $mnt
  cat $mnt/hello.txt
  cp $mnt/photos/random-5MiB.bin /tmp/ && cmp /tmp/random-5MiB.bin $root/photos/random-5MiB.bin
  echo "written through the mount" > $mnt/new.txt && cat $root/new.txt
  mkdir $mnt/newdir && mv $mnt/new.txt $mnt/newdir/
  rsync -a $top/src/ $mnt/src-copy/

Unmount and stop the server:
  fusermount3 -u $mnt && kill $server_pid
MSG
