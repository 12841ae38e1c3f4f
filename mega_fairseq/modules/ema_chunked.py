"""The EMA's chunk path: the untruncated EMA convolution chunk by chunk with the recurrence's state
carried across chunks (``chunked_convolution``, linear in L and matmul-shaped), and the scan of
the states across chunks (``decay_scan``). Pure torch; ``ema.MultiDimensionalDampedEMA`` chooses
between this path and the FFT.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

# Chunk of the chunk path: its c x c matmul costs 2c FLOPs per input and channel, the state's
# matmuls 4N (8N both ways) whatever c. On the benchmark's CPU (one thread, D = 128 and 512, N = 16)
# 64 was the fastest of 32, 64 and 128 from 2K positions on, except for B = 1 at 2K (32).
EMA_CHUNK = 64


def sqrt_blocks(length: int) -> Tuple[int, int]:
    """(T, nb): time t < length is split as t = b * T + s with s < T ~ sqrt(length), b < nb (the
    blocks of ``decay_scan`` here, and of the blocked powers of ``ema.ema_kernel``)."""
    block = max(1, math.isqrt(length - 1) + 1) if length > 1 else 1
    return block, -(-length // block)


def _toeplitz(offsets: Tensor, size: int) -> Tensor:
    """Batched Toeplitz matrices m[:, j, i] = offsets[:, i - j + size - 1], from the windows of the
    offsets in reverse order.

    Shapes: offsets: D x (2 size - 1); returns D x size x size.
    """
    return offsets.unfold(-1, size, 1).flip(1)


def _diagonal_sums(m: Tensor) -> Tensor:
    """The adjoint of ``_toeplitz``: s[:, k] = sum of m[:, j, i] over i - j + size - 1 = k. Rows
    reversed and padded to 2 size columns, then read in rows of 2 size - 1, the diagonals become
    columns (the padding's zeros wrap, no element of m does).

    Shapes: m: D x size x size; returns D x (2 size - 1).
    """
    dim, size = m.size(0), m.size(1)
    skewed = F.pad(m.flip(1), (0, size)).view(dim, 2 * size * size)[:, :size * (2 * size - 1)]
    return skewed.reshape(dim, size, 2 * size - 1).sum(1)


def _scan_blocks_(s: Tensor, decay: Tensor):
    """s_k += decay * s_(k-1) in place along the steps, k = i T + j: first within every block at once
    (T - 1 operations), then each block takes the state at the end of the one before it (nb - 1
    operations), so that a scan of n = nb T ~ T^2 steps is O(sqrt(n)) operations on slices.

    Shapes: s: D x B x nb x T x M; decay: D x M.
    """
    dim, _, nblocks, block, width = s.size()
    factor = decay.view(dim, 1, 1, width)
    for step in range(1, block):
        s[:, :, :, step].addcmul_(s[:, :, :, step - 1], factor)
    # q^(j + 1) for j < T: how the state entering a block reaches each of its steps
    exponents = torch.arange(1, block + 1, dtype=decay.dtype, device=decay.device).unsqueeze(-1)
    powers = (decay.unsqueeze(1) ** exponents).unsqueeze(1)  # D x 1 x T x M
    for index in range(1, nblocks):
        s[:, :, index].addcmul_(s[:, :, index - 1, block - 1:], powers)


class _DecayScan(torch.autograd.Function):
    """The linear recurrence s_k = decay * s_(k-1) + u_k along dim 2 (s_0 = u_0).

    The backward pass is the same recurrence run backwards over the gradient (through this
    function, so double backward works), and decay's gradient is sum_k a_k s_(k-1).
    """

    @staticmethod
    def forward(ctx, u: Tensor, decay: Tensor) -> Tensor:
        dim, bsz, length, width = u.size()
        block, nblocks = sqrt_blocks(length)
        s = u.new_zeros(dim, bsz, nblocks * block, width)
        s[:, :, :length] = u
        _scan_blocks_(s.view(dim, bsz, nblocks, block, width), decay)
        s = s[:, :, :length]
        ctx.save_for_backward(decay, s)
        return s

    @staticmethod
    def backward(ctx, grad: Tensor):
        decay, s = ctx.saved_tensors
        adjoint = _DecayScan.apply(grad.flip(2), decay).flip(2)  # a_k = g_k + decay * a_(k+1)
        grad_decay = None
        if ctx.needs_input_grad[1]:
            grad_decay = torch.einsum("dbkm,dbkm->dm", adjoint[:, :, 1:], s[:, :, :-1])
        return adjoint, grad_decay


def decay_scan(u: Tensor, decay: Tensor) -> Tensor:
    """s_k = decay * s_(k-1) + u_k along dim 2, from s_0 = u_0: O(n) work in O(sqrt(n)) operations.

    Shapes: u: D x B x n x M; decay: D x M; returns D x B x n x M.
    """
    return _DecayScan.apply(u, decay)


def _mirrored(t: Tensor, ndim: int, bidirectional: bool) -> Tensor:
    """Reverses the chunk order (dim 2) of the backward direction's state dims (the last of dim -1),
    so that one forward scan serves both directions; its own inverse.

    Shapes: t: D x B x nc x M (M = N, or 2N both ways); returns D x B x nc x M.
    """
    if not bidirectional:
        return t
    forward_part, backward_part = t.split(ndim, dim=-1)
    return torch.cat([forward_part, backward_part.flip(2)], dim=-1)


def _channels_first(t: Tensor, padded: int) -> Tensor:
    """B x L x D to D x B x padded (zeros after position L), by one 2D transpose, which torch copies
    in cache-sized tiles (a permuted copy of the 3-D view strides through the whole sequence once
    per channel)."""
    bsz, length, dim = t.size()
    if padded > length:
        t = F.pad(t, (0, 0, 0, padded - length))
    return t.reshape(bsz * padded, dim).t().contiguous().view(dim, bsz, padded)


def _channels_last(t: Tensor, length: int) -> Tensor:
    """D x B x padded to B x length x D (a view of the first length positions), by one 2D transpose."""
    dim, bsz, padded = t.size()
    return t.reshape(dim, bsz * padded).t().contiguous().view(bsz, padded, dim)[:, :length]


class _ChunkedEMA(torch.autograd.Function):
    """The layout changes, matmuls and scan of ``chunked_convolution``, with a hand-written backward.

    The matmuls run per channel on D x (B nc) x c chunks: the input (and in the backward pass the
    output's gradient) is transposed into that layout once, the output (and the input's gradient)
    back once, and the input's gradient is one matmul accumulated into another.

    Inputs: signal: B x L x D; offsets: D x (2c - 1), the c x c matrix's diagonals (``_toeplitz``);
    enter: D x c x M; read: D x M x c; decay: D x M (see ``chunked_convolution``). Output: B x L x D.
    """

    @staticmethod
    def forward(ctx, signal: Tensor, offsets: Tensor, enter: Tensor, read: Tensor, decay: Tensor, ndim: int,
                bidirectional: bool) -> Tensor:
        ctx.ndim, ctx.bidirectional = ndim, bidirectional
        mixing = _toeplitz(offsets, enter.size(1))  # D x c x c: [input position, output position]
        x = _ChunkedEMA.chunks(signal, mixing.size(-1))
        scanned = _ChunkedEMA.scanned(x, enter, decay, signal.size(0), ndim, bidirectional)
        ctx.save_for_backward(signal, offsets, mixing, enter, read, decay, x, scanned)
        out = torch.bmm(x, mixing)  # within chunks
        out.baddbmm_(_ChunkedEMA.states(scanned, ndim, bidirectional), read)  # plus the earlier chunks
        return _channels_last(out.view(signal.size(-1), signal.size(0), -1), signal.size(1))

    @staticmethod
    def chunks(t: Tensor, chunk: int) -> Tensor:
        """B x L x D to D x (B nc) x c, zero padded to whole chunks."""
        length, dim = t.size(1), t.size(2)
        return _channels_first(t, -(-length // chunk) * chunk).view(dim, -1, chunk)

    @staticmethod
    def scanned(x: Tensor, enter: Tensor, decay: Tensor, bsz: int, ndim: int, bidirectional: bool) -> Tensor:
        """The state at the end of every chunk, in scan order: D x B x nc x M."""
        entering = torch.bmm(x, enter).view(x.size(0), bsz, -1, enter.size(-1))  # what each chunk adds
        return decay_scan(_mirrored(entering, ndim, bidirectional), decay)

    @staticmethod
    def states(scanned: Tensor, ndim: int, bidirectional: bool) -> Tensor:
        """The state each chunk reads, D x B nc x M: the one at the end of the chunk before it in scan
        order (forward: left of it; backward: right of it), zero for the first."""
        before = F.pad(scanned[:, :, :-1], (0, 0, 1, 0))
        return _mirrored(before, ndim, bidirectional).flatten(1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        signal, offsets, mixing, enter, read, decay, x, scanned = ctx.saved_tensors
        ndim, bidirectional = ctx.ndim, ctx.bidirectional
        bsz, length, dim = signal.size()
        if torch.is_grad_enabled():  # double backward: what was saved must depend on the inputs
            mixing = _toeplitz(offsets, mixing.size(-1))
            x = _ChunkedEMA.chunks(signal, mixing.size(-1))
            scanned = _ChunkedEMA.scanned(x, enter, decay, bsz, ndim, bidirectional)
        grad = _ChunkedEMA.chunks(grad, mixing.size(-1))  # D x B nc x c
        states = _ChunkedEMA.states(scanned, ndim, bidirectional)
        grad_read = torch.bmm(states.transpose(1, 2), grad)
        grad_states = torch.bmm(grad, read.transpose(1, 2)).view_as(scanned)
        # through the shift (the state after chunk k is read by chunk k + 1 in scan order) and back
        # through the scan: a_k = g_k + decay * a_(k+1)
        grad_scanned = F.pad(_mirrored(grad_states, ndim, bidirectional)[:, :, 1:], (0, 0, 0, 1))
        adjoint = decay_scan(grad_scanned.flip(2), decay).flip(2)
        grad_decay = torch.einsum("dbkm,dbkm->dm", adjoint[:, :, 1:], scanned[:, :, :-1])
        grad_entering = _mirrored(adjoint, ndim, bidirectional).flatten(1, 2)  # D x B nc x M
        grad_x = torch.bmm(grad, mixing.transpose(1, 2)).baddbmm_(grad_entering, enter.transpose(1, 2))
        grad_signal = _channels_last(grad_x.view(dim, bsz, -1), length)
        grad_offsets = _diagonal_sums(torch.bmm(x.transpose(1, 2), grad))
        grad_enter = torch.bmm(x.transpose(1, 2), grad_entering)
        return grad_signal, grad_offsets, grad_enter, grad_read, grad_decay, None, None


def chunked_convolution(signal: Tensor, in_weight: Tensor, log_q: Tensor, out_weight: Tensor,
                        bidirectional: bool = False, chunk: Optional[int] = None) -> Tensor:
    """The untruncated EMA convolution (``fft_convolution`` with the whole kernel) chunk by chunk.

    Within a chunk of c positions: the kernel's first c taps, a c x c Toeplitz matmul per channel
    (both directions in one matrix). Across chunks: each chunk adds sum_s alpha beta q^(c-1-s) x_s
    to the D x N state, the states before every chunk follow from one scan with decay q^c
    (``decay_scan``), and output s of a chunk reads its state through the kernel's tail,
    eta q^(s+1) (backward direction: the mirror image). Time O(B L D (c + 4N)) in batched matmuls
    (per channel, (B L / c) x c by c x c, by c x N and (B L / c) x N by N x c; 2N both ways) plus
    O(B L D N / c) for the scan; memory (also for autograd) O(B L D (1 + N / c)).

    Shapes: signal: B x L x D; in_weight, log_q, out_weight: D' x N (D' = 2D when bidirectional,
    the backward direction's rows last); returns B x L x D.
    """
    length, dim = signal.size(1), signal.size(2)
    ndim = log_q.size(1)
    chunk = max(2, min(chunk or EMA_CHUNK, length))
    steps = torch.arange(chunk + 1, dtype=log_q.dtype, device=log_q.device)
    powers = torch.exp(log_q.unsqueeze(-1) * steps)  # D' x N x (c + 1): q^0 .. q^c
    taps = torch.einsum("dn,dns->ds", in_weight * out_weight, powers[..., :chunk])  # D' x c
    enter = in_weight.unsqueeze(-1) * powers[..., :chunk].flip(-1)  # D' x N x c: alpha beta q^(c-1-s)
    read = out_weight.unsqueeze(-1) * powers[..., 1:]  # D' x N x c: eta q^(s+1)
    decay = powers[..., chunk]  # D' x N: q^c
    if bidirectional:
        forward_taps, backward_taps = taps.split(dim)
        offsets = torch.cat([backward_taps[:, 1:].flip(-1), forward_taps[:, :1] + backward_taps[:, :1],
                             forward_taps[:, 1:]], dim=-1)
        # the backward direction sees position s at distance s from its state, and its state
        # (that of the chunks to the right) at distance c - s
        enter = torch.cat([enter[:dim], enter[dim:].flip(-1)], dim=1)  # D x 2N x c
        read = torch.cat([read[:dim], read[dim:].flip(-1)], dim=1)  # D x 2N x c
        decay = torch.cat(decay.split(dim), dim=1)  # D x 2N
    else:
        offsets = F.pad(taps, (chunk - 1, 0))
    return _ChunkedEMA.apply(signal, offsets, enter.transpose(1, 2), read, decay, ndim, bidirectional)
