"""The FFT EMA at 64K positions and at extreme decay: float32 output against the plain recurrence in
float64, and finite gradients. The q_near_1 cases (1 - q = 5e-7) fail when log q is taken as
log(1 - alpha * delta) in float32, as the official code does; log1p keeps them exact."""

import pytest
import torch

from mega_fairseq.modules import MultiDimensionalDampedEMA, ema_reference

LENGTH = 64 * 1024


def ema(dim=3, ndim=2, bidirectional=False, decay=None):
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


CASES = {"initial": (None, False), "alpha_delta_1e-4": ((1e-4, 1e-4), False), "q_near_0": ((0.9999, 0.9999), False),
         "q_near_1": ((0.5, 1e-6), False), "q_near_1_bidirectional": ((0.5, 1e-6), True)}


@pytest.mark.parametrize("case", CASES)
def test_64k_positions_match_the_float64_recurrence(case):
    decay, bidirectional = CASES[case]
    module = ema(bidirectional=bidirectional, decay=decay)
    x = torch.randn(1, LENGTH, 3, generator=torch.Generator().manual_seed(1))
    out = module(x)  # float32, FFT
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    reference = ema_reference(module.double(), x.double())
    error = (out.double() - reference).abs().max().item()
    scale = reference.abs().max().item()
    assert error <= 2e-5 * max(scale, 1.0), (error, scale)


def test_64k_gradients_are_finite():
    module = ema(decay=(1e-4, 1e-4), bidirectional=True)
    x = torch.randn(1, LENGTH, 3, requires_grad=True)
    module(x).square().mean().backward()
    for name, parameter in [("x", x), *module.named_parameters()]:
        assert torch.isfinite(parameter.grad).all(), name
