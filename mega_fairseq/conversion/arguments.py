"""The training arguments of an official Mega checkpoint (an ``argparse.Namespace``) in this
plugin's terms: :func:`convert_official_args` returns them with our task, architecture and option
names (``OFFICIAL_ARCHS``, ``CLASSIFIER_RENAMES``, ``CLASSIFIER_VALUES``, ``SCHEDULERS``),
official-only options dropped with a note each (``DROPPED``), and refuses options this plugin
cannot reproduce (``REFUSED``). Language and translation models keep their task and architecture
names, which this plugin registers too.

Imports fairseq: the error class comes from :mod:`mega_fairseq.models.official_names`, and importing
``mega_fairseq.models`` registers the plugin. A classifier's settings come from the benchmark table of
:mod:`mega_fairseq.data.classification`.
"""

import argparse
from typing import List, NamedTuple, Optional

from ..models.official_names import ConversionError
from ..data.classification import LRA_TASKS, SPEECH_COMMANDS

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
