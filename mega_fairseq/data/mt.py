"""Text processing for the WMT16 En-De recipe (scripts/prepare_wmt16_en_de.sh, scripts/eval_bleu.sh).

Subcommands (each prints `python -m mega_fairseq.data.mt: error: ...` naming the file and line, and
exits 2, on bad input):

    deps                  check that sacremoses, sentencepiece and sacrebleu import
    check RAW_DIR         every split's source and target exist, are UTF-8, have no empty line and
                          the same number of lines
    fetch-eval DIR        newstest2013 (valid) and newstest2014 (test, the full 3003 sentences) as
                          plain text, through sacrebleu's test-set downloader
    concat OUT_PREFIX P.. join parallel corpora P.{src,tgt} into OUT_PREFIX.{src,tgt}, dropping
                          pairs with an empty side (the public training corpora have some)
    normalise             Moses punctuation normalisation (sacremoses' MosesPunctNormalizer, the
                          normalize-punctuation.perl step) then non-printing characters to spaces
                          (remove-non-printing-char.perl)
    train-spm             a joint sentencepiece model on the normalised training text
    encode                sentencepiece pieces for a source/target pair of files, optionally
                          dropping training pairs that are too long or too unequal in length
                          (clean-corpus-n.perl)
    score                 BLEU of fairseq-generate's output: SacreBLEU on detokenised text, and
                          tokenized BLEU with compound splitting

Lines are split on "\\n" only (a stray carriage return or Unicode line separator inside a line
does not start a new one), as fairseq-preprocess will read what this script writes.
"""

import argparse
import os
import re
import struct
import sys
from pathlib import Path

from .progress import progress

PROG = "python -m mega_fairseq.data.mt"
SPLITS = ("train", "valid", "test")
# characters that str.splitlines or universal-newline reading treat as line ends
LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
COMPOUND = re.compile(r"(\S)-(\S)")
# sacrebleu's names of the paper's evaluation sets ("wmt14" alone is the filtered 2737-sentence version)
EVAL_SETS = {"valid": "wmt13", "test": "wmt14/full"}


class InputError(Exception):
    pass


def fail(message: str):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def say(message: str):
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- dependencies


def import_sacremoses():
    try:
        import sacremoses
    except ImportError:
        fail("the Python package sacremoses is missing (Moses punctuation normalisation and tokenisation): "
             "pip install sacremoses")
    return sacremoses


def import_sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        fail("the Python package sentencepiece is missing: pip install sentencepiece")
    return sentencepiece


def import_sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        fail("the Python package sacrebleu is missing: pip install sacrebleu")
    return sacrebleu


# ---------------------------------------------------------------- reading and checking


def iter_lines(path: Path):
    """(line number, text) of each line, split on "\\n" only, without its line end; raises InputError
    naming the file and line for text that is not UTF-8."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            raw = raw.rstrip(b"\n")
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}: line {number} is not valid UTF-8 ({e.reason} at byte {e.start})")


def read_lines(path: Path) -> list:
    return [text for _, text in iter_lines(path)]


def count_lines(path: Path) -> int:
    """Line count as iter_lines counts (a last line without a line end counts)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def check_text(path: Path) -> int:
    """Number of lines; InputError on the first empty (or blank) line or bad UTF-8."""
    empty, lines = [], 0
    for number, text in iter_lines(path):
        lines = number
        if not text.strip():
            empty.append(number)
    if empty:
        more = f" (and {len(empty) - 1} more empty lines)" if len(empty) > 1 else ""
        raise InputError(f"{path}: line {empty[0]} is empty{more}; every line must hold a sentence "
                         f"(remove the pair from both sides)")
    if lines == 0:
        raise InputError(f"{path} is empty")
    return lines


def check_split(raw_dir: Path, split: str, src: str, tgt: str) -> int:
    paths = [raw_dir / f"{split}.{src}", raw_dir / f"{split}.{tgt}"]
    for path in paths:
        if not path.is_file():
            raise InputError(f"missing {path.name} in {raw_dir} (expected {split}.{src} and {split}.{tgt}, "
                             f"plain text, one sentence per line)")
    counts = [check_text(path) for path in paths]
    if counts[0] != counts[1]:
        raise InputError(f"{paths[0]} has {counts[0]} lines but {paths[1]} has {counts[1]}: "
                         f"source and target must be parallel, line by line")
    return counts[0]


def cmd_check(args):
    raw_dir = Path(args.raw_dir)
    if not raw_dir.is_dir():
        raise InputError(f"RAW_DIR '{raw_dir}' is not a directory")
    # all missing files first: the cheapest check, and the one to fix before anything else
    missing = [f"{split}.{lang}" for split in args.splits for lang in (args.src, args.tgt)
               if not (raw_dir / f"{split}.{lang}").is_file()]
    if missing:
        raise InputError(f"missing {', '.join(missing)} in {raw_dir} (expected "
                         f"{{{','.join(args.splits)}}}.{{{args.src},{args.tgt}}}, plain text, one sentence per line)")
    for split in args.splits:
        say(f"{split}: {check_split(raw_dir, split, args.src, args.tgt)} sentence pairs")


# ---------------------------------------------------------------- download helpers


def cmd_fetch_eval(args):
    """newstest2013 and newstest2014 through sacrebleu (it downloads and unpacks the SGML once)."""
    import_sacrebleu()
    from sacrebleu.utils import get_reference_files, get_source_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    langpair = f"{args.src}-{args.tgt}"
    for split, test_set in EVAL_SETS.items():
        if all((out / f"{split}.{lang}").is_file() for lang in (args.src, args.tgt)):
            continue
        try:
            source, reference = get_source_file(test_set, langpair), get_reference_files(test_set, langpair)[0]
        except (Exception, SystemExit) as e:  # sacrebleu exits on a failed download
            raise InputError(f"could not download {test_set} {langpair} with sacrebleu ({e!r}); place the "
                             f"{split} set as {split}.{args.src} and {split}.{args.tgt} in RAW_DIR yourself")
        for lang, path in ((args.src, source), (args.tgt, reference)):
            lines = read_lines(Path(path))
            write_atomic(out / f"{split}.{lang}", lines)
        say(f"{split}: {test_set} {langpair}, {len(lines)} sentences")


def cmd_concat(args):
    """Join corpora PREFIX.src/PREFIX.tgt; pairs with an empty side are dropped and counted."""
    outs = {lang: Path(f"{args.out_prefix}.{lang}") for lang in (args.src, args.tgt)}
    tmp = {lang: path.with_name(path.name + ".part") for lang, path in outs.items()}
    kept = dropped = 0
    with open(tmp[args.src], "w", encoding="utf-8", newline="\n") as fs, \
            open(tmp[args.tgt], "w", encoding="utf-8", newline="\n") as ft:
        for prefix in args.prefixes:
            paths = [Path(f"{prefix}.{args.src}"), Path(f"{prefix}.{args.tgt}")]
            counts = [count_lines(p) for p in paths]
            if counts[0] != counts[1]:
                raise InputError(f"{paths[0]} has {counts[0]} lines but {paths[1]} has {counts[1]}")
            pairs = zip(iter_lines(paths[0]), iter_lines(paths[1]))
            for (_, s), (_, t) in progress(pairs, total=counts[0], desc=Path(prefix).name, unit="pair"):
                s, t = LINE_BREAKS.sub(" ", s), LINE_BREAKS.sub(" ", t)
                if s.strip() and t.strip():
                    fs.write(s + "\n")
                    ft.write(t + "\n")
                    kept += 1
                else:
                    dropped += 1
    for lang in outs:
        os.replace(tmp[lang], outs[lang])
    say(f"{args.out_prefix}: {kept} pairs ({dropped} with an empty side dropped)")


def write_atomic(path: Path, lines):
    part = path.with_name(path.name + ".part")
    with open(part, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(part, path)


# ---------------------------------------------------------------- normalisation

_NORMALISER = None


def _init_normaliser(lang):
    global _NORMALISER
    import regex

    from sacremoses import MosesPunctNormalizer

    normaliser = MosesPunctNormalizer(lang=lang)
    non_printing = regex.compile(r"\p{C}")

    def normalise(text):
        text = normaliser.normalize(LINE_BREAKS.sub(" ", text))
        return " ".join(non_printing.sub(" ", text).split())

    _NORMALISER = normalise


def _normalise_block(block):
    return [_NORMALISER(text) for text in block]


def normalise_lines(lines, lang):
    """The normalisation prepare_wmt16_en_de.sh applies (for tests and for the tokenized BLEU)."""
    import_sacremoses()
    _init_normaliser(lang)
    return _normalise_block(list(lines))


def blocks(path: Path, size: int):
    block = []
    for _, text in iter_lines(path):
        block.append(text)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def normalise_file(src: Path, out: Path, lang: str, workers: int):
    part = out.with_name(out.name + ".part")
    number = 0
    bar = progress(total=count_lines(src), desc=src.name, unit="line")
    with open(part, "w", encoding="utf-8", newline="\n") as f:
        if workers > 1:
            import multiprocessing

            pool = multiprocessing.Pool(workers, initializer=_init_normaliser, initargs=(lang,))
            results = pool.imap(_normalise_block, blocks(src, 10000))
        else:
            pool = None
            _init_normaliser(lang)
            results = map(_normalise_block, blocks(src, 10000))
        try:
            for block in results:
                for text in block:
                    number += 1
                    if not text:
                        raise InputError(f"{src}: line {number} is empty after punctuation normalisation "
                                         f"(it holds only control characters or spaces)")
                    f.write(text + "\n")
                bar.update(len(block))
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
    os.replace(part, out)


def cmd_normalise(args):
    import_sacremoses()
    for lang, src, out in args.file:
        say(f"normalising {src} ({lang})")
        normalise_file(Path(src), Path(out), lang, args.workers)


# ---------------------------------------------------------------- sentencepiece


def cmd_train_spm(args):
    spm = import_sentencepiece()
    say(f"training a joint sentencepiece model ({args.model_type}, {args.vocab_size} pieces) on "
        f"{', '.join(args.inputs)}")
    try:
        spm.SentencePieceTrainer.train(
            input=args.inputs, model_prefix=args.model_prefix, vocab_size=args.vocab_size,
            model_type=args.model_type, character_coverage=args.character_coverage, input_sentence_size=args.sentences,
            shuffle_input_sentence=True, num_threads=args.workers, minloglevel=1)
    except RuntimeError as e:
        raise InputError(f"sentencepiece training failed: {e}")


def encode_pair(model, ins, outs, workers: int, clean_ratio: float = 0, max_len: int = 0):
    """Encode a source/target pair of files; with clean_ratio/max_len drop pairs the way
    clean-corpus-n.perl does (lengths in pieces)."""
    counts = [count_lines(p) for p in ins]
    if counts[0] != counts[1]:
        raise InputError(f"{ins[0]} has {counts[0]} lines but {ins[1]} has {counts[1]}")
    parts = [p.with_name(p.name + ".part") for p in outs]
    kept = dropped = 0
    with open(parts[0], "w", encoding="utf-8", newline="\n") as fs, \
            open(parts[1], "w", encoding="utf-8", newline="\n") as ft, \
            progress(total=counts[0], desc=ins[0].name, unit="pair") as bar:
        for src_block, tgt_block in zip(blocks(ins[0], 10000), blocks(ins[1], 10000)):
            src_pieces = model.encode(src_block, out_type=str, num_threads=workers)
            tgt_pieces = model.encode(tgt_block, out_type=str, num_threads=workers)
            for s, t in zip(src_pieces, tgt_pieces):
                if (max_len and (len(s) > max_len or len(t) > max_len)) or \
                        (clean_ratio and (len(s) > clean_ratio * len(t) or len(t) > clean_ratio * len(s))):
                    dropped += 1
                    continue
                fs.write(" ".join(s) + "\n")
                ft.write(" ".join(t) + "\n")
                kept += 1
            bar.update(len(src_block))
    for part, out in zip(parts, outs):
        os.replace(part, out)
    return kept, dropped


def cmd_encode(args):
    spm = import_sentencepiece()
    model = spm.SentencePieceProcessor(model_file=args.model)
    source, dest = Path(args.input), Path(args.output)
    dest.mkdir(parents=True, exist_ok=True)
    for split in args.splits:
        clean = split in args.clean_splits
        kept, dropped = encode_pair(model, [source / f"{split}.{args.src}", source / f"{split}.{args.tgt}"],
                                    [dest / f"{split}.{args.src}", dest / f"{split}.{args.tgt}"], args.workers,
                                    args.clean_ratio if clean else 0, args.max_len if clean else 0)
        cleaning = f", {dropped} dropped (length ratio over {args.clean_ratio} or longer than {args.max_len} " \
                   f"pieces)" if clean else ""
        say(f"{split}: {kept} pairs encoded{cleaning}")


# ---------------------------------------------------------------- BLEU


def compound_split(text: str) -> str:
    """Split hyphenated compounds as fairseq's get_compound_split_bleu.sh does: a-b -> a ##AT##-##AT## b."""
    return COMPOUND.sub(r"\1 ##AT##-##AT## \2", text)


def tokenize_for_bleu(lines, lang: str) -> list:
    """Moses punctuation normalisation and tokenisation (no escaping, hyphens kept in words), then
    compound splitting: the text multi-bleu.perl scores in the tokenized-BLEU convention."""
    sacremoses = import_sacremoses()
    tokenizer = sacremoses.MosesTokenizer(lang=lang)
    return [compound_split(tokenizer.tokenize(text, return_str=True, escape=False))
            for text in normalise_lines(lines, lang)]


def corpus_bleu_tokenized(hyps, refs):
    """multi-bleu.perl on already tokenised text: whitespace tokens, case-sensitive, no smoothing."""
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(hyps, [refs])


def tokenized_bleu(hyps, refs, lang: str):
    return corpus_bleu_tokenized(tokenize_for_bleu(hyps, lang), tokenize_for_bleu(refs, lang))


def sacre_bleu(hyps, refs):
    """SacreBLEU's default BLEU on detokenised text; returns (score object, signature)."""
    import_sacrebleu()
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    return bleu.corpus_score(hyps, [refs]), str(bleu.get_signature())


def parse_generate(path: Path) -> dict:
    """{'S': {id: text}, 'T': {...}, 'H': {...}, 'D': {...}} from fairseq-generate's output (the
    first, best, hypothesis of each sentence; D- lines are the hypotheses decoded by the
    sentencepiece model)."""
    found = {"S": {}, "T": {}, "H": {}, "D": {}}
    line_re = re.compile(r"^([STHD])-(\d+)\t(.*)$")
    for number, text in iter_lines(path):
        m = line_re.match(text)
        if not m:
            continue
        kind, sid, rest = m.group(1), int(m.group(2)), m.group(3)
        if kind in "HD":
            score, sep, rest = rest.partition("\t")
            if not sep:
                raise InputError(f"{path}: line {number}: an {kind}- line without a score and a hypothesis")
        if kind in "HD" and sid in found[kind]:
            continue  # --nbest > 1: keep the best
        if sid in found[kind]:
            raise InputError(f"{path}: line {number}: a second {kind}-{sid} line")
        found[kind][sid] = rest
    return found


def in_order(entries: dict, expected: int, what: str, path: Path) -> list:
    missing = [i for i in range(expected) if i not in entries]
    extra = sorted(i for i in entries if not 0 <= i < expected)
    if missing or extra:
        detail = f"missing ids {missing[:10]}" if missing else f"unexpected ids {extra[:10]}"
        raise InputError(f"{path} has {len(entries)} {what} for {expected} source sentences ({detail}): "
                         f"was a sentence dropped (too long for the model? raise MAX_TOKENS) or the run cut short?")
    return [entries[i] for i in range(expected)]


MMAP_MAGIC = b"MMIDIDX\x00\x00"


def dataset_size(bin_dir: Path, subset: str, src: str, tgt: str) -> int:
    """Sentences in a binarised split: the count in the header of fairseq's mmap index (magic,
    version <Q, dtype <B, count <Q); other formats through fairseq's loader."""
    prefix = bin_dir / f"{subset}.{src}-{tgt}.{src}"
    index = Path(f"{prefix}.idx")
    if not index.is_file():
        raise InputError(f"no subset '{subset}' in {bin_dir} (no {index.name})")
    with open(index, "rb") as f:
        header = f.read(26)
    if header[:9] == MMAP_MAGIC and len(header) == 26:
        return struct.unpack("<Q", header[18:26])[0]
    from fairseq.data import data_utils

    return len(data_utils.load_indexed_dataset(str(prefix), None))


def cmd_score(args):
    import_sacrebleu()
    import_sacremoses()
    data_dir, path = Path(args.data_dir), Path(args.generate_output)
    expected = dataset_size(data_dir / "bin", args.subset, args.src, args.tgt)
    found = parse_generate(path)
    hyps = in_order(found["D"], expected, "hypotheses", path)
    ref_path = data_dir / "ref" / f"{args.subset}.{args.tgt}"
    if ref_path.is_file():
        refs = read_lines(ref_path)
        if len(refs) != expected:
            raise InputError(f"{ref_path} has {len(refs)} lines but {data_dir / 'bin'} has {expected} "
                             f"{args.subset} sentences: DATA_DIR is inconsistent")
        ref_origin = str(ref_path)
    else:
        refs = in_order(found["T"], expected, "references (T- lines)", path)
        ref_origin = "the T- lines (the normalised, sentencepiece-decoded targets; no original " \
                     f"references at {ref_path})"
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / f"{args.subset}.hyp.{args.tgt}", hyps)
        write_atomic(out / f"{args.subset}.ref.{args.tgt}", refs)
    say(f"{len(hyps)} hypotheses for {expected} source sentences; references: {ref_origin}")
    tok = tokenized_bleu(hyps, refs, args.tgt)
    sacre, signature = sacre_bleu(hyps, refs)
    print(f"tokenized BLEU (compound split), details: {tok}")
    print(f"SacreBLEU, details: {sacre}")
    print(f"tokenized BLEU (compound split): {tok.score:.2f}")
    print(f"SacreBLEU: {sacre.score:.2f} (signature {signature})")


# ---------------------------------------------------------------- command line


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def pair(p):
        p.add_argument("--src", default="en")
        p.add_argument("--tgt", default="de")

    sub.add_parser("deps", help="check that sacremoses, sentencepiece and sacrebleu import")
    p = sub.add_parser("check", help="validate RAW_DIR")
    p.add_argument("raw_dir")
    p.add_argument("--splits", nargs="+", default=list(SPLITS))
    pair(p)
    p = sub.add_parser("fetch-eval", help="newstest2013/2014 as valid/test through sacrebleu")
    p.add_argument("out")
    pair(p)
    p = sub.add_parser("concat", help="join parallel corpora, dropping pairs with an empty side")
    p.add_argument("out_prefix")
    p.add_argument("prefixes", nargs="+")
    pair(p)
    p = sub.add_parser("normalise", help="Moses punctuation normalisation")
    p.add_argument("--file", nargs=3, action="append", required=True, metavar=("LANG", "IN", "OUT"))
    p.add_argument("--workers", type=int, default=1)
    p = sub.add_parser("train-spm", help="train a joint sentencepiece model")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--model-prefix", required=True)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--model-type", default="unigram", choices=["unigram", "bpe"])
    p.add_argument("--character-coverage", type=float, default=1.0,
                   help="share of the characters the vocabulary covers (sentencepiece's advice: 1.0 for "
                        "languages with small alphabets)")
    p.add_argument("--sentences", type=int, default=4_000_000, help="lines sampled for training (0: all)")
    p.add_argument("--workers", type=int, default=1)
    p = sub.add_parser("encode", help="sentencepiece-encode parallel splits")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True, help="folder of SPLIT.SRC and SPLIT.TGT text")
    p.add_argument("--output", required=True, help="folder for the pieces, same names")
    p.add_argument("--splits", nargs="+", default=list(SPLITS))
    p.add_argument("--clean-splits", nargs="*", default=["train"], help="splits to clean (default: train)")
    p.add_argument("--clean-ratio", type=float, default=0, help="drop pairs whose lengths differ by more (0: keep)")
    p.add_argument("--max-len", type=int, default=0, help="drop pairs with a side longer than this (0: keep)")
    p.add_argument("--workers", type=int, default=1)
    pair(p)
    p = sub.add_parser("score", help="BLEU of fairseq-generate output")
    p.add_argument("--generate-output", required=True)
    p.add_argument("--data-dir", required=True, help="prepare_wmt16_en_de.sh's OUT_DIR (bin/, ref/)")
    p.add_argument("--subset", default="test")
    p.add_argument("--output", help="also write the hypotheses and references here")
    pair(p)
    args = parser.parse_args(argv)
    try:
        if args.command == "deps":
            import_sacremoses()
            import_sentencepiece()
            import_sacrebleu()
        else:
            globals()["cmd_" + args.command.replace("-", "_")](args)
    except InputError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
