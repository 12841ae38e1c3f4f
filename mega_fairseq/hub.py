"""Python interfaces to trained models: one ``from_pretrained`` for every family (:class:`FromPretrained`).

- Language models and translation (``MegaLanguageModel.from_pretrained``,
  ``MegaTranslationModel.from_pretrained``): fairseq's own
  :class:`~fairseq.hub_utils.GeneratorHubInterface` (``.sample()``, ``.score()``,
  ``.translate()``, ``.generate()``), with fairseq's tokenizer and BPE hooks: pass
  ``bpe="sentencepiece", sentencepiece_model=PATH`` and ``.translate("raw text")`` encodes and
  decodes with that sentencepiece model.
- Sequence classifiers (``MegaSequenceClassifier.from_pretrained``, LRA and speech):
  :class:`ClassifierHubInterface`, whose ``.predict()`` takes raw examples (text, token lists,
  pixel arrays or image files, WAV files, pairs of them) and turns them into model input with the
  task's own readers and transforms (:mod:`mega_fairseq.data.input_types`,
  ``SequenceClassificationTask.build_dataset``), so that an example is seen exactly as training
  and fairseq-validate see it; ``.predict_label()`` gives the label words of the data's label
  dictionary.

``data_name_or_path`` is the data folder the model was trained on (binarised, or a release
folder for classifiers): it holds the dictionaries and, for waveforms, the training statistics.
Checkpoints are read by fairseq's loader, which the plugin makes weights-only
(:func:`mega_fairseq.fairseq_fixes.refuse_unsafe_checkpoints`): a checkpoint that would run code is refused.
"""

import json
from types import SimpleNamespace
from typing import List, Union

import numpy as np
import torch
from fairseq import hub_utils, utils
from torch import Tensor, nn

from .data.classification import META_FILE
from .data.classification import check_length
from .data.input_types import INPUT_TYPES


class FromPretrained:
    """``from_pretrained`` of every model family: the family's ``hub_interface`` (fairseq's
    GeneratorHubInterface, or ClassifierHubInterface) around the task and models that fairseq's
    ``hub_utils.from_pretrained`` loads. Unlike fairseq's ``BaseFairseqModel.from_pretrained``, it
    does not log the whole config."""

    hub_interface: type  # called as hub_interface(cfg, task, models)

    @classmethod
    def from_pretrained(cls, model_name_or_path, checkpoint_file: str = "model.pt", data_name_or_path: str = ".",
                        **kwargs):
        """``data_name_or_path``: the data folder the model was trained on; ``kwargs`` override the
        checkpoint's config (``bpe="sentencepiece", sentencepiece_model=PATH`` for translation)."""
        loaded = hub_utils.from_pretrained(model_name_or_path, checkpoint_file, data_name_or_path,
                                           archive_map=cls.hub_models(), **kwargs)
        return cls.hub_interface(loaded["args"], loaded["task"], loaded["models"])


class ClassifierHubInterface(nn.Module):
    """Predictions of a trained sequence classifier from raw examples.

    One example is, by the task's ``--input-type`` (its ``parse`` in
    :data:`~mega_fairseq.data.input_types.INPUT_TYPES`):

    - ``tokens``: a string (split as the ListOps reader splits it) or a list of tokens;
    - ``bytes``: a string (its UTF-8 bytes) or ``bytes``;
    - ``pixels``: an H x W array of 0-255 values (uint8, or floats on the same scale) or the path
      of an image file (read as the Pathfinder reader reads PNGs); it enters as
      ``(value / 255 - pixel_mean) / pixel_std``, the task's standardisation;
    - ``waveform``: the path of an audio file, read by the task's clip rules (mono, 16 kHz or
      ``resample``, cut to ``max_positions`` samples, short clips dropped or padded; for
      binarised data the rules ``meta.json`` records), standardised with the training statistics;
    - with ``--paired``: a tuple of two such documents.

    Text becomes tokens by the data's text rules (:attr:`SequenceClassificationTask.text_rules`):
    as its reader splits it (ListOps, TSV words or sentencepiece pieces), or for
    fairseq-preprocess data as fairseq-preprocess did (words, unknown ones ``<unk>``, ``</s>``
    appended).

    ``predict(example)`` returns the class (an int); ``predict([example, ...])`` a list of them. A
    list is always a batch: give one token list as ``predict([tokens])[0]``. ``predict_label``
    returns the classes' label words (:attr:`labels`).
    """

    def __init__(self, cfg, task, models: List[nn.Module]):
        super().__init__()
        if len(models) != 1:
            raise ValueError(f"a classifier hub takes one checkpoint, got {len(models)} (an ensemble)")
        self.cfg = cfg
        self.task = task
        self.model = models[0]
        self.model.eval()
        self.input_type = INPUT_TYPES[str(task.cfg.input_type)]
        self.paired = bool(task.cfg.paired)
        self.rules = _reading_rules(task)  # what parsing an audio file or a text needs
        self.register_buffer("_float_tensor", torch.tensor([0], dtype=torch.float))  # follows .to(device)

    @property
    def device(self) -> torch.device:
        return self._float_tensor.device

    @property
    def num_classes(self) -> int:
        return int(self.task.cfg.num_classes)

    @property
    def labels(self) -> List[str]:
        """The label word of each class: the data's label dictionary, or the class numbers."""
        if self.task.labels is not None:
            return list(self.task.labels.words)
        return [str(k) for k in range(self.num_classes)]

    def encode(self, example, where: str = "example") -> tuple:
        """One example as the task's arrays: a tuple of one array (two for a pair)."""
        if self.paired:
            if not isinstance(example, tuple) or len(example) != 2:
                raise ValueError(f"{where}: this model classifies pairs of documents (--paired): give a tuple "
                                 f"(first, second), not {type(example).__name__}")
            return tuple(self._document(doc, f"{where}, document {k + 1}") for k, doc in enumerate(example))
        return (self._document(example, where),)

    def _document(self, value, where: str) -> np.ndarray:
        parsed = self.input_type.parse(value, where, self.rules)
        array = self.input_type.ids_or_values(parsed, self.task.dictionary, where, self.rules.text)
        return array[:check_length(len(array), self.task.cfg, where)]

    @torch.no_grad()
    def logits(self, examples, batch_size: int = 32) -> Tensor:
        """Logits of one example (C) or of a list of examples (N x C), in float32."""
        single = not isinstance(examples, list)
        items = [examples] if single else examples
        if not items:
            return torch.zeros(0, self.num_classes)
        documents = [self.encode(example, f"example {index}") for index, example in enumerate(items)]
        inputs = [list(column) for column in zip(*documents)]
        dataset = self.task.build_dataset(inputs, np.zeros(len(items), dtype=np.int64))
        outputs = []
        for start in range(0, len(items), batch_size):
            batch = dataset.collater([dataset[i] for i in range(start, min(start + batch_size, len(items)))])
            batch = utils.apply_to_sample(lambda t: t.to(self.device), batch)
            outputs.append(self.model(**batch["net_input"])[0].float().cpu())
        logits = torch.cat(outputs)
        return logits[0] if single else logits

    def predict(self, examples, return_logits: bool = False, batch_size: int = 32) -> Union[int, List[int], Tensor]:
        """The class of one example, or the classes of a list of examples (the logits with
        ``return_logits``)."""
        logits = self.logits(examples, batch_size)
        if return_logits:
            return logits
        classes = logits.argmax(dim=-1)
        return classes.tolist() if isinstance(examples, list) else int(classes)

    def predict_label(self, examples, batch_size: int = 32) -> Union[str, List[str]]:
        """The label word of one example's class, or of each example's of a list."""
        classes = self.predict(examples, batch_size=batch_size)
        return [self.labels[c] for c in classes] if isinstance(classes, list) else self.labels[classes]

    def predict_proba(self, examples, batch_size: int = 32) -> Tensor:
        """Class probabilities: C for one example, N x C for a list."""
        return self.logits(examples, batch_size).softmax(dim=-1)


def _reading_rules(task) -> SimpleNamespace:
    """How an audio file becomes a clip: the task's options, or for binarised data the options the
    clips were cached with (``meta.json``, written by scripts/prepare_sc.sh); and how a text
    becomes tokens (``text``: the task's text rules)."""
    cfg = task.cfg
    meta_file = task.data_path / META_FILE
    meta = json.loads(meta_file.read_text()) if task.format.read is None and meta_file.is_file() else {}
    return SimpleNamespace(max_positions=cfg.max_positions, short_clips=meta.get("short_clips", str(cfg.short_clips)),
                           shorten_method=meta.get("shorten_method", str(cfg.shorten_method)),
                           resample=meta.get("resample", cfg.resample), text=task.text_rules)

