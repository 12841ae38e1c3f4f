# Helpers shared by the shell scripts in this folder; source it after `set -euo pipefail`.
# usage prints the calling script's header comment (its help text).
SCRIPT_NAME="$(basename "$0")"
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
die() { echo "$SCRIPT_NAME: error: $*" >&2; exit 2; }
say() { echo "$SCRIPT_NAME: $*"; }
