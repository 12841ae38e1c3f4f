"""The Mega decoder shared by language models and (with cross-attention) translation models."""

import math
from typing import Any, Dict, List, Optional

import torch
from fairseq.models import FairseqIncrementalDecoder
from fairseq.modules import AdaptiveSoftmax
from fairseq.utils import eval_str_list
from torch import Tensor, nn

from ..modules import MegaLayer, SequenceNorm
from ..modules.incremental import IncrementalState


def layer_kwargs(cfg, prefix: str, max_positions: int) -> Dict[str, Any]:
    """MegaLayer arguments from a model config whose size fields start with ``prefix``."""
    return dict(
        zdim=getattr(cfg, f"{prefix}_z_dim"), hdim=getattr(cfg, f"{prefix}_hidden_dim"),
        ffn_hidden_dim=getattr(cfg, f"{prefix}_ffn_embed_dim"), ndim=getattr(cfg, f"{prefix}_n_dim"),
        chunk_size=getattr(cfg, f"{prefix}_chunk_size"), truncation=cfg.truncation_length,
        attention_activation=cfg.attention_activation_fn, activation=cfg.activation_fn, dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout, hidden_dropout=cfg.hidden_dropout,
        activation_dropout=cfg.activation_dropout, feature_dropout=cfg.feature_dropout,
        norm_type=cfg.normalization_type, prenorm=cfg.normalize_before, rel_pos_bias=cfg.rel_pos_bias,
        max_positions=max_positions,
    )


class MegaDecoder(FairseqIncrementalDecoder):
    """Token embedding, a stack of causal Mega layers, final norm and output layer.

    Incremental decoding feeds only the positions not seen before; each layer keeps the
    EMA state (B x D x N) and the keys and values of the chunk being filled.

    ``first_segment`` (given by the stream evaluation data of ``mega_language_modeling``)
    switches to stream mode: the state is kept across calls, so consecutive segments of
    long streams are scored with the whole history, as one long forward pass would be.
    """

    def __init__(self, cfg, dictionary, embed_tokens: nn.Module, *, cross_attention: bool = False,
                 max_source_positions: int = 1024):
        super().__init__(dictionary)
        self.embed_tokens = embed_tokens
        self.padding_idx = dictionary.pad()
        self.embed_dim = cfg.decoder_embed_dim
        self.max_target_positions = cfg.max_target_positions
        self.chunk_size = cfg.decoder_chunk_size
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(self.embed_dim)
        input_dim = cfg.decoder_input_dim
        self.project_in_dim = nn.Linear(input_dim, self.embed_dim, bias=False) if input_dim != self.embed_dim else None
        if self.project_in_dim is not None:
            nn.init.xavier_uniform_(self.project_in_dim.weight)
        if cfg.normalize_embedding and cfg.normalize_before:
            raise ValueError("--normalize-embedding and --normalize-before are exclusive")
        self.embed_norm = SequenceNorm(cfg.normalization_type, self.embed_dim) if cfg.normalize_embedding else None
        self.embedding_dropout = nn.Dropout(cfg.dropout)
        kwargs = layer_kwargs(cfg, "decoder", cfg.max_target_positions)
        self.layers = nn.ModuleList([
            MegaLayer(self.embed_dim, causal=True, cross_attention=cross_attention,
                      max_source_positions=max_source_positions, **kwargs)
            for _ in range(cfg.decoder_layers)
        ])
        self.final_norm = SequenceNorm(cfg.normalization_type, self.embed_dim, affine=not cfg.no_affine_final_norm) \
            if cfg.normalize_before else None
        self.adaptive_softmax = None
        self.output_projection = None
        if cfg.adaptive_softmax_cutoff is not None:
            self.adaptive_softmax = AdaptiveSoftmax(
                len(dictionary), self.embed_dim, eval_str_list(cfg.adaptive_softmax_cutoff, type=int),
                dropout=cfg.adaptive_softmax_dropout,
                adaptive_inputs=embed_tokens if cfg.tie_adaptive_weights else None,
                factor=cfg.adaptive_softmax_factor, tie_proj=cfg.tie_adaptive_proj,
            )
        elif cfg.share_decoder_input_output_embed:
            self.output_projection = nn.Linear(embed_tokens.weight.size(1), embed_tokens.weight.size(0), bias=False)
            self.output_projection.weight = embed_tokens.weight
        else:
            self.output_projection = nn.Linear(self.embed_dim, len(dictionary), bias=False)
            nn.init.normal_(self.output_projection.weight, mean=0.0, std=self.embed_dim ** -0.5)
        self._stream_state: IncrementalState = {}

    def forward(self, prev_output_tokens: Tensor, encoder_out: Optional[Dict[str, List[Tensor]]] = None,
                incremental_state: Optional[IncrementalState] = None, features_only: bool = False,
                first_segment: Optional[Tensor] = None, **unused):
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state, first_segment)
        if not features_only:
            x = self.output_layer(x)
        return x, extra

    def extract_features(self, prev_output_tokens: Tensor, encoder_out: Optional[Dict[str, List[Tensor]]] = None,
                         incremental_state: Optional[IncrementalState] = None,
                         first_segment: Optional[Tensor] = None, **unused):
        """Shapes: prev_output_tokens: B x T; returns (B x T' x D, {"inner_states", "attn"}) where
        T' = T, or the number of positions not yet seen in incremental decoding."""
        if first_segment is not None:
            if incremental_state is not None:
                raise ValueError("stream evaluation and incremental decoding cannot be combined")
            if bool(first_segment.any()) and not bool(first_segment.all()):
                raise ValueError("every stream of a batch must be at the same segment")
            if bool(first_segment.all()):
                self._stream_state = {}
            incremental_state = self._stream_state
        elif incremental_state is not None:
            seen = self.get_incremental_state(incremental_state, "seen")
            start = int(seen[0]) if seen is not None else 0
            prev_output_tokens = prev_output_tokens[:, start:]
            self.set_incremental_state(incremental_state, "seen",
                                       torch.full((prev_output_tokens.size(0),), start + prev_output_tokens.size(1)))

        padding_mask = prev_output_tokens.eq(self.padding_idx)  # B x T
        has_padding = bool(padding_mask.any())
        x = self.embed_scale * self.embed_tokens(prev_output_tokens)  # B x T x D
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.embedding_dropout(x)
        if has_padding:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)

        memory = memory_padding_mask = None
        if encoder_out is not None and len(encoder_out["encoder_out"]) > 0:
            memory = encoder_out["encoder_out"][0]  # B x S x D
            if len(encoder_out["encoder_padding_mask"]) > 0:
                memory_padding_mask = encoder_out["encoder_padding_mask"][0]
        inner_states = [x]
        attn = None
        for layer in self.layers:
            x, attn = layer(x, padding_mask if has_padding else None, memory=memory,
                            memory_padding_mask=memory_padding_mask, incremental_state=incremental_state)
            inner_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if has_padding:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        if first_segment is not None:  # carry values, not the graph, into the next segment
            for saved in self._stream_state.values():
                for key, value in saved.items():
                    if value is not None:
                        saved[key] = value.detach()
        return x, {"inner_states": inner_states, "attn": [attn]}

    def output_layer(self, features: Tensor) -> Tensor:
        if self.adaptive_softmax is not None:
            return features
        return self.output_projection(features)

    def max_positions(self) -> int:
        return self.max_target_positions

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor):
        seen = self.get_incremental_state(incremental_state, "seen")
        if seen is not None:
            self.set_incremental_state(incremental_state, "seen", seen.index_select(0, new_order.to(seen.device)))
