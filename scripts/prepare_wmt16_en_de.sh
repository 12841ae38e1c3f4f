#!/usr/bin/env bash
# Prepare WMT16 English-German for fairseq's translation task, the Mega paper's setup: the WMT16
# training data, newstest2013 as the validation set and newstest2014 as the test set, in a joint
# sentencepiece vocabulary.
#
#   scripts/prepare_wmt16_en_de.sh [--vocab-size N] OUT_DIR [RAW_DIR]
#
# RAW_DIR   a folder with six plain-text UTF-8 files, one sentence per line, source and target
#           parallel line by line, no empty line:
#             train.en  train.de   the training corpus (WMT16: Europarl v7, Common Crawl and
#                                  News Commentary v11, concatenated)
#             valid.en  valid.de   newstest2013
#             test.en   test.de    newstest2014 (the full 3003 sentences)
#           Without RAW_DIR the three training corpora are downloaded and the two test sets fetched
#           through sacrebleu into OUT_DIR.raw/ (beside OUT_DIR; kept, so a rerun does not download
#           again; pairs with an empty side are dropped there), which then serves as RAW_DIR.
# OUT_DIR   receives
#             bin/                 fairseq-preprocess output with one joined dictionary: dict.en.txt,
#                                  dict.de.txt, {train,valid,test}.en-de.{en,de}.{bin,idx}
#             spm.model spm.vocab  the joint sentencepiece model (to decode translations)
#             ref/                 valid.{en,de} and test.{en,de} as given: scripts/eval_bleu.sh
#                                  scores against these
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
#   --vocab-size N, VOCAB_SIZE=N  sentencepiece vocabulary size (default 32000)
#   SPM_TYPE=unigram|bpe   sentencepiece model type (default unigram)
#   SPM_SENTENCES=N    training lines sampled to train sentencepiece (default 4000000; 0: all)
#   SPM_COVERAGE=X     sentencepiece's character coverage (default 1.0: every character seen)
#   CLEAN_RATIO=R      drop training pairs whose lengths in pieces differ by more than R times
#                      (default 1.5; 0 keeps them)
#   MAX_LEN=N          drop training pairs with a side longer than N pieces (default 250; 0 keeps them)
#   WORKERS=N          processes for normalisation, sentencepiece and fairseq-preprocess
#                      (default: the number of CPUs)
#   FORCE=1            replace an existing OUT_DIR (once the new one is complete)
#   KEEP_TEXT=1        keep the normalised and encoded text in OUT_DIR/text
#   DRY_RUN=1          check the input, print the plan and exit
#   EUROPARL_URL, COMMONCRAWL_URL, NEWS_COMMENTARY_URL   where to download the training corpora
#                      from (defaults: statmt.org); valid and test come through sacrebleu
#
# Needs the Python packages sentencepiece, sacremoses and sacrebleu (pip install sacremoses).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VOCAB_SIZE="${VOCAB_SIZE:-32000}"
positional=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage 0 ;;
        --vocab-size) [[ $# -ge 2 ]] || die "--vocab-size needs a value"; VOCAB_SIZE="$2"; shift 2 ;;
        --vocab-size=*) VOCAB_SIZE="${1#*=}"; shift ;;
        --) shift; positional+=("$@"); break ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) positional+=("$1"); shift ;;
    esac
done
[[ ${#positional[@]} -ge 1 && ${#positional[@]} -le 2 ]] || {
    echo "$SCRIPT_NAME: error: need OUT_DIR [RAW_DIR]" >&2; usage 2 >&2; }

OUT_DIR="${positional[0]%/}"
RAW_DIR="${positional[1]:-}"
[[ -n "$OUT_DIR" ]] || die "OUT_DIR must not be empty"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 1)}"
SPM_TYPE="${SPM_TYPE:-unigram}"
SPM_SENTENCES="${SPM_SENTENCES:-4000000}"
SPM_COVERAGE="${SPM_COVERAGE:-1.0}"
CLEAN_RATIO="${CLEAN_RATIO:-1.5}"
MAX_LEN="${MAX_LEN:-250}"
SRC=en
TGT=de
SPLITS=(train valid test)

[[ "$VOCAB_SIZE" =~ ^[1-9][0-9]*$ ]] || die "the vocabulary size must be a positive integer, got '$VOCAB_SIZE'"
[[ "$WORKERS" =~ ^[1-9][0-9]*$ ]] || die "WORKERS must be a positive integer, got '$WORKERS'"
[[ "$SPM_SENTENCES" =~ ^[0-9]+$ ]] || die "SPM_SENTENCES must be a non-negative integer, got '$SPM_SENTENCES'"
[[ "$MAX_LEN" =~ ^[0-9]+$ ]] || die "MAX_LEN must be a non-negative integer, got '$MAX_LEN'"
[[ "$SPM_COVERAGE" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "SPM_COVERAGE must be from 0 to 1, got '$SPM_COVERAGE'"
[[ "$CLEAN_RATIO" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CLEAN_RATIO must be a non-negative number, got '$CLEAN_RATIO'"
[[ "$SPM_TYPE" == unigram || "$SPM_TYPE" == bpe ]] || die "SPM_TYPE must be unigram or bpe, got '$SPM_TYPE'"

if [[ -e "$OUT_DIR" && ! -d "$OUT_DIR" ]]; then
    die "OUT_DIR '$OUT_DIR' exists and is not a directory"
fi
if [[ -d "$OUT_DIR" && -n "$(ls -A "$OUT_DIR" 2>/dev/null)" && "${FORCE:-0}" != 1 ]]; then
    die "$OUT_DIR already exists and is not empty; set FORCE=1 to replace it"
fi
if [[ -n "$RAW_DIR" ]]; then
    [[ -d "$RAW_DIR" ]] || die "RAW_DIR '$RAW_DIR' is not a directory"
    raw_real="$(cd "$RAW_DIR" && pwd -P)/"
    if [[ -d "$OUT_DIR" && "$raw_real" == "$(cd "$OUT_DIR" && pwd -P)/"* ]]; then
        die "RAW_DIR '$RAW_DIR' is inside OUT_DIR '$OUT_DIR', which is replaced as a whole: move it out"
    fi
fi

python -m mega_fairseq.data.mt deps

if [[ -z "$RAW_DIR" ]]; then
    RAW_DIR="$OUT_DIR.raw"
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        say "DRY_RUN=1: would download the WMT16 training corpora and fetch newstest2013/2014 into $RAW_DIR," \
            "then prepare $OUT_DIR"
        exit 0
    fi
    mkdir -p "$RAW_DIR"
    hint="without a network, place train.$SRC train.$TGT (WMT16 training data), valid.$SRC valid.$TGT \
(newstest2013) and test.$SRC test.$TGT (newstest2014) in a folder and pass it as RAW_DIR"
    if [[ ! -f "$RAW_DIR/train.$SRC" || ! -f "$RAW_DIR/train.$TGT" ]]; then
        europarl="${EUROPARL_URL:-https://www.statmt.org/europarl/v7/de-en.tgz}"
        commoncrawl="${COMMONCRAWL_URL:-https://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz}"
        news="${NEWS_COMMENTARY_URL:-https://data.statmt.org/wmt16/translation-task/training-parallel-nc-v11.tgz}"
        corpora=()
        # archive name, URL, the corpus's file prefix inside the archive
        for entry in "europarl-v7.tgz $europarl europarl-v7.de-en" "commoncrawl.tgz $commoncrawl commoncrawl.de-en" \
                     "news-commentary-v11.tgz $news news-commentary-v11.de-en"; do
            read -r archive url prefix <<< "$entry"
            if [[ ! -f "$RAW_DIR/$archive" ]]; then
                say "downloading $url"
                download "$url" "$RAW_DIR/$archive" "$hint"
            fi
            mkdir -p "$RAW_DIR/extracted"
            tar -xzf "$RAW_DIR/$archive" -C "$RAW_DIR/extracted" --wildcards "*$prefix.$SRC" "*$prefix.$TGT" \
                || die "could not unpack $prefix.{$SRC,$TGT} from $RAW_DIR/$archive (remove it to download again)"
            found="$(find "$RAW_DIR/extracted" -name "$prefix.$SRC" -print -quit)"
            [[ -n "$found" ]] || die "$RAW_DIR/$archive has no $prefix.$SRC (remove it to download again)"
            corpora+=("${found%."$SRC"}")
        done
        python -m mega_fairseq.data.mt concat "$RAW_DIR/train" "${corpora[@]}" --src "$SRC" --tgt "$TGT"
    fi
    python -m mega_fairseq.data.mt fetch-eval "$RAW_DIR" --src "$SRC" --tgt "$TGT" \
        || die "could not fetch newstest2013/newstest2014; $hint"
fi

say "checking $RAW_DIR"
python -m mega_fairseq.data.mt check "$RAW_DIR" --src "$SRC" --tgt "$TGT" --splits "${SPLITS[@]}"

if [[ "${DRY_RUN:-0}" == 1 ]]; then
    say "DRY_RUN=1: would normalise, train a $VOCAB_SIZE-piece $SPM_TYPE sentencepiece model, encode \
(training pairs: CLEAN_RATIO=$CLEAN_RATIO MAX_LEN=$MAX_LEN) and binarise $RAW_DIR into $OUT_DIR"
    exit 0
fi

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
