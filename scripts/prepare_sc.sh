#!/usr/bin/env bash
# Prepare Speech Commands (v0.02) for raw-waveform classification: decode the WAV files once into
# fixed-length float32 rows that training memory-maps (an epoch does not re-decode 35K files).
#
#   scripts/prepare_sc.sh RAW_DIR OUT_DIR [options]
#
# RAW_DIR   the extracted release (one folder of WAV files per word, validation_list.txt,
#           testing_list.txt). When it holds no validation_list.txt, speech_commands_v0.02.tar.gz is
#           downloaded into it over https, its SHA-256 checked, and extracted. For a demo without
#           download: python -m demo.speech_words RAW_DIR (words spoken by espeak-ng).
# OUT_DIR   receives input0/{train,valid,test}.npy, label/ and meta.json.
# Options   --words sc10|all|w1,w2,...  --split-protocol random|lists  --short-clips drop|pad
#           --shorten-method none|truncate  --resample (python -m mega_fairseq.data.speech_commands
#           --help). The defaults are the paper's SC10 protocol: the ten words, clips shorter than one
#           second dropped, then the official code's stratified random 70/15/15 split. --split-protocol
#           lists takes the release's validation_list.txt and testing_list.txt instead (the release's own
#           protocol).
#           It prints each split's clips and how many short clips were dropped.
#
# Then train the paper's recipe and evaluate it:
#   scripts/train.sh speech/sc_raw OUT_DIR SAVE_DIR
#   scripts/eval_cls.sh SAVE_DIR/checkpoints/checkpoint_best.pt OUT_DIR
#
# Environment:
#   FORCE=1                  replace an existing OUT_DIR
#   DRY_RUN=1                check the arguments, say what would be done and exit (nothing is downloaded)
#   SPEECH_COMMANDS_URL      where to download the release from (default: its public https address)
#   SPEECH_COMMANDS_SHA256   the archive's expected SHA-256 (default: the v0.02 archive's, as TensorFlow
#                            Datasets pins it); an archive with another checksum is not extracted
#
# The output is written to a temporary folder beside OUT_DIR and renamed into place when complete.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_args 2 "RAW_DIR OUT_DIR" "$@"
RAW_DIR="$1" OUT_DIR="$2"
shift 2
URL="${SPEECH_COMMANDS_URL:-https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz}"
# the v0.02 archive (2,428,923,189 bytes) as tensorflow/datasets pins it in url_checksums/speech_commands.txt
SHA256="${SPEECH_COMMANDS_SHA256:-af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58}"
if [[ -e "$OUT_DIR" && "${FORCE:-0}" != 1 ]]; then
    die "$OUT_DIR already exists; set FORCE=1 to replace it"
fi
dry_run_stop "decode the clips of $RAW_DIR (downloading the release when it has no validation_list.txt) into $OUT_DIR"
if [[ ! -f "$RAW_DIR/validation_list.txt" ]]; then
    mkdir -p "$RAW_DIR"
    ARCHIVE="$RAW_DIR/speech_commands_v0.02.tar.gz"
    if [[ ! -f "$ARCHIVE" ]]; then
        say "no validation_list.txt in $RAW_DIR: downloading $URL"
        download "$URL" "$ARCHIVE" "set SPEECH_COMMANDS_URL to a mirror, or extract speech_commands_v0.02.tar.gz \
into RAW_DIR yourself"
    fi
    verify_sha256 "$ARCHIVE" "$SHA256" "a damaged or different download, not extracted (remove it to download \
again; SPEECH_COMMANDS_SHA256 gives the checksum of another archive)"
    tar -xzf "$ARCHIVE" -C "$RAW_DIR" || die "could not extract $ARCHIVE (remove it to download again)"
fi

TMP="$(temp_dir_beside "$OUT_DIR")"
trap 'rm -rf "$TMP"' EXIT
say "decoding the clips of $RAW_DIR"
python -m mega_fairseq.data.speech_commands "$RAW_DIR" "$TMP" "$@"
move_into_place "$TMP" "$OUT_DIR"
trap - EXIT
say "done: $OUT_DIR"
