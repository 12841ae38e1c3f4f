#!/usr/bin/env bash
# Split and binarise enwik8 for fairseq (byte level, the standard 90M/5M/5M split).
#
#   scripts/prepare_enwik8.sh OUT_DIR [ENWIK8_FILE_OR_ZIP]
#
# ENWIK8_FILE_OR_ZIP  the enwik8 file or enwik8.zip; without it enwik8.zip is downloaded to
#                     OUT_DIR/raw.
# OUT_DIR             receives text/ (bytes as space-separated decimal values, one line per line
#                     of the original, see mega_fairseq/data/enwik8.py) and bin/ (fairseq data).
#
# Environment:
#   WORKERS=N          fairseq-preprocess workers (default: the number of CPUs)
#   FORCE=1            replace an existing OUT_DIR/text and OUT_DIR/bin (once the new ones are complete)
#   VALID_BYTES=N      validation bytes, taken before the test bytes (default 5000000)
#   TEST_BYTES=N       test bytes, the end of the file (default 5000000)
#   ENWIK8_URL         where to download the zip from (default: mattmahoney.net)
#   DRY_RUN=1          check the arguments, say what would be done and exit (nothing is downloaded)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage 0
[[ $# -ge 1 && $# -le 2 ]] || { echo "prepare_enwik8.sh: error: need OUT_DIR [ENWIK8_FILE_OR_ZIP]" >&2; usage 2 >&2; }

OUT_DIR="$1"
INPUT="${2:-}"
[[ -n "$OUT_DIR" ]] || die "OUT_DIR must not be empty"
URL="${ENWIK8_URL:-http://mattmahoney.net/dc/enwik8.zip}"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 1)}"

REPLACE=0
for sub in text bin; do
    if [[ -e "$OUT_DIR/$sub" && -n "$(ls -A "$OUT_DIR/$sub" 2>/dev/null)" ]]; then
        [[ "${FORCE:-0}" == 1 ]] || die "$OUT_DIR/$sub already exists and is not empty; set FORCE=1 to replace it"
        REPLACE=1
    fi
done

if [[ -n "$INPUT" ]]; then
    [[ -f "$INPUT" ]] || die "no such file: $INPUT (give the enwik8 file or enwik8.zip)"
fi
dry_run_stop "split and binarise ${INPUT:-enwik8.zip (downloaded unless in $OUT_DIR/raw)} into $OUT_DIR"
if [[ -z "$INPUT" ]]; then
    INPUT="$OUT_DIR/raw/enwik8.zip"
    if [[ -f "$INPUT" ]]; then
        say "using the zip already downloaded: $INPUT"
    else
        mkdir -p "$OUT_DIR/raw"
        say "downloading $URL"
        download "$URL" "$INPUT" "set ENWIK8_URL to a mirror, or download enwik8.zip yourself and pass it as \
ENWIK8_FILE_OR_ZIP"
    fi
fi

# text/ and bin/ are written in a temporary folder in OUT_DIR and renamed when both are complete
TMP="$(temp_dir_beside "$OUT_DIR/bin")"
trap 'rm -rf "$TMP"' EXIT
python -m mega_fairseq.data.enwik8 --input "$INPUT" --out "$TMP/text" \
    --valid-bytes "${VALID_BYTES:-5000000}" --test-bytes "${TEST_BYTES:-5000000}"
binarise_lm "$TMP/text/train.txt" "$TMP/text/valid.txt" "$TMP/text/test.txt" "$TMP/bin" "$WORKERS"
[[ "$REPLACE" == 1 ]] && say "FORCE=1: replacing $OUT_DIR/text and $OUT_DIR/bin"
# the old bin/ goes first and the new one comes last: an interruption between the renames leaves
# no bin/, never one that does not match text/
rm -rf "${OUT_DIR:?}/bin"
move_into_place "$TMP/text" "$OUT_DIR/text"
move_into_place "$TMP/bin" "$OUT_DIR/bin"
rmdir "$TMP"
trap - EXIT
say "done: $OUT_DIR/text and $OUT_DIR/bin"
