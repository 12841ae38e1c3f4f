"""Binarise one Long Range Arena task from its release files (``scripts/prepare_lra.sh`` runs this
into a temporary folder).

    python -m mega_fairseq.data.lra TASK RAW_DIR OUT_DIR

TASK is one of listops, text, retrieval, image, pathfinder, pathx; RAW_DIR the release folder the
``mega_sequence_classification`` task reads directly (``listops-1000``, ``aclImdb``, ``tsv_data``,
``cifar-10-batches-py``, a ``pathfinder32/<difficulty>`` or ``pathfinder128/<difficulty>`` folder).
OUT_DIR receives fairseq's binarised form: ``input0/`` (and ``input1/`` for pairs) with
``dict.txt`` and ``{train,valid,test}.{bin,idx}``, ``label/{split}.label`` (one class per line)
and ``meta.json``. Every example is checked as training would check it (labels, lengths, pixels).
"""

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from fairseq.data import indexed_dataset

from .classification import LRA_TASKS, META_FILE, SPLITS, DataError, detect_format
from .examples import load_split
from .input_types import INPUT_TYPES
from .progress import progress

PROG = "python -m mega_fairseq.data.lra"


def binarise(task: str, raw: Path, out: Path):
    spec = LRA_TASKS[task]
    fmt = detect_format(raw)
    if fmt.name != spec.data_format:
        raise DataError(f"{raw}: holds {fmt.description}, but the {task} task reads {spec.data_format} data")
    cfg = SimpleNamespace(**spec._asdict())
    dictionary = INPUT_TYPES[spec.input_type].dictionary(raw, lambda: fmt.read(raw, "train", cfg))
    count = 2 if spec.paired else 1
    for k in range(count):
        (out / f"input{k}").mkdir(parents=True, exist_ok=True)
        if dictionary is not None:
            dictionary.save(str(out / f"input{k}" / "dict.txt"))
    (out / "label").mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        print(f"{split}: reading and checking {raw}", file=sys.stderr, flush=True)
        inputs, labels = load_split(cfg, fmt, raw, split, dictionary)
        for k, arrays in enumerate(inputs):
            prefix = out / f"input{k}" / split
            vocab = len(dictionary) if dictionary is not None else 256
            builder = indexed_dataset.make_builder(f"{prefix}.bin", impl="mmap", vocab_size=vocab)
            for array in progress(arrays, desc=f"{split} input{k}", unit="example"):
                builder.add_item(torch.from_numpy(np.asarray(array, dtype=np.int64)))
            builder.finalize(f"{prefix}.idx")
        (out / "label" / f"{split}.label").write_text("".join(f"{label}\n" for label in labels))
        counts[split] = len(labels)
        print(f"{split}: {len(labels)} examples, per class {np.bincount(labels, minlength=spec.num_classes).tolist()}",
              flush=True)
    meta = dict(task=task, source=str(raw), data_format=fmt.name, input_type=spec.input_type, paired=spec.paired,
                num_classes=spec.num_classes, max_positions=spec.max_positions, shorten_method=spec.shorten_method,
                examples=counts)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=sorted(LRA_TASKS))
    parser.add_argument("raw_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        binarise(args.task, args.raw_dir, args.out_dir)
    except (DataError, FileNotFoundError) as error:
        sys.exit(f"{PROG}: error: {error}")


if __name__ == "__main__":
    main()
