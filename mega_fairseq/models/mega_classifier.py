"""Sequence classifiers (``--arch mega_lra_*``, ``transformer_lra_*``, ``mega_sc_raw*``): the Long
Range Arena and raw-audio classification on the ``mega_sequence_classification`` task.

One model for every task: an input front-end (a token embedding for tokens and bytes, a
real-valued embedding for pixels and audio samples), a bidirectional encoder stack (Mega, or the
Transformer baseline of the paper's comparison), pooling (mean over the positions that are not
padding, or a learned first position), and a head: ``classifier_layers`` x (linear, dropout,
activation), then a linear projection to the classes. For document pairs (LRA Retrieval) both
documents go through the same encoder and their vectors are combined before the head.

Differences from the official code, on purpose: the two vectors of a pair are concatenated as
[first, second] (the official code puts the second document first; checkpoint conversion swaps
the halves of the head's first weight); first-token pooling prepends a learned vector to the
embedded input instead of a CLS token added to the dictionary by the task.
"""

from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from omegaconf import II
from torch import Tensor, nn

from ..data.input_types import INPUT_TYPES
from ..hub import ClassifierHubInterface, FromPretrained
from ..checkpoint_errors import check_model_fits_task
from ..modules import POOLING_TYPES, MegaStack, RealValuedEmbedding, TokenEmbedding, pool
from ..modules.activations import ACTIVATIONS, get_activation
from .mega_config import (PRESET_OPTIONS, Preset, PresetTable, alias, derived_fields, layer_config, layer_defaults,
                          layer_options_config, preset_help, size_columns)
from .mega_decoder import build_embedding_table
from .mega_encoder import MegaEncoder
from .transformer_stack import TransformerStack

ENCODER_TYPES = ("mega", "transformer")
PAIR_COMBINATIONS = ("concat", "concat_product_difference")
HEAD_NAME = "sentence_classification_head"  # the name fairseq's sentence_prediction criterion asks for

# The family's base preset (--arch mega_classifier): narrower than the layer defaults, with an EMA
# truncation; the others build on it (and also set the attention function, activation and norm).
BASE = dict(layer_defaults(["encoder"], PRESET_OPTIONS + ("attention_activation_fn", "activation_fn",
                                                          "normalization_type")),
            encoder_embed_dim=128, encoder_hidden_dim=256, encoder_z_dim=64, truncation_length=1024,
            encoder_type="mega", pooling="mean", classifier_layers=1, classifier_hidden_dim=256,
            classifier_activation_fn="gelu", pair_combination="concat", encoder_attention_heads=4,
            encoder_learned_pos=False, tie_layer_weights=False, apply_bert_init=False)
_preset_help = partial(preset_help, "mega_classifier", BASE)


@dataclass
class ClassifierOptions(FairseqDataclass):
    """The options of the classifier around its encoder stack."""

    encoder_type: Optional[ChoiceEnum(ENCODER_TYPES)] = field(
        default=None, metadata=_preset_help("encoder_type", "encoder stack: Mega, or the Transformer baseline"))
    pooling: Optional[ChoiceEnum(POOLING_TYPES)] = field(
        default=None, metadata=_preset_help("pooling", "one vector per sequence: the mean over the positions that "
                                                       "are not padding, or a learned first position"))
    classifier_layers: Optional[int] = field(
        default=None, metadata=_preset_help("classifier_layers", "hidden layers of the head"))
    classifier_hidden_dim: Optional[int] = field(
        default=None, metadata=_preset_help("classifier_hidden_dim", "width of the head's hidden layers"))
    classifier_activation_fn: Optional[ChoiceEnum(tuple(ACTIVATIONS))] = field(
        default=None, metadata=_preset_help("classifier_activation_fn", "activation of the head"))
    pair_combination: Optional[ChoiceEnum(PAIR_COMBINATIONS)] = field(
        default=None, metadata=_preset_help("pair_combination", "how the vectors u, v of a document pair enter the "
                                                                "head: [u, v], or [u, v, u*v, u-v] (LRA baselines)"))
    normalize_embedding: bool = field(default=False, metadata={"help": "normalise the token embeddings (Mega)"})
    encoder_attention_heads: Optional[int] = field(
        default=None, metadata=_preset_help("encoder_attention_heads", "attention heads (Transformer)"))
    encoder_learned_pos: Optional[bool] = field(
        default=None, metadata=_preset_help("encoder_learned_pos", "learned instead of sinusoidal positions "
                                                                   "(Transformer)"))
    tie_layer_weights: Optional[bool] = field(
        default=None, metadata=_preset_help("tie_layer_weights", "all layers share one set of weights "
                                                                 "(Transformer)"))
    apply_bert_init: Optional[bool] = field(
        default=None, metadata=_preset_help("apply_bert_init", "BERT initialisation, N(0, 0.02) (Transformer)"))


@dataclass
class MegaClassifierConfig(layer_options_config("MegaClassifierLayerOptions", ["encoder"], BASE, "mega_classifier",
                                                ClassifierOptions)):
    num_classes: int = II("task.num_classes")
    input_type: str = II("task.input_type")
    max_positions: int = II("task.max_positions")


def _stack(size: dict, chunk: int, **changes) -> dict:
    """An encoder's sizes (layers, d, v, z) and chunk as preset values."""
    layers, embed, hidden, z = size
    return dict(encoder_layers=layers, encoder_embed_dim=embed, encoder_hidden_dim=hidden, encoder_z_dim=z,
                encoder_chunk_size=chunk, **changes)


_IMAGE = dict(normalization_type="batchnorm", normalize_before=True, attention_activation_fn="laplace", dropout=0.0)
_TRANSFORMER = dict(encoder_type="transformer", dropout=0.1, attention_dropout=0.1, activation_fn="gelu",
                    normalize_before=True, pooling="first")

# (preset, official alias, layers/d/v/z, head width, extra values, note); each gets a Mega-chunk variant.
_LRA = [
    ("mega_lra_listops", "mega_lra_listop", (6, 80, 160, 64), 160, {}, "ListOps (paper: 63.14)"),
    ("mega_lra_text", "mega_lra_imdb", (4, 128, 256, 64), 256, dict(normalization_type="scalenorm"),
     "Text, IMDB bytes (paper: 90.43)"),
    ("mega_lra_retrieval", "mega_lra_aan", (6, 128, 256, 64), 256, dict(normalization_type="scalenorm"),
     "Retrieval, AAN byte pairs (paper: 91.25)"),
    ("mega_lra_image", "mega_lra_cifar10", (8, 160, 320, 96), 320, _IMAGE, "Image, CIFAR-10 gray (paper: 90.44)"),
    ("mega_lra_pathfinder", "mega_lra_pf32", (6, 128, 256, 64), 256, _IMAGE, "Pathfinder-32 (paper: 96.01)"),
    ("mega_lra_pathx", "mega_lra_pf128", (4, 64, 128, 32), 128,
     dict(_IMAGE, normalization_type="syncbatchnorm", truncation_length=4096), "Path-X, 128x128 (paper: 97.98)"),
]
_CHUNK_RESULTS = {"mega_lra_listops": 58.76, "mega_lra_text": 90.19, "mega_lra_retrieval": 90.97,
                  "mega_lra_image": 85.80, "mega_lra_pathfinder": 94.41, "mega_lra_pathx": 93.81}
# The official Transformer baselines: (preset, layers, d, ffn, heads, head width, extra values)
_TRANSFORMERS = [
    ("transformer_lra_listops", 6, 512, 2048, 8, 2048, dict(tie_layer_weights=True, apply_bert_init=True)),
    ("transformer_lra_text", 4, 256, 1024, 4, 1024, dict(apply_bert_init=True)),
    ("transformer_lra_retrieval", 4, 128, 512, 4, 512, {}),
    ("transformer_lra_image", 1, 64, 128, 8, 128, dict(pooling="mean")),
    ("transformer_lra_pathfinder", 1, 128, 128, 4, 256, dict(pooling="mean")),
    ("transformer_lra_pathx", 1, 128, 128, 4, 256, dict(pooling="mean")),
]


def _presets() -> dict:
    presets = {"mega_classifier": Preset(None, BASE, "the family's base")}
    for name, official, size, head, extra, note in _LRA:
        presets[name] = Preset("mega_classifier", dict(_stack(size, -1), classifier_hidden_dim=head, **extra), note)
        presets[official] = alias(name)
        chunk = 4096 if name == "mega_lra_pathx" else 128
        presets[f"{name}_chunk"] = Preset(name, dict(encoder_chunk_size=chunk),
                                          f"Mega-chunk {chunk} (paper: {_CHUNK_RESULTS[name]})")
    presets["transformer_lra"] = Preset("mega_classifier", _TRANSFORMER, "the Transformer baseline's base")
    for name, layers, embed, ffn, heads, head, extra in _TRANSFORMERS:
        presets[name] = Preset("transformer_lra", dict(
            encoder_layers=layers, encoder_embed_dim=embed, encoder_hidden_dim=ffn, encoder_ffn_embed_dim=ffn,
            encoder_attention_heads=heads, classifier_hidden_dim=head, **extra),
            f"baseline of {name.replace('transformer', 'mega')}")
    presets["mega_sc_raw_base"] = Preset("mega_classifier", dict(
        _stack((6, 60, 120, 30), 1000), truncation_length=1000, **_IMAGE, classifier_hidden_dim=120),
        "Speech Commands SC10, raw 16 kHz waveforms (paper: 96.92)")
    presets["mega_sc_raw"] = alias("mega_sc_raw_base")
    presets["mega_sc_raw_big"] = Preset("mega_sc_raw_base", dict(
        encoder_embed_dim=72, encoder_hidden_dim=144, encoder_z_dim=36, classifier_hidden_dim=144), "(paper: 97.30)")
    presets["mega_sc_raw_tiny"] = Preset("mega_sc_raw_base", dict(
        encoder_layers=2, encoder_embed_dim=16, encoder_hidden_dim=32, encoder_z_dim=8, encoder_n_dim=4,
        classifier_hidden_dim=32), "tests and CPU demos")
    presets["mega_classifier_tiny"] = Preset("mega_classifier", dict(
        _stack((2, 32, 64, 16), -1), encoder_n_dim=4, classifier_hidden_dim=32), "tests and CPU demos")
    presets["transformer_classifier_tiny"] = Preset("transformer_lra", dict(
        encoder_layers=2, encoder_embed_dim=32, encoder_hidden_dim=64, encoder_ffn_embed_dim=64,
        encoder_attention_heads=4, classifier_hidden_dim=32), "tests and CPU demos: the Transformer of the tiny size")
    return presets


PRESETS = _presets()
CLASSIFIER_PRESETS = PresetTable("mega_classifier", MegaClassifierConfig, PRESETS, derived=derived_fields(["encoder"]))


def preset_table() -> str:
    """The table of named classifier architectures in docs/lra.md (kept equal to it by a test)."""

    def mega_only(column):
        title, value = column
        return title, lambda v: value(v) if v["encoder_type"] == "mega" else "-"

    def norm(v):
        if v["encoder_type"] == "mega":
            return f"{v['normalization_type']}, {'prenorm' if v['normalize_before'] else 'postnorm'}"
        return "layernorm, postnorm" + (" + embedding norm" if v["normalize_before"] else "")

    sizes = dict(size_columns("encoder"))
    return CLASSIFIER_PRESETS.markdown([
        ("encoder", lambda v: v["encoder_type"]), ("layers", lambda v: v["encoder_layers"]), ("d", sizes["d"]),
        ("ffn", sizes["ffn"]), *(mega_only((title, sizes[title])) for title in ("v (hidden)", "z", "N", "chunk")),
        ("norm", norm),
        ("attention", lambda v: v["attention_activation_fn"] if v["encoder_type"] == "mega"
            else f"{v['encoder_attention_heads']} heads"),
        ("dropout", lambda v: v["dropout"]), ("pooling", lambda v: v["pooling"]),
        ("head", lambda v: v["classifier_hidden_dim"])])


class ClassificationHead(nn.Module):
    """``layers`` x (linear, dropout, activation), then a linear projection (no bias) to the
    classes, as the official LRA head. Shapes: B x in_dim -> B x num_classes."""

    def __init__(self, in_dim: int, hidden_dim: int, num_classes: int, *, layers: int, activation: str,
                 dropout: float):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out_proj = nn.Linear(dims[-1], num_classes, bias=False)
        for linear in [*self.hidden, self.out_proj]:
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        self.activation = get_activation(activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        for linear in self.hidden:
            x = self.activation(self.dropout(linear(x)))
        return self.out_proj(x)


def combine_pair(kind: str, u: Tensor, v: Tensor) -> Tensor:
    """The head's input for the vectors u, v (B x D each) of a document pair."""
    if kind == "concat":
        return torch.cat([u, v], dim=-1)
    if kind == "concat_product_difference":
        return torch.cat([u, v, u * v, u - v], dim=-1)
    raise ValueError(f"unknown pair combination {kind!r}; choose one of {', '.join(PAIR_COMBINATIONS)}")


def _pad_to(x: Tensor, length: int, value) -> Tensor:
    if x.size(1) == length:
        return x
    return torch.cat([x, x.new_full((x.size(0), length - x.size(1), *x.shape[2:]), value)], dim=1)


@register_model("mega_classifier", dataclass=MegaClassifierConfig)
class MegaSequenceClassifier(FromPretrained, BaseFairseqModel):
    """Front-end + bidirectional encoder + pooling + head; pairs share the encoder.

    ``forward`` follows the interface of fairseq's ``sentence_prediction`` criterion: it returns
    (logits B x num_classes, extra) and the head is ``classification_heads[HEAD_NAME]``.
    """

    hub_interface = ClassifierHubInterface  # from_pretrained: .predict() on raw examples

    def __init__(self, encoder: MegaEncoder, head: ClassificationHead, *, pooling: str, pair_combination: str,
                 max_positions: int):
        super().__init__()
        self.encoder = encoder
        self.classification_heads = nn.ModuleDict({HEAD_NAME: head})
        self.pooling = pooling
        self.pair_combination = pair_combination
        self._max_positions = max_positions

    @classmethod
    def build_model(cls, cfg, task):
        check_model_fits_task(cfg, task, "mega_classifier")
        CLASSIFIER_PRESETS.apply("mega_classifier", cfg)  # configs of older checkpoints may lack fields
        input_type = str(cfg.input_type)
        encoder_type = str(cfg.encoder_type)
        first_token = str(cfg.pooling) == "first"
        positions = cfg.max_positions + int(first_token)
        dim = cfg.encoder_embed_dim
        dictionary = None if INPUT_TYPES[input_type].real_valued else task.source_dictionary
        if encoder_type == "mega":
            stack = MegaStack(layer_config(cfg, "encoder", positions), causal=False)
            embedding_dropout = cfg.dropout
        else:
            stack = TransformerStack(
                layers=cfg.encoder_layers, embed_dim=dim, ffn_embed_dim=cfg.encoder_ffn_embed_dim,
                attention_heads=cfg.encoder_attention_heads, dropout=cfg.dropout,
                attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
                activation_fn=str(cfg.activation_fn), max_positions=positions,
                learned_positions=cfg.encoder_learned_pos, embedding_norm=cfg.normalize_before,
                tie_layer_weights=cfg.tie_layer_weights)
            embedding_dropout = 0.0  # the Transformer adds positions first, then drops out
        if dictionary is None:
            if cfg.normalize_embedding:
                raise ValueError(f"--normalize-embedding needs a token input, not --input-type {input_type}")
            embedding = RealValuedEmbedding(dim, dropout=embedding_dropout)
            padding_idx = None
        else:
            if cfg.normalize_embedding and (cfg.normalize_before or encoder_type != "mega"):
                raise ValueError("--normalize-embedding needs a postnorm Mega encoder (no --normalize-before)")
            embedding = TokenEmbedding(
                build_embedding_table(dictionary, dim), dim, input_dim=dim, scale=False,
                norm_type=str(cfg.normalization_type) if cfg.normalize_embedding else None, dropout=embedding_dropout)
            padding_idx = dictionary.pad()
        encoder = MegaEncoder(dictionary, embedding, stack, padding_idx=padding_idx, max_source_positions=positions,
                              first_token_dim=dim if first_token else 0)
        paired = bool(getattr(getattr(task, "cfg", None), "paired", False))
        in_dim = dim * ({"concat": 2, "concat_product_difference": 4}[str(cfg.pair_combination)] if paired else 1)
        head = ClassificationHead(in_dim, cfg.classifier_hidden_dim, cfg.num_classes, layers=cfg.classifier_layers,
                                  activation=str(cfg.classifier_activation_fn), dropout=cfg.dropout)
        model = cls(encoder, head, pooling=str(cfg.pooling), pair_combination=str(cfg.pair_combination),
                    max_positions=cfg.max_positions)
        if cfg.apply_bert_init:
            model.apply(init_bert_params)
        return model

    def encode(self, src_tokens: Tensor, src_lengths: Tensor) -> Tensor:
        """One vector per sequence. Shapes: src_tokens: B x L (ids or values); returns B x D."""
        out = self.encoder(src_tokens, src_lengths)
        return pool(self.pooling, out["encoder_out"][0], out["encoder_padding_mask"][0])

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, pair_tokens: Optional[Tensor] = None,
                pair_lengths: Optional[Tensor] = None, features_only: bool = True,
                classification_head_name: str = HEAD_NAME, **unused):
        """Shapes: src_tokens, pair_tokens: B x L (right-padded); returns (B x num_classes, {"features": B x D'})."""
        if classification_head_name not in self.classification_heads:
            raise ValueError(f"this model's classification head is {HEAD_NAME!r}, not {classification_head_name!r} "
                             f"(--classification-head-name)")
        if pair_tokens is None:
            features = self.encode(src_tokens, src_lengths)
        else:
            # both documents in one pass through the shared encoder
            length = max(src_tokens.size(1), pair_tokens.size(1))
            pad = self.encoder.padding_idx if self.encoder.padding_idx is not None else 0
            both = torch.cat([_pad_to(src_tokens, length, pad), _pad_to(pair_tokens, length, pad)])
            vectors = self.encode(both, torch.cat([src_lengths, pair_lengths]))
            u, v = vectors.split(src_tokens.size(0))
            features = combine_pair(self.pair_combination, u, v)
        return self.classification_heads[classification_head_name](features), {"features": features}

    def max_positions(self) -> int:
        return self._max_positions


CLASSIFIER_PRESETS.register()
