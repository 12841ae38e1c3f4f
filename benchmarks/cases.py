"""The benchmark's models: Mega stacks built by the library, the transformers port of the
official code, the Transformer baselines, the two language models whose decoding is timed (this
package's ``mega_lm`` and fairseq's ``transformer_lm``), and the FLOP count of a Mega training step.

Each training builder returns a module mapping a B x L x d float input to a B x L x d output.
"""

import argparse
import dataclasses
import math
from typing import Dict

from torch import Tensor, nn

from mega_fairseq.modules import MegaLayerConfig, MegaStack
from mega_fairseq.modules.ema import fast_fft_length

MEGA_MODELS = ("mega", "mega_chunk")
HF_MODELS = ("hf_mega", "hf_mega_chunk")
TRANSFORMER_MODELS = ("torch_transformer", "fairseq_transformer")
ALL_MODELS = MEGA_MODELS + HF_MODELS + TRANSFORMER_MODELS

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

def layer_config(sizes: dict, *, chunk_size: int, max_positions: int) -> MegaLayerConfig:
    """The library's options for Mega layers of the benchmark's sizes: ``sizes["layers"]`` layers,
    prenorm (a prenorm stack ends in a final norm), no dropout."""
    options = {name: sizes[name] for name in ("layers", "embed_dim", "hidden_dim", "ffn_embed_dim", "z_dim", "n_dim",
                                              "normalization_type", "rel_pos_bias")}
    return MegaLayerConfig(**options, chunk_size=chunk_size, max_positions=max_positions, normalize_before=True,
                           dropout=0.0, attention_dropout=0.0, hidden_dropout=0.0, activation_dropout=0.0)


class MegaBidirectionalStack(nn.Module):
    """A bidirectional ``MegaStack`` of :func:`layer_config` on B x L x d inputs, returning only its output."""

    def __init__(self, sizes: dict, *, chunk_size: int, max_positions: int):
        super().__init__()
        self.stack = MegaStack(layer_config(sizes, chunk_size=chunk_size, max_positions=max_positions), causal=False)

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

def mega_forward_flops(sizes: dict, batch: int, length: int, chunk: int) -> Dict[str, float]:
    """Forward FLOPs of one bidirectional Mega layer stack, by kind (multiply-add = 2 FLOPs).

    projections: v, [phi, z, gamma, h] and output projections plus the FFN;
    attention: Q K^T and weights x V within each chunk (c keys per query; c = L for full);
    fft: the EMA's real FFT of the input and inverse FFT of the output per channel
    (2.5 n log2 n each, n the FFT length), one kernel FFT per layer and the spectrum product.
    Norms, activations, gates, softmax and the EMA kernel itself are not counted.
    """
    d, z, h, f = sizes["embed_dim"], sizes["z_dim"], sizes["hidden_dim"], sizes["ffn_embed_dim"]
    tokens = batch * length
    keys = chunk if 0 < chunk < length else length
    n = fast_fft_length(2 * length - 1)
    per_transform = 2.5 * n * math.log2(n)
    layers = sizes["layers"]
    return {
        "projections": layers * 2.0 * tokens * (d * h + d * (z + h + 2 * d) + h * d + 2 * d * f),
        "attention": layers * 2.0 * tokens * keys * (z + h),
        "fft": layers * (d * (2 * batch + 1) * per_transform + batch * d * 6 * (n // 2 + 1)),
    }


def mega_training_flops(sizes: dict, batch: int, length: int, chunk: int) -> Dict[str, float]:
    """Training step = 3 x forward: the backward pass costs two forwards (the gradients with
    respect to inputs and to weights; for the EMA, FFTs of the output gradient and of the input)."""
    forward = mega_forward_flops(sizes, batch, length, chunk)
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
