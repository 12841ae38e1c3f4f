"""The input types of sequence classification (``--input-type``), in one table.

An input is tokens (ids of a dictionary of the data's tokens), bytes (UTF-8 bytes, ids of a fixed
byte dictionary), pixels (0-255 values) or a waveform (audio samples). What depends on the type is
said once, in its :class:`InputType`:

- the reader: ``ids_or_values`` turns what a release reader yields (an item of ``Record.inputs``)
  into the array the model reads (tokens by the data's :class:`~.classification.TextRules`), and
  ``binarised`` says how the prepared form stores it;
- the dictionary: ``dictionary`` chooses it (None for real values), and refuses binarised data
  whose dictionary does not fit the type (word ids read as bytes, token ids read as pixels);
- the embedding: a token table over the dictionary's ids, or (``real_valued``) one learned vector
  scaled by each standardised value; the task pads ids with the dictionary's pad and values with 0;
- the hub: ``parse`` turns a user's example into what a reader would have yielded.

The readers (:mod:`.examples`), the prepare modules, the task, the classifier and the hub all ask
this table.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

import numpy as np
import torch

from .classification import DataError, Record, TextRules, read_clip, read_png

logger = logging.getLogger(__name__)

# (data folder, its training records read on demand or None for binarised data) -> dictionary or None
DictionaryChoice = Callable[[Path, Optional[Callable[[], Iterable[Record]]]], Any]


@dataclass(frozen=True)
class InputType:
    name: str
    description: str  # for --input-type's help
    real_valued: bool  # the embedding: of standardised real values (True) or a token table over ids
    binarised: str  # the prepared form: "indexed" (fairseq's mmap dataset of ids) or "npy" (rows of floats)
    dictionary: DictionaryChoice
    # (a reader's value, the dictionary, where, the text rules) -> dictionary ids (int64) or values (pixels, samples)
    ids_or_values: Callable[[Any, Any, str, TextRules], np.ndarray]
    # (a user's example, where, the reading rules of the trained task, with .text its TextRules) -> what a reader
    # yields
    parse: Callable[[Any, str, Any], Any]


# Dictionaries ----------------------------------------------------------------------------------

def byte_dictionary():
    """The fixed dictionary of byte inputs: fairseq's special symbols, then the bytes 0-255 (byte b
    has id b + nspecial)."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for byte in range(256):
        dictionary.add_symbol(f"{byte:02x}", n=1)
    return dictionary


def token_dictionary(records: Sequence[Record]):
    """A dictionary of every token of ``records`` (the training split), in sorted order."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for symbol in sorted({token for record in records for item in record.inputs for token in item}):
        dictionary.add_symbol(symbol, n=1)
    return dictionary


def _data_token_dictionary(data: Path, train_records):
    """The data folder's dictionary (``input0/dict.txt``, as the binarised form keeps it, or
    ``dict.txt``), else one of every token of the training records."""
    from fairseq.data import Dictionary

    for path in (data / "input0" / "dict.txt", data / "dict.txt"):
        if path.is_file():
            dictionary = Dictionary.load(str(path))
            break
    else:
        if train_records is None:
            raise FileNotFoundError(f"{data / 'input0' / 'dict.txt'}: no such file (token inputs need a dictionary)")
        dictionary = token_dictionary(list(train_records()))
    logger.info(f"dictionary: {len(dictionary)} types")
    return dictionary


def _binarised_dictionary(data: Path):
    """(the dictionary file of binarised data, its symbols) or None."""
    from fairseq.data import Dictionary

    path = data / "input0" / "dict.txt"
    return (path, Dictionary.load(str(path)).symbols) if path.is_file() else None


def _fixed_byte_dictionary(data: Path, train_records):
    """The byte dictionary; binarised data must have been written with it (not word ids)."""
    dictionary = byte_dictionary()
    found = _binarised_dictionary(data)
    if found is not None and found[1] != dictionary.symbols:
        path, symbols = found
        raise DataError(f"{path}: a dictionary of {len(symbols)} symbols ({' '.join(symbols[4:9])} ...), not the "
                        f"byte dictionary that --input-type bytes reads (the special symbols, then 00 .. ff): these "
                        f"are token ids; train with --input-type tokens, or binarise the text as bytes")
    return dictionary


def _no_dictionary(input_type: str) -> DictionaryChoice:
    """Real values have no dictionary; binarised data with one hold token ids, not values."""

    def choose(data: Path, train_records):
        found = _binarised_dictionary(data)
        if found is not None:
            raise DataError(f"{found[0]}: the data are token ids (a dictionary of {len(found[1])} symbols), but "
                            f"--input-type {input_type} reads real values; train with --input-type tokens or bytes")
        return None

    return choose


# A reader's value -> the model's array ---------------------------------------------------------

def _token_ids(tokens: Sequence[str], dictionary, where: str, text: TextRules) -> np.ndarray:
    """Ids of the tokens; one not in the dictionary is ``<unk>`` or an error (``text.unknown``);
    ``</s>`` ends them with ``text.append_eos``."""
    ids = [dictionary.index(token) for token in tokens]
    if text.unknown == "error" and dictionary.unk() in ids:
        unknown = {token for token, i in zip(tokens, ids) if i == dictionary.unk()}
        raise DataError(f"{where}: tokens not in the dictionary: {' '.join(sorted(unknown)[:10])}")
    return np.array(ids + [dictionary.eos()] * text.append_eos, dtype=np.int64)


def _byte_ids(data: bytes, dictionary, where: str, text: TextRules) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64) + dictionary.nspecial


def _pixel_values(values, dictionary, where: str, text: TextRules) -> np.ndarray:
    """uint8; float values (a user's array given to the hub) stay floats, standardised unrounded."""
    values = np.asarray(values)
    return np.asarray(values, dtype=np.float32 if values.dtype.kind == "f" else np.uint8)


def _samples(values, dictionary, where: str, text: TextRules) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# A user's example (the hub) -> a reader's value ------------------------------------------------

def _parse_tokens(value, where: str, rules) -> Sequence[str]:
    """A string (split by the data's text rules, as its reader or fairseq-preprocess split it) or
    a sequence of tokens."""
    return rules.text.tokens(value) if isinstance(value, str) else [str(token) for token in value]


def _parse_bytes(value, where: str, rules) -> bytes:
    """A string (its UTF-8 bytes) or bytes."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _parse_pixels(value, where: str, rules) -> np.ndarray:
    """The path of an image file (read as the Pathfinder reader reads PNGs), or an H x W array (or
    tensor) of 0-255 values, uint8 or floats on the same scale; returns the flattened values."""
    if isinstance(value, (str, os.PathLike)):
        return read_png(Path(value), where).reshape(-1)
    values = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    if values.ndim not in (1, 2) or values.dtype.kind not in "uif":
        raise DataError(f"{where}: expected an H x W array of pixel values, got {values.dtype} "
                        f"{'x'.join(map(str, values.shape))}")
    values = values.reshape(-1)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel values {values.min()}..{values.max()} outside 0-255 (the task's scale)")
    return values


def _parse_clip(path, where: str, rules) -> np.ndarray:
    """The path of an audio file, read by :func:`~.classification.read_clip` with ``rules``."""
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"{where}: expected the path of an audio file, got {type(path).__name__}")
    audio = read_clip(Path(path), rules)
    if audio is None:
        raise DataError(f"{path}: shorter than {rules.max_positions} samples; the training data dropped such "
                        f"clips (short_clips drop)")
    return audio


INPUT_TYPES: Dict[str, InputType] = {t.name: t for t in [
    InputType("tokens", "a dictionary", False, "indexed", _data_token_dictionary, _token_ids, _parse_tokens),
    InputType("bytes", "UTF-8 bytes", False, "indexed", _fixed_byte_dictionary, _byte_ids, _parse_bytes),
    InputType("pixels", "0-255 values", True, "indexed", _no_dictionary("pixels"), _pixel_values, _parse_pixels),
    InputType("waveform", "audio samples", True, "npy", _no_dictionary("waveform"), _samples, _parse_clip),
]}
