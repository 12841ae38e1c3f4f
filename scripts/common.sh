# Helpers shared by the shell scripts in this folder; source it after `set -euo pipefail`.
# usage prints the calling script's header comment (its help text).
SCRIPT_NAME="$(basename "$0")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"  # the repository
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
die() { echo "$SCRIPT_NAME: error: $*" >&2; exit 2; }
need_args() {  # COUNT WHAT "$@": --help prints the help; fewer than COUNT arguments is an error naming WHAT
    local count="$1" what="$2"
    shift 2
    [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage 0
    [[ $# -ge $count ]] || { echo "$SCRIPT_NAME: error: need $what" >&2; usage 2 >&2; }
}
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
binarise_lm() {  # TRAIN VALID TEST DEST WORKERS: fairseq-preprocess of a language-modelling corpus
    say "binarising $(dirname "$1") into $4 with $5 workers"
    fairseq-preprocess --only-source --trainpref "$1" --validpref "$2" --testpref "$3" --destdir "$4" --workers "$5"
    say "done: $4 ($(($(wc -l < "$4/dict.txt") + 4)) symbols in the dictionary)"
}
