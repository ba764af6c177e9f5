#!/usr/bin/env bash
# The 10-minute soak of issue 13: three `p2pa node` workers on loopback, a
# hostile thread cycling through every attack in tests/tests/hardening.rs
# (silent sockets, fresh-key beacon and handshake floods, held requester
# sessions, a queue hog) from other loopback addresses, and honest batches of
# 1 000 tasks over all three workers the whole time. Fails if a batch loses a
# task or a worker's memory grows after the first minutes; prints each
# worker's RSS.
#   bash bench/soak.sh            # 600 s
#   P2PA_SOAK_SECS=120 bash bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p p2pa
P2PA_BIN="$PWD/target/release/p2pa" P2PA_SOAK_SECS="${P2PA_SOAK_SECS:-600}" \
  cargo test -q --release -p p2pa-tests --test hardening -- --ignored --nocapture soak 2>&1 |
  grep -E '^\||batches|panicked|FAILED|test result'
