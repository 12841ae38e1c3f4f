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
# Downloads what is missing, then runs scripts/prepare_translation.sh --src en --tgt de RAW_DIR
# OUT_DIR: the checks (errors name the file and line), Moses punctuation normalisation, a joint
# sentencepiece model, cleaning of the training pairs, fairseq-preprocess --joined-dictionary, and
# an OUT_DIR that appears only once complete. Its options and environment (SPM_TYPE, CLEAN_RATIO,
# MAX_LEN, WORKERS, FORCE, KEEP_TEXT, DRY_RUN, ...) apply here too; see its --help.
#
# Options and environment:
#   --vocab-size N, VOCAB_SIZE=N  sentencepiece vocabulary size (default 32000)
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
SRC=en
TGT=de
[[ "$VOCAB_SIZE" =~ ^[1-9][0-9]*$ ]] || die "the vocabulary size must be a positive integer, got '$VOCAB_SIZE'"
check_out_dir "$OUT_DIR" "$RAW_DIR"  # before any download

if [[ -z "$RAW_DIR" ]]; then
    python -m mega_fairseq.data.mt deps
    RAW_DIR="$OUT_DIR.raw"
    dry_run_stop "download the WMT16 training corpora and fetch newstest2013/2014 into $RAW_DIR, then prepare $OUT_DIR"
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

prepare=("$(dirname "${BASH_SOURCE[0]}")/prepare_translation.sh" --vocab-size "$VOCAB_SIZE" --src "$SRC" --tgt "$TGT"
         "$RAW_DIR" "$OUT_DIR")
print_command "${prepare[@]}"  # its messages carry its name
exec "${prepare[@]}"
