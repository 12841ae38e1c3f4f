"""The blocked softmax attention kernel for CPU (CUDA uses torch's fused attention instead).

Scores are computed and normalised in cache-sized blocks of query rows, in place, with torch's
fused softmax and softmax-backward kernels; weights are kept (or recomputed from the row
log-sum-exp) in groups whose products with V, the output gradient and Q are large matmuls.
Compared with the plain reference (``attention_weights``) in tests/test_fast_paths.py.
"""

import math
from typing import Iterator, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .attention import _add_diagonal_sums_, _bias_windows, _ensure_nonempty_rows

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
