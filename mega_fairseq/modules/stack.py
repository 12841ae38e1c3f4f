"""A stack of Mega layers: the body of every Mega model (encoder, decoder, classifier)."""

from typing import List, NamedTuple, Optional

import torch
from torch import Tensor, nn

from . import decoding
from .config import MegaLayerConfig
from .incremental import IncrementalState, IncrementalStateMixin
from .layers import MegaLayer
from .norm import SequenceNorm


class StackOutput(NamedTuple):
    out: Tensor  # B x L x D, zero at padding
    inner_states: List[Tensor]  # the input and each layer's output, B x L x D
    attn: Optional[Tensor]  # the attention weights of layer ``weights_layer``, when asked for


class MegaStack(IncrementalStateMixin, nn.Module):
    """``cfg.layers`` Mega layers and, when they are prenorm, a final norm.

    ``causal=False``: an encoder stack (bidirectional EMA and attention). ``causal=True``: a
    decoder stack (left-to-right; incremental decoding with ``incremental_state``), with gated
    cross-attention over an encoder's output when ``cross_attention``.

    Padding: positions marked in ``padding_mask`` are zero on input and output, are never
    attended to by real positions, and do not enter the EMA, so a right-padded batch computes
    what each example would alone (tested). Left padding would shift the chunk boundaries and the EMA's start:
    :class:`MegaEncoder` moves left-padded inputs to the left edge first.

    Incremental decoding takes :class:`decoding.StackStep`, the whole stack's step as one function, where it
    computes what the layers would (one position, unpadded or right-padded, in evaluation without autograd,
    softmax attention: see :mod:`decoding`); the stack keeps it in its slot of the decoding's incremental state.
    """

    def __init__(self, cfg: MegaLayerConfig, *, causal: bool, cross_attention: bool = False,
                 final_norm_affine: bool = True):
        super().__init__()
        self.cfg = cfg
        self.causal = causal
        self.layers = nn.ModuleList(MegaLayer(cfg, causal=causal, cross_attention=cross_attention)
                                    for _ in range(cfg.layers))
        self.final_norm = SequenceNorm(cfg.normalization_type, cfg.embed_dim, affine=final_norm_affine) \
            if cfg.normalize_before else None

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None, *, memory: Optional[Tensor] = None,
                memory_padding_mask: Optional[Tensor] = None, incremental_state: Optional[IncrementalState] = None,
                weights_layer: Optional[int] = None, right_padded: bool = False) -> StackOutput:
        """Shapes: x: B x L x D; padding_mask: B x L (True at padding) or None; memory: B x S x D;
        memory_padding_mask: B x S. With ``incremental_state`` x holds only the newest positions.

        ``weights_layer``: the layer (an index into ``layers``, negative from the end) whose attention
        weights are returned (see :class:`MegaLayer`); the other layers, and all of them when it is
        None, compute none (the fused attention kernels never form them).

        ``right_padded``: the caller knows that padding only follows each sequence's end, so that
        causal attention can ignore the mask (a real query sees only real keys); it still hides
        padding from the EMA and the norms."""
        if padding_mask is not None and padding_mask.device.type == "cpu" and not bool(padding_mask.any()):
            padding_mask = None  # the unpadded kernels are faster (on CPU the check costs no device sync)
        if (incremental_state is not None and (padding_mask is None or right_padded) and weights_layer is None
                and x.size(1) == 1 and not self.training and not torch.is_grad_enabled()):
            step = self._decoding_step(x, incremental_state, memory)
            if step is not None:
                out, inner_states = step(x, incremental_state, memory, memory_padding_mask, padding_mask)
                return StackOutput(out, inner_states, None)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        inner_states = [x]
        wanted = None if weights_layer is None else range(len(self.layers))[weights_layer]
        attn = None
        for index, layer in enumerate(self.layers):
            x, weights = layer(x, padding_mask, memory=memory, memory_padding_mask=memory_padding_mask,
                               incremental_state=incremental_state, need_weights=index == wanted,
                               right_padded=right_padded)
            if index == wanted:
                attn = weights
            inner_states.append(x)
        final_norm = self.final_norm
        if final_norm is not None:
            x = final_norm(x, padding_mask)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return StackOutput(x, inner_states, attn)

    def _decoding_step(self, x: Tensor, incremental_state: IncrementalState,
                       memory: Optional[Tensor]) -> Optional[decoding.StackStep]:
        """This decoding's :class:`decoding.StackStep` where it applies to the step x (B x 1 x D), else None;
        made at the decoding's first step without autograd (None where the layers are of another kind)."""
        saved = incremental_state.get(self._state_key())
        if saved is None:
            step = decoding.StackStep(self, x.dtype, x.device) if decoding.supports(self) else None
            saved = {"step": step}
            self.set_incremental_state(incremental_state, saved)
        step = saved["step"]
        return step if step is not None and step.applies(x, incremental_state, memory) else None
