"""Mega encoder and decoder layers: gated attention (+ cross-attention) + normalised FFN."""

from typing import Optional, Tuple

from torch import Tensor, nn

from .config import MegaLayerConfig
from .cross_attention import GatedCrossAttention
from .feed_forward import NormalizedFeedForwardNetwork
from .gated_attention import MovingAverageGatedAttention
from .incremental import IncrementalState


class MegaLayer(nn.Module):
    """Gated attention block, optional gated cross-attention, optional normalised FFN.

    ``causal=False`` is an encoder layer (bidirectional EMA and attention); ``causal=True`` a
    decoder layer, with ``cross_attention=True`` for encoder-decoder models. ``ffn_embed_dim``
    0 drops the FFN. Submodule names are the official ones (``mega_layer``, ``cross_attn``,
    ``nffn``), so official checkpoints map onto them.
    """

    def __init__(self, cfg: MegaLayerConfig, *, causal: bool, cross_attention: bool = False):
        super().__init__()
        self.mega_layer = MovingAverageGatedAttention(cfg, causal=causal)
        self.cross_attn = GatedCrossAttention(cfg) if cross_attention else None
        self.nffn = NormalizedFeedForwardNetwork(cfg) if cfg.ffn_embed_dim > 0 else None

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None, *, memory: Optional[Tensor] = None,
                memory_padding_mask: Optional[Tensor] = None, incremental_state: Optional[IncrementalState] = None,
                need_weights: bool = False, right_padded: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        """Shapes: x: B x L x D; padding_mask: B x L (True at padding; every block's norm leaves it out
        of batch norm statistics); memory: B x S x D; returns (B x L x D, with ``need_weights`` the
        weights of the layer's last attention, computed for it alone: the cross-attention's
        (B x L x S) when the layer has one, else the self-attention's; otherwise None).
        ``right_padded``: see :class:`MovingAverageGatedAttention`."""
        cross = self.cross_attn is not None
        x, weights = self.mega_layer(x, padding_mask, incremental_state=incremental_state,
                                     need_weights=need_weights and not cross,
                                     right_padded=right_padded)
        if cross:
            if memory is None:
                raise ValueError("this decoder layer has cross-attention and needs the encoder output (memory)")
            x, weights = self.cross_attn(x, memory, memory_padding_mask, incremental_state=incremental_state,
                                         need_weights=need_weights, padding_mask=padding_mask)
        nffn = self.nffn
        if nffn is not None:
            x = nffn(x, padding_mask)
        return x, weights
