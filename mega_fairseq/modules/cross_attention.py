"""Gated cross-attention of a Mega decoder over encoder outputs."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MegaLayerConfig
from .dropout import apply_dropout
from .gated_attention import GatedBlock, init_linear
from .incremental import IncrementalState
from .positional_bias import build_relative_positional_bias


class GatedCrossAttention(GatedBlock):
    """Decoder queries attend to encoder keys/values through Mega's gates (no EMA):
    [phi, gamma, Q] = query W; K = memory W_k; V = act(memory W_v);
    H = act((gamma * f(Q K^T + b_rel) V) W_h); Y = phi * H + (1 - phi) * query.

    As in the official code, the relative bias uses the offset between the decoder
    position i and the encoder position j, over max(``max_positions``, ``max_source_positions``)
    positions.
    """

    def __init__(self, cfg: MegaLayerConfig):
        super().__init__(cfg)
        self.k_proj = nn.Linear(cfg.embed_dim, cfg.z_dim)
        self.v_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.q_proj = nn.Linear(cfg.embed_dim, 2 * cfg.embed_dim + cfg.z_dim)
        self.h_proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.rel_pos_bias = build_relative_positional_bias(cfg.rel_pos_bias, zdim=cfg.z_dim,
                                                           max_positions=max(cfg.max_positions,
                                                                             cfg.max_source_positions))
        init_linear(self.k_proj, self.v_proj, self.q_proj, self.h_proj)

    def forward(self, query: Tensor, memory: Tensor, memory_padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[IncrementalState] = None, need_weights: bool = False, *,
                padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """Shapes: query: B x L x D; memory: B x S x D; memory_padding_mask: B x S (True at
        padding); padding_mask: B x L, the query's (left out of batch norm statistics); returns
        (B x L x D, weights B x L x S if need_weights else None)."""
        bsz, length, _ = query.size()
        first = 0
        saved = None
        if incremental_state is not None:
            saved = self.get_incremental_state(incremental_state)
            first = saved.get("steps", 0)  # a Python int, the same for every example: no device sync
        x = self.block_input(query, padding_mask)
        phi, r, q = self.q_proj(x).split([self.embed_dim, self.embed_dim, self.zdim], dim=-1)
        phi = torch.sigmoid(phi)
        r = F.silu(r)  # reset gate
        if saved is not None and "key" in saved:
            k, v = saved["key"], saved["value"]
        else:
            k = self.k_proj(memory)  # B x S x z
            v = self.activation(self.v_proj(memory))  # B x S x D
        if saved is not None:
            saved.update(key=k, value=v, steps=first + length)
            self.set_incremental_state(incremental_state, saved)
        v = apply_dropout(self.hidden_dropout, v)
        src_len = k.size(1)
        positions = torch.arange(first, first + length, device=q.device)
        bias = self.rel_pos_bias(positions, max(first + length, src_len))[:, :src_len]
        visible = None if memory_padding_mask is None else ~memory_padding_mask.unsqueeze(1)
        attend = self.attend_one_query if length == 1 else self.attend  # a decoding step: one query
        h, weights = attend(q, k, v, bias.to(q.dtype), visible, need_weights)
        return self.gated_residual(query, phi, self.activation(self.h_proj(h * r)), padding_mask), weights
