"""Checkpoints of the official Mega code (facebookresearch/mega) as this plugin's checkpoints.

Parameters. The official EMA calls the paper's alpha ``delta``, the paper's delta ``alpha`` and
eta ``gamma``, and stores them as D x N x 1; the gated attention calls the per-dimension scale and
offset of Q and K ``gamma`` and ``beta`` (our ``kappa`` and ``mu``). The official encoders and
decoders of the LM and MT models hold their embedding, layers and final norm directly
(``decoder.layers.N``), as this plugin's decoder did before it was built from an embedding, a
``MegaStack`` and an output layer (``decoder.stack.layers.N``): ``OFFICIAL_LAYOUT`` maps those
paths, for official checkpoints and for checkpoints of the earlier layout alike. The official
classifiers (the ``lra`` and ``sc_raw`` models) wrap their sentence encoder in a second
``encoder`` and keep the head as ``classifier.N.0`` and ``sentence_projection_layer``:
``CLASSIFIER_RULES`` maps every official name; a name no rule knows is an error.

Arguments. The official code saved an ``argparse.Namespace``; :func:`convert_official_args`
returns it with our task, architecture and option names (``OFFICIAL_ARCHS``, ``*_RENAMES``),
official-only options dropped with a note each (``DROPPED``), and refuses options this plugin
cannot reproduce (``REFUSED``).

Classifier inputs. Token embeddings are indexed by the official dictionary (fairseq's
``src-bin/dict.txt`` plus the ``<CLS>`` the official task appends): :func:`remap_rows` reorders
them into ours by symbol. The official ``<CLS>`` row becomes our learned first position
(``pooling first``). The official Retrieval head reads [second document, first document]; ours
reads [first, second]: :func:`swap_pair_halves` swaps the halves of its first weight.

Classes. The official ``lra-text`` task numbers a class by its label's row in the label dictionary
(``label-bin/dict.txt``, ordered by fairseq-preprocess by frequency, e.g. ``0 9 8 1 4 ...`` for
ListOps); ours by the label's value. :func:`official_class_rows` gives the official row of each of
our classes, and the head's output rows are reordered by it. (``lra-image`` and the speech task
number classes as we do.)

Pure: no fairseq import; ``convert_official_args`` reads the benchmark settings of
``tasks/mega_sequence_classification.py`` when it needs them.
"""

import argparse
import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor


class ConversionError(ValueError):
    """An official checkpoint, or one of its tensors or options, that this plugin cannot take."""


# ---------------------------------------------------------------------------------------------
# Layers (every family)

_EMA = {"delta": "alpha", "alpha": "delta", "beta": "beta", "gamma": "eta", "omega": "omega"}
_ATTENTION = {"gamma": "kappa", "beta": "mu"}
# buffers the official modules register that carry no weights
_DROPPED = re.compile(r"(^|\.)(version|_float_tensor)$")

# official (and earlier) path inside an encoder or decoder -> path now
OFFICIAL_LAYOUT = {
    "embed_tokens.": "embedding.embed_tokens.",
    "project_in_dim.": "embedding.project_in_dim.",
    "embed_norm.": "embedding.norm.",
    "layers.": "stack.layers.",
    "final_norm.": "stack.final_norm.",
}
# what an official LM or MT encoder/decoder holds besides OFFICIAL_LAYOUT's modules
_SEQ2SEQ_OTHERS = ("output_projection.", "adaptive_softmax.", "version")


def rename_prefixes(state: Dict[str, Tensor], module: str, renames: Dict[str, str]) -> Dict[str, Tensor]:
    """Renames, in place, the keys under the module path ``module`` that start with an old
    prefix of ``renames``; returns ``state``."""
    prefix = f"{module}." if module else ""
    for key in list(state):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        for old, new in renames.items():
            if local.startswith(old):
                state[prefix + new + local[len(old):]] = state.pop(key)
                break
    return state


def rename_layer_parameter(name: str, value: Tensor) -> Tuple[str, Tensor]:
    """One parameter of an official Mega layer (EMA, gated attention) with our name and shape."""
    prefix, _, leaf = name.rpartition(".")
    if prefix.endswith(".move") and leaf in _EMA:
        return f"{prefix}.{_EMA[leaf]}", value.squeeze(-1) if value.dim() == 3 else value
    if prefix.endswith("mega_layer") and leaf in _ATTENTION:
        return f"{prefix}.{_ATTENTION[leaf]}", value
    return name, value


def convert_official_state_dict(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """An official Mega LM or MT state dict (or one of Mega layers) with our parameter names."""
    converted = dict(rename_layer_parameter(name, value) for name, value in state.items()
                     if not _DROPPED.search(name))
    for module in ("encoder", "decoder"):
        rename_prefixes(converted, module, OFFICIAL_LAYOUT)
    return converted


def check_seq2seq_names(state: Dict[str, Tensor]):
    """Every tensor of an official LM or MT checkpoint belongs to a module the converter knows."""
    known = tuple(OFFICIAL_LAYOUT) + _SEQ2SEQ_OTHERS
    for name in state:
        module, _, local = name.partition(".")
        if module not in ("encoder", "decoder") or not local.startswith(known):
            raise ConversionError(f"unknown tensor {name!r} in the official checkpoint: not part of a Mega encoder or "
                                  f"decoder ({', '.join(k.rstrip('.') for k in known)})")


# ---------------------------------------------------------------------------------------------
# Classifiers (the official ``lra`` and ``sc_raw`` models)

HEAD = "classification_heads.sentence_classification_head"
OUTPUT = HEAD + ".out_proj.weight"
FIRST_TOKEN = "encoder.first_token"
TOKEN_TABLE = "encoder.embedding.embed_tokens.weight"
POSITIONS = "encoder.stack.positions.weight"

# (official name pattern, our name, inputs it applies to: "tokens", "real" or None for both).
# The Mega encoder wraps its token table (``embed_tokens.embed``); the Transformer's is an
# nn.Embedding (``embed_tokens.weight``); for pixels and samples ``embed_tokens`` is the
# real-number embedding x * weight + bias of both.
CLASSIFIER_RULES: List[Tuple[str, str, Optional[str]]] = [
    (r"encoder\.encoder\.embed_tokens\.embed\.weight", TOKEN_TABLE, "tokens"),
    (r"encoder\.encoder\.embed_tokens\.weight", TOKEN_TABLE, "tokens"),
    (r"encoder\.encoder\.embed_tokens\.(weight|bias)", r"encoder.embedding.\1", "real"),
    (r"encoder\.encoder\.embed_norm\.(.+)", r"encoder.embedding.norm.\1", None),
    (r"encoder\.encoder\.layers\.(\d+)\.(.+)", r"encoder.stack.layers.\1.\2", None),
    (r"encoder\.encoder\.final_norm\.(.+)", r"encoder.stack.final_norm.\1", None),
    (r"encoder\.encoder\.emb_layer_norm\.(weight|bias)", r"encoder.stack.embedding_norm.\1", None),
    (r"encoder\.encoder\.embed_positions\.weight", POSITIONS, None),
    (r"classifier\.(\d+)\.0\.(weight|bias)", HEAD + r".hidden.\1.\2", None),
    (r"sentence_projection_layer\.weight", OUTPUT, None),
]


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


def _classifier_name(name: str, inputs: str) -> str:
    for pattern, replacement, applies_to in CLASSIFIER_RULES:
        if applies_to in (None, inputs) and re.fullmatch(pattern, name):
            return re.sub(pattern, replacement, name)
    raise ConversionError(f"unknown tensor {name!r} in the official classifier checkpoint (its sentence encoder "
                          f"'encoder.encoder', head 'classifier.N.0' and 'sentence_projection_layer' are known)")


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
        if _DROPPED.search(name):
            continue
        new_name, new_value = rename_layer_parameter(_classifier_name(name, inputs), value)
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


# ---------------------------------------------------------------------------------------------
# Arguments

LRA_TASKS_OFFICIAL = ("lra-text", "lra-image")
SPEECH = "speech_commands"
# official --arch -> (our --arch, benchmark: a key of LRA_TASKS or SPEECH)
OFFICIAL_ARCHS = {
    "mega_lra_listop": ("mega_lra_listops", "listops"),
    "mega_lra_imdb": ("mega_lra_text", "text"),
    "mega_lra_aan": ("mega_lra_retrieval", "retrieval"),
    "mega_lra_cifar10": ("mega_lra_image", "image"),
    "mega_lra_pf32": ("mega_lra_pathfinder", "pathfinder"),
    "mega_lra_pf128": ("mega_lra_pathx", "pathx"),
    "transformer_lra_listop": ("transformer_lra_listops", "listops"),
    "transformer_lra_imdb": ("transformer_lra_text", "text"),
    "transformer_lra_aan": ("transformer_lra_retrieval", "retrieval"),
    "transformer_lra_cifar10": ("transformer_lra_image", "image"),
    "transformer_lra_pf32": ("transformer_lra_pathfinder", "pathfinder"),
    "sc_raw": ("mega_sc_raw_base", SPEECH),
    "mega_sc_raw": ("mega_sc_raw_base", SPEECH),
    "mega_sc_raw_base": ("mega_sc_raw_base", SPEECH),
    "mega_sc_raw_big": ("mega_sc_raw_big", SPEECH),
}
# the base architecture of each official --layer-type, for an --arch the table above lacks
_BASE_ARCHS = {"mega": "mega_classifier", "transformer": "transformer_lra"}

# official classifier option -> ours (same value)
CLASSIFIER_RENAMES = {
    "z_dim": "encoder_z_dim", "n_dim": "encoder_n_dim", "chunk_size": "encoder_chunk_size",
    "norm_type": "normalization_type", "encoder_normalize_before": "normalize_before",
    "classifier_out_dim": "classifier_hidden_dim", "sentence_class_num": "num_classes",
}
# official classifier option -> (ours, official value -> ours); another value is refused
CLASSIFIER_VALUES = {
    "sen_rep_type": ("pooling", {"mp": "mean", "cls": "first"}),
    "layer_type": ("encoder_type", {"mega": "mega", "transformer": "transformer"}),
    "criterion": ("criterion", {"lra_cross_entropy": "sentence_prediction"}),
}
# official learning-rate schedulers -> ours (fairseq's polynomial decay of power 1 is the official linear decay)
SCHEDULERS = {"linear_decay": ("polynomial_decay", {"power": 1.0})}

# official-only options: why leaving them out changes nothing a converted model computes
DROPPED = {
    "classifier_in_dim": "follows from the model dimension and the pairing",
    "sent_loss": "always on",
    "share_encoder_input_output_embed": "a classifier has no output embedding",
    "no_token_positional_embeddings": "not read by the official LRA models",
    "encoder_layerdrop": "training only",
    "quant_noise_pq": "training only",
    "quant_noise_pq_block_size": "training only",
    "quant_noise_scalar": "training only",
    "encoder_projection_length": "Luna only",
    "encoder_projected_attention_heads": "Luna only",
    "decoder_projected_attention_heads": "Luna only",
    "init_token": "the official CLS token is the first position here",
    "separator_token": "not read by the official LRA task",
    "no_shuffle": "evaluation does not shuffle",
    "shorten_data_split_list": "every split is shortened alike",
    "sc_dropped_rate": "an official experiment on irregularly sampled audio; its models are trained with 0",
    "sc_all_classes": "--words all",
    "pixel_normalization": "--pixel-mean, --pixel-std",
    "act_dropout": "--hidden-dropout and --activation-dropout (Mega) or --activation-dropout (Transformer)",
    "tokens_per_sample": "--max-positions",
    "encoder_embed_path": "pretrained embeddings of the start of training; the checkpoint holds the trained ones",
    "decoder_embed_path": "pretrained embeddings of the start of training; the checkpoint holds the trained ones",
    "warmup_init_lr": "fairseq's polynomial_decay warms up from 0",
    "warmup_power": "fairseq's polynomial_decay warms up linearly",
}
# official options with a value this plugin cannot reproduce: (the value it can, why)
REFUSED = {
    "use_p": (False, "the official Luna --use-p pooling has no counterpart here"),
    "mfcc": (False, "this plugin classifies raw waveforms, not MFCC features"),
    "regression_target": (False, "the classifier predicts classes, not a regression target"),
}


class ConvertedArgs(NamedTuple):
    args: argparse.Namespace
    family: str  # "lm", "mt" or "classifier"
    notes: List[str]


def convert_official_args(official: argparse.Namespace, benchmark: Optional[str] = None) -> ConvertedArgs:
    """The official training arguments with our task, architecture and option names.

    ``benchmark`` (a key of ``LRA_TASKS`` or ``speech_commands``) is needed only for an official
    classifier whose ``--arch`` is not one of ``OFFICIAL_ARCHS``.
    """
    args = argparse.Namespace(**vars(official))
    notes: List[str] = []
    for name, (allowed, why) in REFUSED.items():
        value = getattr(args, name, allowed)
        if value != allowed:
            raise ConversionError(f"--{_flag(name)} {value}: {why}")
    _map_scheduler(args, notes)
    task = getattr(args, "task", None)
    if args.arch in OFFICIAL_ARCHS or task in LRA_TASKS_OFFICIAL + (SPEECH,):
        _classifier_args(args, benchmark, notes)
        family = "classifier"
    else:
        family = "mt" if task == "translation" else "lm"
    for name, why in DROPPED.items():
        if hasattr(args, name):
            notes.append(f"dropped --{_flag(name)} {getattr(args, name)!r} ({why})")
            delattr(args, name)
    return ConvertedArgs(args, family, notes)


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _map_scheduler(args: argparse.Namespace, notes: List[str]):
    scheduler = getattr(args, "lr_scheduler", None)
    if scheduler in SCHEDULERS:
        ours, values = SCHEDULERS[scheduler]
        args.lr_scheduler = ours
        for name, value in values.items():
            setattr(args, name, value)
        changes = " ".join(f"--{_flag(k)} {v}" for k, v in values.items())
        notes.append(f"--lr-scheduler {scheduler} -> {ours} {changes}")


def _rename(args: argparse.Namespace, old: str, new: str, notes: List[str], value=None):
    if not hasattr(args, old):
        return
    official = getattr(args, old)
    delattr(args, old)
    setattr(args, new, official if value is None else value)
    if old != new or value is not None:
        notes.append(f"--{_flag(old)} {official} -> --{_flag(new)} {getattr(args, new)}")


def _classifier_args(args: argparse.Namespace, benchmark: Optional[str], notes: List[str]):
    from .data.classification import LRA_TASKS, SPEECH_COMMANDS

    official_arch = args.arch
    layer_type = getattr(args, "layer_type", "mega")
    if official_arch in OFFICIAL_ARCHS:
        arch, benchmark = OFFICIAL_ARCHS[official_arch][0], benchmark or OFFICIAL_ARCHS[official_arch][1]
    elif benchmark is None:
        raise ConversionError(f"--arch {official_arch}: not an official LRA or speech architecture this converter "
                              f"knows ({', '.join(OFFICIAL_ARCHS)}); name the benchmark ({', '.join(LRA_TASKS)}, "
                              f"{SPEECH})")
    elif layer_type not in _BASE_ARCHS:
        raise ConversionError(f"--layer-type {layer_type}: this plugin has only {' and '.join(_BASE_ARCHS)} encoders")
    else:
        arch = _BASE_ARCHS[layer_type]
    if benchmark not in LRA_TASKS and benchmark != SPEECH:
        raise ConversionError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(LRA_TASKS)}, {SPEECH}")
    settings = SPEECH_COMMANDS if benchmark == SPEECH else LRA_TASKS[benchmark]
    notes.append(f"--arch {official_arch} -> {arch}; --task {getattr(args, 'task', None)} -> "
                 f"mega_sequence_classification (--input-type {settings.input_type}"
                 f"{' --paired' if settings.paired else ''})")
    args.arch = arch
    args.task = "mega_sequence_classification"
    args.input_type = settings.input_type
    args.paired = settings.paired
    args.shorten_method = settings.shorten_method
    args.data_format = "auto"
    for old, new in CLASSIFIER_RENAMES.items():
        _rename(args, old, new, notes)
    for old, (new, values) in CLASSIFIER_VALUES.items():
        if hasattr(args, old):
            if getattr(args, old) not in values:
                raise ConversionError(f"--{_flag(old)} {getattr(args, old)}: this plugin has "
                                      f"{', '.join(map(str, values))} only")
            _rename(args, old, new, notes, value=values[getattr(args, old)])
    encoder_type = getattr(args, "encoder_type", "mega")
    act_dropout = getattr(args, "act_dropout", 0.0)
    args.activation_dropout = act_dropout
    if encoder_type == "mega":
        args.hidden_dropout = act_dropout  # the official Mega layers read --act-dropout for both
    elif settings.input_type in ("tokens", "bytes") and not getattr(args, "encoder_learned_pos", False):
        notes.append("sinusoidal positions start at 0 here and at the padding index + 1 in the official text "
                     "Transformer: its outputs differ slightly")
    # the official CLS token counts in --max-positions; our first position does not
    first_token = getattr(args, "pooling", "mean") == "first" and settings.input_type in ("tokens", "bytes")
    args.max_positions = getattr(args, "max_positions", settings.max_positions) - int(first_token)
    if settings.input_type == "pixels":
        args.pixel_mean, args.pixel_std = getattr(args, "pixel_normalization", None) or (0.5, 0.5)
    if benchmark == SPEECH:
        every_word = bool(getattr(args, "sc_all_classes", False))
        args.words = "all" if every_word else "sc10"
        # the official protocols: SC10 drops short clips and splits at random; the 35 words pad
        # them and keep the release's lists (its _process_all)
        args.short_clips = "pad" if every_word else "drop"
        args.split_protocol = "lists" if every_word else "random"
    if getattr(args, "num_classes", -1) < 2:
        args.num_classes = settings.num_classes
