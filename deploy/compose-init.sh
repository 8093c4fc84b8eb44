#!/bin/sh
# Makes a 4-gateway cluster's keys, configs and genesis for
# docker-compose.yml (run once by its `init` service; does nothing if the
# cluster exists). Each gateway's directory is $ROOT/gwN; the owner's key
# (funded at genesis) is $ROOT/owner/owner.key.
#
# ITC_CLUSTER_ROOT, ITC_NET_PREFIX (the gateways are PREFIX.10 to PREFIX.13)
# and ITC_API_BIND can be set to try it outside containers.
set -eu
root=${ITC_CLUSTER_ROOT:-/cluster}
net=${ITC_NET_PREFIX:-172.28.0}
api=${ITC_API_BIND:-0.0.0.0:8080}
bin=${ITC_GATEWAY:-itc-gateway}
umask 077

if [ -f "$root/gw0/gateway.toml" ]; then
    echo "cluster already initialised in $root"
    exit 0
fi
mkdir -p "$root/owner"
"$bin" keys generate --out "$root/owner/owner.key" >"$root/owner/account"
peers=""
for i in 1 2 3; do
    mkdir -p "$root/gw$i"
    account=$("$bin" keys generate --out "$root/gw$i/gateway.key")
    peers="$peers --peer $account@$net.1$i:7100"
done
mkdir -p "$root/gw0"
# shellcheck disable=SC2086
"$bin" init --dir "$root/gw0" --create --chain-id itc-compose \
    --addr "$net.10:7100" --api "$api" --bulbs 4 \
    --fund "$(cat "$root/owner/account")=1000000000000" $peers
for i in 1 2 3; do
    "$bin" init --dir "$root/gw$i" --genesis "$root/gw0/genesis.toml" --api "$api" --bulbs 4
done
echo "owner key: $root/owner/owner.key (account $(cat "$root/owner/account"))"
