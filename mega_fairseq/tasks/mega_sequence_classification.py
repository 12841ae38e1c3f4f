"""``mega_sequence_classification``: one task for every sequence classification benchmark.

The input type (``tokens``, ``bytes``, ``pixels``, ``waveform``; ``--paired`` for document
pairs) says how an example becomes model input; the data folder is either fairseq's binarised
form (what ``scripts/prepare_lra.sh``, ``scripts/prepare_sc.sh`` and fairseq-preprocess write) or
a format read directly (:mod:`mega_fairseq.data.classification`: ListOps TSVs, ``aclImdb``, AAN
TSVs, CIFAR-10 pickles, Pathfinder PNGs, Speech Commands WAVs, a user's text TSVs); what each
input type means is :mod:`mega_fairseq.data.input_types`. Every example is checked while loading
(:mod:`mega_fairseq.data.examples`), before training starts: labels are integers below
``--num-classes`` or words of the data's label dictionary (``label/dict.txt``, or the labels of
``train.tsv``, as many as ``--num-classes``), inputs are not empty and not longer than
``--max-positions`` (unless ``--shorten-method truncate``), pixels are 0-255 and images all of one
size; errors name the file and line.

Batches: ``net_input`` holds ``src_tokens`` / ``src_lengths`` (and ``pair_tokens`` /
``pair_lengths`` for pairs), right-padded; pixels are floats, (value / 255 - mean) / std;
waveforms are standardised with the mean and standard deviation of the training samples.
Use it with ``--criterion sentence_prediction`` (loss and accuracy per split).
"""

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
from fairseq.data import (BaseWrapperDataset, Dictionary, FairseqDataset, IdDataset, NestedDictionaryDataset,
                          NumelDataset, NumSamplesDataset, RawLabelDataset, RightPadDataset, SortDataset, data_utils)
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II

from ..data.classification import FORMATS, META_FILE, Format, TextRules, detect_format, speech_words
from ..data.examples import (ArrayListDataset, LabelDictionary, binarised_text_rules, label_dictionary, load_split,
                             waveform_statistics)
from ..data.input_types import INPUT_TYPES
from .splits import TrainingSplit

logger = logging.getLogger(__name__)


@dataclass
class SequenceClassificationConfig(FairseqDataclass):
    data: str = field(default="", metadata={"help": "data folder: fairseq's binarised form (input0/, label/) or a "
                                                    "release format (ListOps TSVs, aclImdb, AAN TSVs, "
                                                    "cifar-10-batches-py, a Pathfinder folder), or text TSVs "
                                                    "(train.tsv, valid.tsv, test.tsv)"})
    input_type: ChoiceEnum(list(INPUT_TYPES)) = field(
        default="tokens", metadata={"help": ", ".join(f"{t.name} ({t.description})" for t in INPUT_TYPES.values())})
    paired: bool = field(default=False, metadata={"help": "each example is a pair of documents (LRA Retrieval)"})
    num_classes: int = field(default=2, metadata={"help": "number of classes; labels are 0 .. num_classes-1, or "
                                                          "the words of the data's label dictionary"})
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
    sentencepiece_model: str = field(
        default="", metadata={"help": "text TSVs read as tokens: the sentencepiece model (.model file) whose pieces "
                                      "are the tokens (default: whitespace-separated words)"})
    seed: int = II("common.seed")
    # the split trained on (the others are batched without dropping any example)
    train_subset: str = II("dataset.train_subset")


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

    def __init__(self, cfg: SequenceClassificationConfig, fmt: Format, dictionary: Optional[Dictionary],
                 labels: Optional[LabelDictionary] = None):
        super().__init__(cfg)
        self.format = fmt
        self.dictionary = dictionary
        self.labels = labels  # the label words of the classes, where the data have a label dictionary
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
        if declared is not None and input_type not in declared[0]:
            raise ValueError(f"--input-type {input_type} but {data} holds {' or '.join(declared[0])} "
                             f"({fmt.description})")
        if declared is not None and declared[1] != cfg.paired:
            raise ValueError(f"{'--paired' if cfg.paired else 'no --paired'} but {data} holds "
                             f"{'pairs' if declared[1] else 'single documents'} ({fmt.description})")
        if cfg.num_classes < 2:
            raise ValueError(f"--num-classes must be at least 2, got {cfg.num_classes}")
        if fmt.name == "speech_commands" and len(speech_words(str(cfg.words))) != cfg.num_classes:
            raise ValueError(f"--words {cfg.words} has {len(speech_words(str(cfg.words)))} words but --num-classes is "
                             f"{cfg.num_classes}")
        # read once for the dictionary and the labels
        train_records = lru_cache(maxsize=1)(lambda: list(fmt.read(data, "train", cfg))) if fmt.read else None
        dictionary = INPUT_TYPES[input_type].dictionary(data, train_records)
        labels = label_dictionary(data, fmt, train_records)
        if labels is not None:
            labels.check_count(cfg.num_classes)
        logger.info(f"{data}: {fmt.description}; {input_type}{' pairs' if cfg.paired else ''}, "
                    f"{cfg.num_classes} classes{': ' + ' '.join(labels.words) if labels else ''}")
        return cls(cfg, fmt, dictionary, labels)

    @property
    def data_path(self) -> Path:
        return Path(str(self.cfg.data).split(":")[0])

    @property
    def text_rules(self) -> TextRules:
        """How a text becomes token ids as in this task's data (the hub encodes text by them)."""
        if self.format.read is not None:
            return self.format.text_rules(self.cfg)
        if str(self.cfg.input_type) == "tokens":
            return binarised_text_rules(self.data_path)
        return TextRules()  # bytes and real values are not split into tokens

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
            inputs, labels = load_split(self.cfg, self.format, self.data_path, split, self.dictionary, self.labels)
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
            if INPUT_TYPES[str(self.cfg.input_type)].real_valued:
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


def _declared(data: Path, fmt: Format) -> Optional[Tuple[Tuple[str, ...], bool]]:
    """(the input types it is read as, paired) of a data folder: from the release format, or from meta.json."""
    if fmt.read is not None:
        return fmt.input_types, fmt.paired(data)
    meta = data / META_FILE
    if meta.is_file():
        values = json.loads(meta.read_text())
        return (values["input_type"],), bool(values["paired"])
    return None
