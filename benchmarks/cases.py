"""The benchmark's models: Mega stacks built by the library, the transformers port of the
official code, the Transformer baselines, the two language models whose decoding is timed (this
package's ``mega_lm`` and fairseq's ``transformer_lm``), and the FLOP count of a Mega training step.

Each training builder returns a module mapping a B x L x d float input to a B x L x d output.
"""

import argparse
import dataclasses
import math
from typing import Dict, Optional

import torch
from torch import Tensor, nn

from mega_fairseq.modules import MegaLayerConfig, MegaStack
from mega_fairseq.modules.ema import fast_fft_length, uses_chunks
from mega_fairseq.modules.ema_chunked import EMA_CHUNK

MEGA_MODELS = ("mega", "mega_chunk")
# Mega-chunk with its EMA forced onto one path at every length (mega_chunk takes "auto"; "fft" is the
# library's EMA before it had a chunk path), to compare the paths in one run; not run unless named
FORCED_EMA_MODELS = {"mega_chunk_fft": "fft", "mega_chunk_chunked": "chunk"}
HF_MODELS = ("hf_mega", "hf_mega_chunk")
TRANSFORMER_MODELS = ("torch_transformer", "fairseq_transformer")
CHUNKED_MEGA_MODELS = ("mega_chunk",) + tuple(FORCED_EMA_MODELS)  # whose FLOPs the benchmark counts
ALL_MODELS = MEGA_MODELS + tuple(FORCED_EMA_MODELS) + HF_MODELS + TRANSFORMER_MODELS
DEFAULT_MODELS = MEGA_MODELS + HF_MODELS + TRANSFORMER_MODELS

# The library's option names (MegaLayerConfig); ffn_embed_dim is every model's FFN size.
DEFAULT_SIZES = dict(layers=2, embed_dim=128, z_dim=64, hidden_dim=256, n_dim=16, ffn_embed_dim=256, chunk_size=128,
                     normalization_type="scalenorm", rel_pos_bias="simple")


def arch_sizes(name: str) -> dict:
    """The benchmark's sizes from a registered Mega architecture (``--arch``): its LM preset."""
    from mega_fairseq.models.mega_lm import LM_PRESETS

    if name not in LM_PRESETS.presets:
        raise ValueError(f"--arch {name}: not a registered Mega architecture; choose one of "
                         f"{', '.join(sorted(LM_PRESETS.presets))}")
    values = LM_PRESETS.resolve(name)
    sizes = {name: values[f"decoder_{name}"] for name in ("layers", "embed_dim", "z_dim", "hidden_dim", "n_dim",
                                                           "ffn_embed_dim")}
    sizes.update(normalization_type=str(values.get("normalization_type", MegaLayerConfig.normalization_type)),
                 rel_pos_bias=str(values["rel_pos_bias"]))
    if values["decoder_chunk_size"] > 0:
        sizes["chunk_size"] = values["decoder_chunk_size"]
    return sizes


# ----------------------------------------------------------------------------------------------
# Training models
# ----------------------------------------------------------------------------------------------

def layer_config(sizes: dict, *, chunk_size: int, max_positions: int, ema_path: str = "auto") -> MegaLayerConfig:
    """The library's options for Mega layers of the benchmark's sizes: ``sizes["layers"]`` layers,
    prenorm (a prenorm stack ends in a final norm), no dropout, the EMA on ``ema_path``."""
    options = {name: sizes[name] for name in ("layers", "embed_dim", "hidden_dim", "ffn_embed_dim", "z_dim", "n_dim",
                                              "normalization_type", "rel_pos_bias")}
    return MegaLayerConfig(**options, chunk_size=chunk_size, max_positions=max_positions, normalize_before=True,
                           dropout=0.0, attention_dropout=0.0, hidden_dropout=0.0, activation_dropout=0.0,
                           ema_path=ema_path)


class MegaBidirectionalStack(nn.Module):
    """A bidirectional ``MegaStack`` of :func:`layer_config` on B x L x d inputs, returning only its output."""

    def __init__(self, sizes: dict, *, chunk_size: int, max_positions: int, ema_path: str = "auto"):
        super().__init__()
        config = layer_config(sizes, chunk_size=chunk_size, max_positions=max_positions, ema_path=ema_path)
        self.stack = MegaStack(config, causal=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.stack(x).out


class HFMega(nn.Module):
    """transformers' MegaModel on input embeddings (no token embedding, no pooler)."""

    def __init__(self, sizes: dict, *, chunk_size: int, max_positions: int):
        super().__init__()
        from transformers import MegaConfig, MegaModel

        config = MegaConfig(
            hidden_size=sizes["embed_dim"], num_hidden_layers=sizes["layers"], intermediate_size=sizes["hidden_dim"],
            nffn_hidden_size=sizes["ffn_embed_dim"], shared_representation_size=sizes["z_dim"],
            ema_projection_size=sizes["n_dim"], use_chunking=chunk_size > 0, chunk_size=chunk_size,
            max_positions=max_positions, relative_positional_bias=sizes["rel_pos_bias"],
            normalization_type=sizes["normalization_type"], dropout_prob=0.0, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, nffn_activation_dropout_prob=0.0)
        self.model = MegaModel(config, add_pooling_layer=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(inputs_embeds=x).last_hidden_state


class FairseqTransformerEncoder(nn.Module):
    """fairseq's pre-norm TransformerEncoderLayerBase stack (fairseq works in L x B x d)."""

    def __init__(self, sizes: dict):
        super().__init__()
        from fairseq.models.transformer import TransformerConfig
        from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

        cfg = TransformerConfig()
        cfg.encoder.embed_dim = sizes["embed_dim"]
        cfg.encoder.ffn_embed_dim = sizes["ffn_embed_dim"]
        cfg.encoder.attention_heads = sizes["heads"]
        cfg.encoder.normalize_before = True
        cfg.dropout = cfg.attention_dropout = cfg.activation_dropout = 0.0
        self.layers = nn.ModuleList(TransformerEncoderLayerBase(cfg) for _ in range(sizes["layers"]))

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(0, 1)  # L x B x d
        for layer in self.layers:
            x = layer(x, encoder_padding_mask=None)
        return x.transpose(0, 1)


def torch_transformer_encoder(sizes: dict) -> nn.Module:
    layer = nn.TransformerEncoderLayer(sizes["embed_dim"], sizes["heads"], dim_feedforward=sizes["ffn_embed_dim"],
                                       dropout=0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, sizes["layers"], enable_nested_tensor=False)


def hf_available() -> bool:
    try:
        from transformers import MegaModel  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(name: str, sizes: dict, length: int) -> nn.Module:
    chunk = sizes["chunk_size"]
    if name == "mega":
        return MegaBidirectionalStack(sizes, chunk_size=-1, max_positions=length)
    if name == "mega_chunk":
        return MegaBidirectionalStack(sizes, chunk_size=chunk, max_positions=chunk)
    if name in FORCED_EMA_MODELS:
        return MegaBidirectionalStack(sizes, chunk_size=chunk, max_positions=chunk, ema_path=FORCED_EMA_MODELS[name])
    if name == "hf_mega":
        return HFMega(sizes, chunk_size=-1, max_positions=length)
    if name == "hf_mega_chunk":
        return HFMega(sizes, chunk_size=chunk, max_positions=chunk)
    if name == "torch_transformer":
        return torch_transformer_encoder(sizes)
    if name == "fairseq_transformer":
        return FairseqTransformerEncoder(sizes)
    raise ValueError(f"unknown model {name!r}")


# ----------------------------------------------------------------------------------------------
# FLOP count of a Mega training step
# ----------------------------------------------------------------------------------------------

def ema_path(model: str, length: int, device: str) -> Optional[str]:
    """The path ("chunk" or "fft") the EMA of a Mega training model takes at ``length`` positions on
    ``device``; None for the models without the library's EMA."""
    if model in FORCED_EMA_MODELS:
        return FORCED_EMA_MODELS[model]
    if model in MEGA_MODELS:
        return "chunk" if uses_chunks("auto", length, torch.device(device)) else "fft"
    return None


def ema_forward_flops(d: int, n_dim: int, batch: int, length: int, path: str) -> float:
    """Forward FLOPs of one bidirectional EMA on ``path``. fft: the real FFT of the input and the
    inverse FFT of the output per channel (2.5 n log2 n each, n the FFT length), one kernel FFT and
    the spectrum product. chunk: per channel and (padded) position, the c x c matmul within chunks
    and the state's matmuls in and out, 2N wide (both directions). The kernel and the scan across
    chunks are not counted."""
    if path == "chunk":
        chunk = max(2, min(EMA_CHUNK, length))
        padded = -(-length // chunk) * chunk
        return 2.0 * batch * padded * d * (chunk + 4 * n_dim)
    n = fast_fft_length(2 * length - 1)
    return d * (2 * batch + 1) * 2.5 * n * math.log2(n) + batch * d * 6 * (n // 2 + 1)


def mega_forward_flops(sizes: dict, batch: int, length: int, chunk: int, path: str = "fft") -> Dict[str, float]:
    """Forward FLOPs of one bidirectional Mega layer stack, by kind (multiply-add = 2 FLOPs).

    projections: v, [phi, z, gamma, h] and output projections plus the FFN;
    attention: Q K^T and weights x V within each chunk (c keys per query; c = L for full);
    ema: the EMA on ``path`` (``ema_forward_flops``).
    Norms, activations, gates, softmax and the EMA kernel itself are not counted.
    """
    d, z, h, f = sizes["embed_dim"], sizes["z_dim"], sizes["hidden_dim"], sizes["ffn_embed_dim"]
    tokens = batch * length
    keys = chunk if 0 < chunk < length else length
    layers = sizes["layers"]
    return {
        "projections": layers * 2.0 * tokens * (d * h + d * (z + h + 2 * d) + h * d + 2 * d * f),
        "attention": layers * 2.0 * tokens * keys * (z + h),
        "ema": layers * ema_forward_flops(d, sizes["n_dim"], batch, length, path),
    }


def mega_training_flops(sizes: dict, batch: int, length: int, chunk: int, path: str = "fft") -> Dict[str, float]:
    """Training step = 3 x forward: the backward pass costs two forwards (the gradients with
    respect to inputs and to weights; for the EMA, FFTs of the output gradient and of the input,
    or the transposed matmuls)."""
    forward = mega_forward_flops(sizes, batch, length, chunk, path)
    counts = {kind: 3.0 * value for kind, value in forward.items()}
    counts["total"] = sum(counts.values())
    return counts


# ----------------------------------------------------------------------------------------------
# Decoding models
# ----------------------------------------------------------------------------------------------

def _lm_task(vocab_size: int) -> argparse.Namespace:
    """What a fairseq language model's build_model reads of its task: a dictionary of ``vocab_size``
    symbols (fairseq's four special ones included)."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(vocab_size - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    return argparse.Namespace(source_dictionary=dictionary, target_dictionary=dictionary)


def _config_values(config_class: type) -> dict:
    """A fairseq model config's defaults as a dict, for an ``argparse.Namespace`` config."""
    defaults = config_class()
    return {field.name: getattr(defaults, field.name) for field in dataclasses.fields(defaults)}


def mega_lm(sizes: dict, vocab_size: int, max_positions: int) -> nn.Module:
    """This package's ``mega_lm`` with the benchmark's sizes, chunked (Mega-chunk): the causal
    layers of :func:`layer_config`, the token embedding scaled by sqrt(d) and the tied output
    projection, built by its own build_model; it decodes with the library's incremental state."""
    from mega_fairseq.models.mega_config import option_names
    from mega_fairseq.models.mega_lm import MegaLanguageModel, MegaLMConfig

    layers = layer_config(sizes, chunk_size=sizes["chunk_size"], max_positions=sizes["chunk_size"])
    values = _config_values(MegaLMConfig)
    values.update({name: getattr(layers, option) for option, name in option_names("decoder").items()})
    values.update(share_decoder_input_output_embed=True, max_target_positions=max_positions,
                  tokens_per_sample=max_positions)
    return MegaLanguageModel.build_model(argparse.Namespace(**values), _lm_task(vocab_size))


def fairseq_transformer_lm(sizes: dict, vocab_size: int, max_positions: int) -> nn.Module:
    """fairseq's transformer_lm with the benchmark's sizes, built by fairseq's own build_model."""
    from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig

    values = _config_values(TransformerLanguageModelConfig)
    d = sizes["embed_dim"]
    values.update(decoder_layers=sizes["layers"], decoder_embed_dim=d, decoder_input_dim=d, decoder_output_dim=d,
                  decoder_ffn_embed_dim=sizes["ffn_embed_dim"], decoder_attention_heads=sizes["heads"],
                  decoder_normalize_before=True, share_decoder_input_output_embed=True, dropout=0.0,
                  attention_dropout=0.0, activation_dropout=0.0, max_target_positions=max_positions,
                  tokens_per_sample=max_positions, add_bos_token=False, tpu=False)
    return TransformerLanguageModel.build_model(argparse.Namespace(**values), _lm_task(vocab_size))


def mega_translation(sizes: dict, vocab_size: int, max_positions: int) -> nn.Module:
    """This package's ``mega`` translation model with the benchmark's sizes in both stacks, full attention (the
    WMT16 recipe's), prenorm, no dropout; built by its own build_model."""
    from mega_fairseq.models.mega_config import option_names
    from mega_fairseq.models.mega_translation import MT_PRESETS, MegaTranslationConfig, MegaTranslationModel

    values = _config_values(MegaTranslationConfig)
    values.update(arch="mega", max_source_positions=max_positions, max_target_positions=max_positions)
    cfg = argparse.Namespace(**values)
    MT_PRESETS.apply("mega", cfg)
    layers = layer_config(sizes, chunk_size=-1, max_positions=max_positions)
    for side in ("encoder", "decoder"):
        for option, name in option_names(side).items():
            setattr(cfg, name, getattr(layers, option))
    return MegaTranslationModel.build_model(cfg, _translation_task(vocab_size))


def fairseq_transformer_translation(sizes: dict, vocab_size: int, max_positions: int) -> nn.Module:
    """fairseq's transformer translation model with the benchmark's sizes (prenorm, no dropout), built by its own
    build_model."""
    from fairseq.models.transformer import TransformerModel, base_architecture

    d = sizes["embed_dim"]
    cfg = argparse.Namespace(**{f"{side}_{name}": value for side in ("encoder", "decoder") for name, value in dict(
        layers=sizes["layers"], embed_dim=d, ffn_embed_dim=sizes["ffn_embed_dim"], attention_heads=sizes["heads"],
        normalize_before=True).items()}, dropout=0.0, max_source_positions=max_positions,
        max_target_positions=max_positions)
    base_architecture(cfg)
    return TransformerModel.build_model(cfg, _translation_task(vocab_size))


def _translation_task(vocab_size: int) -> argparse.Namespace:
    """What a translation model's build_model reads of its task: one dictionary for both sides, right-padded
    targets."""
    task = _lm_task(vocab_size)
    task.cfg = argparse.Namespace(left_pad_target=False)
    return task
