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
. "$here/common.sh"

nightly=${NIGHTLY:-nightly}
[ $# -gt 0 ] || set -- aarch64 armv7

packages=() targets=() need_nightly=0
for which in "$@"; do
    case $which in
    aarch64) packages+=(musl-dev:arm64); targets+=(aarch64-unknown-linux-musl) ;;
    armv7) packages+=(musl-dev:armhf); need_nightly=1 ;;
    *) echo "usage: $0 [aarch64] [armv7]" >&2; exit 2 ;;
    esac
done
ensure_packages "${packages[@]}"
ensure_rust_targets "${targets[@]}"

if [ $need_nightly -eq 1 ] &&
    ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q '^rust-src' &&
    ! rustup toolchain install "$nightly" --profile minimal --component rust-src; then
    echo "cross/setup-musl.sh: could not install the $nightly toolchain with rust-src." >&2
    echo "musl-armv7 needs it (armv7-unknown-linux-musleabihf std is built with -Zbuild-std)." >&2
    echo "Check that static.rust-lang.org is reachable, or set NIGHTLY to an installed nightly." >&2
    exit 1
fi
