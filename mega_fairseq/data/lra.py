"""Binarise one Long Range Arena task, or a folder of text TSVs, from its files
(``scripts/prepare_lra.sh`` runs this into a temporary folder).

    python -m mega_fairseq.data.lra TASK RAW_DIR OUT_DIR [--input-type tokens|bytes] [--sentencepiece-model FILE]

TASK is one of listops, text, retrieval, image, pathfinder, pathx, or tsv; RAW_DIR the folder the
``mega_sequence_classification`` task reads directly (``listops-1000``, ``aclImdb``,
``tsv_data``, ``cifar-10-batches-py``, a ``pathfinder32/<difficulty>`` or
``pathfinder128/<difficulty>`` folder; for tsv a folder of ``train.tsv``, ``valid.tsv`` and
``test.tsv``, each row one text, or two for a pair, then a label word or integer). The tsv task
reads tokens (whitespace-separated words, or with ``--sentencepiece-model`` its pieces; words not
in training are ``<unk>``) or ``--input-type bytes``.

OUT_DIR receives fairseq's binarised form: ``input0/`` (and ``input1/`` for pairs) with
``dict.txt`` and ``{train,valid,test}.{bin,idx}``, ``label/{split}.label`` (one label per line:
the class, or for tsv the label word of ``label/dict.txt``, whose row k is class k) and
``meta.json`` (with the text rules the hub encodes text by, and for tsv a copy of the
sentencepiece model). Every example is checked as training would check it (labels, lengths,
pixels).
"""

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from fairseq.data import indexed_dataset

from .classification import FORMATS, LRA_TASKS, META_FILE, SPLITS, DataError, detect_format, tsv_paired
from .examples import label_dictionary, load_split
from .input_types import INPUT_TYPES
from .progress import progress

PROG = "python -m mega_fairseq.data.lra"
TSV = "tsv"
SENTENCEPIECE_FILE = "sentencepiece.model"  # the copy of --sentencepiece-model in OUT_DIR


def settings(task: str, raw: Path, input_type: str = "", sentencepiece_model: str = "") -> SimpleNamespace:
    """How RAW_DIR is read: the benchmark's settings, or for tsv the options given (no length
    limit: training's --max-positions applies; the classes are counted from the labels)."""
    fmt = detect_format(raw)
    expected = TSV if task == TSV else LRA_TASKS[task].data_format
    if fmt.name != expected:
        raise DataError(f"{raw}: holds {fmt.description}, but the {task} task reads {expected} data")
    if task != TSV:
        if input_type or sentencepiece_model:
            raise DataError(f"--input-type and --sentencepiece-model are options of the tsv task; the {task} task "
                            f"reads {LRA_TASKS[task].input_type}")
        return SimpleNamespace(**LRA_TASKS[task]._asdict())
    input_type = input_type or "tokens"
    if sentencepiece_model and input_type != "tokens":
        raise DataError(f"--sentencepiece-model makes tokens, but --input-type is {input_type}")
    return SimpleNamespace(data_format=TSV, input_type=input_type, paired=tsv_paired(raw), num_classes=None,
                           max_positions=sys.maxsize, shorten_method="none", sentencepiece_model=sentencepiece_model)


def binarise(task: str, raw: Path, out: Path, input_type: str = "", sentencepiece_model: str = ""):
    cfg = settings(task, raw, input_type, sentencepiece_model)
    fmt = FORMATS[cfg.data_format]
    train = lru_cache(maxsize=1)(lambda: list(fmt.read(raw, "train", cfg)))  # for the dictionary and the labels
    dictionary = INPUT_TYPES[cfg.input_type].dictionary(raw, train)
    labels = label_dictionary(raw, fmt, train)
    count = 2 if cfg.paired else 1
    for k in range(count):
        (out / f"input{k}").mkdir(parents=True, exist_ok=True)
        if dictionary is not None:
            dictionary.save(str(out / f"input{k}" / "dict.txt"))
    (out / "label").mkdir(parents=True, exist_ok=True)
    if labels is not None:
        cfg.num_classes = len(labels.words)
        labels.save(out / "label" / "dict.txt", (record.label for record in train()))
    counts, longest = {}, {}
    for split in SPLITS:
        print(f"{split}: reading and checking {raw}", file=sys.stderr, flush=True)
        inputs, classes = load_split(cfg, fmt, raw, split, dictionary, labels)
        for k, arrays in enumerate(inputs):
            prefix = out / f"input{k}" / split
            vocab = len(dictionary) if dictionary is not None else 256
            builder = indexed_dataset.make_builder(f"{prefix}.bin", impl="mmap", vocab_size=vocab)
            for array in progress(arrays, desc=f"{split} input{k}", unit="example"):
                builder.add_item(torch.from_numpy(np.asarray(array, dtype=np.int64)))
            builder.finalize(f"{prefix}.idx")
        names = labels.words if labels is not None else range(cfg.num_classes)
        (out / "label" / f"{split}.label").write_text("".join(f"{names[c]}\n" for c in classes))
        counts[split] = len(classes)
        longest[split] = max(len(array) for arrays in inputs for array in arrays)
        per_class = np.bincount(classes, minlength=cfg.num_classes).tolist()
        print(f"{split}: {len(classes)} examples, per class {per_class}, the longest input {longest[split]} items",
              flush=True)
    text = asdict(fmt.text_rules(cfg))
    if text["sentencepiece_model"]:
        shutil.copyfile(text["sentencepiece_model"], out / SENTENCEPIECE_FILE)
        text["sentencepiece_model"] = SENTENCEPIECE_FILE
    max_positions = cfg.max_positions if task != TSV else None
    meta = dict(task=task, source=str(raw), data_format=fmt.name, input_type=cfg.input_type, paired=cfg.paired,
                num_classes=cfg.num_classes, max_positions=max_positions, shorten_method=cfg.shorten_method,
                examples=counts, longest=longest, text=text)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=[*sorted(LRA_TASKS), TSV])
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--input-type", choices=("tokens", "bytes"), default="",
                        help="tsv: tokens (default) or bytes (UTF-8)")
    parser.add_argument("--sentencepiece-model", default="",
                        help="tsv: the sentencepiece model (.model file) whose pieces are the tokens (default: "
                             "whitespace-separated words)")
    args = parser.parse_args(argv)
    try:
        binarise(args.task, args.raw_dir, args.out_dir, args.input_type, args.sentencepiece_model)
    except (DataError, FileNotFoundError) as error:
        sys.exit(f"{PROG}: error: {error}")


if __name__ == "__main__":
    main()
