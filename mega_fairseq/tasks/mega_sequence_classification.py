"""``mega_sequence_classification``: one task for every sequence classification benchmark.

The input type (``tokens``, ``bytes``, ``pixels``, ``waveform``; ``--paired`` for document
pairs) says how an example becomes model input; the data folder is either fairseq's binarised
form (what ``scripts/prepare_lra.sh`` and ``scripts/prepare_sc.sh`` write) or a public release
format read directly (``classification_data``: ListOps TSVs, ``aclImdb``, AAN TSVs, CIFAR-10
pickles, Pathfinder PNGs, Speech Commands WAVs). Every example is checked while loading, before training starts: labels are integers below
``--num-classes``, inputs are not empty and not longer than ``--max-positions`` (unless
``--shorten-method truncate``), pixels are 0-255 and images all of one size; errors name the
file and line.

Batches: ``net_input`` holds ``src_tokens`` / ``src_lengths`` (and ``pair_tokens`` /
``pair_lengths`` for pairs), right-padded; pixels are floats, (value / 255 - mean) / std;
waveforms are standardised with the mean and standard deviation of the training samples.
Use it with ``--criterion sentence_prediction`` (loss and accuracy per split).
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
from fairseq.data import (BaseWrapperDataset, Dictionary, FairseqDataset, IdDataset, NestedDictionaryDataset,
                          NumelDataset, NumSamplesDataset, RawLabelDataset, RightPadDataset, SortDataset,
                          TruncateDataset, data_utils)
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from .classification_data import (FORMATS, INPUT_TYPES, DataError, Format, byte_dictionary, check_length,
                                  detect_format, parse_label, speech_words, text_lines, to_ids, token_dictionary)
from .splits import TrainingSplit

logger = logging.getLogger(__name__)


class BenchmarkTask(NamedTuple):
    """The data settings of one benchmark (the configs and the prepare script use them)."""

    data_format: str
    input_type: str
    paired: bool
    num_classes: int
    max_positions: int
    shorten_method: str = "none"
    pixel_mean: float = 0.5
    pixel_std: float = 0.5


# The six Long Range Arena tasks, as the paper's recipes set them up.
LRA_TASKS: Dict[str, BenchmarkTask] = {
    "listops": BenchmarkTask("listops", "tokens", False, 10, 2000),
    "text": BenchmarkTask("imdb", "bytes", False, 2, 4000, "truncate"),
    "retrieval": BenchmarkTask("aan", "bytes", True, 2, 4000, "truncate"),
    "image": BenchmarkTask("cifar10", "pixels", False, 10, 1024, pixel_mean=0.48, pixel_std=0.24),
    "pathfinder": BenchmarkTask("pathfinder", "pixels", False, 2, 1024),
    "pathx": BenchmarkTask("pathfinder", "pixels", False, 2, 128 * 128),
}

# Speech Commands SC10 on raw one-second 16 kHz clips, as the paper's recipe.
SPEECH_COMMANDS = BenchmarkTask("speech_commands", "waveform", False, 10, 16000)

META_FILE = "meta.json"  # written beside the binarised data: its input type, pairing and classes


@dataclass
class SequenceClassificationConfig(FairseqDataclass):
    data: str = field(default="", metadata={"help": "data folder: fairseq's binarised form (input0/, label/) or a "
                                                    "release format (ListOps TSVs, aclImdb, AAN TSVs, "
                                                    "cifar-10-batches-py, a Pathfinder folder)"})
    input_type: ChoiceEnum(INPUT_TYPES) = field(
        default="tokens", metadata={"help": "tokens (a dictionary), bytes (UTF-8 bytes), pixels (0-255 values), "
                                            "waveform (audio samples)"})
    paired: bool = field(default=False, metadata={"help": "each example is a pair of documents (LRA Retrieval)"})
    num_classes: int = field(default=2, metadata={"help": "number of classes; labels are 0 .. num_classes-1"})
    max_positions: int = field(default=1024, metadata={"help": "the longest input (per document of a pair)"})
    shorten_method: ChoiceEnum(["none", "truncate"]) = field(
        default="none", metadata={"help": "none: an input longer than --max-positions is an error; truncate: "
                                          "keep its first --max-positions items"})
    data_format: ChoiceEnum(["auto", *FORMATS]) = field(
        default="auto", metadata={"help": "layout of the data folder (auto: detected)"})
    pixel_mean: float = field(default=0.5, metadata={"help": "pixels enter as (value / 255 - mean) / std"})
    pixel_std: float = field(default=0.5, metadata={"help": "pixels enter as (value / 255 - mean) / std"})
    words: str = field(default="sc10", metadata={"help": "Speech Commands classes: sc10 (yes, no, up, down, left, "
                                                         "right, on, off, stop, go), all (the 35 words of v0.02), "
                                                         "or a comma-separated list"})
    split_protocol: ChoiceEnum(["lists", "random"]) = field(
        default="random", metadata={"help": "Speech Commands splits: random, the paper's SC10 protocol (the official "
                                            "code's stratified random 70/15/15 split, after dropping short clips), or "
                                            "lists, the release's validation_list.txt and testing_list.txt"})
    short_clips: ChoiceEnum(["drop", "pad"]) = field(
        default="drop", metadata={"help": "Speech Commands clips shorter than --max-positions samples: dropped (the "
                                          "official SC10 protocol) or padded with zeros at the end"})
    resample: bool = field(default=False, metadata={"help": "resample audio that is not 16 kHz (otherwise an error)"})
    seed: int = II("common.seed")
    # the split trained on (the others are batched without dropping any example)
    train_subset: str = II("dataset.train_subset")


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


class Standardized(BaseWrapperDataset):
    """Real values as floats, (value * scale - mean) / std: pixels (scale 1/255, the official
    --pixel-normalization) and waveforms (the training samples' mean and std)."""

    def __init__(self, dataset, scale: float, mean: float, std: float):
        super().__init__(dataset)
        self.scale, self.mean, self.std = scale, mean, std

    def __getitem__(self, index):
        return (self.dataset[index].float() * self.scale - self.mean) / self.std


@register_task("mega_sequence_classification", dataclass=SequenceClassificationConfig)
class SequenceClassificationTask(TrainingSplit, FairseqTask):
    """Sequence (or sequence pair) classification from binarised or release-format data."""

    def __init__(self, cfg: SequenceClassificationConfig, fmt: Format, dictionary: Optional[Dictionary]):
        super().__init__(cfg)
        self.format = fmt
        self.dictionary = dictionary
        self._loaded: Dict[str, tuple] = {}  # splits already read from release files
        self.standardization = (1.0 / 255.0, cfg.pixel_mean, cfg.pixel_std)
        if str(cfg.input_type) == "waveform":
            self.standardization = (1.0, *self._waveform_statistics())

    @classmethod
    def setup_task(cls, cfg: SequenceClassificationConfig, **kwargs):
        data = Path(str(cfg.data).split(":")[0])
        fmt = FORMATS[str(cfg.data_format)] if str(cfg.data_format) != "auto" else detect_format(data)
        input_type = str(cfg.input_type)
        declared = _declared(data, fmt)
        if declared is not None and (declared[0] != input_type or declared[1] != cfg.paired):
            raise ValueError(f"--input-type {input_type}{' --paired' if cfg.paired else ''} but {data} holds "
                             f"{declared[0]}{' pairs' if declared[1] else ''} ({fmt.description})")
        if cfg.num_classes < 2:
            raise ValueError(f"--num-classes must be at least 2, got {cfg.num_classes}")
        if fmt.name == "speech_commands" and len(speech_words(str(cfg.words))) != cfg.num_classes:
            raise ValueError(f"--words {cfg.words} has {len(speech_words(str(cfg.words)))} words but --num-classes is "
                             f"{cfg.num_classes}")
        dictionary = None
        if input_type == "bytes":
            dictionary = byte_dictionary()
        elif input_type == "tokens":
            if (data / "input0" / "dict.txt").is_file():
                dictionary = Dictionary.load(str(data / "input0" / "dict.txt"))
            elif (data / "dict.txt").is_file():
                dictionary = Dictionary.load(str(data / "dict.txt"))
            elif fmt.read is not None:
                dictionary = token_dictionary(list(fmt.read(data, "train", cfg)))
            else:
                raise FileNotFoundError(f"{data / 'input0' / 'dict.txt'}: no such file (token inputs need a "
                                        f"dictionary)")
            logger.info(f"dictionary: {len(dictionary)} types")
        logger.info(f"{data}: {fmt.description}; {input_type}{' pairs' if cfg.paired else ''}, "
                    f"{cfg.num_classes} classes")
        return cls(cfg, fmt, dictionary)

    @property
    def data_path(self) -> Path:
        return Path(str(self.cfg.data).split(":")[0])

    def _waveform_statistics(self) -> Tuple[float, float]:
        """Mean and std of the training samples (the official normalisation; std + 1e-5)."""
        meta = self.data_path / META_FILE
        if self.format.read is None:
            if not meta.is_file():
                raise FileNotFoundError(f"{meta}: no such file (binarised waveforms keep their training statistics "
                                        f"there; make them with scripts/prepare_sc.sh)")
            values = json.loads(meta.read_text())
            return values["mean"], values["std"] + 1e-5
        self._loaded["train"] = load_split(self.cfg, self.format, self.data_path, "train", None)
        mean, std = waveform_statistics(self._loaded["train"][0][0])
        logger.info(f"training samples: mean {mean:.6g}, std {std:.6g}")
        return mean, std + 1e-5

    def load_dataset(self, split: str, epoch=1, combine=False, **kwargs):
        if split in self._loaded:
            inputs, labels = self._loaded.pop(split)
        else:
            inputs, labels = load_split(self.cfg, self.format, self.data_path, split, self.dictionary)
        dataset = self.build_dataset(inputs, labels)
        with data_utils.numpy_seed(self.cfg.seed + epoch):
            shuffle = np.random.permutation(len(dataset))
        # batches of similar lengths (fairseq shuffles the batches), random order within a length
        self.datasets[split] = SortDataset(dataset, sort_order=[shuffle, dataset.sizes[0]])
        logger.info(f"{split}: {len(dataset)} examples, {np.bincount(labels, minlength=self.cfg.num_classes)} "
                    f"per class")
        return self.datasets[split]

    def build_dataset(self, inputs, labels: np.ndarray) -> NestedDictionaryDataset:
        """The examples of ``inputs`` (as :func:`load_split` returns them) as model input, in their
        order: standardised real values, right-padded batches. The hub interface uses it too."""
        documents = []
        for arrays in inputs:
            dataset = arrays if isinstance(arrays, FairseqDataset) else ArrayListDataset(arrays)
            if str(self.cfg.input_type) in ("pixels", "waveform"):
                dataset = Standardized(dataset, *self.standardization)
                pad = 0.0
            else:
                pad = self.dictionary.pad()
            documents.append((dataset, pad))
        net_input = {"src_tokens": RightPadDataset(documents[0][0], pad_idx=documents[0][1]),
                     "src_lengths": NumelDataset(documents[0][0], reduce=False)}
        sizes = np.asarray(documents[0][0].sizes, dtype=np.int64)
        if len(documents) == 2:
            net_input.update(pair_tokens=RightPadDataset(documents[1][0], pad_idx=documents[1][1]),
                             pair_lengths=NumelDataset(documents[1][0], reduce=False))
            sizes = np.maximum(sizes, np.asarray(documents[1][0].sizes, dtype=np.int64))
        return NestedDictionaryDataset({
            "id": IdDataset(), "net_input": net_input, "target": RawLabelDataset(labels.tolist()),
            "nsentences": NumSamplesDataset(), "ntokens": NumelDataset(documents[0][0], reduce=True),
        }, sizes=[sizes])

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return None

    @property
    def label_dictionary(self):
        return None


def _declared(data: Path, fmt: Format) -> Optional[Tuple[str, bool]]:
    """(input type, paired) of a data folder: from the release format, or from meta.json."""
    if fmt.read is not None:
        return fmt.input_type, fmt.paired
    meta = data / META_FILE
    if meta.is_file():
        values = json.loads(meta.read_text())
        return values["input_type"], bool(values["paired"])
    return None


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
    input_type = str(cfg.input_type)
    if fmt.read is None:
        return _load_binarised(cfg, data, split, dictionary, count)
    inputs: List[List[np.ndarray]] = [[] for _ in range(count)]
    labels = []
    for record in fmt.read(data, split, cfg):
        check_label(record.label, cfg, record.where)
        for k, value in enumerate(record.inputs):
            ids = to_ids(value, input_type, dictionary, record.where)
            inputs[k].append(ids[:check_length(len(ids), cfg, record.where)])
        labels.append(record.label)
    if not labels:
        raise DataError(f"{data}: the {split} split is empty")
    return inputs, np.array(labels, dtype=np.int64)


def _load_binarised(cfg, data: Path, split: str, dictionary, count: int):
    inputs = []
    for k in range(count):
        prefix = data / f"input{k}" / split
        if str(cfg.input_type) == "waveform":  # fixed-length clips: rows of a numpy memory map
            path = prefix.with_suffix(".npy")
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
            dataset = ArrayListDataset(np.load(path, mmap_mode="r"))
        else:
            path = Path(f"{prefix}.bin")
            dataset = data_utils.load_indexed_dataset(str(prefix), None, "mmap")
            if dataset is None:
                raise FileNotFoundError(f"{prefix}.bin/.idx: no such binarised data")
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
