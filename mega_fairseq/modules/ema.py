"""Multi-dimensional damped exponential moving average (Mega, section 2.2).

Paper notation, per channel d and expansion dim j = 1..N:

    u_t = beta_j * x_t
    h_t = alpha_j * u_t + (1 - alpha_j * delta_j) * h_{t-1}
    y_t = sum_j eta_j * h_t^(j)

Unrolled this is a convolution y = K * x with kernel
K_t = sum_j eta_j * alpha_j * beta_j * q_j^t, q_j = 1 - alpha_j * delta_j.

Parameter names follow the paper. The official implementation swaps two of them:
its ``delta`` is the paper's alpha (decay) and its ``alpha`` is the paper's delta
(damping); its ``gamma`` is the paper's eta. Like the official code (and unlike the
paper's text) we scale the kernel by sqrt(1/N), add a learned per-channel residual
``omega * x`` and apply SiLU to the result. Powers q^t are computed from log q =
log1p(-alpha * delta) (the official code takes log(1 - alpha * delta) in float32, where q rounds
to 1 once alpha * delta < 6e-8 and the kernel stops decaying).

``forward`` convolves by FFT (``fft_convolution``) or chunk by chunk with the recurrence's state
carried across chunks (``ema_chunked.chunked_convolution``, linear in L), the faster for the shape
(``uses_chunks``); ``step`` runs the recurrence.
"""

import math
from typing import Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ema_chunked import chunked_convolution, sqrt_blocks
from .incremental import IncrementalStateMixin, to_dtype, without_autocast


def _at_least_fp32(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def fast_fft_length(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (fast for pocketfft/cuFFT)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def ema_kernel(weight: Tensor, log_q: Tensor, length: int) -> Tensor:
    """K[d, t] = sum_j weight[d, j] * q[d, j] ** t for t < length, from log q (see
    ``MultiDimensionalDampedEMA.coefficients``: exact also where q rounds to 1 in float32).

    Never materialises the D x N x L tensor of powers: with t = b * T + s (T ~ sqrt(L))
    the kernel is a batched product of a D x nb x N block of "outer" powers q^(bT) and a
    D x N x T block of "inner" powers q^s, so time is one bmm and memory (also for
    autograd) is O(D N sqrt(L)).

    Shapes: weight, log_q: D x N; returns D x length.
    """
    block, nblocks = sqrt_blocks(length)
    log_q = log_q.unsqueeze(-1)  # D x N x 1
    steps = torch.arange(block, dtype=log_q.dtype, device=log_q.device)
    inner = torch.exp(log_q * steps)  # D x N x T
    starts = torch.arange(nblocks, dtype=log_q.dtype, device=log_q.device) * block
    outer = weight.unsqueeze(-1) * torch.exp(log_q * starts)  # D x N x nb
    kernel = torch.bmm(outer.transpose(1, 2), inner)  # D x nb x T
    return kernel.reshape(kernel.size(0), -1)[:, :length]


def _circular_kernel(forward_kernel: Tensor, backward_kernel: Optional[Tensor], n: int) -> Tensor:
    """Both kernels as one length-n circular kernel: forward taps at t = s, backward taps at t = -s (mod n).

    n >= L + K - 1 >= 2K - 1 keeps the two sets of taps apart, so one FFT serves both directions.

    Shapes: kernels: D x K; returns D x n.
    """
    size = forward_kernel.size(-1)
    kernel = F.pad(forward_kernel, (0, n - size))
    if backward_kernel is not None:
        kernel[:, 0] += backward_kernel[:, 0]
        kernel[:, n - size + 1:] += backward_kernel[:, 1:].flip(-1)
    return kernel


class _FFTConvolution(torch.autograd.Function):
    """Long convolution with a hand-written backward.

    Autograd through rfft would run a full-length complex FFT per channel in the backward
    pass; here every transform is a real FFT, the gradient of x is a correlation with the
    same kernel spectrum, and the kernel gradients come from one D x n inverse FFT of the
    batch-summed cross spectrum with the saved spectrum of x.
    Time runs along the last dim (B x D x L, any strides).
    """

    @staticmethod
    def forward(ctx, x: Tensor, forward_kernel: Tensor, backward_kernel: Optional[Tensor]) -> Tensor:
        length, size = x.size(-1), forward_kernel.size(-1)
        n = fast_fft_length(length + size - 1)
        kernel_f = torch.fft.rfft(_circular_kernel(forward_kernel, backward_kernel, n), n=n)  # D x F
        x_f = torch.fft.rfft(x, n=n)  # B x D x F
        ctx.save_for_backward(x, forward_kernel, backward_kernel, kernel_f, x_f)
        ctx.n, ctx.size, ctx.bidirectional = n, size, backward_kernel is not None
        return torch.fft.irfft(x_f * kernel_f, n=n)[..., :length]

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, forward_kernel, backward_kernel, kernel_f, x_f = ctx.saved_tensors
        n, size, length = ctx.n, ctx.size, x.size(-1)
        if torch.is_grad_enabled():  # double backward: the spectra must depend on the inputs
            kernel_f = torch.fft.rfft(_circular_kernel(forward_kernel, backward_kernel, n), n=n)
            x_f = torch.fft.rfft(x, n=n)
        grad_f = torch.fft.rfft(grad, n=n)  # B x D x F
        grad_x = grad_forward = grad_backward = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.fft.irfft(grad_f * kernel_f.conj(), n=n)[..., :length]
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # r[m] = sum_b sum_t grad[t + m] x[t]: forward taps read m = s, backward taps m = -s
            cross = torch.fft.irfft((grad_f * x_f.conj()).sum(0), n=n)  # D x n
            grad_forward = cross[:, :size]
            if ctx.bidirectional:
                grad_backward = torch.cat([cross[:, :1], cross[:, n - size + 1:].flip(-1)], dim=-1)
        return grad_x, grad_forward, grad_backward


def fft_convolution(x: Tensor, forward_kernel: Tensor, backward_kernel: Optional[Tensor] = None) -> Tensor:
    """Causal (and, with backward_kernel, anti-causal) long convolution along time.

    y[t] = sum_s forward_kernel[s] x[t - s] + sum_s backward_kernel[s] x[t + s].
    One FFT of length >= L + K - 1 serves both directions: the anti-causal part is a
    cross-correlation, folded into the same circular kernel.

    Shapes: x: B x L x D; kernels: D x K (K <= L); returns B x L x D (a transposed view) in
    float32 or float64.
    """
    return _FFTConvolution.apply(x.transpose(1, 2), forward_kernel, backward_kernel).transpose(1, 2)


# The EMA's paths: "fft" convolves with the whole kernel by FFT (O(L log L), and the only form of a
# truncated kernel); "chunk" runs chunk by chunk with the state carried across chunks (O(L), matmuls);
# "auto" takes the faster one for the shape (``uses_chunks``).
EMA_PATHS = ("auto", "fft", "chunk")
# "auto" chunks from this many positions on (CPU): there the chunks took 0.7-0.9x the FFT's time
# at B = 1 and 2K positions, at 1K 1.0x (8 sequences) to 1.2x (one); the FFT's cost per position
# grows with log L and with its memory traffic, the chunks' stays flat (0.45x at 64K).
CHUNK_MIN_LENGTH = 2048


def uses_chunks(path: str, length: int, device: torch.device) -> bool:
    """Whether the chunk path computes an untruncated EMA over ``length`` positions. "auto" chunks
    long sequences on CPU, where the crossover was measured; elsewhere it keeps the FFT."""
    if path == "auto":
        return device.type == "cpu" and length >= CHUNK_MIN_LENGTH
    return path == "chunk"


def _carried_state_terms(signal: Tensor, state: Tensor, in_weight: Tensor, q: Tensor,
                         out_weight: Tensor, log_q: Tensor) -> Tuple[Tensor, Tensor]:
    """The carried state's share of a multi-token step, and the new state, by blocked powers.

    Returns (c, h_L) with c[b, t, d] = sum_j eta_j q_j^(t+1) h0_j (the state's contribution to
    output t) and h_L = q^L h0 + sum_t q^(L-1-t) alpha beta x_t. As in ``ema_kernel``, the powers
    q^(i T + s) come from a D x N x nb block of outer and a D x N x T block of inner powers
    (T ~ sqrt(L)), so no D x N x L tensor is formed: memory (also for autograd) is
    O(B L D + B D N sqrt(L)).

    Shapes: signal: B x L x D; state: B x D x N; weights, q: D x N; returns (B x L x D, B x D x N).
    """
    bsz, length, dim = signal.size()
    ndim = q.size(-1)
    block, nblocks = sqrt_blocks(length)
    log_q = log_q.unsqueeze(-1)  # D x N x 1
    inner = torch.exp(log_q * torch.arange(block, dtype=q.dtype, device=q.device))  # D x N x T: q^s
    starts = torch.arange(nblocks, dtype=q.dtype, device=q.device) * block
    outer = torch.exp(log_q * starts)  # D x N x nb: q^(i T)

    # c[b, iT + s, d] = sum_n (eta h0 q)[b, d, n] q^(iT) q^s: one D-batched product (B nb x N) @ (N x T)
    weighted = (state * (out_weight * q)).unsqueeze(-1) * outer  # B x D x N x nb
    weighted = weighted.permute(1, 0, 3, 2).reshape(dim, bsz * nblocks, ndim)  # D x B nb x N
    carried = torch.bmm(weighted, inner).reshape(dim, bsz, nblocks * block)[:, :, :length]  # D x B x L

    # sum_t q^(L-1-t) x_t = sum_r q^r x_(L-1-r), r = iT + s: first over s (D-batched (N x T) @ (T x B nb)),
    # then over i against the outer powers
    reverse = F.pad(signal.flip(1), (0, 0, 0, nblocks * block - length))  # B x nb T x D
    reverse = reverse.reshape(bsz, nblocks, block, dim).permute(3, 2, 0, 1).reshape(dim, block, bsz * nblocks)
    partial = torch.bmm(inner, reverse).reshape(dim, ndim, bsz, nblocks)  # D x N x B x nb
    driven = torch.einsum("dnbi,dni->bdn", partial, outer)  # B x D x N
    new_state = torch.exp(log_q.squeeze(-1) * length) * state + in_weight * driven
    return carried.permute(1, 2, 0), new_state


class EMACoefficients(NamedTuple):
    in_weight: Tensor  # alpha * beta
    q: Tensor  # decay 1 - alpha * delta
    log_q: Tensor
    out_weight: Tensor  # eta / sqrt(N)


def one_step(signal: Tensor, x: Tensor, state: Tensor, coef: EMACoefficients, omega: Tensor) -> Tuple[Tensor, Tensor]:
    """The EMA over one new position from ``state``: ``MultiDimensionalDampedEMA.step`` at L = 1, ``signal`` (x,
    masked, in the coefficients' dtype) and ``state`` ready; also the whole-stack decoding step's (``decoding``).
    Shapes: x, signal: B x 1 x D; state: B x D x N; returns (B x 1 x D, new state B x D x N)."""
    new_state = torch.addcmul(coef.q * state, coef.in_weight, signal.transpose(1, 2))  # B x D x N
    ema = torch.linalg.vecdot(new_state, coef.out_weight).unsqueeze(1)  # B x 1 x D
    # the residual in one op (not _output's two): a decoding step is mostly small ops' overhead
    return F.silu(torch.addcmul(to_dtype(ema, x.dtype), x, omega)), new_state


class MultiDimensionalDampedEMA(IncrementalStateMixin, nn.Module):
    """Damped EMA over a B x L x D sequence: convolution (``forward``) or recurrence (``step``).

    Args:
        embed_dim: D, the number of channels.
        ndim: N, the expansion dimension of each channel (paper's h).
        bidirectional: add a second EMA run right-to-left (encoders).
        truncation: keep only the first ``truncation`` kernel taps; None or <= 0 keeps all.
        path: how the convolution is computed (``EMA_PATHS``): "fft" (``fft_convolution``),
            "chunk" (``chunked_convolution``; not with a truncation, which has no recurrence form) or
            "auto", the faster for the shape (``uses_chunks``; a truncated kernel shorter than the
            sequence always takes the FFT).
    """

    def __init__(self, embed_dim: int, *, ndim: int = 16, bidirectional: bool = False,
                 truncation: Optional[int] = None, path: str = "auto"):
        super().__init__()
        self.embed_dim = embed_dim
        self.ndim = ndim
        self.bidirectional = bidirectional
        self.truncation = truncation if truncation is not None and truncation > 0 else None
        if path not in EMA_PATHS:
            raise ValueError(f"EMA path {path!r}: choose one of {', '.join(EMA_PATHS)}")
        if path == "chunk" and self.truncation is not None:
            raise ValueError("the chunk path needs an untruncated EMA (a truncated kernel has no recurrence form)")
        self.path = path
        self.scale = math.sqrt(1.0 / ndim)
        kernel_dim = 2 * embed_dim if bidirectional else embed_dim
        self.alpha = nn.Parameter(torch.empty(kernel_dim, ndim))  # decay, pre-sigmoid
        self.delta = nn.Parameter(torch.empty(kernel_dim, ndim))  # damping, pre-sigmoid
        self.beta = nn.Parameter(torch.empty(kernel_dim, ndim))  # expansion
        self.eta = nn.Parameter(torch.empty(kernel_dim, ndim))  # projection
        self.omega = nn.Parameter(torch.empty(embed_dim))  # residual
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            nn.init.normal_(self.alpha, mean=0.0, std=0.2)
            nn.init.normal_(self.delta, mean=0.0, std=0.2)
            # beta starts near (1, -1, 1, -1, ...), as in the official code.
            signs = torch.ones(self.ndim)
            signs[1::2] = -1.0
            self.beta.normal_(mean=0.0, std=0.02).add_(signs)
            nn.init.normal_(self.eta, mean=0.0, std=1.0)
            nn.init.normal_(self.omega, mean=0.0, std=1.0)

    def coefficients(self) -> EMACoefficients:
        """The EMA's coefficients, each D' x N in at least float32: input weight alpha * beta, decay
        q = 1 - alpha * delta, log q by log1p (q^t = exp(t log q) stays accurate for every t even
        where 1 - alpha * delta rounds to 1 in float32: a window of millions of steps) and output
        weight eta / sqrt(N)."""
        alpha = torch.sigmoid(_at_least_fp32(self.alpha))
        damped = alpha * torch.sigmoid(_at_least_fp32(self.delta))
        return EMACoefficients(alpha * _at_least_fp32(self.beta), 1.0 - damped, torch.log1p(-damped),
                               _at_least_fp32(self.eta) * self.scale)

    def _coefficients_in(self, dtype: torch.dtype, coefficients: Optional[EMACoefficients] = None) -> EMACoefficients:
        """``coefficients`` (by default those of :meth:`coefficients`) in ``dtype``."""
        coefficients = self.coefficients() if coefficients is None else coefficients
        if all(t.dtype == dtype for t in coefficients):  # a decoding's kept ones, at every step
            return coefficients
        return EMACoefficients(*(to_dtype(t, dtype) for t in coefficients))

    def taps(self, length: int) -> int:
        """How many kernel taps a convolution over ``length`` positions uses: min(length, truncation)."""
        return length if self.truncation is None else min(self.truncation, length)

    def kernel(self, length: int) -> Tensor:
        """The convolution kernel, D' x taps(length)."""
        coef = self.coefficients()
        return ema_kernel(coef.in_weight * coef.out_weight, coef.log_q, self.taps(length))

    def _convolve(self, signal: Tensor, coef: EMACoefficients, size: int) -> Tensor:
        """The EMA without its residual, with the kernel's first ``size`` taps: by chunks where that is
        the whole kernel (size = L) and ``path`` takes them, else by FFT.

        Shapes: signal: B x L x D; coefficients D' x N in the signal's dtype; returns B x L x D.
        """
        length = signal.size(1)
        if size == length and uses_chunks(self.path, length, signal.device):
            return chunked_convolution(signal, coef.in_weight, coef.log_q, coef.out_weight,
                                       bidirectional=self.bidirectional)
        kernel = ema_kernel(coef.in_weight * coef.out_weight, coef.log_q, size)
        if self.bidirectional:
            return fft_convolution(signal, *kernel.split(self.embed_dim))
        return fft_convolution(signal, kernel)

    def _output(self, ema: Tensor, x: Tensor) -> Tensor:
        # x's term first: the sum takes the layout of its first operand (the FFT's ema is a transposed view)
        return F.silu(x * self.omega + to_dtype(ema, x.dtype))

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """Convolution mode.

        Shapes: x: B x L x D; padding_mask: B x L (True at padding); returns B x L x D.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            signal = _at_least_fp32(x)
            coef = self._coefficients_in(signal.dtype)
            if padding_mask is not None:
                signal = signal.masked_fill(padding_mask.unsqueeze(-1), 0.0)
            ema = self._convolve(signal, coef, self.taps(signal.size(1)))
        return self._output(ema, x)

    def default_state(self, batch_size: int, device=None, dtype=torch.float32) -> Tensor:
        return torch.zeros(batch_size, self.embed_dim, self.ndim, device=device, dtype=dtype)

    def step(self, x: Tensor, state: Optional[Tensor] = None, padding_mask: Optional[Tensor] = None,
             coefficients: Optional[EMACoefficients] = None) -> Tuple[Tensor, Tensor]:
        """Recurrent mode: continue the EMA from ``state`` over the L new steps in ``x``.

        Exact for any L (one token in generation, a whole segment when evaluating long
        streams); memory is O(B L D + B D N sqrt(L)) (blocked powers, as in ``ema_kernel``).
        Truncation is ignored here: the state carries the full history (``forward_incremental``
        applies the truncation, keeping the last inputs instead of this state). ``coefficients``:
        those of :meth:`coefficients`, when the caller keeps them (decoding).

        Shapes: x: B x L x D; state: B x D x N; returns (B x L x D, new state B x D x N).
        """
        if self.bidirectional:
            raise RuntimeError("a bidirectional EMA has no recurrent mode")
        bsz, length, _ = x.size()
        with without_autocast(x.device.type):
            signal = _at_least_fp32(x)
            coef = self._coefficients_in(signal.dtype, coefficients)
            in_weight, q, log_q, out_weight = coef
            if padding_mask is not None:
                signal = signal.masked_fill(padding_mask.unsqueeze(-1), 0.0)
            if state is None:
                state = self.default_state(bsz, x.device, signal.dtype)
            state = to_dtype(state, signal.dtype)
            if length == 1:
                return one_step(signal, x, state, coef, self.omega)
            else:
                ema = self._convolve(signal, coef, length)  # from a zero state
                carried, new_state = _carried_state_terms(signal, state, in_weight, q, out_weight, log_q)
                ema = ema + carried
        return self._output(ema, x), new_state

    def truncated_step(self, x: Tensor, history: Optional[Tensor] = None,
                       padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Stream mode with truncation: continue the truncated convolution of ``forward``.

        ``history`` holds the (masked) inputs of the last ``truncation - 1`` steps (fewer at the
        start of a stream), all a truncated kernel can still see; the new outputs are the causal
        convolution with the first ``truncation`` taps over [history, x], so feeding a sequence in
        pieces of any sizes equals ``forward`` on the whole sequence. The history is kept in the
        input's dtype (``forward`` rounds it to at least float32 the same way).

        Shapes: x: B x L x D; history: B x H x D (H < truncation); padding_mask: B x L (True at
        padding); returns (B x L x D, new history B x min(H + L, truncation - 1) x D).
        """
        if self.bidirectional:
            raise RuntimeError("a bidirectional EMA has no recurrent mode")
        if self.truncation is None:
            raise RuntimeError("truncated_step needs a truncation")
        length = x.size(1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            inputs = x if padding_mask is None else x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
            if history is not None and history.size(1) > 0:
                dtype = torch.promote_types(history.dtype, inputs.dtype)
                inputs = torch.cat([history.to(dtype), inputs.to(dtype)], dim=1)  # B x (H + L) x D
            signal = _at_least_fp32(inputs)
            kernel = self.kernel(signal.size(1)).to(signal.dtype)  # D x min(truncation, H + L)
            if length == 1:  # a direct sum over the taps
                taps = kernel.size(-1)
                ema = torch.einsum("bsd,ds->bd", signal[:, -taps:], kernel.flip(-1)).unsqueeze(1)
            else:
                ema = fft_convolution(signal, kernel)[:, -length:]
            keep = min(inputs.size(1), self.truncation - 1)
            new_history = inputs[:, inputs.size(1) - keep:].clone()  # a copy: don't pin the whole segment
        return self._output(ema, x), new_history

    def forward_incremental(self, x: Tensor, incremental_state: Dict[str, Dict[str, Optional[Tensor]]],
                            padding_mask: Optional[Tensor] = None) -> Tensor:
        """``step`` with its state kept in a fairseq-style incremental_state dict.

        With truncation the recurrent state (which carries the whole history) is replaced by the
        last ``truncation - 1`` inputs (``truncated_step``), so stream evaluation and decoding
        compute what one truncated ``forward`` over the whole sequence computes. Everything kept
        has batch as dim 0 (beam search reorders it).
        """
        saved = self.get_incremental_state(incremental_state)
        if self.truncation is None:
            out, saved["ema_state"] = self.step(x, saved.get("ema_state"), padding_mask,
                                                self._decoding_coefficients(saved))
        else:
            out, saved["ema_inputs"] = self.truncated_step(x, saved.get("ema_inputs"), padding_mask)
        self.set_incremental_state(incremental_state, saved)
        return out

    def _decoding_coefficients(self, saved: Dict[str, object]) -> EMACoefficients:
        """The coefficients for ``step``: without autograd, computed once and kept in the decoding's
        ``saved`` state (the parameters do not change while a sequence is decoded; a tuple, which
        beam search's reordering leaves alone); with autograd, recomputed at every call so that
        gradients reach the parameters."""
        if torch.is_grad_enabled():
            return self.coefficients()
        if "coefficients" not in saved:
            saved["coefficients"] = self.coefficients()
        return saved["coefficients"]

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, ndim={self.ndim}, bidirectional={self.bidirectional}, "
                f"truncation={self.truncation}, path={self.path}")


def ema_reference(module: MultiDimensionalDampedEMA, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
    """Slow reference: the paper's recurrence step by step (a direct sum when truncated)."""
    in_weight, q, _, out_weight = (t.to(x.dtype) for t in module.coefficients())
    signal = x if padding_mask is None else x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
    dim = module.embed_dim

    def run(sig, w_in, decay, w_out):
        bsz, length, _ = sig.size()
        if module.truncation is None:
            h = sig.new_zeros(bsz, dim, module.ndim)
            outs = []
            for t in range(length):
                h = w_in * sig[:, t].unsqueeze(-1) + decay * h
                outs.append((h * w_out).sum(-1))
            return torch.stack(outs, dim=1)
        taps = min(module.truncation, length)
        kernel = torch.stack([(w_in * w_out * decay ** s).sum(-1) for s in range(taps)], dim=-1)  # D x K
        out = sig.new_zeros(sig.size())
        for t in range(length):
            for s in range(min(taps, t + 1)):
                out[:, t] += kernel[:, s] * sig[:, t - s]
        return out

    ema = run(signal, in_weight[:dim], q[:dim], out_weight[:dim])
    if module.bidirectional:
        ema = ema + run(signal.flip(1), in_weight[dim:], q[dim:], out_weight[dim:]).flip(1)
    return F.silu(ema + x * module.omega.to(x.dtype))
