"""Convert a checkpoint of the official Mega code (facebookresearch/mega) to this plugin.

Renames the parameters (:mod:`mega_fairseq.models.official_names`, and for classifiers
:mod:`mega_fairseq.conversion.classifier`) and the training arguments
(:mod:`mega_fairseq.conversion.arguments`: official task, architecture and option names become
ours; official-only options are dropped, each with a note) and drops the optimizer state, which
refers to the old parameter order. The result loads with ``--user-dir mega_fairseq``.

Language model (mega_lm_*; the arguments are kept):

    python scripts/convert_official_checkpoint.py wt103/model.pt wt103/converted.pt
    CHUNK=2048 SEGMENT=4096 STREAMS=10 scripts/eval_lm.sh wt103/converted.pt data/wikitext-103/bin

Translation (mega_wmt_en_de*, fairseq's translation task; the arguments are kept):

    python scripts/convert_official_checkpoint.py wmt16/checkpoint_best.pt wmt16/converted.pt
    scripts/eval_bleu.sh wmt16/converted.pt data/wmt16_en_de

LRA (the official lra-text / lra-image tasks, mega_lra_* and transformer_lra_* models): the
classifier moves to mega_sequence_classification. Text inputs need the official dictionary the
checkpoint was trained with (its data's src-bin/dict.txt), whose rows are put in our order, and its
label dictionary (label-bin/dict.txt beside src-bin/, or --official-labels): the official task
numbers the classes by their rows there, ours by the label's value, and the head's output rows
are put in our order. ListOps also needs our data folder, whose dictionary is ours. The official
Retrieval head reads [second, first] document: its first weight's halves are swapped for our
[first, second].

    python scripts/convert_official_checkpoint.py lra/listops.pt listops.pt \\
        --official-dict lra_data/listops/src-bin/dict.txt --data data/lra/listops
    python scripts/convert_official_checkpoint.py lra/aan.pt aan.pt --official-dict lra_data/aan/src-bin/dict.txt
    python scripts/convert_official_checkpoint.py lra/cifar10.pt cifar10.pt
    scripts/eval_cls.sh listops.pt data/lra/listops            # ends with "test accuracy: A"

Speech Commands (the official speech_commands task, mega_sc_raw*):

    python scripts/convert_official_checkpoint.py sc/checkpoint_best.pt sc_raw.pt
    scripts/eval_cls.sh sc_raw.pt data/sc10

To fine-tune from a converted checkpoint, pass ``--restore-file converted.pt --reset-optimizer``.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
from fairseq import tasks
from fairseq.data import Dictionary
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from ..checkpoint_loading import UnsafeCheckpointError, safe_load
from ..models.official_names import ConversionError, check_seq2seq_names, convert_official_state_dict
from ..data.classification import DataError, parse_label
from ..data.input_types import INPUT_TYPES, byte_dictionary
from .arguments import convert_official_args
from .classifier import Vocabulary, convert_official_classifier, official_byte_symbol, official_class_rows

OFFICIAL_CLS = "<CLS>"  # the symbol the official lra-text task appends to its dictionary


def official_symbols(path: Path):
    """The symbols of the official lra-text dictionary: its dict.txt, then <CLS>."""
    dictionary = Dictionary.load(str(path))
    dictionary.add_symbol(OFFICIAL_CLS)
    return dictionary.symbols, dictionary.pad()


def our_symbols(args: argparse.Namespace):
    """The symbols of the dictionary our task reads for these (converted) arguments."""
    if args.input_type == "bytes":
        return byte_dictionary().symbols
    return tasks.setup_task(convert_namespace_to_omegaconf(args).task).source_dictionary.symbols


def classifier_vocabulary(args: argparse.Namespace, official_dict: Optional[Path]):
    """(Vocabulary, the offset of learned positions) of a converted classifier's token input."""
    if args.input_type not in ("tokens", "bytes"):
        return None, 0
    if official_dict is None:
        raise ConversionError(f"--input-type {args.input_type}: pass --official-dict, the src-bin/dict.txt of the "
                              f"data the official model was trained on (its embedding rows follow it)")
    official, pad = official_symbols(official_dict)
    if args.input_type == "bytes":
        official = [official_byte_symbol(symbol) for symbol in official]
    first_token = OFFICIAL_CLS if args.pooling == "first" else None
    return Vocabulary(official, our_symbols(args), first_token=first_token), pad + 1


def read_official_labels(path: Path) -> List[int]:
    """The labels of an official lra-text label dictionary (label-bin/dict.txt) in row order: the
    official class k is the label in row k."""
    if not path.is_file():
        raise ConversionError(f"{path}: no such file; pass --official-labels, the label-bin/dict.txt of the data the "
                              f"official model was trained on (the official task numbers the classes by its rows)")
    dictionary = Dictionary.load(str(path))
    return [parse_label(symbol, f"{path}:{line}")
            for line, symbol in enumerate(dictionary.symbols[dictionary.nspecial:], start=1)]


def classifier_class_rows(args: argparse.Namespace, official_dict: Optional[Path],
                          labels: Optional[Path]) -> Optional[List[int]]:
    """The official class of each of ours for a text input (lra-text); None for the other tasks,
    which number classes as we do. ``labels`` defaults to label-bin/dict.txt beside the
    src-bin/ of ``official_dict``."""
    if args.input_type not in ("tokens", "bytes"):
        return None
    if labels is None:  # text inputs come with official_dict (classifier_vocabulary)
        labels = official_dict.parent.parent / "label-bin" / "dict.txt"
    return official_class_rows(read_official_labels(labels), args.num_classes)


def convert(source: Path, target: Path, *, official_dict: Optional[Path] = None, data: Optional[Path] = None,
            benchmark: Optional[str] = None, official_labels: Optional[Path] = None) -> dict:
    state = safe_load(source)
    if "model" not in state:
        raise SystemExit(f"{source}: no 'model' entry; is this a fairseq checkpoint?")
    if state.get("args") is None:
        raise SystemExit(f"{source}: no training arguments ('args'); official Mega checkpoints have them")
    converted_args = convert_official_args(state["args"], benchmark)
    args, notes = converted_args.args, list(converted_args.notes)
    if data is not None:
        args.data = str(data)
    if converted_args.family == "classifier":
        if args.input_type == "tokens" and data is None:
            raise ConversionError("--input-type tokens: pass --data, the data folder to evaluate on (its "
                                  "dictionary orders the converted embeddings)")
        vocabulary, offset = classifier_vocabulary(args, official_dict)
        model, model_notes = convert_official_classifier(
            state["model"], real_valued=INPUT_TYPES[args.input_type].real_valued, paired=args.paired,
            vocabulary=vocabulary, position_offset=offset,
            class_rows=classifier_class_rows(args, official_dict, official_labels))
        notes += model_notes
    else:
        check_seq2seq_names(state["model"])
        model = convert_official_state_dict(state["model"])
    converted = {
        "args": args,
        "model": model,
        "optimizer_history": [{k: v for k, v in entry.items() if k != "optimizer"}
                              for entry in state.get("optimizer_history", [])],
        "extra_state": {"converted_from": str(source), "conversion_notes": notes},
        "last_optimizer_state": None,
    }
    torch.save(converted, target)
    return converted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="official checkpoint (e.g. model.pt from the released zips)")
    parser.add_argument("target", type=Path, help="where to write the converted checkpoint")
    parser.add_argument("--official-dict", type=Path,
                        help="LRA text tasks: the official data's src-bin/dict.txt (the embedding rows follow it)")
    parser.add_argument("--official-labels", type=Path,
                        help="LRA text tasks: the official data's label-bin/dict.txt (the official classes follow its "
                             "rows; default: label-bin/dict.txt beside the --official-dict's src-bin/)")
    parser.add_argument("--data", type=Path,
                        help="the data folder the converted model is for (required for ListOps tokens, whose "
                             "dictionary is read from it); stored as the checkpoint's data path")
    parser.add_argument("--benchmark", help="an official classifier of an --arch the converter does not know: "
                                            "listops, text, retrieval, image, pathfinder, pathx or speech_commands")
    parser.add_argument("--force", action="store_true", help="overwrite an existing target")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"no such checkpoint: {args.source}")
    if args.target.exists() and not args.force:
        parser.error(f"{args.target} exists; pass --force to overwrite it")
    try:
        converted = convert(args.source, args.target, official_dict=args.official_dict, data=args.data,
                            benchmark=args.benchmark, official_labels=args.official_labels)
    except (UnsafeCheckpointError, ConversionError, DataError) as error:
        sys.exit(f"convert_official_checkpoint.py: error: {error}")
    for note in converted["extra_state"]["conversion_notes"]:
        print(f"note: {note}")
    print(f"converted {len(converted['model'])} tensors ({converted['args'].arch}) -> {args.target}")
