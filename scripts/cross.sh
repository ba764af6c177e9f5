#!/usr/bin/env bash
# ARM builds of p2pa: a static aarch64 (musl) binary and an armv7 (glibc, hard
# float) binary, with and without inference, plus the unit tests under
# qemu-user for aarch64 and the aarch64 node under qemu-user serving tasks
# that this host's `p2pa submit` sends. Prints SKIPPED for what this machine
# cannot do. The board binary (no inference) is built with the `minimal`
# profile (fat LTO, opt-level z); with inference, with `dist`.
#
#   scripts/cross.sh            # build both targets, report sizes, run tests
#   P2PA_CROSS_TESTS=0 scripts/cross.sh   # builds only
#   P2PA_CROSS_VARIANTS=minimal scripts/cross.sh   # without inference only (what CI does)
#
# Also the x86_64 musl board binary (a PC-class board or a small VM), which
# needs nightly: see x86_board below.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

have() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  if have apt-get && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null 2>&1
  else
    return 1
  fi
}

have aarch64-linux-gnu-gcc || apt_install gcc-aarch64-linux-gnu || true
have arm-linux-gnueabihf-gcc || apt_install gcc-arm-linux-gnueabihf libc6-dev-armhf-cross || true
have qemu-aarch64-static || apt_install qemu-user-static || true

# musl: static, linked by rust-lld with Rust's self-contained crt; C parts
# (tract's assembly kernels) are compiled by Debian's aarch64 gcc.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc

status=0
printf '| target | features | stripped size |\n|---|---|---|\n' > target/cross-sizes.md
for target in aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf; do
  if ! rustup target add "$target" >/dev/null 2>&1; then
    echo "SKIPPED: rustup could not install $target"
    continue
  fi
  linker_ok=1
  case "$target" in
    armv7*) have arm-linux-gnueabihf-gcc || linker_ok=0 ;;
    aarch64*) have aarch64-linux-gnu-gcc || linker_ok=0 ;;
  esac
  if [ "$linker_ok" = 0 ]; then
    echo "SKIPPED: no cross C compiler for $target (Debian: gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf)"
    continue
  fi
  for variant in ${P2PA_CROSS_VARIANTS:-minimal onnx}; do
    profile=dist
    [ "$variant" = minimal ] && profile=minimal
    flags=(--profile "$profile" -p p2pa --target "$target")
    [ "$variant" = minimal ] && flags+=(--no-default-features --features opt-size)
    # Boards run tract: the onnxruntime engine stays out of their builds.
    [ "$variant" = onnx ] && flags+=(--no-default-features --features onnx,npy)
    dir="target/cross-$variant"
    if CARGO_TARGET_DIR="$dir" cargo build "${flags[@]}"; then
      bin="$dir/$target/$profile/p2pa"
      if [ "$target" = aarch64-unknown-linux-musl ] && [ "$variant" = minimal ]; then
        # The board binary: panic=abort, so nothing ever unwinds; the unwind
        # tables (.eh_frame, 230 KiB) only serve RUST_BACKTRACE, which prints
        # no frames on this build. The qemu run below uses the stripped file.
        if have aarch64-linux-gnu-objcopy; then
          aarch64-linux-gnu-objcopy --remove-section=.eh_frame --remove-section=.eh_frame_hdr "$bin"
        else
          echo "note: aarch64-linux-gnu-objcopy missing; the board binary keeps its unwind tables"
        fi
      fi
      size=$(stat -c %s "$bin")
      printf '| %s | %s | %s bytes (%.2f MiB) |\n' "$target" "$variant" "$size" "$(echo "$size / 1048576" | bc -l)" >> target/cross-sizes.md
      file "$bin" 2>/dev/null || true
    else
      echo "FAILED: $target ($variant) did not build"
      status=1
    fi
  done
done
# The x86_64 musl board binary. On stable its std alone is 456 KiB of .text
# (formatting, unwinding and backtrace symbolisation that never run with
# panic=abort) and the file 2.1 MiB; x86_64's unwind tables sit between
# .rodata and .data, where objcopy cannot cut them as it does on aarch64.
# Nightly's build-std rebuilds std for size, with panics that abort on the
# spot (no formatting machinery) and no unwind tables: 1.3 MiB. The aarch64
# build stays on stable: its board binary is under 1.5 MiB without this.
x86_board=""
x86_board() {
  local target=x86_64-unknown-linux-musl dir=target/cross-x86
  if ! rustup toolchain list | grep -q '^nightly' &&
    ! rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
    echo "SKIPPED: x86_64 musl board binary (needs a nightly toolchain, which could not be installed)"
    return 0
  fi
  if ! rustup component add rust-src --toolchain nightly >/dev/null 2>&1 ||
    ! rustup target add "$target" --toolchain nightly >/dev/null 2>&1; then
    echo "SKIPPED: x86_64 musl board binary (rustup could not add rust-src or $target to nightly)"
    return 0
  fi
  if CARGO_TARGET_DIR="$dir" \
    RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort -Cforce-unwind-tables=no" \
    cargo +nightly build -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
    --profile minimal --target "$target" -p p2pa --no-default-features; then
    x86_board="$dir/$target/minimal/p2pa"
    local size
    size=$(stat -c %s "$x86_board")
    printf '| %s (nightly build-std) | minimal | %s bytes (%.2f MiB) |\n' "$target" "$size" "$(echo "$size / 1048576" | bc -l)" >> target/cross-sizes.md
  else
    echo "FAILED: $target (nightly build-std) did not build"
    status=1
  fi
}
case " ${P2PA_CROSS_VARIANTS:-minimal onnx} " in
  *" minimal "*) x86_board ;;
esac

cat target/cross-sizes.md

if [ "${P2PA_CROSS_TESTS:-1}" = 1 ]; then
  if [ -n "$x86_board" ]; then
    # It runs here natively: the same node-serves-tasks check as the aarch64 one.
    P2PA_BOARD_RUNNER=" " bash scripts/qemu-node.sh "$x86_board" || status=1
  fi
  if have qemu-aarch64-static; then
    echo "unit tests for aarch64 under qemu-user:"
    CARGO_TARGET_DIR=target/cross-minimal cargo test --release --target aarch64-unknown-linux-musl \
      -p p2pa-protocol -p p2pa-node --lib --test golden --test props || status=1
    board=target/cross-minimal/aarch64-unknown-linux-musl/minimal/p2pa
    if [ -x "$board" ]; then
      bash scripts/qemu-node.sh "$board" || status=1
    fi
  else
    echo "SKIPPED: qemu-user-static is not installed; aarch64 tests not run"
  fi
fi
exit $status
