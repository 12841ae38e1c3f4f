"""The EMA's two paths (FFT and chunks) and how one is chosen; both at 64K and 256K positions and at
extreme decay, on CPU: float32 and bfloat16 outputs and gradients against the plain recurrence in
float64. The q_near_1 cases (1 - q = 5e-7) fail when log q is taken as log(1 - alpha * delta) in
float32, as the official code does; log1p keeps them exact.

The float64 recurrence runs in scipy's ``lfilter`` (h_t = q h_(t-1) + alpha beta x_t, step by step in
C; checked against ``ema_reference`` first), and its gradients by the adjoint recurrence run
backwards: ``ema_reference``'s Python loop would take minutes at these lengths."""

import copy
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import lfilter

from mega_fairseq.modules import MultiDimensionalDampedEMA, ema, ema_reference

LENGTH = 64 * 1024
LONG = 256 * 1024
# each path and the function that computes it
PATHS = {"fft": "fft_convolution", "chunk": "chunked_convolution"}


@pytest.fixture
def taken(monkeypatch):
    """The names of the convolution functions the EMA calls, in order."""
    calls = []

    def recorded(name, function):
        def call(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        return call

    for name in PATHS.values():
        monkeypatch.setattr(ema, name, recorded(name, getattr(ema, name)))
    return calls


def ema_module(dim=3, ndim=2, bidirectional=False, decay=None):
    """decay: the decay alpha (after the sigmoid) and damping delta of every dimension, so that
    q = 1 - alpha * delta is set; None keeps the random initialisation."""
    torch.manual_seed(0)
    module = MultiDimensionalDampedEMA(dim, ndim=ndim, bidirectional=bidirectional)
    if decay is not None:
        alpha, delta = decay
        with torch.no_grad():
            module.alpha.fill_(torch.logit(torch.tensor(alpha, dtype=torch.float64)).item())
            module.delta.fill_(torch.logit(torch.tensor(delta, dtype=torch.float64)).item())
    return module


def recurrence(module, x, grad):
    """The module's output on x (L x D, one sequence) by the plain recurrence in float64, and the
    gradients of sum(output * grad) with respect to x and every parameter (by name): the adjoint
    recurrence a_t = eta g_t + q a_(t+1) gives x's (alpha beta a_t) and, summed over t, those of the
    coefficients (alpha beta: a_t x_t; q: a_t h_(t-1); eta: g_t h_t), which autograd takes back to the
    parameters. The backward direction (bidirectional) is the same on the reversed sequence."""
    module = copy.deepcopy(module).double()
    coef = module.coefficients()
    in_weight, q, out_weight = (t.detach().numpy() for t in (coef.in_weight, coef.q, coef.out_weight))
    signal = x.double().numpy()
    dim, ndim = module.embed_dim, module.ndim
    directions = [(slice(None), 0)] + ([(slice(None, None, -1), dim)] if module.bidirectional else [])
    states = {}
    ema_out = np.zeros_like(signal)
    for order, row in directions:
        for d in range(dim):
            for n in range(ndim):
                h = lfilter([in_weight[row + d, n]], [1.0, -q[row + d, n]], signal[order, d])
                states[row + d, n] = h
                ema_out[order, d] += out_weight[row + d, n] * h

    pre = (torch.from_numpy(ema_out) + module.omega * x.double()).detach().requires_grad_()
    out = F.silu(pre)
    (g_pre,) = torch.autograd.grad(out, pre, grad.double())
    g = g_pre.numpy()
    grad_x = g * module.omega.detach().numpy()
    coefficient_grads = [np.zeros_like(in_weight), np.zeros_like(q), np.zeros_like(out_weight)]
    for order, row in directions:
        for d in range(dim):
            x_d, g_d = signal[order, d], g[order, d]
            for n in range(ndim):
                h = states[row + d, n]
                adjoint = lfilter([out_weight[row + d, n]], [1.0, -q[row + d, n]], g_d[::-1])[::-1]
                grad_x[order, d] += in_weight[row + d, n] * adjoint
                coefficient_grads[0][row + d, n] = adjoint @ x_d
                coefficient_grads[1][row + d, n] = adjoint[1:] @ h[:-1]
                coefficient_grads[2][row + d, n] = g_d @ h
    names = ["alpha", "delta", "beta", "eta"]
    param_grads = torch.autograd.grad([coef.in_weight, coef.q, coef.out_weight], [getattr(module, n) for n in names],
                                      [torch.from_numpy(t) for t in coefficient_grads])
    grads = dict(zip(names, param_grads), omega=torch.from_numpy(g_pre.numpy() * signal).sum(0),
                 x=torch.from_numpy(grad_x))
    return out.detach(), grads


def run(module, x, path, grad):
    """Output and gradients (by name) of the module on one sequence x (L x D), on ``path`` (which
    the tests check with ``taken``)."""
    module = copy.deepcopy(module)
    module.path = path
    x = x.unsqueeze(0).requires_grad_()
    out = module(x)
    names, params = zip(*module.named_parameters())
    grads = torch.autograd.grad(out, [x, *params], grad.unsqueeze(0).to(out.dtype))
    return out.squeeze(0), dict(zip(("x", *names), (g.squeeze(0) if g.dim() > 2 else g for g in grads)))


def assert_close_to(result, reference, output_tolerance, gradient_tolerance):
    """Output error within output_tolerance of the output's largest magnitude (at least 1); each
    gradient's error norm within gradient_tolerance of its norm."""
    (out, grads), (ref_out, ref_grads) = result, reference
    error, scale = (out.double() - ref_out).abs().max().item(), ref_out.abs().max().item()
    assert error <= output_tolerance * max(scale, 1.0), (error, scale)
    for name, ref in ref_grads.items():
        relative = ((grads[name].double() - ref).norm() / ref.norm()).item()
        assert relative <= gradient_tolerance, (name, relative)


def test_float64_recurrence_is_ema_reference():
    """The lfilter recurrence and its adjoint against ema_reference and autograd through it."""
    for bidirectional in (False, True):
        module = ema_module(dim=3, ndim=2, bidirectional=bidirectional).double()
        x = torch.randn(200, 3, dtype=torch.float64, requires_grad=True)
        grad = torch.randn(200, 3, dtype=torch.float64)
        out, grads = recurrence(module, x.detach(), grad)
        expected = ema_reference(module, x.unsqueeze(0)).squeeze(0)
        torch.testing.assert_close(out, expected.detach(), rtol=1e-12, atol=1e-12)
        names, params = zip(*module.named_parameters())
        for name, value in zip(("x", *names), torch.autograd.grad(expected, [x, *params], grad)):
            torch.testing.assert_close(grads[name], value, rtol=1e-10, atol=1e-10)


CASES = {"initial": (None, False), "alpha_delta_1e-4": ((1e-4, 1e-4), False), "q_near_0": ((0.9999, 0.9999), False),
         "q_near_1": ((0.5, 1e-6), False), "q_near_1_bidirectional": ((0.5, 1e-6), True)}


@functools.lru_cache(maxsize=None)
def case_reference(case):
    decay, bidirectional = CASES[case]
    module = ema_module(bidirectional=bidirectional, decay=decay)
    generator = torch.Generator().manual_seed(1)
    x, grad = torch.randn(LENGTH, 3, generator=generator), torch.randn(LENGTH, 3, generator=generator)
    return module, x, grad, recurrence(module, x, grad)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES)
def test_64k_positions_match_the_float64_recurrence(case, path, taken):
    """float32; the gradients of alpha and delta at q_near_0 carry float32's rounding of the sigmoid's
    derivative, 1 - 0.9999 (relative error 2e-4, on either path)."""
    module, x, grad, reference = case_reference(case)
    out, grads = run(module, x, path, grad)
    assert taken == [PATHS[path]]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert_close_to((out, grads), reference, 2e-5, 5e-4)


@functools.lru_cache(maxsize=None)
def long_reference(bidirectional):
    # alpha = delta = 0.01: q = 1 - 1e-4, a memory of about 10^4 positions, so that the state carried
    # across chunks (and across the scan's blocks) matters
    module = ema_module(dim=4, ndim=2, bidirectional=bidirectional, decay=(0.01, 0.01))
    generator = torch.Generator().manual_seed(2)
    # bfloat16 inputs and output gradients, so that the float32 and bfloat16 runs share one reference
    x = torch.randn(LONG, 4, generator=generator).bfloat16().float()
    grad = torch.randn(LONG, 4, generator=generator).bfloat16().float()
    return module, x, grad, recurrence(module, x, grad)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_256k_positions_match_the_float64_recurrence(bidirectional, path, taken):
    """Batch 1, D = 4, N = 2: float32 to float32 precision; bfloat16 inputs to bfloat16 precision (the
    EMA computes in float32 and rounds its result to bfloat16; the float32 residual omega * x makes
    the output float32, x's gradient is bfloat16)."""
    module, x, grad, reference = long_reference(bidirectional)
    assert_close_to(run(module, x, path, grad), reference, 2e-5, 1e-5)
    out, grads = run(module, x.bfloat16(), path, grad)
    assert grads["x"].dtype == torch.bfloat16
    assert_close_to((out, grads), reference, 1e-2, 1e-2)
    assert taken == [PATHS[path]] * 2


def test_auto_chunks_long_untruncated_sequences_on_cpu(monkeypatch, taken):
    """The "auto" path chunks from CHUNK_MIN_LENGTH positions on (here 16), never where the kernel is
    truncated shorter than the sequence (which then equals the truncated recurrence); "fft" and
    "chunk" hold at any length; on other devices "auto" keeps the FFT (the crossover was measured on
    CPU only)."""
    monkeypatch.setattr(ema, "CHUNK_MIN_LENGTH", 16)
    module = ema_module(dim=3, ndim=2).double()
    x = torch.randn(1, 40, 3, dtype=torch.float64)
    module(x[:, :15])
    module(x[:, :16])
    module.step(x[:, :16])  # the multi-token step's zero-state part
    assert taken == ["fft_convolution", "chunked_convolution", "chunked_convolution"]
    truncated = MultiDimensionalDampedEMA(3, ndim=2, truncation=8).double()
    torch.testing.assert_close(truncated(x), ema_reference(truncated, x))
    truncated.truncation = 40  # the whole kernel: it has a recurrence
    truncated(x)
    assert taken[3:] == ["fft_convolution", "chunked_convolution"]
    assert not ema.uses_chunks("auto", 10 ** 6, torch.device("cuda"))
    assert ema.uses_chunks("chunk", 2, torch.device("cpu")) and not ema.uses_chunks("fft", 10 ** 6, torch.device("cpu"))
    with pytest.raises(ValueError, match="needs an untruncated EMA"):
        MultiDimensionalDampedEMA(3, truncation=8, path="chunk")
