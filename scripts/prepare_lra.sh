#!/usr/bin/env bash
# Prepare one Long Range Arena task, or your own text TSVs, for training: from the release files
# to fairseq's binarised form.
#
#   scripts/prepare_lra.sh TASK RAW_DIR OUT_DIR [--input-type tokens|bytes] [--sentencepiece-model FILE]
#
# TASK      listops | text | retrieval | image | pathfinder | pathx | tsv
# RAW_DIR   the task's folder of the public release (lra_release.gz of the LRA repository, and the
#           public IMDB and CIFAR-10 archives):
#             listops     lra_release/listops-1000 (basic_{train,val,test}.tsv)
#             text        aclImdb (train/ and test/ of aclImdb_v1.tar.gz)
#             retrieval   lra_release/tsv_data (new_aan_pairs.{train,eval,test}.tsv)
#             image       cifar-10-batches-py (of cifar-10-python.tar.gz)
#             pathfinder  lra_release/pathfinder32/curv_contour_length_14 (metadata/, imgs/)
#             pathx       lra_release/pathfinder128/curv_contour_length_14
#             tsv         your own: train.tsv, valid.tsv, test.tsv, rows text<TAB>label (or
#                         text<TAB>text<TAB>label: pairs), labels words or integers, an optional
#                         header line with a column named "label"; tokens are whitespace-separated
#                         words (or the pieces of --sentencepiece-model FILE; or --input-type
#                         bytes), the dictionary the training split's, other words become <unk>
#           With no download: python -m mega_fairseq.data.listops (and mega_fairseq.data.pathfinder)
#           write data in the release layout.
# OUT_DIR   receives input0/ (input1/ for pairs), label/ (tsv: label/dict.txt, the label words in
#           class order), meta.json and a copy of --sentencepiece-model (sentencepiece.model).
#
# The output is written to a temporary folder beside OUT_DIR and renamed into place when complete;
# an existing OUT_DIR is kept unless FORCE=1. DRY_RUN=1 checks the arguments and exits.
#
# Then train the paper's recipe and evaluate its best checkpoint; the last command lists the model
# and task options of the recipe (overridden on train.sh's command line as model.NAME=VALUE,
# task.NAME=VALUE):
#   scripts/train.sh lra/TASK OUT_DIR SAVE_DIR
#   scripts/eval_cls.sh SAVE_DIR/checkpoints/checkpoint_best.pt OUT_DIR
#   python -m mega_fairseq.options --arch mega_lra_TASK --task mega_sequence_classification
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

need_args 3 "TASK RAW_DIR OUT_DIR" "$@"
TASK="$1" RAW_DIR="$2" OUT_DIR="$3"
shift 3
case "$TASK" in
    listops|text|retrieval|image|pathfinder|pathx) [[ $# == 0 ]] || die "options are for the tsv task: $*" ;;
    tsv) ;;
    *) die "unknown TASK '$TASK' (one of listops, text, retrieval, image, pathfinder, pathx, tsv)" ;;
esac
[[ -d "$RAW_DIR" ]] || die "RAW_DIR '$RAW_DIR' is not a directory"
if [[ -e "$OUT_DIR" && "${FORCE:-0}" != 1 ]]; then
    die "$OUT_DIR already exists; set FORCE=1 to replace it"
fi
dry_run_stop "binarise $TASK from $RAW_DIR into $OUT_DIR"

TMP="$(temp_dir_beside "$OUT_DIR")"
trap 'rm -rf "$TMP"' EXIT
say "binarising $TASK from $RAW_DIR"
python -m mega_fairseq.data.lra "$TASK" "$RAW_DIR" "$TMP" "$@"
move_into_place "$TMP" "$OUT_DIR"
trap - EXIT
say "done: $OUT_DIR"
