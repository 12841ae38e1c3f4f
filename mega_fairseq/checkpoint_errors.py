"""Errors that name a checkpoint file, what it holds and what was expected.

``python -m mega_fairseq.checkpoint_info`` (run by the evaluation scripts before fairseq) says what
a checkpoint holds with :func:`read` and :data:`FAMILIES`. Inside fairseq the same mistakes meet
these checks: a model built for a task of another kind (:func:`check_model_fits_task`, from the
plugin's models and tasks), a checkpoint trained with another dictionary
(:func:`check_dictionaries`, from the models' ``load_state_dict``), a file that holds no
checkpoint (:func:`reading_error`, from the plugin's checkpoint reader). fairseq's loaders are
wrapped (:func:`mega_fairseq.fairseq_fixes.name_checkpoints_in_errors`) so that these errors name the checkpoint
file and come last, not hidden behind fairseq's "please ensure that the architectures match".
"""

import codecs
import re
from dataclasses import dataclass
from typing import Dict, Optional

from .checkpoint_loading import UnsafeCheckpointError, safe_load

LANGUAGE_MODEL, TRANSLATION, CLASSIFIER = "language_model", "translation", "classifier"


@dataclass(frozen=True)
class Family:
    description: str
    archs: str  # examples of --arch
    evaluate: str  # the script that evaluates it

    @property
    def expected(self) -> str:
        return f"{self.description} ({self.archs})"

    @property
    def hint(self) -> str:
        return f"evaluate {self.description[2:]}s with {self.evaluate}"


FAMILIES = {
    LANGUAGE_MODEL: Family("a language model", "--arch mega_lm*", "scripts/eval_lm.sh"),
    TRANSLATION: Family("a translation model", "--arch mega_wmt_en_de*, mega_mt_tiny", "scripts/eval_bleu.sh"),
    CLASSIFIER: Family("a sequence classifier", "--arch mega_lra_*, mega_sc_raw*", "scripts/eval_cls.sh"),
}
# tasks (by registered name; subclasses of their classes too) and the kind of model each takes
TASK_FAMILIES = {"language_modeling": LANGUAGE_MODEL, "multilingual_language_modeling": LANGUAGE_MODEL,
                 "mega_language_modeling": LANGUAGE_MODEL, "translation": TRANSLATION,
                 "translation_multi_simple_epoch": TRANSLATION, "multilingual_translation": TRANSLATION,
                 "mega_sequence_classification": CLASSIFIER, "sentence_prediction": CLASSIFIER}
CLASSIFIER_MODELS = ("mega_classifier",)
EXPECTED_CHECKPOINT = "expected a fairseq checkpoint (a file fairseq-train writes, such as checkpoint_best.pt)"


class CheckpointError(ValueError):
    """A checkpoint that is not what the command needs."""


class NotACheckpointError(CheckpointError):
    def __init__(self, path, what: str):
        super().__init__(f"{path} {what}; {EXPECTED_CHECKPOINT}")


class CheckpointMismatchError(CheckpointError):
    """A model of another kind, or trained with another dictionary. Raised where the file is not
    known (a model's build_model or load_state_dict); :meth:`naming` adds it."""

    def __init__(self, holds: str, expected: str, hint: str = "", file=None):
        self.holds, self.expected, self.hint, self.file = holds, expected, hint, file
        subject = f"{file} holds" if file is not None else "the model is"
        super().__init__(f"{subject} {holds}; expected {expected}" + (f": {hint}" if hint and file else ""))

    def naming(self, file) -> "CheckpointMismatchError":
        return self if self.file is not None else CheckpointMismatchError(self.holds, self.expected, self.hint, file)


# ---------------------------------------------------------------- what a file holds


def _looks_like_torch_file(head: bytes) -> bool:
    """torch.save writes a zip archive, or (legacy format) a pickle of protocol 2 or more."""
    return head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")


def _not_torch(head: bytes) -> str:
    if not head:
        return "is empty (0 bytes)"
    try:  # an incremental decoder lets the last character be cut off at the end of ``head``
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        text = ""
    if text.strip() and all(char.isprintable() or char.isspace() for char in text):
        return f"holds text (it begins {text.strip().splitlines()[0][:60]!r})"
    return f"holds data torch.save does not write (it begins with the bytes {head[:8].hex(' ')})"


def _held_object(state) -> str:
    if not isinstance(state, dict):
        return f"a {type(state).__name__}"
    keys = ", ".join(map(repr, list(state)[:6])) + (", ..." if len(state) > 6 else "")
    return f"a dict of {keys} (no 'model' weights)"


def read(path) -> dict:
    """The checkpoint at ``path``, read weights-only; a file that holds none is a NotACheckpointError."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not _looks_like_torch_file(head):
        raise NotACheckpointError(path, _not_torch(head))
    try:
        state = safe_load(path)
    except UnsafeCheckpointError:
        raise
    except Exception as error:  # a truncated or corrupt file: torch's own message says which part
        reason = " ".join(str(error).split())[:200]
        raise NotACheckpointError(path, f"is not a readable checkpoint: torch.load failed "
                                        f"({type(error).__name__}: {reason})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise NotACheckpointError(path, f"holds {_held_object(state)}")
    return state


def reading_error(path, error: Exception) -> Exception:
    """What to raise when fairseq failed to read ``path`` with ``error``: the file's own problem
    (not a checkpoint, refused as unsafe) where it has one, else ``error``."""
    try:
        read(path)
    except (CheckpointError, UnsafeCheckpointError) as problem:
        return problem
    except Exception:  # noqa: BLE001  unreadable for another reason: fairseq's own error says it
        return error
    return error


def model_family(model_name: Optional[str]) -> Optional[str]:
    """The kind of model a registered model name builds, or None where it is none of the three."""
    from fairseq.models import MODEL_REGISTRY, FairseqEncoderDecoderModel, FairseqLanguageModel

    if model_name in CLASSIFIER_MODELS:
        return CLASSIFIER
    model_class = MODEL_REGISTRY.get(model_name)
    if model_class is not None and issubclass(model_class, FairseqLanguageModel):
        return LANGUAGE_MODEL
    if model_class is not None and issubclass(model_class, FairseqEncoderDecoderModel):
        return TRANSLATION
    return None


def arch_family(arch: Optional[str]) -> Optional[str]:
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    return model_family(ARCH_MODEL_NAME_REGISTRY.get(arch))


# ---------------------------------------------------------------- checks inside fairseq


def task_name_and_family(task):
    """(registered name, kind of model it takes) of a task object: of its class, or of the nearest
    base class with a known kind."""
    from fairseq.tasks import TASK_REGISTRY

    names = {task_class: name for name, task_class in TASK_REGISTRY.items()}
    own = names.get(type(task))
    for task_class in type(task).__mro__:
        if TASK_FAMILIES.get(names.get(task_class)):
            return own or names[task_class], TASK_FAMILIES[names[task_class]]
    return own, None


def check_model_fits_task(cfg, task, model_name: Optional[str] = None):
    """A model of one kind (language model, translation, classifier) built for a task of another
    (e.g. an LM checkpoint given to fairseq-generate's translation task) is a CheckpointMismatchError.
    ``model_name``: the registered model (default: the one of the arch ``cfg`` names)."""
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    arch = getattr(cfg, "_name", None) or getattr(cfg, "arch", None)
    model = model_family(model_name or ARCH_MODEL_NAME_REGISTRY.get(arch))
    task_name, wanted = task_name_and_family(task)
    if model is None or wanted is None or model == wanted:
        return
    raise CheckpointMismatchError(f"{FAMILIES[model].description} (--arch {arch or model_name})",
                                  f"{FAMILIES[wanted].description} for the {task_name} task ({FAMILIES[wanted].archs})",
                                  FAMILIES[model].hint)


def vocabulary_rows(state_dict, side: str) -> Optional[int]:
    """Rows of the token embeddings of ``side`` (``encoder``, ``decoder``): the size of the
    dictionary it was trained with (an adaptive input: the sum of its bands); None without any."""
    pattern = re.compile(rf"{side}\.(embedding\.)?embed_tokens\.(weight|embeddings\.\d+\.0\.weight)")
    rows = [value.size(0) for name, value in state_dict.items() if pattern.fullmatch(name)]
    return sum(rows) if rows else None


def check_dictionaries(model, state_dict, files: Dict[str, str]):
    """A checkpoint whose token embeddings have another number of rows than the model built here
    from the task's dictionaries was trained with another dictionary: a CheckpointMismatchError
    naming the dictionary file (``files``: side -> file the task read)."""
    own = model.state_dict()
    for side in ("encoder", "decoder"):
        trained, here = vocabulary_rows(state_dict, side), vocabulary_rows(own, side)
        if trained is not None and here is not None and trained != here:
            where = files.get(side, f"the task's {side} dictionary")
            raise CheckpointMismatchError(
                f"a model trained with another dictionary: its {side} embeddings have {trained} rows",
                f"one trained with {where} ({here} symbols, the special ones included)",
                "use the data binarised with the checkpoint's dictionary (fairseq-preprocess --srcdict "
                "TRAINING_DATA/dict.txt)")
