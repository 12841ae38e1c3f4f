# Helpers shared by the shell scripts in this folder; source it after `set -euo pipefail`.
# usage prints the calling script's header comment (its help text).
SCRIPT_NAME="$(basename "$0")"
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
die() { echo "$SCRIPT_NAME: error: $*" >&2; exit 2; }
say() { echo "$SCRIPT_NAME: $*"; }
download() {  # URL FILE HINT: fetch URL to FILE (atomically); HINT says what to do without a downloader
    if command -v curl >/dev/null; then
        curl -fL --retry 3 -o "$2.part" "$1"
    elif command -v wget >/dev/null; then
        wget -O "$2.part" "$1"
    else
        die "neither curl nor wget is installed: download $1 yourself and $3"
    fi
    mv "$2.part" "$2"
}
