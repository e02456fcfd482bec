#!/usr/bin/env bash
# Build and run the FUSE transport latency bench (issue 13.7). Needs root, /dev/fuse and a
# kernel with CONFIG_FUSE_IO_URING. Sets /sys/module/fuse/parameters/enable_uring to Y for the
# run and always puts back the value it found. Extra arguments go to the binary, e.g.
#   bench/fuse-transport/run.sh --transport both --rounds 5 -n 200000
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
param=/sys/module/fuse/parameters/enable_uring
cargo="${CARGO:-cargo}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
(cd "$here" && "$cargo" build --release --quiet)
bin="$CARGO_TARGET_DIR/release/fuse-transport-bench"

if [ -w "$param" ]; then
    old="$(cat "$param")"
    restore() { echo "$old" > "$param"; echo "enable_uring restored to $(cat "$param")" >&2; }
    trap restore EXIT
    echo Y > "$param"
else
    echo "warning: $param not writable; the uring transport needs it to be Y" >&2
fi
"$bin" "$@"
