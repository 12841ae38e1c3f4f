"""Mega language models (``--arch mega_lm*``), with the official recipes' presets."""

import os
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

from fairseq import hub_utils
from fairseq.models import FairseqLanguageModel, register_model
from fairseq.modules import AdaptiveInput
from fairseq.utils import eval_str_list, safe_getattr
from omegaconf import II

from ..hub import FromPretrained
from ..checkpoint_errors import check_dictionaries, check_model_fits_task
from ..modules import MegaStack
from .mega_config import (SHARED_COLUMNS, Preset, PresetTable, TokenEmbeddingOptions, alias, derived_fields,
                          layer_config, layer_defaults, layer_options_config, preset_help, size_columns)
from .mega_decoder import MegaDecoder, build_embedding_table, build_output_layer, build_token_embedding

# The family's base preset (--arch mega_lm): the layer defaults; the others build on it.
BASE = dict(layer_defaults(["decoder"]), adaptive_input=False, adaptive_softmax_dropout=0.0,
            tie_adaptive_weights=False, tie_adaptive_proj=False)
_preset_help = partial(preset_help, "mega_lm", BASE)

# The official WikiText-103 recipes: adaptive input and softmax, tied, cutoffs 20K/60K.
_ADAPTIVE = dict(decoder_layers=16, dropout=0.3, attention_dropout=0.1, hidden_dropout=0.1, activation_dropout=0.1,
                 adaptive_input=True, tie_adaptive_weights=True, tie_adaptive_proj=True,
                 adaptive_input_cutoff="20000,60000", adaptive_softmax_cutoff="20000,60000",
                 adaptive_softmax_dropout=0.2)
_ADAPTIVE_NOTE = "adaptive input/softmax 20K/60K, tied"

PRESETS = {
    "mega_lm": Preset(None, BASE, "the official base differs: hidden 1664, EMA truncation 2048"),
    "mega_lm_big": Preset("mega_lm", dict(decoder_layers=16, decoder_embed_dim=1024, decoder_hidden_dim=2048,
                                          decoder_z_dim=256)),
    "mega_lm_adaptive_base": Preset("mega_lm", dict(_ADAPTIVE, decoder_embed_dim=768, decoder_hidden_dim=1536,
                                                    decoder_z_dim=128), _ADAPTIVE_NOTE),
    "mega_lm_adaptive_big": Preset(
        "mega_lm_big", dict(_ADAPTIVE, decoder_chunk_size=1024, rel_pos_bias="rotary", normalize_before=True),
        f"WikiText-103; {_ADAPTIVE_NOTE}; 252.2M params (paper 252M)"),
    "mega_lm_wiki103": alias("mega_lm_adaptive_big"),
    "mega_lm_enwik8_base": Preset(
        "mega_lm", dict(decoder_layers=12, decoder_chunk_size=2048, rel_pos_bias="rotary", normalize_before=True),
        "enwik8; 39.1M params (paper 39M)"),
    "mega_lm_enwik8_large": Preset(
        "mega_lm_enwik8_base", dict(decoder_layers=24, decoder_embed_dim=1024, decoder_hidden_dim=1536, dropout=0.2,
                                    attention_dropout=0.1, hidden_dropout=0.1)),
    "mega_lm_tiny": Preset("mega_lm", dict(decoder_layers=2, decoder_embed_dim=32, decoder_hidden_dim=64,
                                           decoder_z_dim=16, decoder_n_dim=4, decoder_chunk_size=16),
                           "tests and CPU demos"),
}


@dataclass
class MegaLMConfig(layer_options_config("MegaLMLayerOptions", ["decoder"], BASE, "mega_lm", TokenEmbeddingOptions)):
    decoder_input_dim: Optional[int] = field(
        default=None, metadata={"help": "token embedding dimension, projected to d if different (default: d)"})
    no_affine_final_norm: bool = field(default=False, metadata={"help": "no affine parameters in the final norm"})
    adaptive_input: Optional[bool] = field(
        default=None, metadata=_preset_help("adaptive_input", "use an adaptive input embedding"))
    adaptive_input_factor: float = field(default=4, metadata={"help": "adaptive input dimension reduction factor"})
    adaptive_input_cutoff: Optional[str] = field(
        default=None, metadata={"help": "comma-separated adaptive input cutoffs (set by --arch)"})
    adaptive_softmax_cutoff: Optional[str] = field(
        default=None, metadata={"help": "comma-separated adaptive softmax cutoffs (use --criterion adaptive_loss; "
                                        "set by --arch)"})
    adaptive_softmax_dropout: Optional[float] = field(
        default=None,
        metadata=_preset_help("adaptive_softmax_dropout", "dropout in the adaptive softmax tail projections"))
    adaptive_softmax_factor: float = field(default=4, metadata={"help": "adaptive softmax dimension reduction factor"})
    tie_adaptive_weights: Optional[bool] = field(
        default=None, metadata=_preset_help("tie_adaptive_weights", "tie adaptive input and adaptive softmax weights"))
    tie_adaptive_proj: Optional[bool] = field(
        default=None, metadata=_preset_help("tie_adaptive_proj", "tie adaptive input and adaptive softmax projections"))
    max_target_positions: Optional[int] = II("task.max_target_positions")
    tokens_per_sample: int = II("task.tokens_per_sample")


LM_PRESETS = PresetTable("mega_lm", MegaLMConfig, PRESETS,
                         derived=dict(derived_fields(["decoder"]), decoder_input_dim="decoder_embed_dim"))


def preset_table() -> str:
    """The table of named architectures in docs/language_modeling.md (a test keeps the page equal to it)."""
    return LM_PRESETS.markdown([("layers", lambda v: v["decoder_layers"]), *size_columns("decoder"),
                                ("bias", lambda v: v["rel_pos_bias"]), *SHARED_COLUMNS])


@register_model("mega_lm", dataclass=MegaLMConfig)
class MegaLanguageModel(FromPretrained, FairseqLanguageModel):
    """A decoder-only Mega language model."""

    hub_interface = hub_utils.GeneratorHubInterface  # from_pretrained: .sample(), .score(), .generate()

    @classmethod
    def build_model(cls, cfg, task):
        check_model_fits_task(cfg, task, "mega_lm")
        LM_PRESETS.apply("mega_lm", cfg)  # configs of older checkpoints may lack fields
        check_config(cfg)
        if safe_getattr(cfg, "max_target_positions", None) is None:
            cfg.max_target_positions = safe_getattr(cfg, "tokens_per_sample", 1024)
        layers = layer_config(cfg, "decoder", cfg.max_target_positions)
        dictionary = task.target_dictionary
        if cfg.adaptive_input:
            embed_tokens = AdaptiveInput(len(dictionary), dictionary.pad(), cfg.decoder_input_dim,
                                         cfg.adaptive_input_factor, cfg.decoder_embed_dim,
                                         eval_str_list(cfg.adaptive_input_cutoff, type=int))
            input_dim = cfg.decoder_embed_dim  # adaptive input projects to d itself
        else:
            embed_tokens = build_embedding_table(dictionary, cfg.decoder_input_dim)
            input_dim = cfg.decoder_input_dim
        embedding = build_token_embedding(cfg, embed_tokens, cfg.decoder_embed_dim, input_dim)
        stack = MegaStack(layers, causal=True, final_norm_affine=not cfg.no_affine_final_norm)
        projection, adaptive_softmax = build_output_layer(cfg, dictionary, embed_tokens, cfg.decoder_embed_dim)
        model = cls(MegaDecoder(dictionary, embedding, stack, output_projection=projection,
                                adaptive_softmax=adaptive_softmax, max_target_positions=cfg.max_target_positions))
        model.dictionary_files = dictionary_file(task)
        return model

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        """A checkpoint trained with another dictionary is named as such, not as a size mismatch."""
        check_dictionaries(self, state_dict, getattr(self, "dictionary_files", {}))
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)


def dictionary_file(task) -> dict:
    """{"decoder": the dictionary file of a language modelling task} (DATA/dict.txt, as fairseq's
    language_modeling reads it), where its config names a data folder."""
    config = safe_getattr(task, "args", None) or safe_getattr(task, "cfg", None)
    data = str(safe_getattr(config, "data", "") or "").split(os.pathsep)[0]
    return {"decoder": os.path.join(data, "dict.txt")} if data else {}


def check_config(cfg):
    """Clear errors for settings that would otherwise fail deep inside training."""
    if cfg.share_decoder_input_output_embed and cfg.decoder_input_dim != cfg.decoder_embed_dim:
        raise ValueError(f"--share-decoder-input-output-embed needs --decoder-input-dim ({cfg.decoder_input_dim}) "
                         f"equal to --decoder-embed-dim ({cfg.decoder_embed_dim})")
    if cfg.tie_adaptive_weights:
        if not cfg.adaptive_input or cfg.adaptive_softmax_cutoff is None:
            raise ValueError("--tie-adaptive-weights needs --adaptive-input and --adaptive-softmax-cutoff")
        if cfg.adaptive_input_cutoff != cfg.adaptive_softmax_cutoff:
            raise ValueError(f"--tie-adaptive-weights needs equal cutoffs, got --adaptive-input-cutoff "
                             f"{cfg.adaptive_input_cutoff} and --adaptive-softmax-cutoff {cfg.adaptive_softmax_cutoff}")
    if cfg.adaptive_input and cfg.adaptive_input_cutoff is None:
        raise ValueError("--adaptive-input needs --adaptive-input-cutoff")


LM_PRESETS.register()
