#!/usr/bin/env bash
# Prepare Speech Commands (v0.02) for raw-waveform classification: decode the WAV files once into
# fixed-length float32 rows that training memory-maps (an epoch does not re-decode 35K files).
#
#   scripts/prepare_sc.sh RAW_DIR OUT_DIR [sc_data.py options]
#
# RAW_DIR   the extracted release (one folder of WAV files per word, validation_list.txt,
#           testing_list.txt). When it holds no validation_list.txt, speech_commands_v0.02.tar.gz is
#           downloaded into it and extracted. For a demo without download:
#           python scripts/make_speech_commands.py RAW_DIR (spoken words synthesised with espeak-ng).
# OUT_DIR   receives input0/{train,valid,test}.npy, label/ and meta.json; train with
#           scripts/train.sh speech/sc_raw OUT_DIR SAVE_DIR, evaluate with scripts/eval_cls.sh.
# Options   --words sc10|all|w1,w2,...  --split-protocol lists|random  --short-clips drop|pad  --resample
#           (python scripts/sc_data.py --help; the defaults are the paper's SC10 protocol on the
#           release's lists).
#
# Environment:
#   FORCE=1                  replace an existing OUT_DIR
#   SPEECH_COMMANDS_URL      where to download the release from (default: its public address)
#
# The output is written to a temporary folder beside OUT_DIR and renamed into place when complete.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_args 2 "RAW_DIR OUT_DIR" "$@"
RAW_DIR="$1" OUT_DIR="$2"
shift 2
URL="${SPEECH_COMMANDS_URL:-http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz}"
if [[ -e "$OUT_DIR" && "${FORCE:-0}" != 1 ]]; then
    die "$OUT_DIR already exists; set FORCE=1 to replace it"
fi
if [[ ! -f "$RAW_DIR/validation_list.txt" ]]; then
    mkdir -p "$RAW_DIR"
    ARCHIVE="$RAW_DIR/speech_commands_v0.02.tar.gz"
    if [[ ! -f "$ARCHIVE" ]]; then
        say "no validation_list.txt in $RAW_DIR: downloading $URL"
        download "$URL" "$ARCHIVE" "set SPEECH_COMMANDS_URL to a mirror, or extract speech_commands_v0.02.tar.gz \
into RAW_DIR yourself"
    fi
    tar -xzf "$ARCHIVE" -C "$RAW_DIR" || die "could not extract $ARCHIVE (remove it to download again)"
fi

TMP="$(temp_dir_beside "$OUT_DIR")"
trap 'rm -rf "$TMP"' EXIT
say "decoding the clips of $RAW_DIR"
python "$ROOT/scripts/sc_data.py" "$RAW_DIR" "$TMP" "$@"
move_into_place "$TMP" "$OUT_DIR"
trap - EXIT
say "done: $OUT_DIR"
