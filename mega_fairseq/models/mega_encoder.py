"""The Mega encoder (embedding + bidirectional MegaStack) and the encoder-output contract.

The contract between :class:`MegaEncoder` and its readers (the decoder's gated cross-attention,
classifier heads), written down once here. ``encoder_out`` is fairseq's dict of lists:

- ``encoder_out``: ``[B x S x D]``, **batch-first** (fairseq's transformer uses S x B x D; every
  module of this package is batch-first, so the encoder output is too), **right-padded** (a
  left-padded source, fairseq's default for translation, is moved to the left edge first, so
  that each source is computed, and seen by the decoder's relative bias, as it would be
  alone), zero at padding;
- ``encoder_padding_mask``: ``[B x S]`` bool, True at padding;
- ``src_lengths``: ``[B x 1]``;
- ``source_order``: ``[B x S]`` long: for each position of ``encoder_out``, its position in the
  input as given (``src_tokens``, left-padded or not; with a first token, that token is 0 and
  the input follows it), so that attention weights can be read in the input's own order
  (:func:`in_source_order`), as fairseq reads alignments;
- ``encoder_states``: the input and every layer's output, ``B x S x D`` each, when asked for
  (``return_all_hiddens``), else ``[]``.

``reorder_encoder_out`` selects along dim 0 (the batch) of every tensor, as beam search asks.
"""

from typing import Dict, List, Optional

import torch
from fairseq.models import FairseqEncoder
from torch import Tensor, nn

from ..modules import MegaStack
from .official_names import refuse_official_names

EncoderOut = Dict[str, List[Tensor]]


def padding_mask_from_lengths(lengths: Tensor, max_length: int) -> Tensor:
    """B -> B x max_length, True past each length (right padding)."""
    return torch.arange(max_length, device=lengths.device).unsqueeze(0) >= lengths.view(-1, 1)


def right_padded(values: Tensor, padding_mask: Tensor):
    """Moves the positions that are not padding to the left edge of each row (a stable sort by
    the mask: a no-op for right padding, no device sync). Shapes: values: B x S (...);
    padding_mask: B x S; returns both reordered and the order: B x S, the position in the input
    of each position of the output."""
    order = torch.sort(padding_mask.to(torch.uint8), dim=1, stable=True).indices  # B x S
    index = order.view(*order.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return values.gather(1, index), padding_mask.gather(1, order), order


def in_source_order(weights: Tensor, encoder_out: EncoderOut) -> Tensor:
    """Attention weights over the encoder's positions moved to the positions of its input as
    given (``source_order``): fairseq reads alignments against ``src_tokens`` as it padded them.
    Weights at padding (zero) go to the input's padding. Shapes: weights: B x T x S; returns
    B x T x S."""
    if not encoder_out.get("source_order"):
        return weights  # an encoder output without the key is in its input's order
    order = encoder_out["source_order"][0]
    return weights.new_zeros(weights.shape).scatter(-1, order.unsqueeze(1).expand_as(weights), weights)


class MegaEncoder(FairseqEncoder):
    """An input embedding (token or real-valued) and a bidirectional :class:`MegaStack`.

    Padding comes from ``padding_idx`` for token inputs, or from ``src_lengths`` (right padding)
    for real-valued inputs (``padding_idx`` None).

    ``first_token_dim`` > 0 prepends a learned vector to every embedded input (the CLS position
    that first-token pooling reads); the output then has one position more than the input.
    ``stack`` is a :class:`MegaStack` or any module with its interface (the Transformer baseline).
    """

    def __init__(self, dictionary, embedding: nn.Module, stack: nn.Module, *, padding_idx: Optional[int],
                 max_source_positions: int, first_token_dim: int = 0):
        super().__init__(dictionary)
        if stack.causal:
            raise ValueError("an encoder needs a bidirectional MegaStack")
        self.embedding = embedding
        self.stack = stack
        self.padding_idx = padding_idx
        self.max_source_positions = max_source_positions
        self.first_token = None
        if first_token_dim > 0:
            self.first_token = nn.Parameter(torch.empty(first_token_dim))
            nn.init.normal_(self.first_token, mean=0.0, std=first_token_dim ** -0.5)

    @property
    def embed_tokens(self) -> nn.Module:
        return self.embedding.embed_tokens

    def padding_mask(self, src_tokens: Tensor, src_lengths: Optional[Tensor]) -> Tensor:
        if self.padding_idx is not None:
            return src_tokens.eq(self.padding_idx)
        if src_lengths is None:
            return src_tokens.new_zeros(src_tokens.shape[:2], dtype=torch.bool)
        return padding_mask_from_lengths(src_lengths, src_tokens.size(1))

    def forward(self, src_tokens: Tensor, src_lengths: Optional[Tensor] = None,
                return_all_hiddens: bool = False, **unused) -> EncoderOut:
        """Shapes: src_tokens: B x S (token ids, or real values); returns the contract above."""
        padding_mask = self.padding_mask(src_tokens, src_lengths)
        src_tokens, padding_mask, order = right_padded(src_tokens, padding_mask)
        x = self.embedding(src_tokens)
        if self.first_token is not None:
            x = torch.cat([self.first_token.to(x.dtype).expand(x.size(0), 1, -1), x], dim=1)
            padding_mask = torch.cat([padding_mask.new_zeros(x.size(0), 1), padding_mask], dim=1)
            order = torch.cat([order.new_zeros(x.size(0), 1), order + 1], dim=1)
        out = self.stack(x, padding_mask)
        src_lengths = (~padding_mask).sum(dim=1)
        return {
            "encoder_out": [out.out],
            "encoder_padding_mask": [padding_mask],
            "src_lengths": [src_lengths.view(-1, 1)],
            "source_order": [order],
            "encoder_states": out.inner_states if return_all_hiddens else [],
        }

    def reorder_encoder_out(self, encoder_out: EncoderOut, new_order: Tensor) -> EncoderOut:
        return {key: [t.index_select(0, new_order) for t in values] for key, values in encoder_out.items()}

    def max_positions(self) -> int:
        return self.max_source_positions

    def upgrade_state_dict_named(self, state_dict: Dict[str, Tensor], name: str):
        refuse_official_names(state_dict, name)
        return state_dict
