"""Mega language models (``--arch mega_lm*``), with the official recipes' presets."""

from dataclasses import dataclass, field, fields
from typing import Optional

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import FairseqLanguageModel, register_model, register_model_architecture
from fairseq.modules import AdaptiveInput
from fairseq.utils import eval_str_list, safe_getattr
from omegaconf import II
from torch import nn

from ..modules import ATTENTION_FUNCTIONS, NORM_TYPES, REL_POS_BIAS_TYPES
from ..modules.activations import ACTIVATIONS
from .mega_decoder import MegaDecoder

# Fields left at None are filled by the named architecture (``--arch``); the value
# after "preset" in the help is the one of the base ``mega_lm`` architecture.


def preset(help_text: str, base) -> dict:
    return {"help": f"{help_text} (default: set by --arch; mega_lm: {base})"}


@dataclass
class MegaLMConfig(FairseqDataclass):
    decoder_layers: Optional[int] = field(default=None, metadata=preset("number of Mega layers", 6))
    decoder_embed_dim: Optional[int] = field(default=None, metadata=preset("model dimension d", 512))
    decoder_input_dim: Optional[int] = field(
        default=None, metadata=preset("token embedding dimension, projected to d if different", "d"))
    decoder_hidden_dim: Optional[int] = field(
        default=None, metadata=preset("attention value dimension v (the paper's hidden dim)", 1024))
    decoder_ffn_embed_dim: Optional[int] = field(
        default=None, metadata=preset("hidden size of the normalised FFN; 0 removes the FFN", 1024))
    decoder_z_dim: Optional[int] = field(
        default=None, metadata=preset("dimension z of the shared representation (queries and keys)", 128))
    decoder_n_dim: Optional[int] = field(default=None, metadata=preset("EMA expansion dimension N", 16))
    decoder_chunk_size: Optional[int] = field(
        default=None, metadata=preset("Mega-chunk size c (attention within chunks of c tokens); -1 for full "
                                      "attention", -1))
    truncation_length: Optional[int] = field(
        default=None, metadata=preset("keep only the first N taps of the EMA kernel; 0 keeps all", 0))
    activation_fn: ChoiceEnum(list(ACTIVATIONS)) = field(default="silu", metadata={"help": "activation function"})
    attention_activation_fn: ChoiceEnum(list(ATTENTION_FUNCTIONS)) = field(
        default="softmax", metadata={"help": "attention function"})
    rel_pos_bias: Optional[ChoiceEnum(list(REL_POS_BIAS_TYPES))] = field(
        default=None, metadata=preset("relative position bias", "simple"))
    normalization_type: ChoiceEnum(list(NORM_TYPES)) = field(
        default="layernorm", metadata={"help": "normalisation layer"})
    normalize_before: Optional[bool] = field(
        default=None, metadata=preset("prenorm layers (and a final norm) instead of postnorm", False))
    normalize_embedding: bool = field(default=False, metadata={"help": "normalise the scaled token embeddings"})
    no_affine_final_norm: bool = field(default=False, metadata={"help": "no affine parameters in the final norm"})
    no_scale_embedding: bool = field(default=False, metadata={"help": "do not scale embeddings by sqrt(d)"})
    dropout: Optional[float] = field(default=None, metadata=preset("dropout on embeddings and block outputs", 0.1))
    attention_dropout: Optional[float] = field(default=None, metadata=preset("dropout on attention weights", 0.0))
    hidden_dropout: Optional[float] = field(default=None, metadata=preset("dropout on attention values", 0.0))
    activation_dropout: Optional[float] = field(default=None, metadata=preset("dropout inside the FFN", 0.0))
    feature_dropout: bool = field(default=False, metadata={"help": "drop whole channels instead of elements"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie the input embedding and the output projection"})
    adaptive_input: Optional[bool] = field(default=None, metadata=preset("use an adaptive input embedding", False))
    adaptive_input_factor: float = field(default=4, metadata={"help": "adaptive input dimension reduction factor"})
    adaptive_input_cutoff: Optional[str] = field(
        default=None, metadata=preset("comma-separated adaptive input cutoffs", None))
    adaptive_softmax_cutoff: Optional[str] = field(
        default=None, metadata=preset("comma-separated adaptive softmax cutoffs (use --criterion adaptive_loss)",
                                      None))
    adaptive_softmax_dropout: Optional[float] = field(
        default=None, metadata=preset("dropout in the adaptive softmax tail projections", 0.0))
    adaptive_softmax_factor: float = field(default=4, metadata={"help": "adaptive softmax dimension reduction factor"})
    tie_adaptive_weights: Optional[bool] = field(
        default=None, metadata=preset("tie adaptive input and adaptive softmax weights", False))
    tie_adaptive_proj: Optional[bool] = field(
        default=None, metadata=preset("tie adaptive input and adaptive softmax projections", False))
    max_target_positions: Optional[int] = II("task.max_target_positions")
    tokens_per_sample: int = II("task.tokens_per_sample")


@register_model("mega_lm", dataclass=MegaLMConfig)
class MegaLanguageModel(FairseqLanguageModel):
    """A decoder-only Mega language model."""

    @classmethod
    def build_model(cls, cfg, task):
        base_architecture(cfg)
        check_config(cfg)
        if safe_getattr(cfg, "max_target_positions", None) is None:
            cfg.max_target_positions = safe_getattr(cfg, "tokens_per_sample", 1024)
        dictionary = task.source_dictionary
        if cfg.adaptive_input:
            embed_tokens = AdaptiveInput(len(dictionary), dictionary.pad(), cfg.decoder_input_dim,
                                         cfg.adaptive_input_factor, cfg.decoder_embed_dim,
                                         eval_str_list(cfg.adaptive_input_cutoff, type=int))
        else:
            embed_tokens = nn.Embedding(len(dictionary), cfg.decoder_input_dim, padding_idx=dictionary.pad())
            nn.init.normal_(embed_tokens.weight, mean=0.0, std=cfg.decoder_input_dim ** -0.5)
            nn.init.zeros_(embed_tokens.weight[dictionary.pad()])
        return cls(MegaDecoder(cfg, task.target_dictionary, embed_tokens))


def check_config(cfg):
    """Clear errors for settings that would otherwise fail deep inside training."""
    if cfg.decoder_chunk_size == 0:
        raise ValueError("--decoder-chunk-size must be positive (Mega-chunk) or -1 (full attention), got 0")
    for name in ("decoder_layers", "decoder_embed_dim", "decoder_z_dim", "decoder_n_dim", "decoder_hidden_dim"):
        if getattr(cfg, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.tie_adaptive_weights:
        if not cfg.adaptive_input or cfg.adaptive_softmax_cutoff is None:
            raise ValueError("--tie-adaptive-weights needs --adaptive-input and --adaptive-softmax-cutoff")
        if cfg.adaptive_input_cutoff != cfg.adaptive_softmax_cutoff:
            raise ValueError(f"--tie-adaptive-weights needs equal cutoffs, got --adaptive-input-cutoff "
                             f"{cfg.adaptive_input_cutoff} and --adaptive-softmax-cutoff {cfg.adaptive_softmax_cutoff}")
    if cfg.adaptive_input and cfg.adaptive_input_cutoff is None:
        raise ValueError("--adaptive-input needs --adaptive-input-cutoff")


def _defaults(cfg, **values):
    """Set each field that is missing or None (not set by the user or an earlier preset)."""
    for name, value in values.items():
        if safe_getattr(cfg, name, None) is None:
            setattr(cfg, name, value)


def base_architecture(cfg):
    """``--arch mega_lm`` (registered with the model); every other preset builds on it."""
    for config_field in fields(MegaLMConfig):  # plain defaults, for configs given as a Namespace
        if not (isinstance(config_field.default, str) and config_field.default.startswith("${")):
            _defaults(cfg, **{config_field.name: config_field.default})
    _defaults(cfg, decoder_layers=6, decoder_embed_dim=512, decoder_hidden_dim=1024, decoder_z_dim=128,
              decoder_n_dim=16, decoder_chunk_size=-1, truncation_length=0, rel_pos_bias="simple",
              normalize_before=False,
              dropout=0.1, attention_dropout=0.0, hidden_dropout=0.0, activation_dropout=0.0,
              adaptive_input=False, adaptive_softmax_dropout=0.0, tie_adaptive_weights=False,
              tie_adaptive_proj=False)
    _defaults(cfg, decoder_ffn_embed_dim=cfg.decoder_hidden_dim, decoder_input_dim=cfg.decoder_embed_dim)


@register_model_architecture("mega_lm", "mega_lm_tiny")
def mega_lm_tiny(cfg):
    """A few thousand parameters per layer: smoke tests and CPU demos."""
    _defaults(cfg, decoder_layers=2, decoder_embed_dim=32, decoder_hidden_dim=64, decoder_z_dim=16,
              decoder_n_dim=4, decoder_chunk_size=16)
    base_architecture(cfg)


@register_model_architecture("mega_lm", "mega_lm_big")
def mega_lm_big(cfg):
    _defaults(cfg, decoder_layers=16, decoder_embed_dim=1024, decoder_hidden_dim=2048, decoder_z_dim=256)
    base_architecture(cfg)


def _adaptive(cfg):
    # The official WikiText-103 recipes: adaptive input and softmax, tied, cutoffs 20K/60K.
    _defaults(cfg, decoder_layers=16, dropout=0.3, attention_dropout=0.1, hidden_dropout=0.1,
              activation_dropout=0.1, adaptive_input=True, tie_adaptive_weights=True, tie_adaptive_proj=True,
              adaptive_input_cutoff="20000,60000", adaptive_softmax_cutoff="20000,60000",
              adaptive_softmax_dropout=0.2)


@register_model_architecture("mega_lm", "mega_lm_adaptive_base")
def mega_lm_adaptive_base(cfg):
    _adaptive(cfg)
    _defaults(cfg, decoder_embed_dim=768, decoder_hidden_dim=1536, decoder_z_dim=128)
    base_architecture(cfg)


@register_model_architecture("mega_lm", "mega_lm_adaptive_big")
def mega_lm_adaptive_big(cfg):
    """WikiText-103 (paper: 252M parameters, 18.07 test perplexity): chunk 1024, rotary bias, prenorm."""
    _adaptive(cfg)
    _defaults(cfg, decoder_chunk_size=1024, rel_pos_bias="rotary", normalize_before=True)
    mega_lm_big(cfg)


@register_model_architecture("mega_lm", "mega_lm_wiki103")
def mega_lm_wiki103(cfg):
    mega_lm_adaptive_big(cfg)


@register_model_architecture("mega_lm", "mega_lm_enwik8_base")
def mega_lm_enwik8_base(cfg):
    """enwik8 (paper: 39M parameters, 1.02 bpc): chunk 2048, rotary bias, prenorm."""
    _defaults(cfg, decoder_layers=12, decoder_embed_dim=512, decoder_hidden_dim=1024, decoder_z_dim=128,
              decoder_chunk_size=2048, rel_pos_bias="rotary", normalize_before=True)
    base_architecture(cfg)


@register_model_architecture("mega_lm", "mega_lm_enwik8_large")
def mega_lm_enwik8_large(cfg):
    _defaults(cfg, decoder_layers=24, decoder_embed_dim=1024, decoder_hidden_dim=1536, dropout=0.2,
              attention_dropout=0.1, hidden_dropout=0.1)
    mega_lm_enwik8_base(cfg)
