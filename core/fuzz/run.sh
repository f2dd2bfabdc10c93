#!/usr/bin/env bash
# Runs every fuzz target for $1 seconds (default 20) on the stable toolchain; fails on the
# first crash (its input is in core/fuzz/artifacts/). Installs cargo-fuzz if it is missing.
set -euo pipefail
secs="${1:-20}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=(client_msg value internal_msg attr_ops entity_record freeze_image kcp_input ws_input channel_handshake channel_records)
cargo fuzz build --fuzz-dir core/fuzz --sanitizer none -O
log="$(mktemp)"
for t in "${targets[@]}"; do
    mkdir -p "core/fuzz/corpus/$t"
    if ! cargo fuzz run --fuzz-dir core/fuzz --sanitizer none -O "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 \
        >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $t crashed"
        exit 1
    fi
    echo "fuzz: $t ran ${secs}s: $(grep -E '^Done [0-9]+ runs' "$log" || tail -1 "$log")"
done
rm -f "$log"
echo "fuzz: all ${#targets[@]} targets ran ${secs}s each without a crash"
