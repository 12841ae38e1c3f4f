"""The whole-stack decoding step (mega_fairseq/modules/decoding.py) against the full forward, on CPU (and, where
DEVICES says so, on CUDA when there is a GPU): every norm,
pre- and postnorm, Mega-chunk and full attention, simple and rotary biases, with and without the FFN and
cross-attention, float64 and float32, across chunk boundaries, buffer growth and beam reorderings; bit for bit
against the layers' path; the steps it leaves to the layers."""

from unittest import mock

import pytest
import torch

from mega_fairseq.modules import MegaLayerConfig, MegaStack, decoding


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def _stack(dtype=torch.float64, layers=2, device="cpu", **options):
    values = dict(layers=layers, embed_dim=8, z_dim=6, hidden_dim=10, ffn_embed_dim=12, n_dim=3, max_positions=64,
                  chunk_size=4, dropout=0.0)
    cross = options.pop("cross_attention", False)
    values.update(options)
    stack = MegaStack(MegaLayerConfig(**values), causal=True, cross_attention=cross).to(device, dtype).eval()
    with torch.no_grad():
        for parameter in stack.parameters():  # the official initialisation's small projections hide errors
            parameter.normal_(0.0, 0.5)
        for module in stack.modules():  # batch norm's statistics, as after training
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return stack


def _reorder(stack, state, order):
    """What fairseq's beam search does: every module's reorder_incremental_state."""
    for module in stack.modules():
        if hasattr(module, "reorder_incremental_state"):
            module.reorder_incremental_state(state, order)


def _flat_steps(chunk, steps, prefill=1):
    """How many of ``steps`` one-position calls after a first call of ``prefill`` positions take the flat step: all
    with Mega-chunk (its key buffers have room for the chunk); with full attention those that find room in the
    buffers, which the layers' steps make with room for twice their keys (a beam reordering keeps the room)."""
    if chunk > 0:
        return steps
    kept, room, flat = prefill, 2 * prefill, 0
    for _ in range(steps):
        if kept < room:
            flat += 1
        else:
            room = 2 * (kept + 1)
        kept += 1
    return flat


def _counting_steps(function="_gated_attention_step"):
    return mock.patch.object(decoding, function, side_effect=getattr(decoding, function))


@pytest.mark.parametrize("norm", ["scalenorm", "layernorm", "rmsnorm", "batchnorm"])
@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("chunk", [4, -1])
@pytest.mark.parametrize("device", DEVICES)
def test_stack_steps_equal_the_full_forward(norm, prenorm, dtype, chunk, device):
    """From a decoding's second step on the stack takes the flat step (twice per position: two layers); the
    outputs equal the full forward across chunk boundaries (full attention: as the key buffers fill, and where
    the layers give them more room) and after a beam reordering mid-chunk."""
    torch.manual_seed(0)
    stack = _stack(dtype, normalization_type=norm, normalize_before=prenorm, chunk_size=chunk, device=device)
    x = torch.randn(3, 10, 8, dtype=dtype, device=device)
    order = torch.tensor([2, 0, 0, 1], device=device)
    tolerance = {} if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    with _counting_steps() as steps, torch.no_grad():
        state = {}
        outs = [stack(x[:, t:t + 1], incremental_state=state).out for t in range(7)]
        torch.testing.assert_close(torch.cat(outs, 1), stack(x[:, :7]).out, **tolerance)
        assert steps.call_count == 2 * _flat_steps(chunk, 6)
        _reorder(stack, state, order)
        y = x[order]
        outs = [stack(y[:, t:t + 1], incremental_state=state).out for t in range(7, 10)]
        torch.testing.assert_close(torch.cat(outs, 1), stack(y).out[:, 7:], **tolerance)
    assert steps.call_count == 2 * _flat_steps(chunk, 9) > 0


def test_steps_after_a_prefill_without_ffn_and_final_norm():
    """A prefill of several positions (the general path), then flat steps; layers without an FFN, postnorm
    (no final norm); the inner states are each layer's output."""
    torch.manual_seed(1)
    stack = _stack(ffn_embed_dim=0, normalize_before=False, layers=3)
    assert stack.final_norm is None and stack.layers[0].nffn is None
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    with _counting_steps() as steps, torch.no_grad():
        state = {}
        first = stack(x[:, :6], incremental_state=state)
        outs = [stack(x[:, t:t + 1], incremental_state=state) for t in range(6, 11)]
        full = stack(x)
    assert steps.call_count == 3 * 5
    torch.testing.assert_close(torch.cat([first.out] + [o.out for o in outs], 1), full.out)
    for index in range(4):
        torch.testing.assert_close(outs[-1].inner_states[index], full.inner_states[index][:, -1:])


@pytest.mark.parametrize("bias", ["simple", "rotary"])
@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_steps_with_cross_attention(bias, prenorm, device):
    """Translation's decoder layers: the gated cross-attention runs flat between the self-attention and the FFN,
    over the encoder's keys and values of the first step, with the memory's padding."""
    torch.manual_seed(2)
    stack = _stack(cross_attention=True, chunk_size=-1, rel_pos_bias=bias, normalize_before=prenorm, device=device)
    x, memory = (torch.randn(2, length, 8, dtype=torch.float64, device=device) for length in (9, 5))
    memory_padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2], device=device)
    with _counting_steps() as steps, _counting_steps("_cross_attention_step") as cross, torch.no_grad():
        state = {}
        outs = [stack(x[:, t:t + 1], memory=memory, memory_padding_mask=memory_padding,
                      incremental_state=state).out for t in range(9)]
        torch.testing.assert_close(torch.cat(outs, 1), stack(x, memory=memory, memory_padding_mask=memory_padding).out)
    assert steps.call_count == cross.call_count == 2 * _flat_steps(-1, 8) > 0


@pytest.mark.parametrize("case", ["autograd", "training", "padding", "weights", "bfloat16", "laplace", "truncation"])
def test_steps_the_flat_step_leaves_to_the_layers(case):
    """Where the flat step would not compute what the layers compute, the layers run (and still equal the
    full forward)."""
    torch.manual_seed(3)
    options = {"laplace": dict(attention_activation_fn="laplace"),
               "truncation": dict(truncation_length=3)}.get(case, {})
    dtype = torch.bfloat16 if case == "bfloat16" else torch.float64
    stack = _stack(dtype, **options)
    if case == "training":
        stack.train()
    x = torch.randn(2, 6, 8, dtype=dtype)
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, 0] = case == "padding"  # kept by the layers for the later steps, which then take them too
    with _counting_steps() as steps, torch.set_grad_enabled(case == "autograd"):
        state = {}
        outs = [stack(x[:, t:t + 1], padding[:, t:t + 1], incremental_state=state,
                      weights_layer=0 if case == "weights" else None).out for t in range(6)]
        full = stack(x, padding).out
    assert steps.call_count == 0
    tolerance = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(torch.cat(outs, 1), full, **tolerance)


@pytest.mark.parametrize("bias", ["simple", "rotary"])
@pytest.mark.parametrize("chunk", [4, -1])
def test_flat_steps_follow_the_parameters(bias, chunk):
    """A decoding reads the parameters once, at its first step; a decoding after the parameters changed (in
    place, as an optimizer changes them) computes with the new ones, across a chunk boundary."""
    torch.manual_seed(4)
    stack = _stack(rel_pos_bias=bias, chunk_size=chunk, cross_attention=True)
    memory = torch.randn(2, 3, 8, dtype=torch.float64)
    x = torch.randn(2, 9, 8, dtype=torch.float64)

    def decode():
        state = {}
        return torch.cat([stack(x[:, t:t + 1], memory=memory, incremental_state=state).out for t in range(9)], 1)

    with torch.no_grad():
        before = decode()
        torch.testing.assert_close(before, stack(x, memory=memory).out)
        for parameter in stack.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
        after = decode()
        torch.testing.assert_close(after, stack(x, memory=memory).out)
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize("norm,chunk,bias", [("scalenorm", 4, "simple"), ("layernorm", 4, "rotary"),
                                             ("scalenorm", -1, "simple"), ("rmsnorm", -1, "rotary")])
@pytest.mark.parametrize("device", DEVICES)
def test_flat_steps_are_the_layers_steps_bit_for_bit(norm, chunk, bias, device):
    """The same ops as the layers' incremental path, so the same float32 values, not only close ones: a
    decoding across two chunk boundaries (or buffer growths) and a beam reordering, with cross-attention, with the
    flat step and without it."""
    torch.manual_seed(5)
    stack = _stack(torch.float32, normalization_type=norm, cross_attention=True, chunk_size=chunk, rel_pos_bias=bias,
                   device=device)
    x, memory = torch.randn(3, 11, 8, device=device), torch.randn(3, 4, 8, device=device)
    order = torch.tensor([1, 1, 0, 2], device=device)

    def decode():
        state, outs = {}, []
        with torch.no_grad():
            for t in range(11):
                if t == 6:
                    _reorder(stack, state, order)
                rows = order if t >= 6 else torch.arange(3, device=device)
                outs.append(stack(x[rows, t:t + 1], memory=memory[rows], incremental_state=state).out)
        return torch.cat([o[:3] for o in outs], 1)

    with _counting_steps() as steps:
        flat = decode()
    assert steps.call_count == 2 * _flat_steps(chunk, 10) > 0
    with mock.patch.object(decoding, "supports", return_value=False), _counting_steps() as steps:
        layers = decode()
    assert steps.call_count == 0
    assert torch.equal(flat, layers)


@pytest.mark.parametrize("chunk", [4, -1])
@pytest.mark.parametrize("device", DEVICES)
def test_right_padded_steps_run_flat(chunk, device):
    """A right-padded batch (sequences ending at 10, 7 and 4 positions, as a decoder's collated targets): the
    padded steps run flat too, hiding the padding from the EMA and zeroing it in the output as the layers do: bit
    for bit the layers' outputs and kept EMA states, and the full forward's outputs."""
    torch.manual_seed(6)
    stack = _stack(torch.float32, chunk_size=chunk, cross_attention=True, device=device)
    x, memory = torch.randn(3, 10, 8, device=device), torch.randn(3, 4, 8, device=device)
    padding = torch.arange(10, device=device) >= torch.tensor([10, 7, 4], device=device).unsqueeze(1)

    def decode():
        state = {}
        with torch.no_grad():
            out = torch.cat([stack(x[:, t:t + 1], padding[:, t:t + 1], memory=memory, incremental_state=state,
                                   right_padded=True).out for t in range(10)], 1)
        return out, [state[layer.mega_layer.move._state_key()]["ema_state"] for layer in stack.layers]

    with _counting_steps() as steps:
        flat, flat_states = decode()
    assert steps.call_count == 2 * _flat_steps(chunk, 9) > 0
    with mock.patch.object(decoding, "supports", return_value=False), _counting_steps() as steps:
        layers, layers_states = decode()
    assert steps.call_count == 0
    assert torch.equal(flat, layers)
    assert all(torch.equal(a, b) for a, b in zip(flat_states, layers_states))
    with torch.no_grad():
        full = stack(x, padding, memory=memory, right_padded=True).out
    torch.testing.assert_close(flat, full, rtol=1e-5, atol=1e-5)
    assert not flat[padding].any()
