"""Single-head attention functions used by Mega: softmax, laplace and relu^2, with bias and masks."""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

ATTENTION_FUNCTIONS = ("softmax", "laplace", "relu2")

_LAPLACE_MU = math.sqrt(0.5)
_LAPLACE_SIGMA = math.sqrt(0.25 / math.pi)


def laplace(x: Tensor) -> Tensor:
    """0.5 * (1 + erf((x - mu) / (sigma * sqrt 2))), mu = sqrt(1/2), sigma = sqrt(1/(4 pi))."""
    return 0.5 * (1.0 + torch.erf((x - _LAPLACE_MU) / (_LAPLACE_SIGMA * math.sqrt(2.0))))


def relu2(x: Tensor) -> Tensor:
    return F.relu(x).square()


def check_attention_function(name: str) -> str:
    if name not in ATTENTION_FUNCTIONS:
        raise ValueError(f"unknown attention function {name!r}; choose one of {', '.join(ATTENTION_FUNCTIONS)}")
    return name


def _ensure_nonempty_rows(visible: Optional[Tensor]) -> Optional[Tensor]:
    # A query that sees no valid key (a padding query) attends to all keys instead of
    # producing NaN; its output is padding and is never read by a real position.
    if visible is None:
        return None
    return visible | ~visible.any(dim=-1, keepdim=True)


def attention_weights(q: Tensor, k: Tensor, *, function: str, bias: Tensor, visible: Optional[Tensor],
                      scaling: Optional[float]) -> Tensor:
    """Explicit attention weights (the reference path).

    softmax: softmax(q k^T * scaling + bias) over visible keys.
    laplace / relu2: f(q k^T / n + bias) on visible keys, zero elsewhere, where n is the
    number of visible keys of each query (the official code's normalisation).

    Shapes: q: ... x Q x z; k: ... x K x z; bias: Q x K; visible: bool, broadcastable to
    ... x Q x K (None = all visible); returns ... x Q x K.
    """
    visible = _ensure_nonempty_rows(visible)
    scores = torch.matmul(q, k.transpose(-1, -2))
    if function == "softmax":
        scores = scores * scaling + bias
        if visible is not None:
            scores = scores.masked_fill(~visible, float("-inf"))
        return torch.softmax(scores, dim=-1)
    if visible is None:
        lengths = float(k.size(-2))
    else:
        lengths = visible.sum(dim=-1, keepdim=True).clamp(min=1).to(scores.dtype)
    weights = (laplace if function == "laplace" else relu2)(scores / lengths + bias)
    if visible is not None:
        weights = weights * visible.to(weights.dtype)
    return weights


def attend(q: Tensor, k: Tensor, v: Tensor, *, function: str, bias: Tensor, visible: Optional[Tensor],
           scaling: Optional[float], dropout: float = 0.0, need_weights: bool = False,
           fused: bool = True) -> Tuple[Tensor, Optional[Tensor]]:
    """Weights times values. Softmax uses torch's fused scaled_dot_product_attention
    unless the weights are wanted; the other functions use the explicit path.

    Shapes: v: ... x K x h; returns (... x Q x h, weights ... x Q x K or None).
    """
    if function == "softmax" and fused and not need_weights:
        visible = _ensure_nonempty_rows(visible)
        mask = bias if visible is None else torch.where(visible, bias, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), dropout_p=dropout, scale=scaling)
        return out, None
    weights = attention_weights(q, k, function=function, bias=bias, visible=visible, scaling=scaling)
    out = torch.matmul(F.dropout(weights, p=dropout, training=dropout > 0), v)
    return out, (weights if need_weights else None)
