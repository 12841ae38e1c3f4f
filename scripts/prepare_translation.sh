#!/usr/bin/env bash
# Prepare a parallel corpus of any language pair for fairseq's translation task: Moses punctuation
# normalisation, a joint sentencepiece vocabulary of both languages, fairseq-preprocess
# --joined-dictionary (scripts/prepare_wmt16_en_de.sh is this on WMT16 English-German).
#
#   scripts/prepare_translation.sh [--vocab-size N] --src XX --tgt YY RAW_DIR OUT_DIR
#   scripts/prepare_translation.sh --src fr --tgt en data/raw/fr_en data/fr_en
#
# XX, YY    the source and target language codes, the suffixes of the files (letters, digits and
#           underscores; Moses' normalisation has rules for some, e.g. en, de, fr, and applies its
#           general rules to any other)
# RAW_DIR   a folder with six plain-text UTF-8 files, one sentence per line, source and target
#           parallel line by line, no empty line: train.XX train.YY, valid.XX valid.YY (checked
#           while training), test.XX test.YY
# OUT_DIR   receives
#             bin/                 fairseq-preprocess output with one joined dictionary: dict.XX.txt,
#                                  dict.YY.txt, {train,valid,test}.XX-YY.{XX,YY}.{bin,idx}
#             spm.model spm.vocab  the joint sentencepiece model: pass --bpe sentencepiece
#                                  --sentencepiece-model OUT_DIR/spm.model to fairseq-generate (to
#                                  decode) and to fairseq-interactive (to encode raw text, which
#                                  otherwise becomes <unk>s)
#             ref/                 valid and test text as given, to score against
#
# Steps: check RAW_DIR (every file present, UTF-8, no empty line, source and target of a split of
# equal length: errors name the file and line), Moses punctuation normalisation of every file
# (sacremoses: normalize-punctuation.perl and remove-non-printing-char.perl), a joint sentencepiece
# model trained on the normalised training text of both languages, sentencepiece encoding of every
# split (training pairs with a side over MAX_LEN pieces or a length ratio over CLEAN_RATIO are
# dropped, as clean-corpus-n.perl does in fairseq's WMT recipes; valid and test are kept whole), and
# fairseq-preprocess --joined-dictionary. Everything is written to a hidden folder beside OUT_DIR,
# renamed to OUT_DIR at the end: an interrupted run leaves no OUT_DIR behind.
#
# Options and environment:
#   --src XX, --tgt YY     the language pair (required)
#   --vocab-size N, VOCAB_SIZE=N  sentencepiece vocabulary size (default 32000)
#   SPM_TYPE=unigram|bpe   sentencepiece model type (default unigram)
#   SPM_SENTENCES=N    training lines sampled to train sentencepiece (default 4000000; 0: all)
#   SPM_COVERAGE=X     sentencepiece's character coverage (default 1.0: every character seen; 0.9995
#                      for languages with large alphabets)
#   CLEAN_RATIO=R      drop training pairs whose lengths in pieces differ by more than R times
#                      (default 1.5; 0 keeps them)
#   MAX_LEN=N          drop training pairs with a side longer than N pieces (default 250; 0 keeps them)
#   WORKERS=N          processes for normalisation, sentencepiece and fairseq-preprocess
#                      (default: the number of CPUs)
#   FORCE=1            replace an existing OUT_DIR (once the new one is complete)
#   KEEP_TEXT=1        keep the normalised and encoded text in OUT_DIR/text
#   DRY_RUN=1          check the input, print the plan and exit
#
# Needs the Python packages sentencepiece, sacremoses and sacrebleu (pip install sacremoses).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VOCAB_SIZE="${VOCAB_SIZE:-32000}"
SRC=""
TGT=""
positional=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage 0 ;;
        --vocab-size|--src|--tgt)
            [[ $# -ge 2 ]] || die "$1 needs a value"
            case "$1" in --vocab-size) VOCAB_SIZE="$2" ;; --src) SRC="$2" ;; --tgt) TGT="$2" ;; esac
            shift 2 ;;
        --vocab-size=*) VOCAB_SIZE="${1#*=}"; shift ;;
        --src=*) SRC="${1#*=}"; shift ;;
        --tgt=*) TGT="${1#*=}"; shift ;;
        --) shift; positional+=("$@"); break ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) positional+=("$1"); shift ;;
    esac
done
[[ ${#positional[@]} -eq 2 ]] || { echo "$SCRIPT_NAME: error: need RAW_DIR OUT_DIR" >&2; usage 2 >&2; }
[[ -n "$SRC" && -n "$TGT" ]] || die "name the language pair with --src XX --tgt YY (the suffixes of RAW_DIR's files)"

RAW_DIR="${positional[0]%/}"
OUT_DIR="${positional[1]%/}"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 1)}"
SPM_TYPE="${SPM_TYPE:-unigram}"
SPM_SENTENCES="${SPM_SENTENCES:-4000000}"
SPM_COVERAGE="${SPM_COVERAGE:-1.0}"
CLEAN_RATIO="${CLEAN_RATIO:-1.5}"
MAX_LEN="${MAX_LEN:-250}"
SPLITS=(train valid test)

for lang in "$SRC" "$TGT"; do
    [[ "$lang" =~ ^[A-Za-z0-9_]+$ ]] || \
        die "a language code is letters, digits and underscores (fairseq names files SRC-TGT.LANG), got '$lang'"
done
[[ "$SRC" != "$TGT" ]] || die "--src and --tgt must differ, got '$SRC' twice"
[[ "$VOCAB_SIZE" =~ ^[1-9][0-9]*$ ]] || die "the vocabulary size must be a positive integer, got '$VOCAB_SIZE'"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, got '$WORKERS'"
[[ "$SPM_SENTENCES" =~ ^[0-9]+$ ]] || die "SPM_SENTENCES must be a non-negative integer, got '$SPM_SENTENCES'"
[[ "$MAX_LEN" =~ ^[0-9]+$ ]] || die "MAX_LEN must be a non-negative integer, got '$MAX_LEN'"
[[ "$SPM_COVERAGE" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "SPM_COVERAGE must be from 0 to 1, got '$SPM_COVERAGE'"
[[ "$CLEAN_RATIO" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CLEAN_RATIO must be a non-negative number, got '$CLEAN_RATIO'"
[[ "$SPM_TYPE" == unigram || "$SPM_TYPE" == bpe ]] || die "SPM_TYPE must be unigram or bpe, got '$SPM_TYPE'"
check_out_dir "$OUT_DIR" "$RAW_DIR"

python -m mega_fairseq.data.mt deps
say "checking $RAW_DIR"
python -m mega_fairseq.data.mt check "$RAW_DIR" --src "$SRC" --tgt "$TGT" --splits "${SPLITS[@]}"

dry_run_stop "normalise, train a $VOCAB_SIZE-piece $SPM_TYPE sentencepiece model, encode (training pairs:" \
    "CLEAN_RATIO=$CLEAN_RATIO MAX_LEN=$MAX_LEN) and binarise $RAW_DIR ($SRC-$TGT) into $OUT_DIR"

TMP="$(temp_dir_beside "$OUT_DIR")"
trap 'rm -rf "$TMP"' EXIT
TEXT="$TMP/text"
mkdir -p "$TEXT/normalised" "$TEXT/spm" "$TMP/ref"

normalise=()
for split in "${SPLITS[@]}"; do
    for lang in "$SRC" "$TGT"; do
        normalise+=(--file "$lang" "$RAW_DIR/$split.$lang" "$TEXT/normalised/$split.$lang")
        [[ "$split" == train ]] || cp "$RAW_DIR/$split.$lang" "$TMP/ref/$split.$lang"
    done
done
python -m mega_fairseq.data.mt normalise --workers "$WORKERS" "${normalise[@]}"

python -m mega_fairseq.data.mt train-spm --inputs "$TEXT/normalised/train.$SRC" "$TEXT/normalised/train.$TGT" \
    --model-prefix "$TMP/spm" --vocab-size "$VOCAB_SIZE" --model-type "$SPM_TYPE" \
    --sentences "$SPM_SENTENCES" --character-coverage "$SPM_COVERAGE" --workers "$WORKERS"

python -m mega_fairseq.data.mt encode --model "$TMP/spm.model" --input "$TEXT/normalised" --output "$TEXT/spm" \
    --splits "${SPLITS[@]}" --clean-splits train --clean-ratio "$CLEAN_RATIO" --max-len "$MAX_LEN" \
    --src "$SRC" --tgt "$TGT" --workers "$WORKERS"

say "binarising into $OUT_DIR/bin with $WORKERS workers"
fairseq-preprocess --source-lang "$SRC" --target-lang "$TGT" --joined-dictionary \
    --trainpref "$TEXT/spm/train" --validpref "$TEXT/spm/valid" --testpref "$TEXT/spm/test" \
    --destdir "$TMP/bin" --workers "$WORKERS"

[[ "${KEEP_TEXT:-0}" == 1 ]] || rm -rf "$TEXT"
[[ -d "$OUT_DIR" && "${FORCE:-0}" == 1 && -n "$(ls -A "$OUT_DIR")" ]] && say "FORCE=1: replacing $OUT_DIR"
move_into_place "$TMP" "$OUT_DIR"
trap - EXIT
say "done: $OUT_DIR ($(($(wc -l < "$OUT_DIR/bin/dict.$SRC.txt") + 4)) symbols in the joined dictionary)"
