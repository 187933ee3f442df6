#!/usr/bin/env bash
# Print a markdown table of binary sizes: cross/sizes.sh target/<triple>/<profile>/edgemq ...
# The binaries must already be stripped (release-small strips; `make sizes` strips the native one).
# The xz column is what an OpenWrt image or an over-the-air update carries.
set -euo pipefail

echo "| binary | bytes | MB | xz -9 bytes |"
echo "|---|---:|---:|---:|"
for f in "$@"; do
    bytes=$(stat -c %s "$f")
    xz_bytes=-
    command -v xz >/dev/null && xz_bytes=$(xz -9 -c "$f" | wc -c)
    label=${f#target/}
    case $label in
    release/*) label="native $(uname -m) ${label%%/*} (stripped)" ;;
    *.no-tls) label="${label%/*} without tls" ;;
    *) label=${label%/*} ;;
    esac
    awk -v l="$label" -v b="$bytes" -v x="$xz_bytes" \
        'BEGIN { printf "| %s | %d | %.2f | %s |\n", l, b, b / 1e6, x }'
done
