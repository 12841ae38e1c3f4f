#!/usr/bin/env bash
# Evaluate a Mega language model the paper's way: the split is cut into contiguous streams,
# each scored segment by segment with the model state carried over, so every token is
# predicted from its whole history in its stream.
#
#   scripts/eval_lm.sh CHECKPOINT DATA_BIN [SUBSET] [fairseq-eval-lm args ...]
#
# SUBSET defaults to test. Ends with "perplexity: P" (and "bits per character: L" with BPC=1),
# read from fairseq-eval-lm's "Loss (base 2): L, Perplexity: P" line. The task's options, which
# the fairseq-eval-lm args may set, with their defaults and help:
#   python -m mega_fairseq.options --task mega_language_modeling
#
# Environment:
#   STREAMS=N    number of streams (default 10; the paper: 10 for WikiText-103, 50 for enwik8)
#   SEGMENT=N    tokens per segment (default: the task's, --tokens-per-sample times
#                --variant-block-multiple-max); memory only, the scores do not depend on it
#                when it is a multiple of the chunk size
#   CHUNK=N      attention chunk size at test time (--model-overrides), e.g. 2048 for
#                WikiText-103 and 4096 for enwik8 in the paper; needs a model with
#                --rel-pos-bias rotary (a simple bias has one weight per offset in a chunk)
#   BPC=1        also print the base-2 loss as bits per character (byte-level data: enwik8)
#   CPU=1        evaluate on CPU
#   DRY_RUN=1    check the arguments, print the fairseq-eval-lm command and exit (the checkpoint is not read)
#
# CHECKPOINT must hold a language model (--arch mega_lm*): another kind of model, or a file that is
# no checkpoint, is an error saying what it holds, before fairseq runs; a checkpoint trained with
# another dictionary than DATA_BIN/dict.txt is an error naming both.
#
# The paper's protocols:
#   CHUNK=2048 SEGMENT=4096 STREAMS=10 scripts/eval_lm.sh CKPT data/wikitext-103/bin       # 18.07 ppl
#   CHUNK=4096 SEGMENT=12288 STREAMS=50 BPC=1 scripts/eval_lm.sh CKPT data/enwik8/bin      # 1.02 bpc
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

checkpoint_data_subset DATA_BIN "$@"
DATA_BIN="$DATA"
[[ -f "$DATA_BIN/dict.txt" ]] || die "DATA_BIN '$DATA_BIN' has no dict.txt: is it fairseq-preprocess output?"
[[ -f "$DATA_BIN/$SUBSET.idx" ]] || die "no subset '$SUBSET' in $DATA_BIN (no $SUBSET.idx)"
for var in STREAMS SEGMENT CHUNK; do
    value="${!var:-}"
    [[ -z "$value" || "$value" =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive integer, got '$value'"
done

cmd=(fairseq-eval-lm "$DATA_BIN" --user-dir "$ROOT/mega_fairseq" --path "$CHECKPOINT" --gen-subset "$SUBSET"
     --task mega_language_modeling --eval-streams "${STREAMS:-10}" --required-batch-size-multiple 1)
[[ -n "${SEGMENT:-}" ]] && cmd+=(--eval-segment-length "$SEGMENT")
[[ -n "${CHUNK:-}" ]] && cmd+=(--model-overrides "{'decoder_chunk_size': $CHUNK}")
[[ "${CPU:-0}" == 1 ]] && cmd+=(--cpu)
cmd+=("${ARGS[@]}")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    print_command "${cmd[@]}"
    exit 0
fi
check_checkpoint language_model "$CHECKPOINT"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run_logged "$log" "${cmd[@]}"

result="$(grep -o 'Loss (base 2): [^,]*, Perplexity: [^ ]*' "$log" | tail -n 1)"
[[ -n "$result" ]] || die "fairseq-eval-lm printed no 'Loss (base 2): ..., Perplexity: ...' line"
loss="${result#Loss (base 2): }"
loss="${loss%%,*}"
ppl="${result##*Perplexity: }"
echo "perplexity: $ppl"
[[ "${BPC:-0}" == 1 ]] && echo "bits per character: $loss"
exit 0
