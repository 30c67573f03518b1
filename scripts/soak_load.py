"""The load of scripts/soak.sh: mixed operations on a mount for a while, printing the RSS of
the ftpfs process as it goes, then checking that it stayed flat and that the server's disk
holds what was written. Exit status 1 on growth or on a mismatch."""
import argparse
import errno
import os
import random
import sys
import time

DIRS = 200


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def drop_kernel_caches():
    """Makes the kernel forget dentries and inodes (FUSE forget), as memory pressure would."""
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
    except OSError:
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mount", required=True)
    p.add_argument("--server-root", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--names", type=int, required=True)
    p.add_argument("--every", type=float, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--warmup", type=float, help="seconds before the reference RSS (a sixth of the run)")
    a = p.parse_args()

    rng = random.Random(1)
    mnt = a.mount
    for d in range(DIRS):
        os.makedirs(os.path.join(mnt, f"d{d:03}"), exist_ok=True)
    # What we wrote, by relative path: content, or None once deleted.
    wrote = {}
    counts = {}

    def name(i):
        return f"d{i % DIRS:03}/n{i:06}"

    def op_write(rel):
        body = f"{rel} {rng.random()}\n".encode() * rng.randint(1, 40)
        with open(os.path.join(mnt, rel), "wb") as f:
            f.write(body)
        wrote[rel] = body

    def op_read(rel):
        try:
            with open(os.path.join(mnt, rel), "rb") as f:
                got = f.read()
        except FileNotFoundError:
            if wrote.get(rel) is not None:
                raise
            return
        if rel in wrote and wrote[rel] is not None and got != wrote[rel]:
            raise AssertionError(f"{rel}: read {len(got)} bytes, wrote {len(wrote[rel])}")

    def op_stat(rel):
        try:
            os.stat(os.path.join(mnt, rel))
        except FileNotFoundError:
            pass

    def op_list(rel):
        os.listdir(os.path.join(mnt, os.path.dirname(rel)))

    def op_unlink(rel):
        try:
            os.unlink(os.path.join(mnt, rel))
            wrote[rel] = None
        except FileNotFoundError:
            pass

    def op_rename(rel):
        to = name(rng.randrange(a.names))
        if to == rel:
            return  # a rename onto itself changes nothing
        src = os.path.join(mnt, rel)
        try:
            os.rename(src, os.path.join(mnt, to))
        except FileNotFoundError:
            return
        wrote[to] = wrote.get(rel)
        wrote[rel] = None

    def op_dir(rel):
        d = os.path.join(mnt, os.path.dirname(rel), f"sub{rng.randrange(1000)}")
        try:
            os.mkdir(d)
            os.rmdir(d)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOENT, errno.ENOTEMPTY):
                raise

    ops = [(op_write, 30), (op_read, 20), (op_stat, 25), (op_list, 5), (op_unlink, 10), (op_rename, 7), (op_dir, 3)]
    table = [f for f, w in ops for _ in range(w)]

    start = time.monotonic()
    warm_at = start + (a.warmup if a.warmup is not None else a.seconds / 6)
    next_report = start + a.every
    warm_rss = None
    samples = []
    print(f"soak: {a.seconds:.0f} s over {a.names} names; RSS of ftpfs every {a.every:.0f} s", flush=True)
    n = 0
    while True:
        now = time.monotonic()
        if now >= next_report:
            drop_kernel_caches()
            rss = rss_kib(a.pid)
            samples.append(rss)
            print(f"soak: {now - start:7.0f} s  {n:8d} ops  RSS {rss / 1024:7.1f} MiB", flush=True)
            if warm_rss is None and now >= warm_at:
                warm_rss = rss
            next_report += a.every
        if now - start >= a.seconds:
            break
        op = rng.choice(table)
        rel = name(rng.randrange(a.names))
        op(rel)
        counts[op.__name__] = counts.get(op.__name__, 0) + 1
        n += 1

    print("soak: operations " + ", ".join(f"{k[3:]} {v}" for k, v in sorted(counts.items())), flush=True)
    # The server's disk holds what the mount said it wrote.
    bad = 0
    for rel, body in wrote.items():
        path = os.path.join(a.server_root, rel)
        on_disk = open(path, "rb").read() if os.path.exists(path) else None
        if on_disk != body:
            bad += 1
            if bad <= 5:
                print(f"soak: MISMATCH {rel}: disk {None if on_disk is None else len(on_disk)}, "
                      f"wrote {None if body is None else len(body)}", file=sys.stderr)
    final = samples[-1] if samples else rss_kib(a.pid)
    warm_rss = warm_rss or (samples[0] if samples else final)
    growth = final - warm_rss
    print(f"soak: RSS after warm-up {warm_rss / 1024:.1f} MiB, at the end {final / 1024:.1f} MiB "
          f"({growth / 1024:+.1f} MiB); {len(wrote)} names touched, {bad} mismatches", flush=True)
    if bad:
        sys.exit(1)
    if growth > max(warm_rss // 10, 2048):
        print("soak: RSS grew more than 10% after the warm-up", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
