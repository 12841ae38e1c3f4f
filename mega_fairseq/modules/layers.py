"""Mega encoder and decoder layers: gated attention (+ cross-attention) + normalised FFN."""

from typing import Optional, Tuple

from torch import Tensor, nn

from .cross_attention import GatedCrossAttention
from .feed_forward import NormalizedFeedForwardNetwork
from .gated_attention import MovingAverageGatedAttention
from .incremental import IncrementalState


class MegaLayer(nn.Module):
    """Gated attention block, optional gated cross-attention, optional normalised FFN.

    ``causal=False`` is an encoder layer (bidirectional EMA and attention); ``causal=True`` a
    decoder layer, with ``cross_attention=True`` for encoder-decoder models. The arguments are
    those of :class:`MovingAverageGatedAttention`; ``ffn_hidden_dim`` 0 drops the FFN and
    ``activation_dropout`` is the dropout inside it.
    """

    def __init__(self, embed_dim: int, *, zdim: int, hdim: int, ffn_hidden_dim: int, causal: bool,
                 cross_attention: bool = False, ndim: int = 16, chunk_size: int = -1,
                 truncation: Optional[int] = None, attention_activation: str = "softmax", activation: str = "silu",
                 dropout: float = 0.0, attention_dropout: float = 0.0, hidden_dropout: float = 0.0,
                 activation_dropout: float = 0.0, feature_dropout: bool = False, norm_type: str = "layernorm",
                 prenorm: bool = True, rel_pos_bias: str = "simple", max_positions: int = 1024,
                 max_source_positions: int = 1024):
        super().__init__()
        shared = dict(attention_activation=attention_activation, activation=activation, dropout=dropout,
                      attention_dropout=attention_dropout, hidden_dropout=hidden_dropout,
                      feature_dropout=feature_dropout, norm_type=norm_type, prenorm=prenorm,
                      rel_pos_bias=rel_pos_bias)
        self.mega_layer = MovingAverageGatedAttention(
            embed_dim, zdim=zdim, hdim=hdim, ndim=ndim, causal=causal, chunk_size=chunk_size,
            truncation=truncation, max_positions=max_positions, **shared)
        self.cross_attn = GatedCrossAttention(
            embed_dim, zdim=zdim, max_positions=max(max_positions, max_source_positions), **shared,
        ) if cross_attention else None
        self.nffn = NormalizedFeedForwardNetwork(
            embed_dim, ffn_hidden_dim, activation=activation, dropout=dropout, hidden_dropout=activation_dropout,
            feature_dropout=feature_dropout, norm_type=norm_type, prenorm=prenorm,
        ) if ffn_hidden_dim > 0 else None

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None, *, memory: Optional[Tensor] = None,
                memory_padding_mask: Optional[Tensor] = None, incremental_state: Optional[IncrementalState] = None,
                need_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Shapes: x: B x L x D; padding_mask: B x L; memory: B x S x D; returns (B x L x D,
        attention weights of the last attention, or None)."""
        x, weights = self.mega_layer(x, padding_mask, incremental_state=incremental_state, need_weights=need_weights)
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this decoder layer has cross-attention and needs the encoder output (memory)")
            x, weights = self.cross_attn(x, memory, memory_padding_mask, incremental_state=incremental_state,
                                         need_weights=need_weights)
        if self.nffn is not None:
            x = self.nffn(x)
        return x, weights
