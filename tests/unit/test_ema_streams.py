"""The EMA's recurrent mode (``step``) and stream mode (``forward_incremental``) against plain
float64 references: outputs, carried states, gradients, memory, and truncation."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from mega_fairseq.modules import MegaLayer, MegaLayerConfig, MultiDimensionalDampedEMA, ema_reference

DTYPE = torch.float64


def randn(*shape, **kwargs):
    return torch.randn(*shape, dtype=DTYPE, **kwargs)


def _padding(length, lengths):
    return torch.arange(length).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)


def recurrence(ema, x, state=None, padding_mask=None):
    """The paper's recurrence, one step at a time, from ``state``: (output B x L x D, final state B x D x N)."""
    in_weight, q, _, out_weight = (t.to(x.dtype) for t in ema.coefficients())
    signal = x if padding_mask is None else x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
    h = x.new_zeros(x.size(0), ema.embed_dim, ema.ndim) if state is None else state
    outs = []
    for t in range(x.size(1)):
        h = in_weight * signal[:, t].unsqueeze(-1) + q * h
        outs.append((h * out_weight).sum(-1))
    return F.silu(torch.stack(outs, dim=1) + x * ema.omega.to(x.dtype)), h


# ---------------------------------------------------------------- multi-token step (blocked powers)

@pytest.mark.parametrize("length", [2, 3, 4, 5, 10, 16, 17, 50])
@pytest.mark.parametrize("masked", [False, True])
def test_step_from_a_carried_state_matches_recurrence(length, masked):
    torch.manual_seed(length)
    ema = MultiDimensionalDampedEMA(5, ndim=3).to(DTYPE)
    x = randn(2, length, 5, requires_grad=True)
    state = randn(2, 5, 3, requires_grad=True)
    mask = _padding(length, [length, length // 2]) if masked else None
    out, new_state = ema.step(x, state, mask)
    ref_out, ref_state = recurrence(ema, x, state, mask)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(new_state, ref_state, rtol=1e-10, atol=1e-10)
    # gradients of the input, the incoming state and every parameter, through outputs and new state
    g_out, g_state = randn(*out.shape), randn(*new_state.shape)
    inputs = [x, state] + list(ema.parameters())
    fast = torch.autograd.grad((out * g_out).sum() + (new_state * g_state).sum(), inputs)
    slow = torch.autograd.grad((ref_out * g_out).sum() + (ref_state * g_state).sum(), inputs)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_step_in_uneven_pieces_matches_forward():
    torch.manual_seed(0)
    ema = MultiDimensionalDampedEMA(4, ndim=5).to(DTYPE)
    x = randn(3, 120, 4)
    outs, state = [], None
    for piece in torch.split(x, [37, 1, 64, 2, 16], dim=1):
        out, state = ema.step(piece, state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), ema(x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(torch.cat(outs, 1), ema_reference(ema, x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, recurrence(ema, x)[1], rtol=1e-10, atol=1e-10)


class LargestAllocation(TorchDispatchMode):
    """Records the largest storage (bytes) any op allocates for its outputs.

    tracemalloc does not see torch's allocator; counting storages rather than shapes keeps
    views and expanded tensors (which allocate nothing) from being counted at their full size.
    """

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


def _largest_step_allocation(ema, length, dim):
    x, state = randn(1, length, dim), randn(1, dim, ema.ndim)
    with torch.no_grad(), LargestAllocation() as mode:
        ema.step(x, state)
    return mode.largest


def test_step_memory_is_sublinear_in_the_segment_length():
    # D x N large, B = 1 and D small: the D x N-dependent intermediates dominate the B x L x D ones.
    dim, ndim = 4, 512
    ema = MultiDimensionalDampedEMA(dim, ndim=ndim).to(DTYPE)
    short, long = 512, 2048
    small, large = _largest_step_allocation(ema, short, dim), _largest_step_allocation(ema, long, dim)
    full_powers = dim * ndim * long * 8  # a D x N x L float64 tensor
    assert large < full_powers / 16, (large, full_powers)
    # quadrupling L: ~doubles the D x N x sqrt(L) blocks (a D x N x L tensor would quadruple)
    assert large < 2.5 * small, (small, large)


# ---------------------------------------------------------------- truncation in stream / incremental mode

def _run_incremental(ema, x, pieces, padding_mask=None, state=None):
    state = {} if state is None else state
    outs, start = [], 0
    for size in pieces:
        mask = None if padding_mask is None else padding_mask[:, start:start + size]
        outs.append(ema.forward_incremental(x[:, start:start + size], state, mask))
        start += size
    assert start == x.size(1)
    return torch.cat(outs, 1), state


TRUNCATED_PIECES = [[1] * 40, [3, 10, 1, 20, 6], [40], [25, 15], [9, 9, 1, 1, 12, 8], [2, 30, 8]]


@pytest.mark.parametrize("pieces", TRUNCATED_PIECES)
def test_truncated_incremental_matches_one_truncated_forward(pieces):
    torch.manual_seed(0)
    ema = MultiDimensionalDampedEMA(5, ndim=3, truncation=7).to(DTYPE)
    x = randn(2, 40, 5)
    full = ema(x)
    torch.testing.assert_close(full, ema_reference(ema, x), rtol=1e-10, atol=1e-10)  # forward truncates
    out, _ = _run_incremental(ema, x, pieces)
    torch.testing.assert_close(out, full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pieces", [[1] * 40, [3, 10, 1, 20, 6], [25, 15], [2, 30, 8]])
def test_truncated_incremental_with_padding_on_the_last_piece(pieces):
    torch.manual_seed(1)
    ema = MultiDimensionalDampedEMA(5, ndim=3, truncation=7).to(DTYPE)
    x = randn(3, 40, 5)
    mask = _padding(40, [40, 36, 33])  # padding only inside the last piece (the last one may be 1 token)
    mask[:, :40 - pieces[-1]] = False
    full = ema(x, mask)
    torch.testing.assert_close(full, ema_reference(ema, x, mask), rtol=1e-10, atol=1e-10)
    out, _ = _run_incremental(ema, x, pieces, mask)
    torch.testing.assert_close(out, full, rtol=1e-10, atol=1e-10)


def test_truncated_incremental_gradients_match_forward():
    torch.manual_seed(2)
    ema = MultiDimensionalDampedEMA(4, ndim=3, truncation=6).to(DTYPE)
    x = randn(2, 30, 4, requires_grad=True)
    grad = randn(2, 30, 4)
    inputs = [x] + list(ema.parameters())
    for pieces in ([1] * 30, [4, 13, 1, 12]):
        out, _ = _run_incremental(ema, x, pieces)
        fast = torch.autograd.grad(out, inputs, grad)
        slow = torch.autograd.grad(ema_reference(ema, x), inputs, grad)
        for a, b in zip(fast, slow):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("truncation", [1, 2, 39, 40, 100])
def test_truncated_incremental_edge_truncations(truncation):
    torch.manual_seed(3)
    ema = MultiDimensionalDampedEMA(3, ndim=2, truncation=truncation).to(DTYPE)
    x = randn(2, 40, 3)
    full = ema(x)
    torch.testing.assert_close(full, ema_reference(ema, x), rtol=1e-10, atol=1e-10)
    for pieces in ([1] * 40, [5, 1, 34], [40]):
        out, _ = _run_incremental(ema, x, pieces)
        torch.testing.assert_close(out, full, rtol=1e-10, atol=1e-10)


def test_truncated_incremental_state_is_bounded_and_reorderable():
    torch.manual_seed(4)
    ema = MultiDimensionalDampedEMA(5, ndim=3, truncation=7).to(DTYPE)
    x = randn(3, 30, 5)
    state = {}
    _run_incremental(ema, x[:, :20], [3, 1, 16], state=state)
    saved = ema.get_incremental_state(state)
    for value in saved.values():  # beam search index_selects dim 0 of everything kept
        assert isinstance(value, torch.Tensor) and value.size(0) == 3
    assert sum(v.numel() for v in saved.values()) <= 3 * 6 * 5  # B x (truncation - 1) x D
    order = torch.tensor([2, 0, 0])
    ema.reorder_incremental_state(state, order)
    out, _ = _run_incremental(ema, x[order, 20:], [1, 9], state=state)
    torch.testing.assert_close(out, ema(x[order])[:, 20:], rtol=1e-10, atol=1e-10)


def test_truncated_layer_incremental_equals_full():
    torch.manual_seed(5)
    config = MegaLayerConfig(embed_dim=8, z_dim=6, hidden_dim=10, ffn_embed_dim=12, n_dim=3, max_positions=64,
                             dropout=0.0, normalize_before=True, truncation_length=5, chunk_size=-1)
    layer = MegaLayer(config, causal=True).to(DTYPE).eval()
    x = randn(2, 17, 8)
    full, _ = layer(x)
    for pieces in ([1] * 17, [6, 1, 10], [12, 5]):
        state, outs = {}, []
        for piece in torch.split(x, pieces, dim=1):
            out, _ = layer(piece, incremental_state=state)
            outs.append(out)
        torch.testing.assert_close(torch.cat(outs, 1), full)


def test_untruncated_incremental_keeps_the_recurrent_state():
    torch.manual_seed(6)
    ema = MultiDimensionalDampedEMA(5, ndim=3).to(DTYPE)
    x = randn(2, 30, 5)
    out, state = _run_incremental(ema, x, [1, 12, 17])
    torch.testing.assert_close(out, ema(x), rtol=1e-10, atol=1e-10)
    saved = ema.get_incremental_state(state)
    assert set(saved) == {"ema_state"} and saved["ema_state"].shape == (2, 5, 3)
