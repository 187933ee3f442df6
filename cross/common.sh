# Sourced by cross/setup.sh and cross/setup-musl.sh. Both only look when all is present.

# ensure_packages PKG...: install the missing Debian packages as root, else print the commands
# and exit 1. A PKG:ARCH name (musl-dev:arm64) adds that foreign architecture first.
ensure_packages() {
    local p missing=() archs=() foreign
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    foreign=$(dpkg --print-foreign-architectures)
    for p in "${missing[@]}"; do
        case $p in *:*) grep -qx "${p#*:}" <<<"$foreign" || archs+=("${p#*:}") ;; esac
    done
    if [ "$(id -u)" -ne 0 ]; then
        echo "$(basename "$0"): missing packages: ${missing[*]}" >&2
        echo "Run as root (or with sudo):" >&2
        for p in "${archs[@]}"; do echo "  dpkg --add-architecture $p" >&2; done
        echo "  apt-get update -qq" >&2
        echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "$(basename "$0"): installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    for p in "${archs[@]}"; do dpkg --add-architecture "$p"; done
    # A stale index (e.g. a mirror mid-sync) need not block: the install below fails loudly if a
    # package really cannot be found.
    apt-get update -qq || echo "$(basename "$0"): apt-get update reported errors; installing anyway" >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_rust_targets TRIPLE...: rustup std for each target of the active toolchain.
ensure_rust_targets() {
    local t have
    have=$(rustup target list --installed)
    for t in "$@"; do
        grep -qx "$t" <<<"$have" || rustup target add "$t"
    done
}

if ! command -v dpkg-query >/dev/null || ! command -v rustup >/dev/null; then
    echo "$(basename "$0"): needs a Debian-based system (dpkg, apt-get) and rustup (https://rustup.rs)." >&2
    exit 1
fi
