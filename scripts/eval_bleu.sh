#!/usr/bin/env bash
# Translate a split with beam search and score it: SacreBLEU (detokenised, with its signature) and
# tokenized BLEU with compound splitting (the convention of the Mega paper and of Vaswani et al.).
#
#   scripts/eval_bleu.sh CHECKPOINT DATA_DIR [fairseq-generate args ...]
#
# DATA_DIR   scripts/prepare_wmt16_en_de.sh's OUT_DIR: bin/ (binarised en-de) and ref/ (the
#            original references; without ref/ the decoded targets of bin/ are used instead)
# CHECKPOINT a translation checkpoint (e.g. --arch mega_wmt_en_de); with AVERAGE=K, a checkpoint in
#            the folder whose last K checkpoints are averaged first. Another kind of model, or a file
#            that is no checkpoint, is an error saying what it holds, before fairseq runs.
#
# Runs fairseq-generate with --bpe sentencepiece --sentencepiece-model DATA_DIR/spm.model (the D-
# lines are the hypotheses decoded by the model) and --required-batch-size-multiple 1 (no sentence is dropped; the count is checked), puts the
# hypotheses back in the order of the source, and ends with two lines:
#   tokenized BLEU (compound split): B    Moses tokenisation of hypotheses and references, then
#                                         a-b -> a ##AT##-##AT## b, then corpus BLEU (multi-bleu.perl)
#   SacreBLEU: B (signature S)            sacrebleu's default BLEU against the original references
#
# Environment:
#   BEAM=N        beam size (default 5)
#   LENPEN=X      length penalty (default 0.5)
#   SUBSET=NAME   the split (default test: newstest2014; valid: newstest2013)
#   MAX_TOKENS=N  tokens per batch (default 4096)
#   AVERAGE=K     average the last K epoch checkpoints (checkpointN.pt) of CHECKPOINT's folder first,
#                 into that folder's averaged_last{K}_epochs.pt (replaced on every run)
#   AVERAGE_BY=update   with AVERAGE: the last K update checkpoints (checkpoint_E_U.pt) instead,
#                 into averaged_last{K}_updates.pt
#   OUTPUT=DIR    keep fairseq-generate's output, the ordered hypotheses and the references there
#   CPU=1         generate on CPU
#   DRY_RUN=1     check the arguments, print the fairseq-generate command and exit (the checkpoint is not
#                 read)
#
#   AVERAGE=5 scripts/eval_bleu.sh runs/wmt16/checkpoints/checkpoint_last.pt data/wmt16_en_de
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_args 2 "CHECKPOINT DATA_DIR" "$@"

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKPOINT="$1"
DATA_DIR="${2%/}"
shift 2
SRC=en
TGT=de
SUBSET="${SUBSET:-test}"
BEAM="${BEAM:-5}"
LENPEN="${LENPEN:-0.5}"
MAX_TOKENS="${MAX_TOKENS:-4096}"

for var in BEAM MAX_TOKENS AVERAGE; do
    value="${!var:-}"
    [[ -z "$value" || "$value" =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive integer, got '$value'"
done
[[ "$LENPEN" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || die "LENPEN must be a number, got '$LENPEN'"
case "${AVERAGE_BY:-epoch}" in
    epoch) average_flag=--num-epoch-checkpoints; average_kind=epochs ;;
    update) average_flag=--num-update-checkpoints; average_kind=updates ;;
    *) die "AVERAGE_BY must be epoch or update, got '${AVERAGE_BY}'" ;;
esac

BIN="$DATA_DIR/bin"
[[ -d "$DATA_DIR" ]] || die "DATA_DIR '$DATA_DIR' is not a directory (make it with scripts/prepare_wmt16_en_de.sh)"
[[ -f "$BIN/dict.$SRC.txt" && -f "$BIN/dict.$TGT.txt" ]] || \
    die "$BIN has no dict.$SRC.txt and dict.$TGT.txt: is DATA_DIR scripts/prepare_wmt16_en_de.sh's OUT_DIR?"
[[ -f "$BIN/$SUBSET.$SRC-$TGT.$SRC.idx" ]] || die "no subset '$SUBSET' in $BIN (no $SUBSET.$SRC-$TGT.$SRC.idx)"
[[ -f "$DATA_DIR/spm.model" ]] || \
    die "$DATA_DIR/spm.model is missing: the sentencepiece model decodes the translations (scripts/prepare_wmt16_en_de.sh writes it)"
if [[ -n "${AVERAGE:-}" ]]; then
    [[ -e "$CHECKPOINT" ]] || die "no such checkpoint: $CHECKPOINT (AVERAGE=$AVERAGE uses its folder)"
else
    [[ -f "$CHECKPOINT" ]] || die "no such checkpoint: $CHECKPOINT"
    [[ "${DRY_RUN:-0}" == 1 ]] || check_checkpoint translation "$CHECKPOINT"
fi
[[ -f "$DATA_DIR/ref/$SUBSET.$TGT" ]] || \
    say "warning: no $DATA_DIR/ref/$SUBSET.$TGT; scoring against the decoded targets of $BIN instead"
python -m mega_fairseq.data.mt deps  # before the long part

if [[ -n "${AVERAGE:-}" ]]; then
    folder="$CHECKPOINT"
    [[ -d "$folder" ]] || folder="$(dirname "$CHECKPOINT")"
    averaged="$folder/averaged_last${AVERAGE}_${average_kind}.pt"
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        say "DRY_RUN=1: would average the last $AVERAGE ${AVERAGE_BY:-epoch} checkpoints of $folder into $averaged"
    else
        python "$SCRIPTS/average_checkpoints.py" --inputs "$folder" "$average_flag" "$AVERAGE" --output "$averaged"
        check_checkpoint translation "$averaged"
    fi
    CHECKPOINT="$averaged"
fi

cmd=(fairseq-generate "$BIN" --user-dir "$ROOT/mega_fairseq" --path "$CHECKPOINT" --gen-subset "$SUBSET"
     --source-lang "$SRC" --target-lang "$TGT" --beam "$BEAM" --lenpen "$LENPEN" --max-tokens "$MAX_TOKENS"
     --bpe sentencepiece --sentencepiece-model "$DATA_DIR/spm.model" --required-batch-size-multiple 1)
[[ "${CPU:-0}" == 1 ]] && cmd+=(--cpu)
cmd+=("$@")

print_command "${cmd[@]}"
[[ "${DRY_RUN:-0}" == 1 ]] && exit 0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -n "${OUTPUT:-}" ]]; then
    mkdir -p "$OUTPUT"
    gen="$OUTPUT/generate-$SUBSET.txt"
else
    gen="$work/generate-$SUBSET.txt"
fi
# the log and the progress go to stderr; the S-/T-/H-/D-/P- lines to $gen
"${cmd[@]}" > "$gen" || die "fairseq-generate failed (exit $?)"

score=(python -m mega_fairseq.data.mt score --generate-output "$gen" --data-dir "$DATA_DIR" --subset "$SUBSET"
       --src "$SRC" --tgt "$TGT")
[[ -n "${OUTPUT:-}" ]] && score+=(--output "$OUTPUT")
"${score[@]}"
