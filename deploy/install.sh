#!/usr/bin/env bash
# Installs an ITC gateway on a Raspberry Pi (64-bit Raspberry Pi OS) or any
# systemd Linux: a system user `itc`, the binary in /usr/local/bin, state in
# /var/lib/itc-gateway (mode 0700), and the systemd unit, enabled and
# started.
#
#   sudo deploy/install.sh ./itc-gateway --key-only   # make the key, print its account
#   sudo deploy/install.sh ./itc-gateway --create --addr 192.168.1.20:7100 \
#        --peer itcpk1…@192.168.1.21:7100 …           # found a new chain
#   sudo deploy/install.sh ./itc-gateway --genesis genesis.toml   # run in it
#
# Arguments after the binary go to `itc-gateway init` (first install only).
# Build the binary with deploy/cross-build.sh, or natively with
# `cargo build --release -p itc-gateway`.
set -euo pipefail

if [ "$#" -lt 1 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
binary=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
state=/var/lib/itc-gateway

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (sudo)" >&2
    exit 1
fi
arch=$(uname -m)
if [ "$arch" != "aarch64" ] && [ "$arch" != "x86_64" ]; then
    echo "note: untested architecture $arch" >&2
fi
if ! "$binary" --version >/dev/null; then
    echo "$binary does not run on this machine (built for another architecture?)" >&2
    exit 1
fi

if ! id itc >/dev/null 2>&1; then
    useradd --system --home-dir "$state" --no-create-home --shell /usr/sbin/nologin itc
fi
if getent group dialout >/dev/null; then
    usermod --append --groups dialout itc
fi
# BlueZ's D-Bus policy admits the bluetooth group (Bluetooth mesh bulbs).
if getent group bluetooth >/dev/null; then
    usermod --append --groups bluetooth itc
fi
install -m 0755 "$binary" /usr/local/bin/itc-gateway
install -d -o itc -g itc -m 0700 "$state"

if [ "${1:-}" = "--key-only" ]; then
    # A founding gateway's account must be in the genesis: make the key
    # first and hand the account to whoever creates the genesis.
    if [ ! -f "$state/gateway.key" ]; then
        runuser -u itc -- /usr/local/bin/itc-gateway keys generate --out "$state/gateway.key"
    else
        runuser -u itc -- /usr/local/bin/itc-gateway keys show --key "$state/gateway.key"
    fi
    exit 0
fi

if [ ! -f "$state/gateway.toml" ]; then
    if [ "$#" -eq 0 ]; then
        echo "first install: give init arguments (--create --addr … or --genesis FILE)" >&2
        exit 2
    fi
    # A genesis to join must be readable by itc: copy it in first.
    args=()
    while [ "$#" -gt 0 ]; do
        if [ "$1" = "--genesis" ]; then
            install -o itc -g itc -m 0600 "$2" "$state/genesis.toml"
            args+=(--genesis "$state/genesis.toml")
            shift 2
        else
            args+=("$1")
            shift
        fi
    done
    runuser -u itc -- /usr/local/bin/itc-gateway init --dir "$state" --api 0.0.0.0:8080 "${args[@]}"
fi

install -m 0644 "$here/itc-gateway.service" /etc/systemd/system/itc-gateway.service
systemctl daemon-reload
systemctl enable --now itc-gateway
echo "itc-gateway is running. Its one-time claim code:"
echo "  journalctl -u itc-gateway | grep 'claim code'"
