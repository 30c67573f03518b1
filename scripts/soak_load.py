"""The load of scripts/soak.sh: mixed operations on a mount for a while, sampling the memory of
the ftpfs process as it goes, then checking that it stayed flat and that the server's disk
holds what was written. Exit status 3 when memory grows, 1 on a mismatch or when too few
operations came after the warm-up to judge.

The verdict is a slope, not a difference of two points, and the growth must persist. After a
warm-up (a sixth of the run and 10 operations per name: the listing cache and the inode table
fill while names are first met, and the share of names that exist settles), the resident size
(VmRSS) and what the allocator has handed out and not got back ("in use", from `ftpfs stats`,
glibc's mallinfo2) are sampled once a second against the number of operations done, and the
Theil-Sen slope (the median of the slopes between every two samples, which the sawtooth of
cache drops and the allocator's once-a-minute trim cannot move much) must stay under a budget
in bytes per operation in one half of the window at least (a leak grows through both halves; a
one-off step, such as a hash table doubling its capacity, lies in one). Per operation rather
than per second, so that a machine slowed by other load judges the same way; and the run goes
on (up to --patience times --seconds) until enough operations came after the warm-up to judge
at all.

The budgets (RSS_BUDGET, IN_USE_BUDGET) were set from honest runs and a leak injected with
FTPFS_TEST_LEAK_BYTES (scripts/soak.sh --leak): see README.md, "A mount that runs for days".
Honest runs measure 0.1-0.2 B/operation in use and under 1 of RSS; the smallest block glibc
can leak is 32 B, and a request answers ~3 per operation, so a block lost by one request in
twenty already exceeds the in-use budget. (scripts/soak.sh runs the mount with glibc's
per-thread caches off: they count as in use and filled slowly, 3 B/operation.)

Leaks per second rather than per operation (a timer, a keep-alive) are judged too: the RSS
slope against time must stay under RSS_PER_SECOND.
"""
import argparse
import errno
import os
import random
import re
import subprocess
import sys
import time

MIB = 1 << 20
# Bytes per operation; see the module's doc.
RSS_BUDGET = 8.0
IN_USE_BUDGET = 2.0
# Bytes of RSS per second after the warm-up.
RSS_PER_SECOND = 16384.0
# The exit status when memory grows (1: the disk differs, or the run could not be judged).
EXIT_GROWS = 3
# Samples after the warm-up at least, for a slope to mean something.
MIN_SAMPLES = 30


def theil_sen(xs, ys):
    """The median of the slopes between every two points with different x (over at most 1 000
    points, evenly thinned: the pairs grow as the square of the points)."""
    if len(xs) > 1000:
        keep = [round(k * (len(xs) - 1) / 999) for k in range(1000)]
        xs, ys = [xs[k] for k in keep], [ys[k] for k in keep]
    slopes = sorted((ys[j] - ys[i]) / (xs[j] - xs[i])
                    for i in range(len(xs)) for j in range(i + 1, len(xs)) if xs[j] != xs[i])
    if not slopes:
        return 0.0
    m = len(slopes) // 2
    return slopes[m] if len(slopes) % 2 else (slopes[m - 1] + slopes[m]) / 2


def in_use(ftpfs, mnt):
    """The allocator's bytes in use in the mount's process, from `ftpfs stats` (None if unknown)."""
    if not ftpfs:
        return None
    try:
        out = subprocess.run([ftpfs, "stats", mnt], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\((\d+) B in arenas \+ (\d+) B mapped", out)
    return int(m.group(1)) + int(m.group(2)) if m else None


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
    p.add_argument("--warmup", type=float, help="seconds of warm-up at least (a sixth of the run)")
    p.add_argument("--warm-ops", type=int, help="operations of warm-up at least (10 per name)")
    p.add_argument("--window-ops", type=int, help="operations after the warm-up at least (10 per name)")
    p.add_argument("--sample", type=float, default=1.0, help="seconds between two memory samples")
    p.add_argument("--patience", type=float, default=4.0,
                   help="give up (and fail) at this many times --seconds without enough operations")
    p.add_argument("--ftpfs", help="the ftpfs binary, to read the allocator's figures with ftpfs stats")
    p.add_argument("--rss-budget", type=float, default=RSS_BUDGET, help="bytes of RSS growth allowed per operation")
    p.add_argument("--in-use-budget", type=float, default=IN_USE_BUDGET,
                   help="bytes of allocator growth allowed per operation")
    p.add_argument("--rss-per-second", type=float, default=RSS_PER_SECOND,
                   help="bytes of RSS growth allowed per second")
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

    # Warm-up: the caches fill while names are first met, and the share of names that exist
    # (so the entries of cached listings) settles where creations and deletions balance: within
    # 2% after 10 operations per name (it nears that balance as 1 - exp(-0.4 * ops / names)).
    # The verdict looks only at what comes after it.
    warm_ops = a.warm_ops if a.warm_ops is not None else 10 * a.names
    window_ops = a.window_ops if a.window_ops is not None else 10 * a.names
    warmup = a.warmup if a.warmup is not None else a.seconds / 6
    start = time.monotonic()
    next_sample = start + a.sample
    next_drop = start + a.every
    next_report = start + a.every
    warm = None  # (time, ops) when the warm-up ended
    samples = []  # (ops, rss bytes, in-use bytes or None) after the warm-up
    print(f"soak: {a.seconds:.0f} s over {a.names} names (warm-up {warmup:.0f} s and {warm_ops} operations, "
          f"then at least {window_ops} operations); ftpfs's memory every {a.sample:g} s", flush=True)
    n = 0
    judged = False
    while True:
        now = time.monotonic()
        if now >= next_drop:
            drop_kernel_caches()
            next_drop += a.every
        if now >= next_sample:
            # Never catching up after a stall: one sample per period at most.
            next_sample = max(next_sample + a.sample, now + a.sample / 2)
            if warm is None and now - start >= warmup and n >= warm_ops:
                warm = (now - start, n)
            rss = rss_kib(a.pid) * 1024
            used = in_use(a.ftpfs, mnt)
            if warm is not None:
                samples.append((n - warm[1], rss, used, now - start))
            if now >= next_report:
                next_report += a.every
                print(f"soak: {now - start:7.0f} s  {n:8d} ops  RSS {rss / MIB:7.1f} MiB  "
                      f"in use {'?' if used is None else f'{used / MIB:.1f}'} MiB{'' if warm else '  (warm-up)'}",
                      flush=True)
            if warm is not None and now - start >= a.seconds and n - warm[1] >= window_ops and len(samples) >= MIN_SAMPLES:
                judged = True
                break
            if now - start >= a.seconds * a.patience:
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
    print(f"soak: {len(wrote)} names touched, {bad} mismatches", flush=True)
    failed = bad > 0
    if not judged:
        done = 0 if warm is None else n - warm[1]
        print(f"soak: too slow to judge: {done} operations after the warm-up in {time.monotonic() - start:.0f} s "
              f"(needed {window_ops} and {MIN_SAMPLES} samples)", file=sys.stderr)
        sys.exit(1)
    grows = False
    with_use = [x for x in samples if x[2] is not None]
    verdicts = [("RSS", [x[0] for x in samples], [x[1] for x in samples], a.rss_budget)]
    if len(with_use) >= MIN_SAMPLES:
        verdicts.append(("in use", [x[0] for x in with_use], [x[2] for x in with_use], a.in_use_budget))
    elif a.ftpfs:
        print(f"soak: the allocator's figures (ftpfs stats) came in {len(with_use)} samples of {len(samples)}",
              file=sys.stderr)
        failed = True
    verdicts.append(("RSS per second", [x[3] for x in samples], [x[1] for x in samples], a.rss_per_second))
    for what, xs, ys, budget in verdicts:
        # Growth must persist: each half of the window must grow faster than the budget. A leak
        # grows through both; a one-off step (a hash table doubling its capacity as entries
        # cross a threshold, which a slow machine shifts) lies in one half only.
        half = len(xs) // 2
        slope = theil_sen(xs, ys)
        first, second = theil_sen(xs[:half], ys[:half]), theil_sen(xs[half:], ys[half:])
        unit = "s" if what.endswith("second") else "operation"
        print(f"soak: {what} after the warm-up ({len(ys)} samples over {samples[-1][0]} operations, "
              f"{samples[-1][3] - samples[0][3]:.0f} s): {ys[0] / MIB:.1f} -> {ys[-1] / MIB:.1f} MiB, "
              f"slope {slope:+.2f} B/{unit}, halves {first:+.2f} and {second:+.2f} (budget {budget:g})", flush=True)
        if min(first, second) > budget:
            print(f"soak: {what} grows {min(first, second):.2f} B per {unit} or more through the window after "
                  f"the warm-up, more than {budget:g}", file=sys.stderr)
            grows = True
    if failed:
        sys.exit(1)
    if grows:
        sys.exit(EXIT_GROWS)

if __name__ == "__main__":
    main()
