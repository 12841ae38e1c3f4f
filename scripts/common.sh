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
checkpoint_data_subset() {  # WHAT "$@": CHECKPOINT DATA [SUBSET] [ARGS...] into CHECKPOINT, DATA, SUBSET (default test) and the array ARGS, checked
    local what="$1"
    need_args 2 "CHECKPOINT $what" "${@:2}"
    CHECKPOINT="$2"
    DATA="$3"
    shift 3
    SUBSET="test"
    if [[ $# -gt 0 && "$1" != -* ]]; then
        SUBSET="$1"
        shift
    fi
    ARGS=("$@")
    [[ -f "$CHECKPOINT" ]] || die "no such checkpoint: $CHECKPOINT"
    [[ -d "$DATA" ]] || die "$what '$DATA' is not a directory"
}
check_checkpoint() {  # KIND FILE: exit naming FILE, what it holds and KIND unless it is a checkpoint of KIND
    # (language_model, translation or classifier); read weights-only, before fairseq prints anything
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
        python -m mega_fairseq.checkpoint_info "$2" --expect "$1" --prog "$SCRIPT_NAME" || exit 2
}
say() { echo "$SCRIPT_NAME: $*"; }
dry_run_stop() {  # PLAN...: with DRY_RUN=1, say what would be done (the arguments checked so far) and exit
    [[ "${DRY_RUN:-0}" == 1 ]] || return 0
    say "DRY_RUN=1: would $*"
    exit 0
}
print_command() {  # CMD...: print the command about to run, quoted so that it can be pasted
    printf '%s: running:' "$SCRIPT_NAME"
    printf ' %q' "$@"
    printf '\n'
}
run_logged() {  # LOG CMD...: print and run CMD, its output (stdout and stderr) also copied into LOG
    local log="$1"
    shift
    print_command "$@"
    "$@" 2>&1 | tee "$log"
}
binarise_lm() {  # TRAIN VALID TEST DEST WORKERS: fairseq-preprocess of a language-modelling corpus
    say "binarising $(dirname "$1") into $4 with $5 workers"
    fairseq-preprocess --only-source --trainpref "$1" --validpref "$2" --testpref "$3" --destdir "$4" --workers "$5"
    say "done: $4 ($(($(wc -l < "$4/dict.txt") + 4)) symbols in the dictionary)"
}
download() {  # URL FILE HINT: download URL to FILE (atomically; a failed download leaves nothing), or die naming URL and saying HINT
    local status=0
    if command -v curl >/dev/null; then
        curl -fL --retry 3 -o "$2.part" "$1" || status=$?
    elif command -v wget >/dev/null; then
        wget -O "$2.part" "$1" || status=$?
    else
        die "neither curl nor wget is installed to download $1: $3"
    fi
    if [[ $status != 0 ]]; then
        rm -f "$2.part"
        die "download of $1 failed: $3"
    fi
    mv "$2.part" "$2"
}
verify_sha256() {  # FILE EXPECTED HINT: die unless the SHA-256 of FILE is EXPECTED, naming both and saying HINT
    local actual
    say "checking the SHA-256 of $1"
    if command -v sha256sum >/dev/null; then
        actual="$(sha256sum "$1")"
    else
        actual="$(shasum -a 256 "$1")"
    fi
    actual="${actual%% *}"
    [[ "$actual" == "$2" ]] || die "$1 ($(wc -c < "$1" | tr -d ' ') bytes) has SHA-256 $actual, expected $2: $3"
}
temp_dir_beside() {  # DIR: make and print a hidden temporary folder next to DIR (same file system)
    local parent dir
    parent="$(dirname "$1")"
    mkdir -p "$parent"
    dir="$(mktemp -d "$parent/.$(basename "$1").tmp.XXXXXX")"
    chmod "$(umask -S)" "$dir"  # mktemp makes it private; the final folder gets the usual permissions
    echo "$dir"
}
move_into_place() {  # TMP DIR: rename the finished TMP to DIR, replacing an existing DIR only now
    local old=""
    if [[ -e "$2" ]]; then
        old="$1.old"
        mv "$2" "$old"
    fi
    mv "$1" "$2"
    [[ -z "$old" ]] || rm -rf "$old"
}
