#!/usr/bin/env bash
# Install what the labs and tests need on a Debian machine (as root), only
# what is missing: iproute2 (ip, ss), socat, curl, ethtool, procps (sysctl),
# nftables (marks packets for the firewall-mark service tests),
# The Rust toolchain (rustup, cargo >= 1.91) must already be there.
set -euo pipefail
need=()
for pkg in iproute2 socat curl ethtool procps nftables; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo not found: install Rust with rustup (rust >= 1.91), then retry" >&2
    exit 1
fi
