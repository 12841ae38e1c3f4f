"""Classifier checkpoints of the official Mega code (the ``lra`` and ``sc_raw`` models) as ours.

Names: :mod:`mega_fairseq.models.official_names` (``CLASSIFIER_RULES``). Token inputs: the
embeddings are indexed by the official dictionary (fairseq's ``src-bin/dict.txt`` plus the
``<CLS>`` the official task appends): :func:`remap_rows` reorders them into ours by symbol; the
official ``<CLS>`` row becomes our learned first position (``pooling first``). Pairs: the official
Retrieval head reads [second document, first document], ours [first, second]:
:func:`swap_pair_halves` swaps the halves of its first weight. Classes: the official ``lra-text``
task numbers a class by its label's row in the label dictionary (``label-bin/dict.txt``, ordered by
fairseq-preprocess by frequency, e.g. ``0 9 8 1 4 ...`` for ListOps), ours by the label's value:
:func:`official_class_rows` gives the official row of each of our classes, and the head's output
rows are reordered by it (``lra-image`` and the speech task number classes as we do).
"""

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..models.official_names import (DROPPED_BUFFERS, FIRST_TOKEN, HEAD, OUTPUT, POSITIONS, TOKEN_TABLE,
                                     ConversionError, classifier_name, rename_layer_parameter)


class Vocabulary(NamedTuple):
    """How to turn the official token table into ours: the symbols of both dictionaries, row by row,
    and the official symbol whose row is our first position (``<CLS>``), if pooling reads it."""

    official: Sequence[str]
    ours: Sequence[str]
    unknown: str = "<unk>"
    first_token: Optional[str] = None


class RowReport(NamedTuple):
    copied: int
    from_unknown: List[str]  # our symbols the official dictionary lacks: they get its unknown row
    unused: List[str]  # official symbols our dictionary lacks


def remap_rows(table: Tensor, official: Sequence[str], ours: Sequence[str],
               unknown: str = "<unk>") -> Tuple[Tensor, RowReport]:
    """The rows of ``table`` (one per symbol of ``official``) in the order of ``ours``."""
    if table.size(0) != len(official):
        raise ConversionError(f"the official token embeddings have {table.size(0)} rows but the official "
                              f"dictionary has {len(official)} symbols (with <CLS>): not the dictionary it was "
                              f"trained with")
    index = {symbol: i for i, symbol in enumerate(official)}
    if unknown not in index:
        raise ConversionError(f"the official dictionary has no {unknown!r} symbol")
    rows = [index.get(symbol, index[unknown]) for symbol in ours]
    missing = [symbol for symbol in ours if symbol not in index]
    unused = sorted(set(official) - set(ours))
    return table[rows].clone(), RowReport(len(ours) - len(missing), missing, unused)


def official_class_rows(labels: Sequence[int], num_classes: int) -> List[int]:
    """The official class of each of our classes 0 .. C-1: the row of its label in ``labels``, the
    official label dictionary's labels in row order (without fairseq's special symbols)."""
    if sorted(labels) != list(range(num_classes)):
        raise ConversionError(f"the official label dictionary holds the labels {' '.join(map(str, labels))}, not "
                              f"each of the {num_classes} classes 0 .. {num_classes - 1} once")
    return [list(labels).index(label) for label in range(num_classes)]


def swap_pair_halves(weight: Tensor) -> Tensor:
    """The first head weight (out x 2D) for [u, v] from one trained on [v, u]."""
    first, second = weight.chunk(2, dim=1)
    return torch.cat([second, first], dim=1)


def official_byte_symbol(symbol: str) -> str:
    """Our byte dictionary's symbol (two hex digits) for a symbol of an official character
    dictionary: an ASCII character is its byte; any other symbol stays as it is (and matches none)."""
    if len(symbol) == 1 and ord(symbol) < 128:
        return f"{ord(symbol):02x}"
    return symbol


def convert_official_classifier(state: Dict[str, Tensor], *, real_valued: bool, paired: bool,
                                vocabulary: Optional[Vocabulary] = None, position_offset: int = 0,
                                class_rows: Optional[Sequence[int]] = None) -> Tuple[Dict[str, Tensor], List[str]]:
    """An official ``lra`` or ``sc_raw`` state dict with our names; returns it and notes.

    ``vocabulary``: the dictionaries of a token input (required when the checkpoint has a token
    table); ``position_offset``: the rows of learned Transformer positions that come before the
    first position (the official text models offset them by padding index + 1); ``class_rows``:
    the official class of each of ours (:func:`official_class_rows`; None: the same numbering).
    """
    inputs = "real" if real_valued else "tokens"
    converted = {}
    for name, value in state.items():
        if DROPPED_BUFFERS.search(name):
            continue
        new_name, new_value = rename_layer_parameter(classifier_name(name, inputs), value)
        converted[new_name] = new_value
    notes = []
    if TOKEN_TABLE in converted:
        if vocabulary is None:
            raise ConversionError("the checkpoint has token embeddings: give the official dictionary (src-bin/dict.txt "
                                  "of the data it was trained on) to put its rows in this plugin's order")
        table = converted[TOKEN_TABLE]
        if vocabulary.first_token is not None:
            if vocabulary.first_token not in vocabulary.official:
                raise ConversionError(f"first-position pooling reads {vocabulary.first_token!r}, which the official "
                                      f"dictionary lacks")
            converted[FIRST_TOKEN] = table[list(vocabulary.official).index(vocabulary.first_token)].clone()
            notes.append(f"the official {vocabulary.first_token} embedding is the learned first position")
        converted[TOKEN_TABLE], report = remap_rows(table, vocabulary.official, vocabulary.ours, vocabulary.unknown)
        notes.append(f"token embeddings: {report.copied} of our {len(vocabulary.ours)} symbols copied from the "
                     f"official table")
        if report.from_unknown:
            notes.append(f"{len(report.from_unknown)} of our symbols are not in the official dictionary and get its "
                         f"{vocabulary.unknown} row: {' '.join(report.from_unknown[:20])}")
        unused = [s for s in report.unused if s != vocabulary.first_token]
        if unused:
            notes.append(f"{len(unused)} official symbols have no row here (never input): {' '.join(unused[:20])}")
    if POSITIONS in converted and position_offset:
        converted[POSITIONS] = converted[POSITIONS][position_offset:].clone()
    if class_rows is not None and list(class_rows) != list(range(len(class_rows))):
        converted[OUTPUT] = converted[OUTPUT][list(class_rows)].clone()
        notes.append(f"classes: the official output rows {' '.join(map(str, class_rows))} are our classes 0 .. "
                     f"{len(class_rows) - 1} (the official task numbers them by label dictionary row)")
    if paired:
        first = f"{HEAD}.hidden.0.weight" if f"{HEAD}.hidden.0.weight" in converted else OUTPUT
        converted[first] = swap_pair_halves(converted[first])
        notes.append("pair head: official [second, first] halves swapped to [first, second]")
    return converted, notes

