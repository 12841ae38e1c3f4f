"""Readers of the public classification data formats, checked while loading.

Each reader yields :class:`Record` s (the input or the two inputs of a pair, the label, and where
it came from, ``file:line``), so that every error names the file and line (or image) it is about:

- ``listops``: the LRA release's ListOps TSVs (``basic_{train,val,test}.tsv``, a ``Source``
  and a ``Target`` column); parentheses are dropped, the rest split on whitespace (tokens).
- ``imdb``: the ``aclImdb`` folder of the public IMDB archive (``{train,test}/{neg,pos}/*.txt``),
  read as UTF-8 bytes; ``neg`` is 0, ``pos`` 1. There is no validation split: as in LRA, the
  test split is also the validation split.
- ``aan``: the LRA release's Retrieval TSVs (``new_aan_pairs.{train,eval,test}.tsv``: label, two
  ids, two texts), read as byte pairs.
- ``cifar10``: CIFAR-10's ``cifar-10-batches-py`` pickles (read with an unpickler that accepts
  numpy arrays only), turned grayscale as LRA does (0.2989 R + 0.5870 G + 0.1140 B, rounded);
  validation is the last 10% of the training images, as in LRA.
- ``pathfinder``: a Pathfinder difficulty folder of the release (Pathfinder-32 or Path-X):
  ``metadata/*.npy`` (text despite the name: ``folder file index label ...`` per image) and the
  PNGs; split 80/10/10 in metadata order.
- ``speech_commands``: the Speech Commands v0.02 release (a folder of WAV files per word,
  ``validation_list.txt``, ``testing_list.txt``), read with soundfile; see :func:`read_clip` for
  the clip rules and :func:`speech_commands_split` for the splits.
- ``tsv``: a user's text classification data, ``train.tsv``, ``valid.tsv`` and ``test.tsv``:
  one text column (two for a pair), then the label, a word or an integer; a first line with a
  column named ``label`` is a header. Texts become tokens by :class:`TextRules` (whitespace, or
  the pieces of a sentencepiece model) or bytes; labels are numbered by a label dictionary built
  from the training labels (:func:`sorted_labels`).

fairseq's binarised form (``input0/``, ``input1/``, ``label/``) is read by :mod:`.examples`; how an
input of each type becomes model input is said in :mod:`.input_types`. The data settings of each
benchmark (:data:`LRA_TASKS`, :data:`SPEECH_COMMANDS`) close the module.
"""

import io
import logging
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from functools import lru_cache
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

SPLITS = ("train", "valid", "test")

logger = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data; the message starts with the file and line (or image) at fault."""


@dataclass
class Record:
    inputs: Tuple  # one input, or two for a pair: a list of str (tokens), bytes, a uint8 array (pixels) or
    # float32 samples (waveform)
    label: Union[int, str]  # the class, or a label word that the label dictionary numbers (tsv)
    where: str  # file:line, or file (image n)


def check_length(size: int, cfg, where: str, *, what: str = "an input", unit: str = "items",
                 advice: str = "raise it") -> int:
    """The length to keep of an input of ``size`` items, the one truncation rule of every reader,
    the task and the hub: all of it up to ``--max-positions``; the first ``max_positions`` of a
    longer one with ``--shorten-method truncate``, otherwise an error naming both flags. An empty
    input is an error."""
    if size == 0:
        raise DataError(f"{where}: empty input")
    limit = cfg.max_positions
    if size <= limit:
        return size
    if str(getattr(cfg, "shorten_method", "none")) != "truncate":
        raise DataError(f"{where}: {what} of {size} {unit} is longer than --max-positions {limit} ({advice}, or "
                        f"pass --shorten-method truncate to keep the first {limit} {unit})")
    return limit


def parse_label(text: str, where: str) -> int:
    """An integer label; "1.0" is accepted (the release's float labels), "0.5" or "pos" are not."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: the label {text!r} is not an integer") from None
    if not value.is_integer():
        raise DataError(f"{where}: the label {text!r} is not an integer")
    return int(value)


def text_lines(path: Path) -> Iterator[Tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 text file; other bytes are an error naming the line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):  # split on \n only, as the TSVs' fields may hold \r
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{number}: not UTF-8 text ({error.reason} at byte {error.start})") from None
            yield number, line.rstrip("\r\n")


def _tsv_rows(path: Path, fields: Optional[int], header: str, columns: str = "") -> Iterator[Tuple[List[str], str]]:
    """(fields, where) of each row; a first line with a field named ``header`` (any case) is a
    header. A row of another count than ``fields`` (unless None) is an error, whose message names
    the expected fields with ``columns``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    for number, line in text_lines(path):
        where = f"{path}:{number}"
        row = line.split("\t")
        if number == 1 and header.lower() in (field.strip().lower() for field in row):
            continue
        if not line.strip():
            continue
        if fields is not None and len(row) != fields:
            raise DataError(f"{where}: {len(row)} tab-separated fields, expected {fields}{columns}")
        yield row, where


@dataclass(frozen=True)
class TextRules:
    """How a text becomes the tokens of a dictionary, the same for the readers, the prepare module
    and the hub: split by ``tokenizer`` (``listops``: whitespace, the release's parentheses
    dropped; ``whitespace``, as fairseq-preprocess splits lines; ``sentencepiece``: the pieces of
    ``sentencepiece_model``); a token not in the dictionary is an error (``unknown="error"``) or
    ``<unk>`` (``"unk"``, as fairseq-preprocess reads it); ``append_eos``: every input ends with
    ``</s>``, as fairseq-preprocess writes it."""

    tokenizer: str = "whitespace"
    sentencepiece_model: str = ""
    unknown: str = "error"
    append_eos: bool = False

    def tokens(self, text: str) -> List[str]:
        if self.tokenizer == "listops":
            return listops_tokens(text)
        if self.tokenizer == "sentencepiece":
            return sentencepiece_processor(self.sentencepiece_model).encode(text, out_type=str)
        return text.split()


@lru_cache(maxsize=4)
def sentencepiece_processor(path: str):
    import sentencepiece

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such sentencepiece model (--sentencepiece-model)")
    return sentencepiece.SentencePieceProcessor(model_file=path)


# ListOps ---------------------------------------------------------------------------------------

_LISTOPS_FILES = {"train": "basic_train.tsv", "valid": "basic_val.tsv", "test": "basic_test.tsv"}


def listops_tokens(text: str) -> List[str]:
    """The tokens of a ListOps expression: whitespace-separated, the release's parentheses dropped."""
    return [token for token in text.split() if token not in ("(", ")")]


def read_listops(data: Path, split: str, cfg=None) -> Iterator[Record]:
    for (source, target), where in _tsv_rows(data / _LISTOPS_FILES[split], 2, "Source"):
        yield Record((listops_tokens(source),), parse_label(target, where), where)


# IMDB ------------------------------------------------------------------------------------------

def read_imdb(data: Path, split: str, cfg=None) -> Iterator[Record]:
    folder = data / ("train" if split == "train" else "test")
    for label, name in enumerate(("neg", "pos")):
        if not (folder / name).is_dir():
            raise FileNotFoundError(f"{folder / name}: no such folder (expected the aclImdb layout)")
        files = sorted((folder / name).glob("*.txt"), key=lambda p: _natural_key(p.name))
        for path in files:
            text = path.read_bytes()
            yield Record((text,), label, str(path))


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


# AAN (Retrieval) -------------------------------------------------------------------------------

_AAN_FILES = {"train": "new_aan_pairs.train.tsv", "valid": "new_aan_pairs.eval.tsv",
              "test": "new_aan_pairs.test.tsv"}


def read_aan(data: Path, split: str, cfg=None) -> Iterator[Record]:
    for (label, _, _, first, second), where in _tsv_rows(data / _AAN_FILES[split], 5, "label"):
        yield Record((first.encode("utf-8"), second.encode("utf-8")), parse_label(label, where), where)


# CIFAR-10 --------------------------------------------------------------------------------------

class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays, nothing else (no code runs while loading)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds arrays only")


def _cifar_batch(path: Path) -> Tuple[np.ndarray, List[int]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected the cifar-10-batches-py layout)")
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(io.BytesIO(f.read()), encoding="bytes").load()
        data, labels = np.asarray(batch[b"data"]), list(batch[b"labels"])
    except Exception as error:  # a truncated or foreign file fails in many ways; all name the file
        raise DataError(f"{path}: not a CIFAR-10 batch ({type(error).__name__}: {error})") from None
    return data, labels


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """N x 3072 (R, G, B planes of 32 x 32) -> N x 1024 uint8, as LRA's grayscale images."""
    planes = rgb.reshape(len(rgb), 3, -1).astype(np.float64)
    gray = 0.2989 * planes[:, 0] + 0.5870 * planes[:, 1] + 0.1140 * planes[:, 2]
    return np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)


def read_cifar10(data: Path, split: str, cfg=None) -> Iterator[Record]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split != "test" else ["test_batch"]
    images: List[Tuple[np.ndarray, int, str]] = []
    for name in names:
        values, labels = _cifar_batch(data / name)
        if values.ndim != 2 or len(values) != len(labels):
            raise DataError(f"{data / name}: {values.shape} data for {len(labels)} labels")
        for index, (row, label) in enumerate(zip(values, labels)):
            where = f"{data / name} (image {index})"
            if row.size != 3072:
                raise DataError(f"{where}: {row.size} values, expected 3072 (32 x 32 x RGB)")
            if row.dtype != np.uint8 and (row.min() < 0 or row.max() > 255):
                raise DataError(f"{where}: pixel values {row.min()}..{row.max()} outside 0-255")
            images.append((row, parse_label(str(label), where), where))
    if split != "test":
        cut = len(images) * 9 // 10
        images = images[:cut] if split == "train" else images[cut:]
    for row, label, where in images:
        yield Record((grayscale(row[None])[0],), label, where)


# Pathfinder / Path-X ---------------------------------------------------------------------------

def _pathfinder_index(data: Path) -> List[Tuple[Path, int, str]]:
    folder = data / "metadata"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected a Pathfinder difficulty folder)")
    entries = []
    for path in sorted(folder.glob("*.npy"), key=lambda p: _natural_key(p.name)):
        for number, line in text_lines(path):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{number}"
            if len(fields) < 4:
                raise DataError(f"{where}: {len(fields)} fields, expected at least 4 (folder file index label)")
            entries.append((data / fields[0] / fields[1], parse_label(fields[3], where), where))
    return entries


def read_png(path: Path, where: str) -> np.ndarray:
    """An 8-bit grayscale image as a H x W uint8 array."""
    from PIL import Image

    if not path.is_file():
        raise DataError(f"{where}: the image {path} does not exist")
    try:
        with Image.open(path) as image:
            if image.mode in ("L", "P", "1", "RGB", "RGBA", "LA"):
                return np.asarray(image.convert("L"))
            values = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:  # PIL's errors for truncated or foreign files
        raise DataError(f"{where}: {path} is not a readable image ({error})") from None
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: {path} has pixel values {values.min()}..{values.max()} outside 0-255")
    return values.astype(np.uint8)


def read_pathfinder(data: Path, split: str, cfg=None) -> Iterator[Record]:
    entries = _pathfinder_index(data)
    train_end, valid_end = len(entries) * 8 // 10, len(entries) * 9 // 10
    entries = {"train": entries[:train_end], "valid": entries[train_end:valid_end], "test": entries[valid_end:]}[split]
    shape = None
    for path, label, where in entries:
        image = read_png(path, where)
        if image.ndim != 2 or image.shape[0] != image.shape[1]:
            raise DataError(f"{where}: {path} is {'x'.join(map(str, image.shape))}, not a square grayscale image")
        shape = shape or image.shape
        if image.shape != shape:
            raise DataError(f"{where}: {path} is {image.shape[0]}x{image.shape[1]}, the images before it "
                            f"{shape[0]}x{shape[1]}")
        yield Record((image.reshape(-1),), label, where)


# Speech Commands -------------------------------------------------------------------------------

SAMPLE_RATE = 16000
SC10_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# the 35 words of v0.02, in the official code's label order
ALL_WORDS = ("bed", "cat", "down", "five", "forward", "go", "house", "left", "marvin", "no", "on", "right", "sheila",
             "tree", "up", "visual", "yes", "backward", "bird", "dog", "eight", "follow", "four", "happy", "learn",
             "nine", "off", "one", "seven", "six", "stop", "three", "two", "wow", "zero")


def speech_words(spec: str) -> Tuple[str, ...]:
    """The classes of ``--words``: ``sc10``, ``all`` (35 words) or a comma-separated list."""
    if spec == "sc10":
        return SC10_WORDS
    if spec == "all":
        return ALL_WORDS
    words = tuple(word.strip() for word in spec.split(",") if word.strip())
    if len(set(words)) != len(words) or len(words) < 2:
        raise ValueError(f"--words {spec!r}: give at least two different words, or sc10, or all")
    return words


def read_clip(path: Path, cfg) -> Optional[np.ndarray]:
    """A clip as float32 samples at 16 kHz, exactly ``cfg.max_positions`` long, by these rules:
    several channels are averaged to mono; another sample rate is an error unless ``--resample``
    (scipy's polyphase resampler); a longer clip is an error naming ``--max-positions`` unless
    ``--shorten-method truncate``, which keeps its first ``max_positions`` samples; a shorter one
    is dropped (None; ``--short-clips drop``, the official SC10 protocol) or padded with zeros at
    the end (``--short-clips pad``, the official 35-word protocol). PCM of 8, 16, 24 or 32 bits
    and float WAVs are read as floats in [-1, 1] (16-bit: value / 2**15)."""
    import soundfile

    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise DataError(f"{path}: not a readable audio file ({error})") from None
    if audio.shape[0] == 0:
        raise DataError(f"{path}: empty audio (no samples)")
    audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if not np.isfinite(audio).all():
        raise DataError(f"{path}: samples that are not finite numbers")
    if rate != SAMPLE_RATE:
        if not getattr(cfg, "resample", False):
            raise DataError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} (pass --resample to resample "
                            f"with scipy.signal.resample_poly)")
        from math import gcd

        from scipy.signal import resample_poly

        divisor = gcd(SAMPLE_RATE, rate)
        audio = resample_poly(audio, SAMPLE_RATE // divisor, rate // divisor).astype(np.float32)
    length = cfg.max_positions
    audio = audio[:check_length(len(audio), cfg, str(path), what="a clip", unit="samples",
                                advice=f"set --max-positions to the clip length, {SAMPLE_RATE} for one second")]
    if len(audio) == length:
        return np.ascontiguousarray(audio)
    if str(getattr(cfg, "short_clips", "drop")) == "drop":
        return None
    return np.concatenate([audio, np.zeros(length - len(audio), dtype=np.float32)])


def _is_short(path: Path, cfg) -> bool:
    """Whether a clip is shorter than ``cfg.max_positions`` samples at 16 kHz, from its header
    (:func:`read_clip` drops or pads exactly these)."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise DataError(f"{path}: not a readable audio file ({error})") from None
    if info.frames == 0:  # an error, not a short clip to drop
        raise DataError(f"{path}: empty audio (no samples)")
    return info.frames * SAMPLE_RATE < cfg.max_positions * info.samplerate


def _sc_list(path: Path, words: Sequence[str]) -> Dict[str, str]:
    """relative path -> where (list file:line), for the entries of ``words``; each must exist."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the Speech Commands release has validation_list.txt and "
                                f"testing_list.txt)")
    entries = {}
    for number, line in text_lines(path):
        relative = line.strip()
        if not relative or relative.split("/")[0] not in words:
            continue
        where = f"{path}:{number}"
        if not (path.parent / relative).is_file():
            raise DataError(f"{where}: {relative} does not exist")
        entries[relative] = where
    return entries


class SpeechCommandsSplit(NamedTuple):
    """The clips of each split, and the clips shorter than ``--max-positions`` samples."""

    clips: Dict[str, List[Tuple[Path, int]]]  # split -> (file, label) of each clip it holds
    short: Dict[str, int]  # split -> its short clips: dropped from it (--short-clips drop) or padded in it
    dropped_before_split: int  # short clips dropped before a random split (counted in no split)

    def describe(self, split: str, cfg) -> str:
        """A line for the log: how many clips the split holds and what became of its short ones."""
        held = f"{split}: {len(self.clips[split])} clips; short clips (under {cfg.max_positions} samples)"
        if str(getattr(cfg, "short_clips", "drop")) == "pad":
            return f"{held} padded with zeros: {self.short[split]}"
        if str(getattr(cfg, "split_protocol", "random")) == "random":
            return f"{held} dropped before the random split: {self.dropped_before_split}"
        return f"{held} dropped: {self.short[split]}"


def speech_commands_split(data: Path, cfg) -> SpeechCommandsSplit:
    """The clips of every split. ``--split-protocol random`` (the paper's SC10 protocol, as the
    official code, S4 and Kidger et al.): clips shorter than one second are dropped (with
    ``--short-clips drop``), then the files, sorted by name within each word folder in label
    order, are split at random, stratified by word, 70/15/15 (:func:`_random_split`).
    ``lists``: the release's validation and testing lists, the rest trains (its own protocol)."""
    words = speech_words(str(getattr(cfg, "words", "sc10")))
    clips: List[Tuple[Path, int, bool]] = []
    for label, word in enumerate(words):
        folder = data / word
        if not folder.is_dir():
            raise DataError(f"{folder}: no such word folder (--words {getattr(cfg, 'words', 'sc10')})")
        clips += [(path, label, _is_short(path, cfg)) for path in sorted(folder.glob("*.wav"))]
    drop = str(getattr(cfg, "short_clips", "drop")) == "drop"
    if str(getattr(cfg, "split_protocol", "random")) == "lists":
        return _list_split(data, words, clips, drop)
    kept = [(path, label) for path, label, is_short in clips if not (drop and is_short)]
    splits = _random_split(data, kept, len(words))
    padded = {path for path, _, is_short in clips if is_short and not drop}
    short = {split: sum(path in padded for path, _ in splits[split]) for split in SPLITS}
    return SpeechCommandsSplit(splits, short, len(clips) - len(kept))


def _list_split(data: Path, words: Sequence[str], clips: List[Tuple[Path, int, bool]],
                drop: bool) -> SpeechCommandsSplit:
    """The release's protocol: the clips its validation and testing lists name, the rest trains;
    ``clips`` holds (file, label, whether it is short)."""
    valid = _sc_list(data / "validation_list.txt", words)
    test = _sc_list(data / "testing_list.txt", words)
    splits: Dict[str, List[Tuple[Path, int]]] = {split: [] for split in SPLITS}
    short = dict.fromkeys(SPLITS, 0)
    for path, label, is_short in clips:
        relative = f"{path.parent.name}/{path.name}"
        split = "valid" if relative in valid else "test" if relative in test else "train"
        short[split] += is_short
        if not (drop and is_short):
            splits[split].append((path, label))
    return SpeechCommandsSplit(splits, short, 0)


def _random_split(data: Path, clips: List[Tuple[Path, int]], classes: int) -> Dict[str, List[Tuple[Path, int]]]:
    """The official code's split (its ``split_data``): 70% trains (scikit-learn's stratified
    ``train_test_split``, seed 0), the other 30% is halved into valid and test (seed 1)."""
    from sklearn.model_selection import train_test_split

    try:
        train, rest = train_test_split(clips, train_size=0.7, random_state=0, shuffle=True,
                                       stratify=[label for _, label in clips])
        valid, test = train_test_split(rest, train_size=0.5, random_state=1, shuffle=True,
                                       stratify=[label for _, label in rest])
    except ValueError as error:
        raise DataError(f"{data}: {len(clips)} clips of {classes} words are too few for the stratified random "
                        f"70/15/15 split ({error}); --split-protocol lists uses the release's lists") from None
    return {"train": train, "valid": valid, "test": test}


def read_speech_commands(data: Path, split: str, cfg=None) -> Iterator[Record]:
    split_clips = speech_commands_split(data, cfg)
    logger.info(split_clips.describe(split, cfg))
    for path, label in split_clips.clips[split]:
        yield Record((read_clip(path, cfg),), label, str(path))


# Text TSVs (a user's own data) -----------------------------------------------------------------

def tsv_text_rules(cfg) -> TextRules:
    """Whitespace-separated words, or the pieces of ``--sentencepiece-model``; unknown words are
    ``<unk>`` (the dictionary holds the training split's words only)."""
    model = str(getattr(cfg, "sentencepiece_model", "") or "")
    return TextRules("sentencepiece" if model else "whitespace", model, unknown="unk")


def _tsv_columns(paired: bool) -> str:
    return " (text, text, label; a pair)" if paired else " (text, label; 3 for a pair, with --paired)"


def tsv_paired(data: Path) -> bool:
    """Whether a TSV folder holds pairs: its train.tsv's first row has three fields (two: single texts)."""
    for row, where in _tsv_rows(data / "train.tsv", None, "label"):
        if len(row) not in (2, 3):
            raise DataError(f"{where}: {len(row)} tab-separated fields, expected 2 (text, label) or 3 (text, "
                            f"text, label)")
        return len(row) == 3
    raise DataError(f"{data / 'train.tsv'}: no examples")


def read_tsv(data: Path, split: str, cfg) -> Iterator[Record]:
    paired = bool(getattr(cfg, "paired", False))
    rules = tsv_text_rules(cfg)
    as_bytes = str(cfg.input_type) == "bytes"
    for row, where in _tsv_rows(data / f"{split}.tsv", 3 if paired else 2, "label", _tsv_columns(paired)):
        *texts, label = row
        for column, text in enumerate(texts, start=1):
            if not text.strip():
                raise DataError(f"{where}: empty text in column {column}")
        if not label.strip():
            raise DataError(f"{where}: empty label")
        yield Record(tuple(text.encode("utf-8") if as_bytes else rules.tokens(text) for text in texts),
                     label.strip(), where)


def sorted_labels(labels) -> List[str]:
    """The label words in class order: integers by value (so that 0 .. C-1 keep their numbers),
    otherwise alphabetically."""
    labels = set(labels)
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


# Formats ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    name: str
    description: str
    input_types: Tuple[str, ...]  # the --input-type values it is read as
    paired: Callable[[Path], bool]  # whether the data folder holds pairs
    detect: Callable[[Path], bool]
    read: Optional[Callable[..., Iterator[Record]]]  # (data folder, split, task config) -> records
    # (task config) -> how its texts become tokens
    text_rules: Callable[..., TextRules] = lambda cfg: TextRules()
    # labels are words, numbered by a label dictionary of the labels of this training file (else integer classes)
    label_file: str = ""


def _single(data: Path) -> bool:
    return False


FORMATS: Dict[str, Format] = {f.name: f for f in [
    Format("binarised", "fairseq's binarised form (input0/, label/)", (), _single,
           lambda d: (d / "input0").is_dir(), None),
    Format("listops", "ListOps TSVs of the LRA release (basic_*.tsv)", ("tokens",), _single,
           lambda d: any((d / name).is_file() for name in _LISTOPS_FILES.values()), read_listops,
           text_rules=lambda cfg: TextRules("listops")),
    Format("aan", "Retrieval TSVs of the LRA release (new_aan_pairs.*.tsv)", ("bytes",), lambda d: True,
           lambda d: any((d / name).is_file() for name in _AAN_FILES.values()), read_aan),
    Format("imdb", "the aclImdb folder of the IMDB archive", ("bytes",), _single,
           lambda d: (d / "train" / "pos").is_dir() or (d / "test" / "pos").is_dir(), read_imdb),
    Format("cifar10", "CIFAR-10's cifar-10-batches-py pickles", ("pixels",), _single,
           lambda d: (d / "data_batch_1").is_file() or (d / "test_batch").is_file(), read_cifar10),
    Format("pathfinder", "a Pathfinder / Path-X folder of the LRA release (metadata/, imgs/)", ("pixels",), _single,
           lambda d: (d / "metadata").is_dir(), read_pathfinder),
    Format("speech_commands", "the Speech Commands release (word folders of WAVs, validation_list.txt)",
           ("waveform",), _single,
           lambda d: (d / "validation_list.txt").is_file() or (d / "testing_list.txt").is_file(),
           read_speech_commands),
    Format("tsv", "text TSVs (train.tsv, valid.tsv, test.tsv: text, label)", ("tokens", "bytes"), tsv_paired,
           lambda d: (d / "train.tsv").is_file(), read_tsv, text_rules=tsv_text_rules,
           label_file="train.tsv"),
]}


def detect_format(data: Path) -> Format:
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such data folder")
    for fmt in FORMATS.values():
        if fmt.detect(data):
            return fmt
    known = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())
    raise DataError(f"{data}: no known data layout found (known: {known})")


# Benchmarks ------------------------------------------------------------------------------------

class BenchmarkTask(NamedTuple):
    """The data settings of one benchmark (the configs and the prepare modules use them)."""

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
