#!/usr/bin/env bash
# Third-party suites on the mount: pjdfstest 0.2.2 (POSIX semantics, on vsftpd and pyftpdlib,
# with the cases FTP cannot pass listed in tests/conformance/pjdfstest-<server>.toml) and fsx
# 0.3.2 (random I/O with mmap, checked byte by byte, on all four servers). Installs both with
# `cargo install --locked` into /opt/ftpfs-test/tools, libacl (pjdfstest links it) and the user
# `tests` pjdfstest switches to. Logs are kept in target/conformance/.
#
#   scripts/conformance.sh [--quick]    (--quick: fsx runs 2 000 operations, not 10 000)
set -euo pipefail
cd "$(dirname "$0")/.."

ops=10000
if [ "${1:-}" = --quick ]; then ops=2000; fi

bash scripts/setup.sh >/dev/null
if ! dpkg -s libacl1-dev >/dev/null 2>&1; then
    echo "conformance: installing libacl1-dev" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev >/dev/null 2>&1 || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev >/dev/null
    }
fi
# pjdfstest acts as nobody (group nogroup on Debian) and as tests.
id tests >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin --user-group tests

tools=/opt/ftpfs-test/tools
install_tool() { # crate version
    if ! "$tools/bin/$1" --version 2>/dev/null | grep -q "$2"; then
        echo "conformance: installing $1 $2" >&2
        cargo install --quiet --locked --root "$tools" "$1" --version "$2"
    fi
}
install_tool pjdfstest 0.2.2
install_tool fsx 0.3.2

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
PJDFSTEST=$tools/bin/pjdfstest FSX=$tools/bin/fsx FSX_OPS=$ops \
    cargo test --release --locked --test conformance -- --ignored --test-threads=1 --nocapture > "$log" 2>&1 ||
    status=$?
grep -E "^(pjdfstest|fsx) on |^test |^test result" "$log" || true
if [ "$status" != 0 ]; then
    grep -E -A20 "panicked" "$log" | head -80 >&2 || true
    echo "conformance: FAILED (logs of the tools in target/conformance/)" >&2
    exit 1
fi
