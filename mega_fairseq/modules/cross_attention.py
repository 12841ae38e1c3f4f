"""Gated cross-attention of a Mega decoder over encoder outputs."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activations import get_activation
from .attention import attend, check_attention_function
from .dropout import make_dropout
from .incremental import IncrementalState, IncrementalStateMixin
from .norm import SequenceNorm
from .positional_bias import build_relative_positional_bias


class GatedCrossAttention(IncrementalStateMixin, nn.Module):
    """Decoder queries attend to encoder keys/values through Mega's gates (no EMA):
    [phi, gamma, Q] = query W; K = memory W_k; V = act(memory W_v);
    H = act((gamma * f(Q K^T + b_rel) V) W_h); Y = phi * H + (1 - phi) * query.

    As in the official code, the relative bias uses the offset between the decoder
    position i and the encoder position j.
    """

    def __init__(self, embed_dim: int, *, zdim: int, attention_activation: str = "softmax",
                 activation: str = "silu", dropout: float = 0.0, attention_dropout: float = 0.0,
                 hidden_dropout: float = 0.0, feature_dropout: bool = False, norm_type: str = "layernorm",
                 prenorm: bool = True, norm_affine: bool = True, rel_pos_bias: str = "simple",
                 max_positions: int = 1024):
        super().__init__()
        self.embed_dim, self.zdim = embed_dim, zdim
        self.attention_activation = check_attention_function(attention_activation)
        self.activation = get_activation(activation)
        self.scaling = zdim ** -0.5 if attention_activation == "softmax" else None
        self.attention_dropout = attention_dropout
        self.dropout = make_dropout(dropout, feature_dropout)
        self.hidden_dropout = make_dropout(hidden_dropout, feature_dropout)
        self.prenorm = prenorm
        self.norm = SequenceNorm(norm_type, embed_dim, affine=norm_affine)
        self.k_proj = nn.Linear(embed_dim, zdim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, 2 * embed_dim + zdim)
        self.h_proj = nn.Linear(embed_dim, embed_dim)
        self.rel_pos_bias = build_relative_positional_bias(rel_pos_bias, zdim=zdim, max_positions=max_positions)
        for linear in (self.k_proj, self.v_proj, self.q_proj, self.h_proj):
            nn.init.normal_(linear.weight, mean=0.0, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, query: Tensor, memory: Tensor, memory_padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[IncrementalState] = None,
                need_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Shapes: query: B x L x D; memory: B x S x D; memory_padding_mask: B x S (True at
        padding); returns (B x L x D, weights B x L x S if need_weights else None)."""
        bsz, length, _ = query.size()
        first = 0
        saved = None
        if incremental_state is not None:
            saved = self.get_incremental_state(incremental_state)
            if "steps" in saved:
                first = int(saved["steps"][0])  # one count per example, so beam reordering keeps it
        x = self.norm(query) if self.prenorm else query
        phi, r, q = self.q_proj(x).split([self.embed_dim, self.embed_dim, self.zdim], dim=-1)
        phi = torch.sigmoid(phi)
        r = F.silu(r)  # reset gate
        if saved is not None and "key" in saved:
            k, v = saved["key"], saved["value"]
        else:
            k = self.k_proj(memory)  # B x S x z
            v = self.activation(self.v_proj(memory))  # B x S x D
        if saved is not None:
            saved.update(key=k, value=v, steps=torch.full((bsz,), first + length, dtype=torch.long, device=q.device))
            self.set_incremental_state(incremental_state, saved)
        v = self.hidden_dropout(v)
        src_len = k.size(1)
        positions = torch.arange(first, first + length, device=q.device)
        bias = self.rel_pos_bias(positions, max(first + length, src_len))[:, :src_len]
        visible = None if memory_padding_mask is None else ~memory_padding_mask.unsqueeze(1)
        h, weights = attend(q, k, v, function=self.attention_activation, bias=bias.to(q.dtype), visible=visible,
                            scaling=self.scaling, dropout=self.attention_dropout if self.training else 0.0,
                            need_weights=need_weights)
        h = self.dropout(self.activation(self.h_proj(h * r)))
        out = torch.addcmul(query, phi, h - query)
        if not self.prenorm:
            out = self.norm(out)
        return out, weights
