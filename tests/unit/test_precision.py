"""Mixed precision: every layer configuration under bfloat16 autocast (CPU) and, when a GPU is
present, under CUDA float16 and bfloat16 autocast. Outputs and gradients must be finite and as
close to a float64 computation as the plain implementation in the same precision is (within a
factor, flash-attention's rule), where the plain implementation runs attention as the official
code does under autocast: half-precision matmuls, float32 softmax."""

import copy
import itertools

import pytest
import torch

from mega_fairseq.modules import NORM_TYPES, MegaLayer, MegaLayerConfig, SequenceNorm, attention, pool
from mega_fairseq.modules.attention import attention_weights, toeplitz_rows

CONFIGS = list(itertools.product(
    [False, True],  # causal
    [-1, 4],  # chunk size
    ["softmax", "laplace", "relu2"],
    ["simple", "rotary"],
    [("layernorm", True), ("scalenorm", False)],
))
FACTOR = 2.0  # the fast path may be at most this much further from float64 than the plain one ...
FLOOR = {torch.bfloat16: 1e-2, torch.float16: 1e-3}  # ... or within a few units of the last place


def plain_softmax_attention(q, k, v, *, offsets, key_padding, causal, scaling):
    """Softmax attention as the official code computes it under autocast."""
    dtype = _AUTOCAST["dtype"]
    with torch.autocast(q.device.type, dtype=dtype):
        columns = k.size(1)
        bias = toeplitz_rows(offsets, columns, 0, q.size(1))
        visible = None if key_padding is None else ~key_padding.unsqueeze(1)
        if causal:
            below = torch.arange(q.size(1), device=q.device).unsqueeze(-1) >= torch.arange(columns, device=q.device)
            visible = below if visible is None else visible & below
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        weights = attention_weights(q, k, function="softmax", bias=bias, visible=visible, scaling=scaling)
        return torch.matmul(weights.to(dtype), v)


_AUTOCAST = {}
_ATTEND = attention.attend


def plain_attend(q, k, v, *, function, bias, visible, scaling, dropout=0.0, need_weights=False, causal=None,
                 mask_mode="auto"):
    """``attend`` with its fused softmax path (used on CUDA) replaced by the plain one."""
    if function != "softmax" or need_weights:
        return _ATTEND(q, k, v, function=function, bias=bias, visible=visible, scaling=scaling, dropout=dropout,
                       need_weights=need_weights, causal=causal, mask_mode=mask_mode)
    if causal is not None:
        visible = causal if visible is None else visible & causal
    dtype = _AUTOCAST["dtype"]
    with torch.autocast(q.device.type, dtype=dtype):
        weights = attention_weights(q.to(dtype), k.to(dtype), function="softmax", bias=bias, visible=visible,
                                    scaling=scaling)
        return torch.matmul(weights.to(dtype), v.to(dtype)).to(v.dtype), None


def layer_for(causal, chunk, function, bias, norm, cross=False):
    norm_type, prenorm = norm
    cfg = MegaLayerConfig(embed_dim=16, z_dim=8, hidden_dim=24, ffn_embed_dim=24, n_dim=4, chunk_size=chunk,
                          attention_activation_fn=function, rel_pos_bias=bias, normalization_type=norm_type,
                          normalize_before=prenorm, max_positions=32, dropout=0.0)
    torch.manual_seed(0)
    layer = MegaLayer(cfg, causal=causal, cross_attention=cross).eval()
    with torch.no_grad():  # untrained EMA/attention parameters are near-degenerate
        for parameter in layer.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return layer


def projection_loss(out):
    """A fixed random projection of the output, in at least float32: every gradient depends on
    every output value (the mean square would be constant after a postnorm ScaleNorm, leaving
    gradients of rounding noise to compare)."""
    dtype = torch.promote_types(out.dtype, torch.float32)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return (out.to(dtype) * weights.to(out.device, dtype)).sum()


def outputs_and_gradients(layer, x, mask, device, dtype=None, memory=None):
    layer = layer.to(device)
    x = x.to(device).requires_grad_()
    mask = mask.to(device)
    memory = None if memory is None else memory.to(device)
    params = [p for p in layer.parameters()]
    with torch.autocast(device, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        out, _ = layer(x, None if layer.mega_layer.causal else mask, memory=memory)
    grads = torch.autograd.grad(projection_loss(out), [x] + params, allow_unused=True)
    return [out.detach().double().cpu()] + [None if g is None else g.double().cpu() for g in grads]


def errors(results, truth):
    """The error of each tensor relative to its float64 value, in norm."""
    return [0.0 if r is None else float((r - t).norm() / t.norm().clamp(min=1e-12)) for r, t in zip(results, truth)]


def check_against_plain(config, device, dtype, monkeypatch, cross=False):
    layer = layer_for(*config, cross=cross)
    torch.manual_seed(1)
    x = torch.randn(3, 13, 16)
    mask = torch.arange(13) >= torch.tensor([[13], [9], [5]])
    memory = torch.randn(3, 7, 16) if cross else None
    truth = outputs_and_gradients(layer.double(), x.double(), mask, device,
                                  memory=None if memory is None else memory.double())
    fast = outputs_and_gradients(layer.float(), x, mask, device, dtype, memory)
    assert all(r is None or torch.isfinite(r).all() for r in fast)
    _AUTOCAST["dtype"] = dtype
    monkeypatch.setattr(attention, "softmax_attention_blocks", plain_softmax_attention)
    monkeypatch.setattr(attention, "attend", plain_attend)
    plain = outputs_and_gradients(layer.float(), x, mask, device, dtype, memory)
    fast_errors = errors(fast, truth)
    assert fast_errors[0] < 5 * FLOOR[dtype], fast_errors[0]  # the output itself
    for name, fast_error, plain_error in zip(["output", "x"] + [n for n, _ in layer.named_parameters()],
                                             fast_errors, errors(plain, truth)):
        assert fast_error <= FACTOR * plain_error + FLOOR[dtype], (name, fast_error, plain_error)


@pytest.mark.parametrize("config", CONFIGS)
def test_bf16_autocast_on_cpu_matches_float64_as_well_as_the_plain_path(config, monkeypatch):
    check_against_plain(config, "cpu", torch.bfloat16, monkeypatch)


def test_cross_attention_under_bf16_autocast(monkeypatch):
    check_against_plain((True, 4, "softmax", "simple", ("layernorm", True)), "cpu", torch.bfloat16, monkeypatch,
                        cross=True)


def test_half_precision_model_attends_in_float32():
    """A model converted to half precision (fairseq's --fp16 / --bf16 without autocast) runs the
    softmax in float32: its weights sum to one to float32 precision, not bfloat16's."""
    layer = layer_for(False, -1, "softmax", "simple", ("layernorm", True)).bfloat16()
    x = torch.randn(2, 9, 16, dtype=torch.bfloat16)
    out, weights = layer(x, need_weights=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(weights.float().sum(-1), torch.ones(2, 1, 9), rtol=0, atol=1e-2)
    out, _ = layer(x)  # the blocked kernel (no weights returned)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient scaled by 1.1 backward (a wrong backward pass)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.1


def test_a_fast_path_with_a_gradient_error_fails_the_check(monkeypatch):
    """The comparison is sensitive behind a postnorm ScaleNorm, whose output's mean square does
    not depend on its input: a fast attention whose gradient is 10% off fails it."""
    def wrong_attend(q, k, v, **kwargs):
        return _ATTEND(q, k, _ScaleGradient.apply(v) if v.dtype != torch.float64 else v, **kwargs)

    monkeypatch.setattr(attention, "attend", wrong_attend)
    with pytest.raises(AssertionError, match="v_proj"):
        check_against_plain((False, -1, "laplace", "simple", ("scalenorm", False)), "cpu", torch.bfloat16,
                            monkeypatch)


# ---------------------------------------------------------------- models converted to float16


@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_float16_norms_of_activations_whose_squares_overflow(norm_type):
    """fairseq --fp16 converts the model to float16, where x^2 overflows from |x| >= 256: every
    norm (training mode, padded batch) matches float64 in output, gradient and running averages."""
    torch.manual_seed(0)
    norm = SequenceNorm(norm_type, 8).train()
    with torch.no_grad():
        for parameter in norm.parameters():
            parameter.uniform_(0.5, 1.5)
    reference = copy.deepcopy(norm).double()
    x = torch.randn(3, 40, 8, dtype=torch.float64) * 300.0  # a batch variance of 9e4 > 65504 too
    mask = torch.arange(40) >= torch.tensor([[40], [25], [7]])
    keep = ~mask
    weights = torch.randn(3, 40, 8, dtype=torch.float64)
    results = []
    for module, dtype in ((norm.half(), torch.float16), (reference, torch.float64)):
        inputs = x.to(dtype).requires_grad_()
        out = module(inputs, mask)
        grad, = torch.autograd.grad((out.double() * weights)[keep].sum(), inputs)
        results.append((out, grad, [buffer for buffer in module.buffers() if buffer.is_floating_point()]))
    (out, grad, buffers), (expected, expected_grad, expected_buffers) = results
    assert out.dtype == torch.float16
    torch.testing.assert_close(out[keep].double(), expected[keep], rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad[keep].double(), expected_grad[keep], rtol=1e-2, atol=1e-5)
    for buffer, expected_buffer in zip(buffers, expected_buffers):
        torch.testing.assert_close(buffer.double(), expected_buffer, rtol=1e-2, atol=1e-2)


def test_float16_mean_pooling_of_a_long_sequence():
    """16384 positions of about 5 sum past float16's 65504 (Path-X, raw speech): the mean is
    accumulated in float32."""
    torch.manual_seed(0)
    x = 5.0 + torch.rand(2, 16384, 4, dtype=torch.float64)
    mask = torch.arange(16384) >= torch.tensor([[16384], [12000]])
    for padding_mask in (mask, None):
        pooled = pool("mean", x.half(), padding_mask)
        assert pooled.dtype == torch.float16
        torch.testing.assert_close(pooled.double(), pool("mean", x, padding_mask), rtol=1e-3, atol=0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("config", CONFIGS)
def test_cuda_autocast_matches_float64_as_well_as_the_plain_path(config, dtype, monkeypatch):
    check_against_plain(config, "cuda", dtype, monkeypatch)
