"""Sequence pooling for classifiers: one vector per example from B x L x D states."""

from typing import Optional

from torch import Tensor

from .norm import accumulation_dtype

POOLING_TYPES = ("mean", "first")


def masked_mean(x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    """Mean over the positions that are not padding, summed in float32 for half-precision x (16384
    positions of 5.0 sum past float16's 65504). Shapes: x: B x L x D; padding_mask: B x L (True
    at padding); returns B x D in x's dtype."""
    dtype = accumulation_dtype(x.dtype)
    if padding_mask is None:
        return x.mean(dim=1, dtype=dtype).to(x.dtype)
    keep = (~padding_mask).unsqueeze(-1)  # B x L x 1
    total = x.masked_fill(~keep, 0.0).sum(dim=1, dtype=dtype)  # B x D
    return (total / keep.sum(dim=1).clamp(min=1).to(dtype)).to(x.dtype)


def first_token(x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    """The state of the first position (a CLS token; the input must be right-padded)."""
    return x[:, 0]


def pool(kind: str, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    if kind == "mean":
        return masked_mean(x, padding_mask)
    if kind == "first":
        return first_token(x, padding_mask)
    raise ValueError(f"unknown pooling {kind!r}; choose one of {', '.join(POOLING_TYPES)}")
