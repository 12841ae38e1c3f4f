"""Single-head attention functions used by Mega: softmax, laplace and relu^2, with bias and masks."""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

ATTENTION_FUNCTIONS = ("softmax", "laplace", "relu2")

_HALF = (torch.float16, torch.bfloat16)

_LAPLACE_MU = math.sqrt(0.5)
_LAPLACE_SIGMA = math.sqrt(0.25 / math.pi)


def laplace(x: Tensor) -> Tensor:
    """0.5 * (1 + erf((x - mu) / (sigma * sqrt 2))), mu = sqrt(1/2), sigma = sqrt(1/(4 pi))."""
    return 0.5 * (1.0 + torch.erf((x - _LAPLACE_MU) / (_LAPLACE_SIGMA * math.sqrt(2.0))))


def relu2(x: Tensor) -> Tensor:
    return F.relu(x).square()


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """The one dtype attention runs in. Under autocast q and k (scaled by float32 parameters) come
    out in float32 and v in half precision: on CUDA all three go to the half dtype (the fused
    kernels normalise in float32 internally); elsewhere to float32 or wider, so that the softmax
    runs in float32, as in the official code."""
    dtypes = [t.dtype for t in tensors]
    half = [d for d in dtypes if d in _HALF]
    if half and tensors[0].device.type == "cuda":
        return half[0]
    dtype = dtypes[0]
    for other in dtypes[1:]:
        dtype = torch.promote_types(dtype, other)
    return torch.float32 if dtype in _HALF else dtype


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
        return torch.softmax(scores, dim=-1, dtype=torch.float32 if scores.dtype in _HALF else None).to(scores.dtype)
    if visible is None:
        lengths = float(k.size(-2))
    else:
        lengths = visible.sum(dim=-1, keepdim=True).clamp(min=1).to(scores.dtype)
    weights = (laplace if function == "laplace" else relu2)(scores / lengths + bias)
    if visible is not None:
        weights = weights * visible.to(weights.dtype)
    return weights


def attend(q: Tensor, k: Tensor, v: Tensor, *, function: str, bias: Tensor, visible: Optional[Tensor],
           scaling: Optional[float], dropout: float = 0.0,
           need_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Weights times values. Softmax uses torch's fused scaled_dot_product_attention (flash or
    memory-efficient kernels on CUDA) unless the weights are wanted; the other functions use the
    explicit path. Runs in ``compute_dtype`` and returns v's dtype.

    Shapes: v: ... x K x h; returns (... x Q x h, weights ... x Q x K or None).
    """
    out_dtype = v.dtype
    dtype = compute_dtype(q, k, v)
    q, k, v, bias = (t.to(dtype) for t in (q, k, v, bias))
    with torch.autocast(q.device.type, enabled=False):  # the dtype is chosen above
        if function == "softmax" and not need_weights:
            visible = _ensure_nonempty_rows(visible)
            mask = bias if visible is None else torch.where(visible, bias, float("-inf"))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scaling)
            return out.to(out_dtype), None
        weights = attention_weights(q, k, function=function, bias=bias, visible=visible, scaling=scaling)
        out = torch.matmul(F.dropout(weights, p=dropout, training=dropout > 0), v)
    return out.to(out_dtype), (weights if need_weights else None)


def _add_diagonal_sums_(out: Tensor, grad: Tensor, columns: int, start: int, scratch: Optional[Tensor] = None):
    """out[j - i + columns - 1] += sum_n grad[n, i - start, j]: the adjoint of ``toeplitz_rows``.

    The rows are written after a margin of zeros in a buffer of one extra (zero) row; read with
    a row stride one longer than the buffer's width, row r shifts left by r, so every diagonal
    becomes a column, and a column sum gives its total.

    Shapes: out: 2 * columns - 1; grad: N x Q x columns (or Q x columns); scratch: an
    all-zero (Q' + 1) x (columns + Q') buffer, Q' >= Q, reused across calls (its margins stay
    zero), or None.
    """
    rows = grad.size(-2)
    if scratch is None:
        scratch = grad.new_zeros(rows + 1, columns + rows)
    margin = scratch.size(0) - 1
    width = scratch.size(1)
    body = scratch[:rows, margin:margin + columns]
    if grad.dim() == 3 and grad.size(0) > 1:
        torch.sum(grad, 0, out=body)
    else:
        body.copy_(grad.view(rows, columns))
    # row r read from r * (width + 1): column c holds row r's entry j = c + r - margin (offset
    # c - margin - start), or, past the row's end, a zero of the next row's margin
    sums = scratch.as_strided((rows, width), (width + 1, 1)).sum(0)
    low = max(0, margin + start - columns + 1)  # columns below hold only the zero margin
    out[low - margin - start + columns - 1:2 * columns - 1 - start] += sums[low:]


def _bias_windows(offsets: Tensor, columns: int, start: int, stop: int) -> Tensor:
    """Rows start..stop-1 of ``toeplitz_rows``' matrix, last row first, as a strided view:
    row stop - 1 - r reads offsets[columns - stop + r + j]."""
    return offsets[columns - stop:2 * columns - 1 - start].unfold(0, columns, 1)


class _ToeplitzRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, offsets: Tensor, columns: int, start: int, stop: int) -> Tensor:
        ctx.columns, ctx.start, ctx.size = columns, start, offsets.size(0)
        return _bias_windows(offsets, columns, start, stop).flip(0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad_offsets = grad.new_zeros(ctx.size)
        _add_diagonal_sums_(grad_offsets, grad, ctx.columns, ctx.start)
        return grad_offsets, None, None, None


def toeplitz_rows(offsets: Tensor, columns: int, start: int, stop: int) -> Tensor:
    """Rows start..stop-1 of the columns x columns matrix b[i, j] = offsets[j - i + columns - 1].

    One copy of a strided view; the backward pass sums diagonals directly instead of
    autograd's unfold backward, which visits every window.

    Shapes: offsets: 2 * columns - 1; returns (stop - start) x columns.
    """
    return _ToeplitzRows.apply(offsets, columns, start, stop)
