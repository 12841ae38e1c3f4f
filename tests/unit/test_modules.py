"""Fast paths against slow references for the pure-torch Mega modules."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mega_fairseq.modules import (MegaLayer, MegaLayerConfig, MegaStack, MovingAverageGatedAttention,
                                  MultiDimensionalDampedEMA, ema_reference)
from mega_fairseq.modules.attention import attend, attention_weights
from mega_fairseq.modules.ema import ema_kernel, fast_fft_length
from mega_fairseq.modules.norm import SequenceNorm

DTYPE = torch.float64  # the references are compared to 1e-7 and tighter


def randn(*shape, **kwargs):
    return torch.randn(*shape, dtype=DTYPE, **kwargs)


def _padding(bsz, length, lengths):
    return torch.arange(length).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)


@pytest.mark.parametrize("bidirectional,truncation", itertools.product([False, True], [None, 5, 40]))
def test_ema_fft_matches_recurrence(bidirectional, truncation):
    torch.manual_seed(0)
    ema = MultiDimensionalDampedEMA(6, ndim=4, bidirectional=bidirectional, truncation=truncation).to(DTYPE)
    x = randn(3, 23, 6)
    mask = _padding(3, 23, [23, 15, 9])
    torch.testing.assert_close(ema(x, mask), ema_reference(ema, x, mask), rtol=1e-10, atol=1e-10)
    # gradients of inputs and every parameter agree too
    x.requires_grad_()
    fast = torch.autograd.grad(ema(x, mask).square().sum(), [x] + list(ema.parameters()))
    slow = torch.autograd.grad(ema_reference(ema, x, mask).square().sum(), [x] + list(ema.parameters()))
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_ema_truncation_zero_means_none():
    assert MultiDimensionalDampedEMA(4, truncation=0).truncation is None
    assert MultiDimensionalDampedEMA(4, truncation=-1).truncation is None


def test_ema_kernel_blocks_match_powers():
    torch.manual_seed(1)
    weight, q = randn(5, 3), torch.rand(5, 3, dtype=DTYPE) * 0.98 + 0.01
    for length in (1, 2, 7, 64, 65, 1000):
        powers = q.unsqueeze(-1) ** torch.arange(length)
        torch.testing.assert_close(ema_kernel(weight, torch.log(q), length), (weight.unsqueeze(-1) * powers).sum(1))


def test_fast_fft_length():
    for n in (1, 2, 7, 97, 1023, 1025, 8191, 16383):
        m = fast_fft_length(n)
        assert m >= n and m < 1.3 * n + 2
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1


def test_ema_gradcheck():
    torch.manual_seed(0)
    for bidirectional in (False, True):
        ema = MultiDimensionalDampedEMA(3, ndim=2, bidirectional=bidirectional).to(DTYPE)
        x = randn(2, 6, 3, requires_grad=True)
        assert torch.autograd.gradcheck(lambda inp: ema(inp), (x,))


def test_ema_step_matches_forward_in_pieces():
    torch.manual_seed(0)
    ema = MultiDimensionalDampedEMA(5, ndim=3).to(DTYPE)
    x = randn(2, 30, 5)
    full = ema(x)
    outs, state = [], None
    for piece in torch.split(x, [1, 9, 1, 1, 18], dim=1):
        out, state = ema.step(piece, state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), full)


def test_ema_float32_under_autocast():
    ema = MultiDimensionalDampedEMA(4, ndim=2).float()
    x = torch.randn(2, 9, 4, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ema(x.bfloat16())
    torch.testing.assert_close(out.float(), ema(x), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("function", ["softmax", "laplace", "relu2"])
def test_fused_attention_matches_explicit(function):
    torch.manual_seed(0)
    q, k, v = randn(2, 3, 5, 4), randn(2, 3, 7, 4), randn(2, 3, 7, 6)
    bias = randn(5, 7)
    visible = torch.rand(2, 3, 5, 7, dtype=DTYPE) > 0.3
    visible[0, 0, 0] = False  # a query that sees nothing must stay finite
    for vis in (None, visible):
        fast, _ = attend(q, k, v, function=function, bias=bias, visible=vis, scaling=0.5)
        weights = attention_weights(q, k, function=function, bias=bias, visible=vis, scaling=0.5)
        torch.testing.assert_close(fast, weights @ v)
        assert torch.isfinite(fast).all()


def _config(**kwargs):
    options = dict(embed_dim=8, z_dim=6, hidden_dim=10, ffn_embed_dim=12, n_dim=3, max_positions=64, dropout=0.0,
                   normalize_before=True)
    options.update(kwargs)
    return MegaLayerConfig(**options)


def _layer(*, causal, cross_attention=False, dtype=DTYPE, **kwargs):
    return MegaLayer(_config(**kwargs), causal=causal, cross_attention=cross_attention).to(dtype).eval()


CONFIGS = list(itertools.product(["softmax", "laplace", "relu2"], ["simple", "rotary"]))


@pytest.mark.parametrize("function,bias", CONFIGS)
@pytest.mark.parametrize("causal", [False, True])
def test_chunk_at_least_length_equals_full(function, bias, causal):
    torch.manual_seed(0)
    full = _layer(causal=causal, attention_activation_fn=function, rel_pos_bias=bias, chunk_size=-1)
    x = randn(2, 11, 8)
    mask = _padding(2, 11, [11, 7])
    for chunk in (11, 16):
        chunked = _layer(causal=causal, attention_activation_fn=function, rel_pos_bias=bias, chunk_size=chunk)
        state = full.state_dict()
        if bias == "simple":  # the chunked bias table is sized by the chunk: same offsets, sliced
            table = state["mega_layer.rel_pos_bias.rel_pos_bias"]
            state["mega_layer.rel_pos_bias.rel_pos_bias"] = table[64 - chunk:64 + chunk - 1]
        chunked.load_state_dict(state)
        torch.testing.assert_close(chunked(x, mask)[0], full(x, mask)[0])


@pytest.mark.parametrize("function,bias", CONFIGS)
def test_chunks_are_independent_but_ema_crosses(function, bias):
    torch.manual_seed(0)
    layer = _layer(causal=False, attention_activation_fn=function, rel_pos_bias=bias, chunk_size=4)
    x = randn(1, 12, 8)
    y = x.clone()
    y[:, 9] += randn(8)  # change a token of the last chunk
    diff = (layer(x)[0] - layer(y)[0]).abs().amax(-1)[0]
    assert (diff > 1e-6).all()  # the bidirectional EMA carries it everywhere
    layer.mega_layer.move.omega.data.zero_()
    with torch.no_grad():  # without EMA mixing, attention alone stays inside the chunk
        layer.mega_layer.move.eta.zero_()
    diff = (layer(x)[0] - layer(y)[0]).abs().amax(-1)[0]
    assert (diff[:8] < 1e-12).all() and (diff[8:] > 1e-6).any()


@pytest.mark.parametrize("function,bias", CONFIGS)
@pytest.mark.parametrize("chunk", [-1, 4])
def test_causality(function, bias, chunk):
    torch.manual_seed(0)
    layer = _layer(causal=True, attention_activation_fn=function, rel_pos_bias=bias, chunk_size=chunk)
    x = randn(2, 13, 8)
    y = x.clone()
    y[:, 7:] = randn(2, 6, 8)
    torch.testing.assert_close(layer(x)[0][:, :7], layer(y)[0][:, :7])


@pytest.mark.parametrize("function,bias", CONFIGS)
@pytest.mark.parametrize("causal,chunk", [(False, -1), (False, 4), (True, -1), (True, 4)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_padded_batch_equals_each_alone(function, bias, causal, chunk, dtype):
    torch.manual_seed(0)
    layer = _layer(causal=causal, attention_activation_fn=function, rel_pos_bias=bias, chunk_size=chunk, dtype=dtype)
    lengths = [13, 6, 9]
    x = randn(3, 13, 8).to(dtype)
    batched, _ = layer(x, _padding(3, 13, lengths))
    for i, n in enumerate(lengths):
        alone, _ = layer(x[i:i + 1, :n])
        torch.testing.assert_close(batched[i:i + 1, :n], alone)


@pytest.mark.parametrize("function,bias", CONFIGS)
@pytest.mark.parametrize("chunk", [-1, 4, 5])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_incremental_equals_full(function, bias, chunk, cross, dtype):
    torch.manual_seed(0)
    layer = _layer(causal=True, attention_activation_fn=function, rel_pos_bias=bias, chunk_size=chunk,
                   cross_attention=cross, dtype=dtype)
    x = randn(2, 14, 8).to(dtype)
    memory = randn(2, 9, 8).to(dtype) if cross else None
    memory_mask = _padding(2, 9, [9, 6]) if cross else None
    full, _ = layer(x, memory=memory, memory_padding_mask=memory_mask)
    for pieces in ([1] * 14, [6, 1, 7], [3, 11]):
        state, outs = {}, []
        for piece in torch.split(x, pieces, dim=1):
            out, _ = layer(piece, memory=memory, memory_padding_mask=memory_mask, incremental_state=state)
            outs.append(out)
        torch.testing.assert_close(torch.cat(outs, 1), full)


def test_incremental_state_is_bounded_by_chunk():
    layer = _layer(causal=True, chunk_size=4)
    state = {}
    for _ in range(10):
        layer(randn(2, 1, 8), incremental_state=state)
    saved = layer.mega_layer.get_incremental_state(state)
    assert saved["kept"] == 10 % 4 and saved["prev_key"].size(1) == 4  # room for one chunk
    ema_saved = layer.mega_layer.move.get_incremental_state(state)
    assert ema_saved["ema_state"].shape == (2, 8, 3)


def test_reorder_incremental_state():
    torch.manual_seed(0)
    layer = _layer(causal=True, chunk_size=4)
    x = randn(3, 6, 8)
    state = {}
    layer(x[:, :5], incremental_state=state)
    order = torch.tensor([2, 0, 0])
    for module in layer.modules():
        if hasattr(module, "reorder_incremental_state"):
            module.reorder_incremental_state(state, order)
    out, _ = layer(x[order, 5:], incremental_state=state)
    torch.testing.assert_close(out, layer(x[order])[0][:, 5:])


@pytest.mark.parametrize("function", ["softmax", "laplace"])
@pytest.mark.parametrize("chunk", [4, -1])
def test_decoding_without_autograd_equals_full(function, chunk):
    """Without autograd a decoding step writes its key and value into the kept buffers, and beam
    search's reordering copies only their filled rows: equal to the full forward across chunk
    boundaries and the full-attention buffers' growth, with key padding that starts before and after
    the first step (a left-padded and a mid-sequence padded example) and a reordering mid-chunk.
    Padded positions' outputs are left out: they reach no real position."""
    torch.manual_seed(0)
    layer = _layer(causal=True, attention_activation_fn=function, chunk_size=chunk)
    with torch.no_grad():  # the official initialisation's small projections would hide attention errors
        for parameter in layer.parameters():
            parameter.normal_(0.0, 0.5)
    x = randn(3, 15, 8)
    padding = torch.zeros(3, 15, dtype=torch.bool)
    padding[1, :3] = True  # left padding
    padding[2, 9] = True  # a padded position after unpadded steps
    order = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        full, _ = layer(x, padding)
        state, outs = {}, []
        for start, size in zip([0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3]):
            outs.append(layer(x[:, start:start + size], padding[:, start:start + size], incremental_state=state)[0])
        real = ~padding
        torch.testing.assert_close(torch.cat(outs, 1)[real], full[real])
        for module in layer.modules():
            if hasattr(module, "reorder_incremental_state"):
                module.reorder_incremental_state(state, order)
        y = torch.cat([x[order, :15], randn(4, 3, 8)], 1)
        mask = F.pad(padding[order], (0, 3), value=False)
        steps = [layer(y[:, t:t + 1], mask[:, t:t + 1], incremental_state=state)[0] for t in range(15, 18)]
        torch.testing.assert_close(torch.cat(steps, 1), layer(y, mask)[0][:, 15:])
    assert state[layer.mega_layer._state_key()]["kept"] == (18 % chunk if chunk > 0 else 18)


@pytest.mark.parametrize("bias", ["simple", "rotary"])
def test_decoding_constants_follow_the_parameters(bias):
    """A decoding without autograd keeps the EMA's coefficients, the query/key affine and Mega-chunk's
    bias row in its state, made at its first step and reused by the later ones; a decoding after the
    parameters changed (in place, as an optimizer changes them) computes with the new ones, across a
    chunk boundary."""
    torch.manual_seed(0)
    layer = _layer(causal=True, chunk_size=4, rel_pos_bias=bias)
    x = randn(2, 9, 8)

    def decode():
        state = {}
        outs = [layer(x[:, t:t + 1], incremental_state=state)[0] for t in range(9)]
        return torch.cat(outs, 1), layer.mega_layer.get_incremental_state(state)

    with torch.no_grad():
        before, saved = decode()
        torch.testing.assert_close(before, layer(x)[0])
        assert "query_key_affine" in saved and saved["newest_bias"].shape == (1, 4)
        for parameter in layer.mega_layer.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
        after, _ = decode()
        torch.testing.assert_close(after, layer(x)[0])
        assert (after - before).abs().max() > 1e-3


def test_gradients_chunked_vs_full_attention():
    torch.manual_seed(0)
    full = _layer(causal=True, chunk_size=-1, max_positions=16)
    chunked = _layer(causal=True, chunk_size=16, max_positions=16)
    chunked.load_state_dict(full.state_dict())
    x = randn(2, 10, 8, requires_grad=True)
    g1 = torch.autograd.grad(full(x)[0].sum(), [x] + list(full.parameters()))
    g2 = torch.autograd.grad(chunked(x)[0].sum(), [x] + list(chunked.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("norm", ["layernorm", "scalenorm", "rmsnorm", "batchnorm"])
@pytest.mark.parametrize("prenorm", [True, False])
def test_norms_and_positions(norm, prenorm):
    torch.manual_seed(0)
    dropouts = dict(dropout=0.1, attention_dropout=0.1, hidden_dropout=0.1, activation_dropout=0.1)
    layer = _layer(causal=False, normalization_type=norm, normalize_before=prenorm, feature_dropout=True, **dropouts)
    x = randn(2, 5, 8)
    layer.train()
    out, _ = layer(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and all(p.grad is not None for p in layer.parameters() if p.requires_grad)
    # in eval mode no dropout is applied: the same layer built without dropout gives the same output
    without = _layer(causal=False, normalization_type=norm, normalize_before=prenorm)
    without.load_state_dict(layer.state_dict())
    layer.eval()
    torch.testing.assert_close(layer(x)[0], without(x)[0])
    assert not torch.allclose(layer.train()(x)[0], without(x)[0])
    assert isinstance(layer.mega_layer.norm, SequenceNorm)


@pytest.mark.parametrize("kwargs,message", [
    (dict(attention_activation_fn="sigmoid"), "attention_activation_fn 'sigmoid' is not a known attention function"),
    (dict(rel_pos_bias="alibi"), "rel_pos_bias 'alibi' is not a known relative position bias"),
    (dict(normalization_type="groupnorm"), "normalization_type 'groupnorm' is not a known normalisation layer"),
    (dict(activation_fn="swish2"), "activation_fn 'swish2' is not a known activation function"),
    (dict(chunk_size=0), "chunk_size must be positive"),
    (dict(z_dim=0), "z_dim must be positive, got 0"),
    (dict(ffn_embed_dim=-2), "ffn_embed_dim must be positive"),
    (dict(ema_path="scan"), "ema_path 'scan' is not a known EMA algorithm"),
    (dict(ema_path="chunk", truncation_length=16), "ema_path chunk needs an untruncated EMA"),
])
def test_bad_options_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _config(**kwargs)


def test_ffn_size_follows_the_hidden_size_unless_given():
    assert MegaLayerConfig(hidden_dim=40).ffn_embed_dim == 40
    assert MegaLayerConfig(hidden_dim=40, ffn_embed_dim=0).ffn_embed_dim == 0
    assert MegaLayer(_config(ffn_embed_dim=0), causal=False).nffn is None


def test_sequence_longer_than_bias_table_is_a_clear_error():
    layer = MovingAverageGatedAttention(_config(max_positions=8), causal=False)
    with pytest.raises(ValueError, match="exceeds max_positions=8"):
        layer(torch.randn(1, 9, 8))


# ---------------------------------------------------------------- batch norm and padding


def test_masked_batch_norm_equals_batch_norm_of_the_unpadded_positions():
    from mega_fairseq.modules.norm import SequenceNorm

    torch.manual_seed(0)
    lengths = [7, 3, 5]
    x = torch.randn(3, 7, 4, dtype=torch.float64, requires_grad=True)
    padding_mask = torch.arange(7).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    masked = SequenceNorm("batchnorm", 4).double().train()
    reference = SequenceNorm("batchnorm", 4).double().train()
    with torch.no_grad():
        masked.norm.weight.uniform_(0.5, 1.5)
        masked.norm.bias.uniform_(-0.5, 0.5)
    reference.load_state_dict(masked.state_dict())
    out = masked(x, padding_mask)
    valid = torch.cat([x[i, :n] for i, n in enumerate(lengths)]).unsqueeze(0)  # 1 x 15 x 4, no padding
    expected = reference(valid)
    torch.testing.assert_close(torch.cat([out[i, :n] for i, n in enumerate(lengths)]).unsqueeze(0), expected)
    torch.testing.assert_close(masked.norm.running_mean, reference.norm.running_mean)
    torch.testing.assert_close(masked.norm.running_var, reference.norm.running_var)
    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((out[~padding_mask].unsqueeze(0) * weights).sum(), [x, masked.norm.weight])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, reference.norm.weight])
    torch.testing.assert_close(grads[1], expected_grads[1])
    torch.testing.assert_close(grads[0][~padding_mask], expected_grads[0][~padding_mask])
    assert grads[0][padding_mask].abs().max() == 0


@pytest.mark.parametrize("norm", ["batchnorm", "syncbatchnorm"])
@pytest.mark.parametrize("stack_kind", ["encoder", "decoder_with_cross_attention"])
@pytest.mark.parametrize("prenorm", [True, False])
def test_padding_does_not_leak_into_batch_norm_statistics(norm, stack_kind, prenorm):
    """Training mode: the outputs and running statistics of a padded batch do not depend on how
    much padding there is or what it holds, in every block of a layer (the cross-attention's
    norm too)."""
    cfg = MegaLayerConfig(layers=2, embed_dim=8, hidden_dim=12, z_dim=4, n_dim=2, chunk_size=4, dropout=0.0,
                          normalization_type=norm, normalize_before=prenorm, attention_activation_fn="laplace")
    decoder = stack_kind == "decoder_with_cross_attention"
    torch.manual_seed(0)
    stacks = [MegaStack(cfg, causal=decoder, cross_attention=decoder).double().train() for _ in range(2)]
    stacks[1].load_state_dict(stacks[0].state_dict())
    memory = dict(memory=torch.randn(2, 5, 8, dtype=torch.float64), memory_padding_mask=_padding(2, 5, [5, 3])) \
        if decoder else {}
    lengths = torch.tensor([9, 4])
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    short_mask = torch.arange(9).unsqueeze(0) >= lengths.unsqueeze(1)
    wide = torch.cat([x, 100 * torch.randn(2, 3, 8, dtype=torch.float64)], dim=1)
    wide[1, 4:9] = 50.0  # other padding content
    wide_mask = torch.arange(12).unsqueeze(0) >= lengths.unsqueeze(1)
    a = stacks[0](x, short_mask, **memory).out
    b = stacks[1](wide, wide_mask, **memory).out[:, :9]
    torch.testing.assert_close(a, b)
    for (name, buffer), (_, other) in zip(stacks[0].named_buffers(), stacks[1].named_buffers()):
        torch.testing.assert_close(buffer, other, msg=name)


@pytest.mark.parametrize("prenorm", [True, False])
def test_every_norm_of_a_decoder_layer_gets_the_padding_mask(prenorm):
    """Each SequenceNorm of a decoder layer with cross-attention (self-attention, cross-attention,
    FFN) is called with the target's padding mask."""
    layer = MegaLayer(_config(normalize_before=prenorm), causal=True, cross_attention=True)
    calls = []

    def record(name):
        def hook(module, args, kwargs, out):
            calls.append((name, args[1] if len(args) > 1 else kwargs.get("padding_mask")))
        return hook

    for name, module in layer.named_modules():
        if isinstance(module, SequenceNorm):
            module.register_forward_hook(record(name), with_kwargs=True)
    mask = _padding(2, 6, [6, 4])
    layer(torch.randn(2, 6, 8), mask, memory=torch.randn(2, 5, 8))
    assert sorted(name for name, _ in calls) == ["cross_attn.norm", "mega_layer.norm", "nffn.norm"]
    for name, given in calls:
        assert given is mask, name
