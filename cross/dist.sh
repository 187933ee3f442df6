#!/usr/bin/env bash
# Package already-built binaries: cross/dist.sh PROFILE TRIPLE...
# Writes dist/edgemq-<version>-<triple>.tar.gz (+ .sha256) holding edgemq, edgemq.toml,
# edgemq.service (systemd), edgemq.init (OpenWrt procd) and README.md.
set -euo pipefail

profile=$1; shift
[ -f conf/edgemq.toml ] || { echo "cross/dist.sh: conf/edgemq.toml is missing" >&2; exit 1; }
readme=README.md

id=$(cargo pkgid)
version=${id##*[#@]}
mkdir -p dist
for triple in "$@"; do
    name=edgemq-$version-$triple
    stage=target/dist/$name
    rm -rf "$stage"
    mkdir -p "$stage"
    install -m 0755 "target/$triple/$profile/edgemq" "$stage/edgemq"
    install -m 0644 conf/edgemq.toml cross/edgemq.service "$stage/"
    install -m 0755 cross/edgemq.init "$stage/edgemq.init"
    install -m 0644 "$readme" "$stage/README.md"
    tar -C target/dist --owner=0 --group=0 --numeric-owner -czf "dist/$name.tar.gz" "$name"
    (cd dist && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
    echo "dist/$name.tar.gz"
done
