"""Single-head attention functions used by Mega: softmax, laplace and relu^2, with bias and masks."""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

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


def _add_diagonal_sums_(out: Tensor, grad: Tensor, columns: int, start: int):
    """out[j - i + columns - 1] += grad[i - start, j]: the adjoint of ``toeplitz_rows``.

    Flipping the rows and reading them with a row stride one short of the padded width shifts
    row r right by r, so every diagonal becomes a column.
    """
    rows = grad.size(0)
    padded = grad.new_zeros(rows, columns + rows)
    padded[:, :columns] = grad.flip(0)
    skewed = padded.view(-1)[:rows * (columns + rows - 1)].view(rows, columns + rows - 1)
    out[columns - start - rows:2 * columns - 1 - start] += skewed.sum(0)


class _ToeplitzRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, offsets: Tensor, columns: int, start: int, stop: int) -> Tensor:
        ctx.columns, ctx.start, ctx.size = columns, start, offsets.size(0)
        # row stop - 1 - r reads offsets[columns - stop + r + j]: a forward-strided window, flipped
        return offsets[columns - stop:2 * columns - 1 - start].unfold(0, columns, 1).flip(0)

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


# Query rows per block of softmax_attention_blocks: about this many bytes of scores per block,
# small enough to stay in cache while the block is normalised and multiplied.
_BLOCK_BYTES = 2 ** 22
# Up to this many bytes of weights are kept for the backward pass instead of recomputed there.
_KEEP_WEIGHTS_BYTES = 2 ** 28


def _block_scores(q: Tensor, k: Tensor, offsets: Tensor, shift: Optional[Tensor], key_padding: Optional[Tensor],
                  causal: bool, scaling: float, start: int) -> Tensor:
    """scaling * q k^T + bias - shift for query rows start..start+Q-1, -inf where not visible.

    Shapes: q: N x Q x z; k: N x K x z; shift: N x Q x 1 or None; key_padding: N x K;
    returns N x Q x K.
    """
    rows, columns = q.size(1), k.size(1)
    bias = toeplitz_rows(offsets, columns, start, start + rows)  # Q x K
    visible = None if key_padding is None else ~key_padding.unsqueeze(1)  # N x 1 x K
    if causal:
        positions = torch.arange(start, start + rows, device=q.device).unsqueeze(-1)
        below = positions >= torch.arange(columns, device=q.device)  # Q x K
        visible = below if visible is None else visible & below
    visible = _ensure_nonempty_rows(visible)
    # the bias (and mask) fill the output first and the matmul accumulates onto it in place
    scores = bias.expand(q.size(0), rows, columns).clone() if shift is None else bias - shift  # N x Q x K
    if visible is not None:
        scores.masked_fill_(~visible, float("-inf"))
    return scores.baddbmm_(q, k.transpose(1, 2), alpha=scaling)


class _SoftmaxAttentionBlocks(torch.autograd.Function):
    """Softmax attention in blocks of query rows. Small weights are kept for the backward pass;
    large ones are recomputed there from the row log-sum-exp, as flash attention does."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, offsets: Tensor, key_padding: Optional[Tensor],
                causal: bool, scaling: float) -> Tensor:
        batch, rows, _ = q.size()
        columns = k.size(1)
        block = max(1, _BLOCK_BYTES // (batch * columns * q.element_size()))
        out = q.new_empty(batch, rows, v.size(-1))
        log_sum_exp = q.new_empty(batch, rows, 1)
        kept = [] if batch * rows * columns * q.element_size() <= _KEEP_WEIGHTS_BYTES else None
        for start in range(0, rows, block):
            stop = min(start + block, rows)
            scores = _block_scores(q[:, start:stop], k, offsets, None, key_padding, causal, scaling, start)
            top = scores.amax(dim=-1, keepdim=True)
            weights = scores.sub_(top).exp_()  # unnormalised: dividing the output is cheaper, h < K
            total = weights.sum(dim=-1, keepdim=True)
            out[:, start:stop] = torch.bmm(weights, v).div_(total)
            log_sum_exp[:, start:stop] = top + total.log()
            if kept is not None:
                kept.append(weights.div_(total))
        ctx.save_for_backward(q, k, v, offsets, key_padding, out, log_sum_exp)
        ctx.causal, ctx.scaling, ctx.block, ctx.kept = causal, scaling, block, kept
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        q, k, v, offsets, key_padding, out, log_sum_exp = ctx.saved_tensors
        rows, columns = q.size(1), k.size(1)
        correction = (grad_out * out).sum(dim=-1, keepdim=True).neg_()  # -sum_j P_ij dP_ij, N x Q x 1
        grad_q, grad_k, grad_v = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        grad_offsets = torch.zeros_like(offsets)
        for index, start in enumerate(range(0, rows, ctx.block)):
            stop = min(start + ctx.block, rows)
            q_block, grad_block = q[:, start:stop], grad_out[:, start:stop]
            if ctx.kept is not None:
                weights = ctx.kept[index]
            else:
                weights = _block_scores(q_block, k, offsets, log_sum_exp[:, start:stop], key_padding, ctx.causal,
                                        ctx.scaling, start).exp_()  # N x Q' x K
            grad_v.baddbmm_(weights.transpose(1, 2), grad_block)
            grad_scores = torch.baddbmm(correction[:, start:stop], grad_block, v.transpose(1, 2)).mul_(weights)
            grad_q[:, start:stop] = torch.bmm(grad_scores, k).mul_(ctx.scaling)
            grad_k.baddbmm_(grad_scores.transpose(1, 2), q_block, alpha=ctx.scaling)
            _add_diagonal_sums_(grad_offsets, grad_scores.sum(0), columns, start)
        return grad_q, grad_k, grad_v, grad_offsets, None, None, None


def softmax_attention_blocks(q: Tensor, k: Tensor, v: Tensor, *, offsets: Tensor, key_padding: Optional[Tensor],
                             causal: bool, scaling: float) -> Tensor:
    """softmax(scaling * q k^T + b) v with a relative bias b[i, j] = offsets[j - i + K - 1], never
    holding more than one block of query rows' weights: memory O(N (Q + K)) instead of O(N Q K).

    Queries are positions 0..Q-1 of the keys' sequence; masks follow ``attention_weights``
    (padded keys hidden, causal keeps j <= i, a row that sees nothing sees everything).
    No dropout on the weights.

    Shapes: q: N x Q x z; k: N x K x z; v: N x K x h; offsets: 2K - 1; key_padding: N x K bool
    (True at padding) or None; returns N x Q x h.
    """
    return _SoftmaxAttentionBlocks.apply(q, k, v, offsets, key_padding, causal, scaling)
