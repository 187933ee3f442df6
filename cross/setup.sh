#!/usr/bin/env bash
# Install what glibc cross builds and qemu tests need on Debian/Ubuntu:
# cross gcc + libc headers for armv7/aarch64, qemu-user, and the rustup std for both targets.
# Idempotent and quick when everything is present (it only looks). As root it installs with
# apt-get; otherwise it prints the exact commands and exits 1.
set -euo pipefail
. "$(dirname "$0")/common.sh"

ensure_packages gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu \
    libc6-dev-armhf-cross libc6-dev-arm64-cross qemu-user
ensure_rust_targets armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu
