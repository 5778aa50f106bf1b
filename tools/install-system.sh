#!/usr/bin/env bash
# Installs the Debian packages kumonet's tests, lab and demo use.
# Idempotent and quiet when everything is already there. Needs root.
set -euo pipefail

packages=(
    python3 python3-venv python3-dev gcc
    openvswitch-switch openvswitch-common
    etcd-server etcd-client
    keepalived conntrackd haproxy frr
    isc-dhcp-client iproute2 ethtool nftables iptables
    iputils-ping netcat-openbsd tcpdump procps psmisc kmod
    memcached
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's packages may start system-wide daemons; kumonet's lab starts its
# own per-host instances in namespaces and never uses these.
for svc in etcd keepalived conntrackd haproxy frr memcached; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
        systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
done
