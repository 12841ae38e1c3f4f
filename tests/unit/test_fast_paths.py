"""Hand-written fast paths against plain references: outputs and gradients (float64)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mega_fairseq.modules import MegaLayer, MegaLayerConfig, MultiDimensionalDampedEMA, ema_reference
from mega_fairseq.modules import attention
from mega_fairseq.modules.attention import attention_weights, softmax_attention_blocks, toeplitz_rows
from mega_fairseq.modules.ema import fft_convolution

DTYPE = torch.float64


def convolution_reference(x, forward_kernel, backward_kernel=None):
    """y[t] = sum_s kf[s] x[t - s] + sum_s kb[s] x[t + s], by conv1d (B x L x D, kernels D x K)."""
    dim, size = forward_kernel.size()
    signal = x.transpose(1, 2)  # B x D x L
    y = F.conv1d(F.pad(signal, (size - 1, 0)), forward_kernel.flip(-1).unsqueeze(1), groups=dim)
    if backward_kernel is not None:
        y = y + F.conv1d(F.pad(signal, (0, size - 1)), backward_kernel.unsqueeze(1), groups=dim)
    return y.transpose(1, 2)


@pytest.mark.parametrize("bidirectional,length,size", itertools.product([False, True], [1, 7, 30], [1, 5, 30]))
def test_fft_convolution_matches_direct_sum(bidirectional, length, size):
    size = min(size, length)
    torch.manual_seed(0)
    x = torch.randn(3, length, 4, dtype=DTYPE, requires_grad=True)
    kernels = [torch.randn(4, size, dtype=DTYPE, requires_grad=True) for _ in range(2 if bidirectional else 1)]
    grad = torch.randn(3, length, 4, dtype=DTYPE)
    fast = fft_convolution(x, *kernels)
    slow = convolution_reference(x, *kernels)
    torch.testing.assert_close(fast, slow)
    inputs = [x] + kernels
    for a, b in zip(torch.autograd.grad(fast, inputs, grad), torch.autograd.grad(slow, inputs, grad)):
        torch.testing.assert_close(a, b)


def test_fft_convolution_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 3, dtype=DTYPE, requires_grad=True)
    forward_kernel = torch.randn(3, 6, dtype=DTYPE, requires_grad=True)
    backward_kernel = torch.randn(3, 6, dtype=DTYPE, requires_grad=True)
    assert torch.autograd.gradcheck(fft_convolution, (x, forward_kernel, backward_kernel))
    assert torch.autograd.gradcheck(fft_convolution, (x, forward_kernel))
    assert torch.autograd.gradgradcheck(fft_convolution, (x, forward_kernel, backward_kernel))


def test_ema_with_truncation_matches_recurrence_gradients():
    torch.manual_seed(0)
    ema = MultiDimensionalDampedEMA(5, ndim=3, bidirectional=True, truncation=8).to(DTYPE)
    x = torch.randn(2, 20, 5, dtype=DTYPE, requires_grad=True)
    params = [x] + list(ema.parameters())
    fast = torch.autograd.grad(ema(x).sin().sum(), params)
    slow = torch.autograd.grad(ema_reference(ema, x).sin().sum(), params)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("start,stop", [(0, 9), (0, 1), (8, 9), (2, 7)])
def test_toeplitz_rows_match_gather(start, stop):
    torch.manual_seed(0)
    columns = 9
    offsets = torch.randn(2 * columns - 1, dtype=DTYPE, requires_grad=True)
    rows = torch.arange(start, stop).unsqueeze(-1)
    slow = offsets[torch.arange(columns) - rows + columns - 1]
    fast = toeplitz_rows(offsets, columns, start, stop)
    torch.testing.assert_close(fast, slow)
    grad = torch.randn(stop - start, columns, dtype=DTYPE)
    torch.testing.assert_close(torch.autograd.grad(fast, offsets, grad)[0], torch.autograd.grad(slow, offsets, grad)[0])
    assert torch.autograd.gradcheck(lambda o: toeplitz_rows(o, columns, start, stop), (offsets,))


@pytest.mark.parametrize("kind", ["simple", "rotary"])
def test_offset_bias_expands_to_the_full_bias(kind):
    torch.manual_seed(0)
    layer = MegaLayer(MegaLayerConfig(embed_dim=8, z_dim=6, hidden_dim=10, ffn_embed_dim=0, n_dim=2, rel_pos_bias=kind,
                                      max_positions=16), causal=False).to(DTYPE)
    gated = layer.mega_layer
    fast = toeplitz_rows(gated.rel_pos_bias.offsets(11), 11, 0, 11)
    slow = gated.rel_pos_bias(torch.arange(11), 11)
    # the rotary bias rotates by float32 angles, so its two evaluations agree to float32 precision
    tolerance = dict(rtol=1e-6, atol=1e-7) if kind == "rotary" else {}
    torch.testing.assert_close(fast, slow, **tolerance)
    params = list(gated.rel_pos_bias.parameters())
    grad = torch.randn(11, 11, dtype=DTYPE)
    for a, b in zip(torch.autograd.grad(fast, params, grad), torch.autograd.grad(slow, params, grad)):
        torch.testing.assert_close(a, b, **tolerance)


@pytest.mark.parametrize("block_rows,group_rows,keep,causal,padded",
                         [sizes + flags for sizes in [(3, 7), (3, 20), (20, 40)]
                          for flags in itertools.product([False, True], repeat=3)])
def test_softmax_attention_blocks_match_reference(block_rows, group_rows, keep, causal, padded, monkeypatch):
    torch.manual_seed(0)
    # blocks of 3 query rows of one entry in groups of 7 rows or of two whole entries (the last
    # block or group shorter), or blocks of two whole entries in groups of four
    monkeypatch.setattr(attention, "_BLOCK_BYTES", block_rows * 10 * 8)
    monkeypatch.setattr(attention, "_GROUP_BYTES", group_rows * 10 * 8)
    monkeypatch.setattr(attention, "_MIN_BLOCK_ROWS", 1)
    monkeypatch.setattr(attention, "_KEEP_WEIGHTS_BYTES", 10 ** 9 if keep else 0)
    q = torch.randn(4, 10, 6, dtype=DTYPE, requires_grad=True)
    k = torch.randn(4, 10, 6, dtype=DTYPE, requires_grad=True)
    v = torch.randn(4, 10, 7, dtype=DTYPE, requires_grad=True)
    offsets = torch.randn(19, dtype=DTYPE, requires_grad=True)
    key_padding = None
    if padded:
        key_padding = torch.arange(10) >= torch.tensor([[10], [4], [0], [7]])  # one row of all padding
    fast = softmax_attention_blocks(q, k, v, offsets=offsets, key_padding=key_padding, causal=causal, scaling=0.4)
    visible = None if key_padding is None else ~key_padding.unsqueeze(1)
    if causal:
        below = torch.arange(10).unsqueeze(-1) >= torch.arange(10)
        visible = below if visible is None else visible & below
    bias = offsets[torch.arange(10) - torch.arange(10).unsqueeze(-1) + 9]
    slow = attention_weights(q, k, function="softmax", bias=bias, visible=visible, scaling=0.4) @ v
    torch.testing.assert_close(fast, slow)
    grad = torch.randn_like(slow)
    inputs = [q, k, v, offsets]
    for a, b in zip(torch.autograd.grad(fast, inputs, grad), torch.autograd.grad(slow, inputs, grad)):
        torch.testing.assert_close(a, b)


def test_softmax_attention_blocks_backward_can_run_twice():
    q, k, v = (torch.randn(2, 5, 4, dtype=DTYPE, requires_grad=True) for _ in range(3))
    offsets = torch.randn(9, dtype=DTYPE, requires_grad=True)
    out = softmax_attention_blocks(q, k, v, offsets=offsets, key_padding=None, causal=False, scaling=0.5)
    first = torch.autograd.grad(out.sum(), [q, k, v, offsets], retain_graph=True)
    second = torch.autograd.grad(out.sum(), [q, k, v, offsets])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("function,bias,causal", itertools.product(["laplace", "relu2"], ["simple", "rotary"],
                                                                   [False, True]))
def test_query_blocks_with_recomputation_equal_one_block(function, bias, causal, monkeypatch):
    torch.manual_seed(0)
    layer = MegaLayer(MegaLayerConfig(embed_dim=8, z_dim=6, hidden_dim=10, ffn_embed_dim=12, n_dim=3, dropout=0.0,
                                      attention_activation_fn=function, rel_pos_bias=bias, max_positions=32),
                      causal=causal).to(DTYPE)
    x = torch.randn(2, 13, 8, dtype=DTYPE, requires_grad=True)
    mask = torch.arange(13) >= torch.tensor([[13], [9]])
    params = [x] + list(layer.parameters())

    def run():
        out, _ = layer(x, mask)
        return out, torch.autograd.grad(out.square().sum(), params)

    whole, whole_grads = run()
    # 2 x 13 x 13 float64 scores are 2704 bytes: blocks of 3 query rows (the last one shorter)
    monkeypatch.setattr(attention, "_MAX_SCORE_BYTES", 1000)
    monkeypatch.setattr(attention, "_BLOCK_SCORE_BYTES", 3 * 2 * 13 * 8)
    blocked, blocked_grads = run()
    torch.testing.assert_close(blocked, whole)
    for a, b in zip(blocked_grads, whole_grads):
        torch.testing.assert_close(a, b)


def test_query_blocks_recompute_the_same_dropout(monkeypatch):
    torch.manual_seed(0)
    layer = MegaLayer(MegaLayerConfig(embed_dim=4, z_dim=3, hidden_dim=5, ffn_embed_dim=0, n_dim=2, dropout=0.0,
                                      attention_dropout=0.5, max_positions=16), causal=False).to(DTYPE).train()
    monkeypatch.setattr(attention, "_MAX_SCORE_BYTES", 100)
    monkeypatch.setattr(attention, "_BLOCK_SCORE_BYTES", 3 * 9 * 8)

    def seeded(inputs):
        torch.manual_seed(1)
        return layer(inputs)[0]

    # gradients from the recomputed blocks match finite differences only if their masks are the same
    assert torch.autograd.gradcheck(seeded, (torch.randn(1, 9, 4, dtype=DTYPE, requires_grad=True),))
