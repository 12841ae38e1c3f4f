"""The examples of a split as arrays, checked: from a release format (:mod:`.classification`'s
readers) or from fairseq's binarised form (``input0/``, ``input1/``, ``label/``, ``meta.json``).

Every example is checked while loading, before training starts: labels are integers below
``--num-classes``, inputs are not empty and not longer than ``--max-positions`` (unless
``--shorten-method truncate``); errors name the file and line (or example).
"""

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, TruncateDataset, data_utils

from .classification import DataError, Format, check_length, parse_label, text_lines
from .input_types import INPUT_TYPES


class ArrayListDataset(FairseqDataset):
    """Examples held as numpy arrays (in memory, or rows of a memory map); items are tensors."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.sizes = np.array([len(a) for a in arrays], dtype=np.int64)

    def __getitem__(self, index):
        return torch.from_numpy(np.array(self.arrays[index]))

    def __len__(self):
        return len(self.arrays)

    def num_tokens(self, index):
        return self.sizes[index]

    def size(self, index):
        return self.sizes[index]


def waveform_statistics(clips) -> Tuple[float, float]:
    """Mean and (unbiased) standard deviation over every sample of ``clips``."""
    count = total = total_square = 0.0
    for clip in clips:
        values = np.asarray(clip, dtype=np.float64)
        count += values.size
        total += values.sum()
        total_square += np.square(values).sum()
    if count < 2:
        raise DataError("no training samples to compute the waveform statistics from")
    mean = total / count
    variance = max(total_square - count * mean * mean, 0.0) / (count - 1)
    return float(mean), float(np.sqrt(variance))


def check_label(label: int, cfg, where: str):
    if not 0 <= label < cfg.num_classes:
        raise DataError(f"{where}: the label {label} is outside the {cfg.num_classes} classes "
                        f"(0-{cfg.num_classes - 1}; --num-classes)")


def load_split(cfg, fmt: Format, data: Path, split: str, dictionary: Optional[Dictionary]):
    """(inputs, labels) of a split: ``inputs[k]`` holds input k (0, or 1 for the second document
    of a pair) of every example, as arrays or a fairseq dataset; labels an int64 array."""
    count = 2 if cfg.paired else 1
    input_type = INPUT_TYPES[str(cfg.input_type)]
    if fmt.read is None:
        return _load_binarised(cfg, data, split, count)
    inputs: List[List[np.ndarray]] = [[] for _ in range(count)]
    labels = []
    for record in fmt.read(data, split, cfg):
        check_label(record.label, cfg, record.where)
        for k, value in enumerate(record.inputs):
            array = input_type.ids_or_values(value, dictionary, record.where)
            inputs[k].append(array[:check_length(len(array), cfg, record.where)])
        labels.append(record.label)
    if not labels:
        raise DataError(f"{data}: the {split} split is empty")
    return inputs, np.array(labels, dtype=np.int64)


def _binarised_input(prefix: Path, stored_as: str) -> Tuple[FairseqDataset, Path]:
    """(the dataset, its file) of one binarised input: fixed-length rows of a numpy memory map
    (``npy``), or fairseq's mmap indexed dataset (``indexed``)."""
    if stored_as == "npy":
        path = prefix.with_suffix(".npy")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        return ArrayListDataset(np.load(path, mmap_mode="r")), path
    dataset = data_utils.load_indexed_dataset(str(prefix), None, "mmap")
    if dataset is None:
        raise FileNotFoundError(f"{prefix}.bin/.idx: no such binarised data")
    return dataset, Path(f"{prefix}.bin")


def _load_binarised(cfg, data: Path, split: str, count: int):
    inputs = []
    for k in range(count):
        dataset, path = _binarised_input(data / f"input{k}" / split, INPUT_TYPES[str(cfg.input_type)].binarised)
        sizes = np.asarray(dataset.sizes, dtype=np.int64)
        for index in np.flatnonzero((sizes == 0) | (sizes > cfg.max_positions))[:1]:
            check_length(int(sizes[index]), cfg, f"{path} (example {index})")
        if sizes.size and sizes.max() > cfg.max_positions:
            dataset = TruncateDataset(dataset, cfg.max_positions)
        inputs.append(dataset)
    label_file = data / "label" / f"{split}.label"
    if not label_file.is_file():
        raise FileNotFoundError(f"{label_file}: no such file")

    labels = []
    for number, line in text_lines(label_file):
        where = f"{label_file}:{number}"
        label = parse_label(line.strip(), where)
        check_label(label, cfg, where)
        labels.append(label)
    if len(labels) != len(inputs[0]) or any(len(d) != len(labels) for d in inputs):
        raise DataError(f"{label_file}: {len(labels)} labels for {[len(d) for d in inputs]} inputs")
    return inputs, np.array(labels, dtype=np.int64)
