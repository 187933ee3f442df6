#!/usr/bin/env bash
# Install what glibc cross builds and qemu tests need on Debian/Ubuntu:
# cross gcc + libc headers for armv7/aarch64, qemu-user, and the rustup std for both targets.
#
# Idempotent and quick when everything is present (it only looks). As root it installs with
# apt-get; otherwise it prints the exact commands and exits 1. rustup targets need no root.
set -euo pipefail

packages=(gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu
          libc6-dev-armhf-cross libc6-dev-arm64-cross qemu-user)
targets=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

if ! command -v dpkg-query >/dev/null; then
    echo "cross/setup.sh: not a Debian-based system; install the equivalents of:" >&2
    echo "  ${packages[*]}" >&2
    echo "  rustup target add ${targets[*]}" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "cross/setup.sh: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        # A stale index (e.g. a mirror mid-sync) need not block: the install below fails loudly
        # if a package really cannot be found.
        apt-get update -qq || echo "$(basename "$0"): apt-get update reported errors; installing anyway" >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "cross/setup.sh: missing packages: ${missing[*]}" >&2
        echo "Run as root (or with sudo):" >&2
        echo "  apt-get update -qq" >&2
        echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

if ! command -v rustup >/dev/null; then
    echo "cross/setup.sh: rustup not found; install it (https://rustup.rs), then:" >&2
    echo "  rustup target add ${targets[*]}" >&2
    exit 1
fi
have=$(rustup target list --installed)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$have" || rustup target add "$t"
done
