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

fairseq's binarised form (``input0/``, ``input1/``, ``label/``) is read by the task itself.
"""

import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

INPUT_TYPES = ("tokens", "bytes", "pixels", "waveform")
SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Bad input data; the message starts with the file and line (or image) at fault."""


@dataclass
class Record:
    inputs: Tuple  # one input, or two for a pair: a list of str (tokens), bytes, or a uint8 array (pixels)
    label: int
    where: str  # file:line, or file (image n)


def parse_label(text: str, where: str) -> int:
    """An integer label; "1.0" is accepted (the release's float labels), "0.5" or "pos" are not."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: the label {text!r} is not an integer") from None
    if not value.is_integer():
        raise DataError(f"{where}: the label {text!r} is not an integer")
    return int(value)


def _tsv_rows(path: Path, fields: int, header: Optional[str]) -> Iterator[Tuple[List[str], str]]:
    """(fields, where) of each row; the header line, when given, must be the first line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8", newline="\n") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            where = f"{path}:{number}"
            if number == 1 and header is not None and line.split("\t")[0] == header:
                continue
            if not line.strip():
                continue
            row = line.split("\t")
            if len(row) != fields:
                raise DataError(f"{where}: {len(row)} tab-separated fields, expected {fields}")
            yield row, where


# ListOps ---------------------------------------------------------------------------------------

_LISTOPS_FILES = {"train": "basic_train.tsv", "valid": "basic_val.tsv", "test": "basic_test.tsv"}


def read_listops(data: Path, split: str) -> Iterator[Record]:
    for (source, target), where in _tsv_rows(data / _LISTOPS_FILES[split], 2, header="Source"):
        tokens = [token for token in source.split() if token not in ("(", ")")]
        yield Record((tokens,), parse_label(target, where), where)


# IMDB ------------------------------------------------------------------------------------------

def read_imdb(data: Path, split: str) -> Iterator[Record]:
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


def read_aan(data: Path, split: str) -> Iterator[Record]:
    for (label, _, _, first, second), where in _tsv_rows(data / _AAN_FILES[split], 5, header="label"):
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
    except (pickle.UnpicklingError, KeyError, EOFError, TypeError) as error:
        raise DataError(f"{path}: not a CIFAR-10 batch ({error})") from None
    return data, labels


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """N x 3072 (R, G, B planes of 32 x 32) -> N x 1024 uint8, as LRA's grayscale images."""
    planes = rgb.reshape(len(rgb), 3, -1).astype(np.float64)
    gray = 0.2989 * planes[:, 0] + 0.5870 * planes[:, 1] + 0.1140 * planes[:, 2]
    return np.clip(np.floor(gray + 0.5), 0, 255).astype(np.uint8)


def read_cifar10(data: Path, split: str) -> Iterator[Record]:
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
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
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
    with Image.open(path) as image:
        if image.mode in ("L", "P", "1"):
            return np.asarray(image.convert("L"))
        if image.mode in ("RGB", "RGBA", "LA"):
            return np.asarray(image.convert("L"))
        values = np.asarray(image)
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: {path} has pixel values {values.min()}..{values.max()} outside 0-255")
    return values.astype(np.uint8)


def read_pathfinder(data: Path, split: str) -> Iterator[Record]:
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


# Formats ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    name: str
    description: str
    input_type: str
    paired: bool
    detect: Callable[[Path], bool]
    read: Optional[Callable[[Path, str], Iterator[Record]]]


FORMATS: Dict[str, Format] = {f.name: f for f in [
    Format("binarised", "fairseq's binarised form (input0/, label/)", "", False,
           lambda d: (d / "input0").is_dir(), None),
    Format("listops", "ListOps TSVs of the LRA release (basic_*.tsv)", "tokens", False,
           lambda d: any((d / name).is_file() for name in _LISTOPS_FILES.values()), read_listops),
    Format("aan", "Retrieval TSVs of the LRA release (new_aan_pairs.*.tsv)", "bytes", True,
           lambda d: any((d / name).is_file() for name in _AAN_FILES.values()), read_aan),
    Format("imdb", "the aclImdb folder of the IMDB archive", "bytes", False,
           lambda d: (d / "train" / "pos").is_dir() or (d / "test" / "pos").is_dir(), read_imdb),
    Format("cifar10", "CIFAR-10's cifar-10-batches-py pickles", "pixels", False,
           lambda d: (d / "data_batch_1").is_file() or (d / "test_batch").is_file(), read_cifar10),
    Format("pathfinder", "a Pathfinder / Path-X folder of the LRA release (metadata/, imgs/)", "pixels", False,
           lambda d: (d / "metadata").is_dir(), read_pathfinder),
]}


def detect_format(data: Path) -> Format:
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such data folder")
    for fmt in FORMATS.values():
        if fmt.detect(data):
            return fmt
    known = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())
    raise DataError(f"{data}: no known data layout found (known: {known})")


def to_ids(value, input_type: str, dictionary, where: str) -> np.ndarray:
    """One input as an int array: dictionary ids (tokens, bytes) or pixel values."""
    if input_type == "tokens":
        unknown = [token for token in value if dictionary.index(token) == dictionary.unk()]
        if unknown:
            raise DataError(f"{where}: tokens not in the dictionary: {' '.join(sorted(set(unknown))[:10])}")
        return np.array([dictionary.index(token) for token in value], dtype=np.int64)
    if input_type == "bytes":
        return np.frombuffer(value, dtype=np.uint8).astype(np.int64) + dictionary.nspecial
    return np.asarray(value, dtype=np.uint8)


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
