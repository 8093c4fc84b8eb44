#!/usr/bin/env bash
# Cross-builds itc-gateway for a 64-bit Raspberry Pi (Raspberry Pi OS
# 64-bit, aarch64-unknown-linux-gnu) on a Debian/Ubuntu x86_64 machine, and
# checks the result is an aarch64 ELF executable. CI-able: exits non-zero
# on any failure.
#
# Needs: rustup, and Debian's cross compiler for ring's and sqlite's C:
#   sudo apt-get install gcc-aarch64-linux-gnu
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu

rustup target add "$target"
if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
    echo "aarch64-linux-gnu-gcc not found: sudo apt-get install gcc-aarch64-linux-gnu" >&2
    exit 1
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

cargo build --release --locked --target "$target" -p itc-gateway

binary="target/$target/release/itc-gateway"
# ELF header: magic at 0, e_machine (little-endian u16) at 18; 0xb7 = AArch64.
magic=$(od -An -tx1 -N4 "$binary" | tr -d ' \n')
machine=$(od -An -tu2 -j18 -N2 "$binary" | tr -d ' \n')
if [ "$magic" != "7f454c46" ] || [ "$machine" != "183" ]; then
    echo "$binary is not an aarch64 ELF executable (magic $magic, machine $machine)" >&2
    exit 1
fi
echo "ok: $binary ($(du -h "$binary" | cut -f1)) is an aarch64 executable"
echo "copy it to the Pi with deploy/ and run: sudo deploy/install.sh ./itc-gateway"
