#!/usr/bin/env bash
# Binarise WikiText-103 for fairseq (word level, the dataset's own 267K-word vocabulary).
#
#   scripts/prepare_wikitext103.sh OUT_DIR [RAW_DIR]
#
# RAW_DIR   a folder with wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens (the
#           unzipped wikitext-103-v1.zip). Without it the zip is downloaded to OUT_DIR/raw.
# OUT_DIR   receives bin/ (train/valid/test .bin/.idx and dict.txt) and, when downloading, raw/.
#
# Environment:
#   WORKERS=N          fairseq-preprocess workers (default: the number of CPUs)
#   FORCE=1            replace an existing OUT_DIR/bin (once the new one is complete)
#   WIKITEXT103_URL    where to download the zip from (default: the dataset's public S3 address)
#   DRY_RUN=1          check the arguments, say what would be done and exit (nothing is downloaded)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && usage 0
[[ $# -ge 1 && $# -le 2 ]] || { echo "prepare_wikitext103.sh: error: need OUT_DIR [RAW_DIR]" >&2; usage 2 >&2; }

OUT_DIR="$1"
RAW_DIR="${2:-}"
[[ -n "$OUT_DIR" ]] || die "OUT_DIR must not be empty"
URL="${WIKITEXT103_URL:-https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip}"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 1)}"
SPLITS=(train valid test)

BIN="${OUT_DIR:?}/bin"
REPLACE=0
if [[ -e "$BIN" && -n "$(ls -A "$BIN" 2>/dev/null)" ]]; then
    [[ "${FORCE:-0}" == 1 ]] || die "$BIN already exists and is not empty; set FORCE=1 to replace it"
    REPLACE=1
fi

if [[ -n "$RAW_DIR" ]]; then
    [[ -d "$RAW_DIR" ]] || die "RAW_DIR '$RAW_DIR' is not a directory"
fi
dry_run_stop "binarise ${RAW_DIR:-WikiText-103 (downloaded unless in $OUT_DIR/raw)} into $BIN"
if [[ -z "$RAW_DIR" ]]; then
    RAW_DIR="$OUT_DIR/raw/wikitext-103"
    ZIP="$OUT_DIR/raw/wikitext-103-v1.zip"
    if [[ ! -f "$RAW_DIR/wiki.train.tokens" ]]; then
        mkdir -p "$OUT_DIR/raw"
        if [[ -f "$ZIP" ]]; then
            say "using the zip already downloaded: $ZIP"
        else
            say "downloading $URL"
            download "$URL" "$ZIP" "set WIKITEXT103_URL to a mirror, or download wikitext-103-v1.zip yourself, unzip \
it and pass the folder as RAW_DIR"
        fi
        command -v unzip >/dev/null || die "unzip is not installed (needed to open $ZIP)"
        unzip -q -o "$ZIP" -d "$OUT_DIR/raw" || die "could not unzip $ZIP (remove it to download again)"
    fi
fi

for split in "${SPLITS[@]}"; do
    [[ -f "$RAW_DIR/wiki.$split.tokens" ]] || die "missing wiki.$split.tokens in $RAW_DIR"
done

# binarised into a temporary folder beside bin/, renamed when complete: an interrupted run leaves no bin/
TMP="$(temp_dir_beside "$BIN")"
trap 'rm -rf "$TMP"' EXIT
binarise_lm "$RAW_DIR/wiki.train.tokens" "$RAW_DIR/wiki.valid.tokens" "$RAW_DIR/wiki.test.tokens" \
    "$TMP" "$WORKERS"
[[ "$REPLACE" == 1 ]] && say "FORCE=1: replacing $BIN"
move_into_place "$TMP" "$BIN"
trap - EXIT
say "done: $BIN"
