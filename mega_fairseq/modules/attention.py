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
           scaling: Optional[float], dropout: float = 0.0, need_weights: bool = False,
           causal: Optional[Tensor] = None, mask_mode: str = "auto") -> Tuple[Tensor, Optional[Tensor]]:
    """Weights times values. Softmax without returned weights goes through ``fused_softmax_attention``
    (torch's scaled_dot_product_attention); the other functions, and softmax when the weights are
    wanted, use the explicit path (``attention_weights``). Runs in ``compute_dtype`` and returns v's
    dtype.

    Shapes: q: B x Q x z or B x H x Q x z (H: heads, or chunks); k: ... x K x z; v: ... x K x h;
    bias: Q x K; visible: bool, broadcastable to ... x Q x K (a key padding mask has one row:
    ... x 1 x K); causal: Q x K bool shared by every entry, True where query i may see key j, or
    None; returns (... x Q x h, weights ... x Q x K or None).
    """
    out_dtype = v.dtype
    dtype = compute_dtype(q, k, v)
    q, k, v, bias = (t.to(dtype) for t in (q, k, v, bias))
    with torch.autocast(q.device.type, enabled=False):  # the dtype is chosen above
        if function == "softmax" and not need_weights:
            out = fused_softmax_attention(q, k, v, bias=bias, visible=visible, causal=causal, scaling=scaling,
                                          dropout=dropout, mask_mode=mask_mode)
            return out.to(out_dtype), None
        visible = _combine(visible, causal)
        weights = attention_weights(q, k, function=function, bias=bias, visible=visible, scaling=scaling)
        out = torch.matmul(F.dropout(weights, p=dropout, training=dropout > 0), v)
    return out.to(out_dtype), (weights if need_weights else None)


def _combine(visible: Optional[Tensor], causal: Optional[Tensor]) -> Optional[Tensor]:
    if causal is None:
        return visible
    return causal if visible is None else visible & causal


# ----------------------------------------------------------------------------------------------
# Softmax attention through torch's scaled_dot_product_attention (SDPA)
# ----------------------------------------------------------------------------------------------

MASK_MODES = ("auto", "features", "explicit")

# Added to the scores of padded keys by the padding feature: exp(-1e4) is 0 in every floating
# dtype, and the value is finite in every dtype (a row of padded keys stays finite).
_PADDING_SCORE = -1e4
# The padding feature widens q and k to a multiple of this many columns: the memory-efficient
# kernel takes head dimensions divisible by 8 in half precision (4 in float32).
_FEATURE_ALIGNMENT = 8
# With a bias that requires grad, the memory-efficient backward allocates the bias gradient at
# the size of the mask broadcast to B x H x Q x K (keys rounded up to 16): queries then run in
# blocks of rows whose bias gradient stays under this many bytes.
_BIAS_GRAD_BYTES = 2 ** 26


def fused_softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor, visible: Optional[Tensor],
                            causal: Optional[Tensor], scaling: float, dropout: float = 0.0,
                            mask_mode: str = "auto") -> Tensor:
    """softmax(scaling q k^T + bias) v over visible keys, by F.scaled_dot_product_attention. With
    a mask SDPA runs the memory-efficient kernel on CUDA (flash attention takes none), which keeps
    q, k, v, the mask, the output and the row log-sum-exp for the backward pass, never the scores;
    what is passed to it here is not score-sized either (B x H x Q x K), except on request:

    - ``causal`` is folded into the bias (-inf where a key may not be seen): one Q x K mask that
      SDPA broadcasts over the entries without a copy;
    - key padding (``visible`` with one row per entry, ... x 1 x K) becomes one more column of
      q and k, whose product adds -1e4 to the scores of padded keys (``_padding_feature``);
      a query whose keys are all padding sees all of them, as in ``attention_weights``;
    - ``mask_mode="explicit"``, and a ``visible`` mask that varies over queries, pass the mask
      where(visible, bias, -inf) of size ... x Q x K instead. ``"auto"`` takes it only where it
      is smaller than the padding feature's columns (a few keys, as in incremental decoding).

    When the bias requires grad, the queries run in blocks of rows (``_BIAS_GRAD_BYTES``), so
    that the bias gradient allocated by the memory-efficient backward stays bounded; except with
    ``mask_mode="explicit"``, the reference, which makes one call.

    Shapes: as ``attend``; returns ... x Q x h.
    """
    if mask_mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mask_mode!r}; choose one of {', '.join(MASK_MODES)}")
    scale = scaling
    if visible is not None and visible.size(-2) == 1 and mask_mode != "explicit" and (
            mask_mode == "features" or not _explicit_mask_is_smaller(q, k)):
        q, k = _padding_feature(q, k, ~visible.squeeze(-2), scaling)
        scale = 1.0
        visible = None
    if visible is None:
        mask = bias if causal is None else bias.masked_fill(~causal, float("-inf"))  # Q x K
    else:
        mask = torch.where(_ensure_nonempty_rows(_combine(visible, causal)), bias, float("-inf"))  # ... x Q x K
    rows = q.size(-2) if mask_mode == "explicit" else _rows_per_call(q, k, mask)
    outs = [_sdpa(q[..., start:start + rows, :], k, v, mask[..., start:start + rows, :], dropout, scale)
            for start in range(0, q.size(-2), rows)]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


def _explicit_mask_is_smaller(q: Tensor, k: Tensor) -> bool:
    """Whether the explicit ... x Q x K mask has no more elements than the padding feature adds to
    q and k (``_FEATURE_ALIGNMENT`` columns each at most)."""
    queries, keys = q.size(-2), k.size(-2)
    return queries * keys <= _FEATURE_ALIGNMENT * (queries + keys)


def _padding_feature(q: Tensor, k: Tensor, key_padding: Tensor, scaling: float) -> Tuple[Tensor, Tensor]:
    """q' = [scaling q, 1, 0, ...] and k' = [k, -1e4 at padding, 0, ...], widened to a multiple of
    ``_FEATURE_ALIGNMENT`` columns, so that q' k'^T = scaling q k^T, minus 1e4 at padded keys.

    Shapes: q: ... x Q x z; k: ... x K x z; key_padding: bool, True at padding, broadcastable to
    ... x K; returns ... x Q x z' and ... x K x z'.
    """
    extra = _FEATURE_ALIGNMENT - q.size(-1) % _FEATURE_ALIGNMENT
    marker = q.new_zeros(extra)
    marker[0] = 1.0
    q = torch.cat([q * scaling, marker.expand(*q.shape[:-1], extra)], dim=-1)
    shift = F.pad((key_padding.to(k.dtype) * _PADDING_SCORE).unsqueeze(-1), (0, extra - 1))  # ... x K x extra
    k = torch.cat([k, shift.expand(*k.shape[:-1], extra)], dim=-1)
    return q, k


def _rows_per_call(q: Tensor, k: Tensor, mask: Tensor) -> int:
    """Query rows per SDPA call: all of them, unless the mask requires grad and the bias gradient
    of the memory-efficient backward (entries x Q x K, keys rounded up to 16) would pass
    ``_BIAS_GRAD_BYTES``."""
    if not (mask.requires_grad and torch.is_grad_enabled()):
        return q.size(-2)
    keys = -(-k.size(-2) // 16) * 16
    row_bytes = math.prod(q.shape[:-2]) * keys * mask.element_size()
    return max(1, _BIAS_GRAD_BYTES // row_bytes)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, dropout: float, scale: float) -> Tensor:
    """F.scaled_dot_product_attention; B x Q x z inputs get a head dimension (B x 1 x Q x z), as
    every fused kernel takes only 4-D inputs (3-D ones run the math kernel)."""
    if q.dim() == 3:
        mask = mask if mask.dim() < 3 else mask.unsqueeze(1)
        return _sdpa(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), mask, dropout, scale).squeeze(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)


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
