#!/usr/bin/env bash
# Extras for the static musl builds (OpenWrt), on top of cross/setup.sh:
#   aarch64: Debian's multiarch musl-dev:arm64 (aarch64-linux-musl-gcc) + rustup target, stable.
#   armv7:   musl-dev:armhf (arm-linux-musleabihf-gcc) + a nightly toolchain with rust-src, because
#            the std for armv7-unknown-linux-musleabihf is built with -Zbuild-std.
# Usage: cross/setup-musl.sh [aarch64] [armv7]   (no argument: both)
# Idempotent like setup.sh: root installs, non-root gets the commands and exit 1.
# NIGHTLY names the nightly toolchain (default "nightly"; pin e.g. nightly-2026-05-01 if one breaks).
set -euo pipefail

here=$(dirname "$0")
"$here/setup.sh"

nightly=${NIGHTLY:-nightly}
[ $# -gt 0 ] || set -- aarch64 armv7

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

archs=() packages=() rust_targets=() need_nightly=0
for which in "$@"; do
    case $which in
    aarch64) archs+=(arm64); packages+=(musl-dev:arm64); rust_targets+=(aarch64-unknown-linux-musl) ;;
    armv7) archs+=(armhf); packages+=(musl-dev:armhf); need_nightly=1 ;;
    *) echo "usage: $0 [aarch64] [armv7]" >&2; exit 2 ;;
    esac
done

foreign=$(dpkg --print-foreign-architectures)
missing_archs=() missing=()
for a in "${archs[@]}"; do grep -qx "$a" <<<"$foreign" || missing_archs+=("$a"); done
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "cross/setup-musl.sh: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        for a in "${missing_archs[@]}"; do dpkg --add-architecture "$a"; done
        # A stale index (e.g. a mirror mid-sync) need not block: the install below fails loudly
        # if a package really cannot be found.
        apt-get update -qq || echo "$(basename "$0"): apt-get update reported errors; installing anyway" >&2
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "cross/setup-musl.sh: missing packages: ${missing[*]}" >&2
        echo "Run as root (or with sudo):" >&2
        for a in "${missing_archs[@]}"; do echo "  dpkg --add-architecture $a" >&2; done
        echo "  apt-get update -qq" >&2
        echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

have=$(rustup target list --installed)
for t in "${rust_targets[@]}"; do
    grep -qx "$t" <<<"$have" || rustup target add "$t"
done

if [ $need_nightly -eq 1 ] &&
    ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q '^rust-src'; then
    if ! rustup toolchain install "$nightly" --profile minimal --component rust-src; then
        echo "cross/setup-musl.sh: could not install the $nightly toolchain with rust-src." >&2
        echo "musl-armv7 needs it (armv7-unknown-linux-musleabihf std is built with -Zbuild-std)." >&2
        echo "Check that static.rust-lang.org is reachable, or set NIGHTLY to an installed nightly." >&2
        exit 1
    fi
fi
