#!/usr/bin/env bash
# Builds the verifier for a Cortex-M4 (thumbv7em-none-eabihf), reports its
# flash size, and runs it under QEMU's mps2-an386, which prints its peak
# stack and heap. Exits non-zero if any check on the device fails.
#
# Installs what it needs: the Rust target (rustup), llvm-size (rustup's
# llvm-tools) and qemu-system-arm (Debian's package).
set -euo pipefail
cd "$(dirname "$0")"

target=thumbv7em-none-eabihf
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
host=$(rustc -vV | sed -n 's/^host: //p')
size="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-size"
[ -x "$size" ] || rustup component add llvm-tools
if ! command -v qemu-system-arm >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get install -y --no-install-recommends qemu-system-arm >/dev/null
fi

cargo build --release --locked
elf="target/$target/release/itc-verify-mcu"
# Flash holds .vector_table, .text and .rodata (llvm-size's "text"); RAM
# holds .data and .bss (the heap arena) plus the stack.
"$size" "$elf"
timeout 120 qemu-system-arm -M mps2-an386 -cpu cortex-m4 -nographic \
    -semihosting-config enable=on,target=native -kernel "$elf"
