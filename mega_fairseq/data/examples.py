"""The examples of a split as arrays, checked: from a release format (:mod:`.classification`'s
readers) or from fairseq's binarised form (``input0/``, ``input1/``, ``label/``, ``meta.json``).

Every example is checked while loading, before training starts: labels are integers below
``--num-classes`` or words of the label dictionary, inputs are not empty and not longer than
``--max-positions`` (unless ``--shorten-method truncate``); errors name the file and line (or
example).

Labels: a class is an integer, or, where the data have a label dictionary (:class:`LabelDictionary`:
``label/dict.txt``, or the training labels of a TSV folder), the row of its word in that
dictionary, as fairseq's ``sentence_prediction`` numbers them. The binarised labels are
``label/{split}.label`` (one label per line) or fairseq-preprocess's ``label/{split}.{bin,idx}``.
"""

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, TruncateDataset, data_utils

from .classification import (FORMATS, META_FILE, DataError, Format, Record, TextRules, check_length, parse_label,
                             sorted_labels, text_lines)
from .input_types import INPUT_TYPES

logger = logging.getLogger(__name__)


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


class LabelDictionary(NamedTuple):
    """The label words of the classes: class k is ``words[k]``, the k-th line of
    ``label/dict.txt`` (fairseq's dictionary format, ``word count``)."""

    words: Tuple[str, ...]
    source: str  # the file they were read from, for errors

    @classmethod
    def of_records(cls, records: Iterable[Record], source: str) -> "LabelDictionary":
        """The labels of the training records, in the order of :func:`~.classification.sorted_labels`."""
        return cls(tuple(sorted_labels(record.label for record in records)), source)

    @classmethod
    def load(cls, path: Path) -> "LabelDictionary":
        """``label/dict.txt``; fairseq-preprocess's padding symbols (``madeupword0000`` ...) are no classes."""
        symbols = Dictionary.load(str(path)).symbols[Dictionary().nspecial:]
        return cls(tuple(s for s in symbols if not s.startswith("madeupword")), str(path))

    def save(self, path: Path, labels: Iterable[str]):
        """Writes ``label/dict.txt`` with the count of each word in ``labels`` (fairseq's format)."""
        counts = Counter(labels)
        path.write_text("".join(f"{word} {counts[word]}\n" for word in self.words))

    def index(self, label: str, where: str) -> int:
        try:
            return self.words.index(label)
        except ValueError:
            raise DataError(f"{where}: the label {label!r} is not in the label dictionary ({self.source}: "
                            f"{', '.join(self.words[:20])})") from None

    def check_count(self, num_classes: int):
        if len(self.words) != num_classes:
            raise DataError(f"{self.source}: {len(self.words)} labels ({', '.join(self.words[:20])}) but "
                            f"--num-classes {num_classes}")


def label_dictionary(data: Path, fmt: Format, train_records: Optional[Callable[[], List[Record]]]):
    """The data's :class:`LabelDictionary`: ``label/dict.txt`` of binarised data, the training
    labels of a format with word labels; None where labels are integer classes."""
    if fmt.read is None:
        path = data / "label" / "dict.txt"
        return LabelDictionary.load(path) if path.is_file() else None
    if fmt.label_file:
        return LabelDictionary.of_records(train_records(), str(data / fmt.label_file))
    return None


def class_of(label, labels: Optional[LabelDictionary], cfg, where: str) -> int:
    """The class of a label: its row in ``labels``, or the integer class (checked against ``--num-classes``)."""
    label = labels.index(label, where) if labels is not None else label
    check_label(label, cfg, where)
    return label


def load_split(cfg, fmt: Format, data: Path, split: str, dictionary: Optional[Dictionary],
               labels: Optional[LabelDictionary] = None):
    """(inputs, labels) of a split: ``inputs[k]`` holds input k (0, or 1 for the second document
    of a pair) of every example, as arrays or a fairseq dataset; labels an int64 array of classes
    (through ``labels`` where the data have a label dictionary)."""
    count = 2 if cfg.paired else 1
    input_type = INPUT_TYPES[str(cfg.input_type)]
    if fmt.read is None:
        return _load_binarised(cfg, data, split, count, labels)
    text = fmt.text_rules(cfg)
    inputs: List[List[np.ndarray]] = [[] for _ in range(count)]
    classes = []
    for record in fmt.read(data, split, cfg):
        classes.append(class_of(record.label, labels, cfg, record.where))
        for k, value in enumerate(record.inputs):
            array = input_type.ids_or_values(value, dictionary, record.where, text)
            inputs[k].append(array[:check_length(len(array), cfg, record.where)])
    if not classes:
        raise DataError(f"{data}: the {split} split is empty")
    if text.unknown == "unk" and input_type.name == "tokens":
        _log_unknown(split, inputs, dictionary)
    return inputs, np.array(classes, dtype=np.int64)


def _log_unknown(split: str, inputs: List[List[np.ndarray]], dictionary: Dictionary):
    """How many tokens of a split are <unk> (words the training split does not hold)."""
    total = sum(len(array) for arrays in inputs for array in arrays)
    unknown = sum(int((array == dictionary.unk()).sum()) for arrays in inputs for array in arrays)
    if unknown:
        logger.info(f"{split}: {unknown} of {total} tokens ({100 * unknown / total:.1f}%) are not in the dictionary "
                    f"(<unk>)")


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


def _load_binarised(cfg, data: Path, split: str, count: int, labels: Optional[LabelDictionary]):
    inputs = []
    for k in range(count):
        dataset, path = _binarised_input(data / f"input{k}" / split, INPUT_TYPES[str(cfg.input_type)].binarised)
        sizes = np.asarray(dataset.sizes, dtype=np.int64)
        for index in np.flatnonzero((sizes == 0) | (sizes > cfg.max_positions))[:1]:
            check_length(int(sizes[index]), cfg, f"{path} (example {index})")
        if sizes.size and sizes.max() > cfg.max_positions:
            dataset = TruncateDataset(dataset, cfg.max_positions)
        inputs.append(dataset)
    classes, label_file = _binarised_labels(cfg, data / "label" / split, labels)
    if len(classes) != len(inputs[0]) or any(len(d) != len(classes) for d in inputs):
        raise DataError(f"{label_file}: {len(classes)} labels for {[len(d) for d in inputs]} inputs")
    return inputs, np.array(classes, dtype=np.int64)


def _binarised_labels(cfg, prefix: Path, labels: Optional[LabelDictionary]) -> Tuple[List[int], Path]:
    """(the classes, their file): ``PREFIX.label``, one label per line (words of ``labels``, or
    integer classes), or fairseq-preprocess's ``PREFIX.{bin,idx}`` of ``label/dict.txt`` ids."""
    label_file = Path(f"{prefix}.label")
    if label_file.is_file():
        classes = []
        for number, line in text_lines(label_file):
            where = f"{label_file}:{number}"
            label = line.strip() if labels is not None else parse_label(line.strip(), where)
            classes.append(class_of(label, labels, cfg, where))
        return classes, label_file
    dataset = data_utils.load_indexed_dataset(str(prefix), None, "mmap") if labels is not None else None
    if dataset is None:
        raise FileNotFoundError(f"{label_file}: no such file (nor fairseq-preprocess's {prefix}.bin/.idx with "
                                f"{prefix.parent / 'dict.txt'})")
    nspecial, eos = Dictionary().nspecial, Dictionary().eos()
    classes = []
    for index in range(len(dataset)):
        ids = [i for i in dataset[index].tolist() if i != eos]
        where = f"{prefix}.bin (example {index})"
        if len(ids) != 1 or not 0 <= ids[0] - nspecial < len(labels.words):
            raise DataError(f"{where}: ids {ids}, expected the id of one label of {labels.source}")
        classes.append(class_of(labels.words[ids[0] - nspecial], labels, cfg, where))
    return classes, Path(f"{prefix}.bin")


def binarised_text_rules(data: Path) -> TextRules:
    """How the texts of binarised data were made into ids, for the hub to encode text alike: as
    ``meta.json`` records (scripts/prepare_lra.sh; older folders: by their release format), or,
    without it, as fairseq-preprocess makes them: whitespace-separated words, unknown ones
    ``<unk>``, and ``</s>`` appended when the training examples end with it."""
    meta_file = data / META_FILE
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if "text" not in meta:
            return FORMATS[meta["data_format"]].text_rules(None)
        text = dict(meta["text"])
        if text["sentencepiece_model"]:  # stored beside meta.json
            text["sentencepiece_model"] = str(data / text["sentencepiece_model"])
        return TextRules(**text)
    return TextRules("whitespace", unknown="unk", append_eos=_ends_with_eos(data / "input0" / "train"))


def _ends_with_eos(prefix: Path, examples: int = 1000) -> bool:
    """Whether the first ``examples`` examples of binarised data all end with ``</s>``."""
    dataset = data_utils.load_indexed_dataset(str(prefix), None, "mmap")
    if dataset is None:
        raise FileNotFoundError(f"{prefix}.bin/.idx: no such binarised data")
    eos = Dictionary().eos()
    return len(dataset) > 0 and all(len(dataset[i]) and int(dataset[i][-1]) == eos
                                    for i in range(min(len(dataset), examples)))
