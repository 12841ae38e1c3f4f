"""Mega's single-head attention, and the one place that decides how it runs.

The functions (softmax, laplace, relu^2) with a bias and masks, and their plain reference
(``attention_weights``). Two entry points choose the kernel, by function, device and what the
caller needs (``relative_attention``, ``attend``); the layers (``gated_attention.py``,
``cross_attention.py``) hold the paper's math and call them:

- the reference: explicit weights, for laplace and relu^2 and whenever the weights are returned;
- fused softmax attention: torch's scaled_dot_product_attention (SDPA) with no score-sized mask
  (``fused_softmax_attention``), for softmax on every device, except
- the blocked softmax kernel of the CPU (``softmax_attention_blocks``), for self-attention with
  a relative bias and no dropout on CPU;
- one query (a decoding step, ``softmax_one_query``): three small ops, for softmax without dropout.

Every fast kernel is compared with the reference in tests/unit/test_fast_paths.py and
tests/unit/test_fused_attention.py.
"""

import math
from functools import partial
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from .incremental import to_dtype, without_autocast

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


# ----------------------------------------------------------------------------------------------
# The dispatcher: which kernel runs
# ----------------------------------------------------------------------------------------------

def attend(q: Tensor, k: Tensor, v: Tensor, *, function: str, bias: Tensor, visible: Optional[Tensor],
           scaling: Optional[float], dropout: float = 0.0, need_weights: bool = False,
           causal: Optional[Tensor] = None, mask_mode: str = "auto") -> Tuple[Tensor, Optional[Tensor]]:
    """Weights times values, with any bias (cross-attention, and the rows of ``relative_attention``).
    Softmax without returned weights goes through ``fused_softmax_attention`` (torch's
    scaled_dot_product_attention) on every device; the other functions, and softmax when the
    weights are wanted, use the explicit path (``attention_weights``). Runs in ``compute_dtype``
    and returns v's dtype.

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


def softmax_one_query(q: Tensor, k: Tensor, v: Tensor, *, bias: Tensor, visible: Optional[Tensor],
                      scaling: float) -> Tuple[Tensor, Tensor]:
    """Softmax attention of one query per entry, without dropout, in three small ops: a decoding step's
    self- and cross-attention (one query costs less this way than through ``attend``'s dispatch: a decoding
    step is mostly such overhead). Runs in ``compute_dtype``, softmax in at least float32; returns v's dtype.

    Shapes: q: B x 1 x z; k: B x K x z; v: B x K x h; bias: 1 x K; visible: B x 1 x K bool or None; returns
    (B x 1 x h, weights B x 1 x K).
    """
    dtype = compute_dtype(q, k, v)
    with without_autocast(q.device.type):  # the dtype is chosen above
        scores = torch.baddbmm(to_dtype(bias, dtype), to_dtype(q, dtype), to_dtype(k, dtype).transpose(1, 2),
                               alpha=scaling)  # B x 1 x K
        if visible is not None:
            scores = scores.masked_fill(~_ensure_nonempty_rows(visible), float("-inf"))
        weights = to_dtype(torch.softmax(scores, dim=-1, dtype=torch.promote_types(dtype, torch.float32)), dtype)
        return to_dtype(torch.bmm(weights, to_dtype(v, dtype)), v.dtype), weights


def _combine(visible: Optional[Tensor], causal: Optional[Tensor]) -> Optional[Tensor]:
    if causal is None:
        return visible
    return causal if visible is None else visible & causal


# The reference (and SDPA's math kernel of the CPU) hold B x Q x K scores: above this many bytes
# the queries run in blocks of about _BLOCK_SCORE_BYTES whose weights are recomputed in the
# backward pass, so memory grows as L x block instead of L^2 (16K tokens would otherwise keep
# 1 GB per layer).
_MAX_SCORE_BYTES = 2 ** 28
_BLOCK_SCORE_BYTES = 2 ** 26


def uses_cpu_kernel(device: torch.device) -> bool:
    """Softmax attention without dropout runs the blocked kernel on CPU; on other devices torch's
    scaled_dot_product_attention (``fused_softmax_attention``: its memory-efficient kernel never
    materialises the scores, and neither does what it is given)."""
    return device.type == "cpu"


def relative_attention(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, key_padding: Optional[Tensor],
                       causal: bool, function: str, scaling: Optional[float], dropout: float = 0.0,
                       need_weights: bool = False, mask_mode: str = "auto") -> Tuple[Tensor, Optional[Tensor]]:
    """Self-attention within each entry (a sequence, or a chunk of one) with the relative bias
    b[i, j] = offsets[j - i + K - 1]; queries are the keys' positions. The kernel:

    - softmax without dropout or returned weights, on CPU: the blocked kernel
      (``softmax_attention_blocks``), which holds the weights of one group of rows at a time;
    - returned weights, fused softmax elsewhere (nothing score-sized kept), or scores of at most
      ``_MAX_SCORE_BYTES``: ``attend`` on every row at once;
    - otherwise ``attend`` on blocks of query rows whose weights are recomputed in the backward
      pass (the reference, or SDPA's math kernel for softmax with dropout on CPU).

    Shapes: q: B x N x K x z (N: entries, e.g. chunks); k: B x N x K x z; v: B x N x K x h;
    offsets: 2K - 1; key_padding: B x N x K bool (True at padding) or None; returns (B x N x K x h,
    weights B x N x K x K or None).
    """
    fused = function == "softmax" and not need_weights
    options = dict(function=function, scaling=scaling, dropout=dropout, need_weights=need_weights,
                   mask_mode=mask_mode)
    if fused and dropout == 0.0 and uses_cpu_kernel(q.device):
        return _cpu_softmax_attention(q, k, v, offsets, key_padding, causal, scaling), None
    bsz, entries, rows, _ = q.size()
    score_bytes = bsz * entries * rows * k.size(-2) * q.element_size()
    if (fused and not uses_cpu_kernel(q.device)) or need_weights or score_bytes <= _MAX_SCORE_BYTES:
        return attention_rows(q, k, v, offsets=offsets, key_padding=key_padding, causal=causal, first_query=0,
                              **options)
    block = max(1, rows * _BLOCK_SCORE_BYTES // score_bytes)
    block_rows = partial(attention_rows, **options)  # checkpoint() takes no keyword named function
    return torch.cat([checkpoint(block_rows, q[:, :, start:start + block], k, v, offsets=offsets,
                                 key_padding=key_padding, causal=causal, first_query=start, use_reentrant=False)[0]
                      for start in range(0, rows, block)], dim=2), None


def attention_rows(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, key_padding: Optional[Tensor], causal: bool,
                   first_query: int, **attend_options) -> Tuple[Tensor, Optional[Tensor]]:
    """Queries ``first_query``..``first_query + Q - 1`` of each entry attend to its K keys with the
    relative bias (rows of ``toeplitz_rows``), causal ones to keys j <= i only: ``attend``, with its
    other options (function, scaling, dropout, need_weights, mask_mode).

    Shapes: q: B x N x Q x z; k: B x N x K x z; v: B x N x K x h; offsets: 2K - 1; key_padding:
    B x N x K bool (True at padding) or None; returns (B x N x Q x h, weights B x N x Q x K or None).
    """
    rows, keys = q.size(-2), k.size(-2)
    visible = None if key_padding is None else ~key_padding.unsqueeze(-2)  # B x N x 1 x K
    mask = None
    if causal:
        mask = torch.arange(first_query, first_query + rows, device=q.device).unsqueeze(-1) >= torch.arange(
            keys, device=q.device)  # Q x K
    bias = toeplitz_rows(offsets, keys, first_query, first_query + rows)  # Q x K
    return attend(q, k, v, bias=bias, visible=visible, causal=mask, **attend_options)


def _cpu_softmax_attention(q: Tensor, k: Tensor, v: Tensor, offsets: Tensor, key_padding: Optional[Tensor],
                           causal: bool, scaling: float) -> Tensor:
    """``softmax_attention_blocks`` on B x N x K x z inputs, in ``compute_dtype`` (float32 for half
    inputs: the softmax runs in float32); returns B x N x K x h in v's dtype."""
    dtype = compute_dtype(q, k, v)
    bsz, entries, keys, _ = k.size()
    with torch.autocast(q.device.type, enabled=False):
        out = softmax_attention_blocks(
            q.to(dtype).flatten(0, 1), k.to(dtype).flatten(0, 1), v.to(dtype).flatten(0, 1),
            offsets=offsets.to(dtype), key_padding=None if key_padding is None else key_padding.flatten(0, 1),
            causal=causal, scaling=scaling)  # B * N x K x h
    return out.to(v.dtype).view(bsz, entries, keys, -1)


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


# ----------------------------------------------------------------------------------------------
# The blocked softmax attention kernel of the CPU
# ----------------------------------------------------------------------------------------------
# Scores are computed and normalised in cache-sized blocks of query rows, in place, with torch's
# fused softmax and softmax-backward kernels; weights are kept (or recomputed from the row
# log-sum-exp) in groups whose products with V, the output gradient and Q are large matmuls.

# Blocks of softmax_attention_blocks hold about this many bytes of scores: small enough to stay
# in cache while a block is normalised and multiplied, large enough for efficient matmuls.
_BLOCK_BYTES = 2 ** 21
# ... but at least this many rows: fewer make the score matmul inefficient.
_MIN_BLOCK_ROWS = 128
# Weights are handled in groups of blocks of up to this many bytes: the products with a whole
# group (weights x V, the gradients of V and K) are large matmuls, and a group can stay in the
# last-level cache between them.
_GROUP_BYTES = 2 ** 24
# Up to this many bytes of weights are kept for the backward pass instead of recomputed there.
_KEEP_WEIGHTS_BYTES = 2 ** 28

_softmax_ = torch.ops.aten._softmax.out
_softmax_backward_ = torch.ops.aten._softmax_backward_data.out


def _blocks(batch: int, rows: int, columns: int, element_size: int, max_bytes: int,
            first_row: int = 0) -> List[Tuple[slice, int, int]]:
    """Split N x Q x K scores into blocks of at most ``max_bytes`` (at least one row) that are
    contiguous in memory: (entries, first row, last row + 1), either several whole entries or
    a range of rows of one entry. Rows are numbered from ``first_row``."""
    block_rows = max(1, max_bytes // (columns * element_size))
    if block_rows >= rows:
        per_block = block_rows // rows
        return [(slice(first, min(first + per_block, batch)), first_row, first_row + rows)
                for first in range(0, batch, per_block)]
    return [(slice(entry, entry + 1), first_row + start, first_row + min(start + block_rows, rows))
            for entry in range(batch) for start in range(0, rows, block_rows)]


def _block_scores_(out: Tensor, q: Tensor, k_scaled: Tensor, offsets: Tensor, key_padding: Optional[Tensor],
                   causal: bool, start: int) -> Tensor:
    """out = q (scaling k)^T + bias for query rows start..start+Q-1, -inf where not visible.

    Shapes: out: N x Q x K, contiguous; q: N x Q x z; k_scaled: N x K x z; key_padding: N x K.
    """
    rows, columns = q.size(1), k_scaled.size(1)
    # the bias rows (as in toeplitz_rows) are gathered straight into the output, which the
    # matmul then accumulates onto
    windows = _bias_windows(offsets, columns, start, start + rows)
    torch.index_select(windows, 0, torch.arange(rows - 1, -1, -1, device=out.device), out=out[0])
    if out.size(0) > 1:
        out[1:].copy_(out[0].expand_as(out[1:]))
    out.baddbmm_(q, k_scaled.transpose(1, 2))
    visible = None if key_padding is None else ~key_padding.unsqueeze(1)  # N x 1 x K
    if causal:
        positions = torch.arange(start, start + rows, device=q.device).unsqueeze(-1)
        below = positions >= torch.arange(columns, device=q.device)  # Q x K
        visible = below if visible is None else visible & below
    visible = _ensure_nonempty_rows(visible)
    if visible is not None:
        out.masked_fill_(~visible, float("-inf"))
    return out


class _SoftmaxAttentionBlocks(torch.autograd.Function):
    """Softmax attention in groups of query rows (``_GROUP_BYTES`` of weights), whose products
    with V, and in the backward pass with the output gradient and Q, are large matmuls; within
    a group, blocks of rows (``_BLOCK_BYTES``) are scored and normalised while in cache.

    Weights up to ``_KEEP_WEIGHTS_BYTES`` are kept for the backward pass. Larger weights are
    recomputed there from the row log-sum-exp, as flash attention does, and only one group of
    them is held at a time.
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, offsets: Tensor, key_padding: Optional[Tensor],
                causal: bool, scaling: float) -> Tensor:
        batch, rows, _ = q.size()
        columns = k.size(1)
        k_scaled = k * scaling
        out = q.new_empty(batch, rows, v.size(-1))
        keep = batch * rows * columns * q.element_size() <= _KEEP_WEIGHTS_BYTES
        groups = _blocks(batch, rows, columns, q.element_size(), _GROUP_BYTES)
        kept, log_sum_exp, scratch = [], None, None
        if not keep:
            log_sum_exp = q.new_empty(batch, rows, 1)
            scratch = q.new_empty(_largest(groups, columns))
        for entries, first, last in groups:
            size = (entries.stop - entries.start, last - first, columns)
            group = q.new_empty(size) if keep else scratch[:math.prod(size)].view(size)
            for block, where, start, stop in _score_blocks_(group, entries, first, q, k_scaled, offsets, key_padding,
                                                            causal):
                if keep:
                    _softmax_(block, -1, False, out=block)
                else:
                    torch.logsumexp(block, -1, keepdim=True, out=log_sum_exp[where, start:stop])
                    block.sub_(log_sum_exp[where, start:stop]).exp_()
            torch.bmm(group, v[entries], out=out[entries, first:last])
            if keep:
                kept.append(group)
        ctx.save_for_backward(q, k_scaled, v, offsets, key_padding, log_sum_exp)
        ctx.causal, ctx.scaling, ctx.groups, ctx.kept = causal, scaling, groups, (kept if keep else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        q, k_scaled, v, offsets, key_padding, log_sum_exp = ctx.saved_tensors
        groups, kept = ctx.groups, ctx.kept
        rows, columns = q.size(1), k_scaled.size(1)
        q_scaled = q * ctx.scaling
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.zeros_like(k_scaled), torch.zeros_like(v)
        grad_offsets = torch.zeros_like(offsets)
        block_rows = min(rows, _block_rows(columns, q.element_size()))
        diagonal_scratch = q.new_zeros(block_rows + 1, columns + block_rows)  # for _add_diagonal_sums_
        grad_scratch = q.new_empty(_largest(groups, columns))
        scratch = None if kept is not None else q.new_empty(_largest(groups, columns))
        for index, (entries, first, last) in enumerate(groups):
            size = (entries.stop - entries.start, last - first, columns)
            if kept is not None:
                group = kept[index]
            else:  # recompute the group's weights
                group = scratch[:math.prod(size)].view(size)
                for block, where, start, stop in _score_blocks_(group, entries, first, q, k_scaled, offsets,
                                                                key_padding, ctx.causal):
                    block.sub_(log_sum_exp[where, start:stop]).exp_()
            grad_v[entries].baddbmm_(group.transpose(1, 2), grad_out[entries, first:last])
            grad_group = grad_scratch[:math.prod(size)].view(size)  # the gradient of the group's scores
            for part, start, stop in _parts(size, first, q.element_size()):
                block = group[part, start - first:stop - first]
                grad_block = grad_group[part, start - first:stop - first]
                where = _shift(part, entries)
                torch.bmm(grad_out[where, start:stop], v[where].transpose(1, 2), out=grad_block)  # of the weights
                _softmax_backward_(grad_block, block, -1, block.dtype, grad_input=grad_block)  # of the scores
                torch.bmm(grad_block, k_scaled[where], out=grad_q[where, start:stop])
                _add_diagonal_sums_(grad_offsets, grad_block, columns, start, diagonal_scratch)
            grad_k[entries].baddbmm_(grad_group.transpose(1, 2), q_scaled[entries, first:last])
        return grad_q, grad_k, grad_v, grad_offsets, None, None, None


def _block_rows(columns: int, element_size: int) -> int:
    """Query rows of a block of scores (``_BLOCK_BYTES``, at least ``_MIN_BLOCK_ROWS``)."""
    return max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (columns * element_size))


def _parts(size: Tuple[int, int, int], first_row: int, element_size: int) -> List[Tuple[slice, int, int]]:
    """The blocks of a group of N' x Q' x K scores whose rows start at ``first_row``."""
    max_bytes = _block_rows(size[2], element_size) * size[2] * element_size
    return _blocks(size[0], size[1], size[2], element_size, max_bytes, first_row)


def _largest(groups: List[Tuple[slice, int, int]], columns: int) -> int:
    """Elements of the largest group's scores."""
    return max((entries.stop - entries.start) * (last - first) * columns for entries, first, last in groups)


def _score_blocks_(group: Tensor, entries: slice, first: int, q: Tensor, k_scaled: Tensor, offsets: Tensor,
                   key_padding: Optional[Tensor], causal: bool) -> Iterator[Tuple[Tensor, slice, int, int]]:
    """Writes the scores of a group (batch ``entries``, query rows from ``first``) block by block
    and yields each block with its batch entries and rows, for the caller to normalise in place."""
    for part, start, stop in _parts(tuple(group.size()), first, q.element_size()):
        where = _shift(part, entries)
        block = _block_scores_(group[part, start - first:stop - first], q[where, start:stop], k_scaled[where],
                               offsets, None if key_padding is None else key_padding[where], causal, start)
        yield block, where, start, stop


def _shift(part: slice, entries: slice) -> slice:
    """Entries ``part`` of a group that starts at entry ``entries.start``, as entries of the batch."""
    return slice(entries.start + part.start, entries.start + part.stop)


def softmax_attention_blocks(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, key_padding: Optional[Tensor],
                             causal: bool, scaling: float) -> Tensor:
    """softmax(scaling * q k^T + b) v with a relative bias b[i, j] = offsets[j - i + K - 1],
    computed in blocks of query rows. Weights up to ``_KEEP_WEIGHTS_BYTES`` are kept for the
    backward pass; beyond that only one group of rows' weights is held at a time and memory is
    O(N (Q + K)) instead of O(N Q K).

    Queries are positions 0..Q-1 of the keys' sequence; masks follow ``attention_weights``
    (padded keys hidden, causal keeps j <= i, a row that sees nothing sees everything).
    No dropout on the weights.

    Shapes: q: N x Q x z; k: N x K x z; v: N x K x h; offsets: 2K - 1; key_padding: N x K bool
    (True at padding) or None; returns N x Q x h.
    """
    return _SoftmaxAttentionBlocks.apply(q, k, v, offsets, key_padding, causal, scaling)
