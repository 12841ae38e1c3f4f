"""Sequence pooling for classifiers: one vector per example from B x L x D states."""

from typing import Optional

from torch import Tensor

POOLING_TYPES = ("mean", "first")


def masked_mean(x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    """Mean over the positions that are not padding. Shapes: x: B x L x D; padding_mask: B x L
    (True at padding); returns B x D."""
    if padding_mask is None:
        return x.mean(dim=1)
    keep = (~padding_mask).unsqueeze(-1).to(x.dtype)  # B x L x 1
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def first_token(x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    """The state of the first position (a CLS token; the input must be right-padded)."""
    return x[:, 0]


def pool(kind: str, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    if kind == "mean":
        return masked_mean(x, padding_mask)
    if kind == "first":
        return first_token(x, padding_mask)
    raise ValueError(f"unknown pooling {kind!r}; choose one of {', '.join(POOLING_TYPES)}")
