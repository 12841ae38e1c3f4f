#!/usr/bin/env bash
# Evaluate a sequence classifier (LRA, speech) on a split: fairseq-validate with the checkpoint's
# task and criterion, on the data in DATA (binarised by scripts/prepare_lra.sh, or a release folder).
#
#   scripts/eval_cls.sh CHECKPOINT DATA [SUBSET] [fairseq-validate args ...]
#
# SUBSET defaults to test. Ends with "SUBSET accuracy: A" (percent), read from fairseq-validate's
# "valid on 'SUBSET' subset | ... | accuracy A" line.
#
# CHECKPOINT must hold a sequence classifier (--arch mega_lra_*, mega_sc_raw*, ...): another kind of
# model, or a file that is no checkpoint, is an error saying what it holds, before fairseq runs.
#
# Environment:
#   BATCH=N    examples per batch (default 32)
#   CPU=1      evaluate on CPU
#   DRY_RUN=1  check the arguments, print the fairseq-validate command and exit (the checkpoint is not read)
#
#   scripts/eval_cls.sh runs/lra_listops/checkpoints/checkpoint_best.pt data/lra/listops
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

checkpoint_data_subset DATA "$@"
BATCH="${BATCH:-32}"
[[ "$BATCH" =~ ^[1-9][0-9]*$ ]] || die "BATCH must be a positive integer, got '$BATCH'"
DATA="$(cd "$DATA" && pwd)"

cmd=(fairseq-validate "$DATA" --user-dir "$ROOT/mega_fairseq" --path "$CHECKPOINT" --valid-subset "$SUBSET"
     --task mega_sequence_classification --batch-size "$BATCH" --required-batch-size-multiple 1
     --model-overrides "{'data': '$DATA'}")
[[ "${CPU:-0}" == 1 ]] && cmd+=(--cpu)
cmd+=("${ARGS[@]}")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    print_command "${cmd[@]}"
    exit 0
fi
check_checkpoint classifier "$CHECKPOINT"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run_logged "$log" "${cmd[@]}"

accuracy="$(grep "valid on '$SUBSET' subset" "$log" | grep -o '| accuracy [^ ]*' | tail -n 1)"
[[ -n "$accuracy" ]] || die "fairseq-validate printed no accuracy for the '$SUBSET' subset"
echo "$SUBSET accuracy: ${accuracy#| accuracy }"
