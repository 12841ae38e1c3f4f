"""Fused softmax attention, the dispatch of CUDA (torch's scaled_dot_product_attention), run here
on CPU: what it passes to SDPA and keeps for the backward pass, against the explicit path and
the explicit weights in float64 (outputs and q, k, v, bias gradients)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from mega_fairseq.modules import MegaLayerConfig, attention
from mega_fairseq.modules.attention import attend, attention_weights
from mega_fairseq.modules.cross_attention import GatedCrossAttention
from mega_fairseq.modules.gated_attention import MovingAverageGatedAttention

DTYPE = torch.float64
_SDPA = F.scaled_dot_product_attention


def storage_elements(tensor):
    return tensor.untyped_storage().nbytes() // tensor.element_size()


class SdpaCalls(list):
    """Stands in for F.scaled_dot_product_attention and records each call's arguments. Its own
    saved tensors (on CPU, the math kernel's weights) are hidden from outer saved-tensor hooks:
    ``kept`` lists instead what torch's memory-efficient CUDA kernel keeps for the backward pass
    (query, key, value, mask, output)."""

    def __call__(self, q, k, v, attn_mask=None, **kwargs):
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            out = _SDPA(q, k, v, attn_mask=attn_mask, **kwargs)
        self.append(dict(q=q, k=k, v=v, mask=attn_mask, out=out))
        return out

    def kept(self):
        return [t for call in self for t in call.values() if t is not None]


@pytest.fixture
def sdpa_calls(monkeypatch):
    calls = SdpaCalls()
    monkeypatch.setattr(F, "scaled_dot_product_attention", calls)
    return calls


def key_padding(lengths, length, side):
    """B x length bool, True at padding, after (right) or before (left) each length."""
    positions = torch.arange(length)
    lengths = torch.tensor(lengths).unsqueeze(-1)
    return positions >= lengths if side == "right" else positions < length - lengths


# ----------------------------------------------------------------------------------------------
# attend: the fused paths against the explicit path and the explicit weights
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout,causal,padding", itertools.product(["full", "chunked"], [False, True],
                                                                    [None, "right", "left"]))
def test_fused_masks_match_the_explicit_path(layout, causal, padding):
    """The padding feature, the explicit mask and the default against softmax over the explicit
    weights; full attention on B x L x z inputs (3-D, as cross-attention passes them), chunked
    on B x nc x c x z. One example is mostly padding: one of its chunks holds padding only."""
    torch.manual_seed(0)
    shape = (3, 12) if layout == "full" else (3, 3, 4)
    queries = shape[-1]
    q, k = (torch.randn(*shape, 6, dtype=DTYPE, requires_grad=True) for _ in range(2))
    v = torch.randn(*shape, 5, dtype=DTYPE, requires_grad=True)
    bias = torch.randn(queries, queries, dtype=DTYPE, requires_grad=True)
    causal_mask = torch.arange(queries).unsqueeze(-1) >= torch.arange(queries) if causal else None
    visible = None
    if padding:
        visible = ~key_padding([12, 7, 3], 12, padding).view(*shape[:-1], 1, queries)
    combined = causal_mask if visible is None else visible if causal_mask is None else visible & causal_mask
    weights = attention_weights(q, k, function="softmax", bias=bias, visible=combined, scaling=0.4)
    reference = weights @ v
    # a query that sees no key (causal, behind left padding) is padding: its output is never read
    seen = torch.ones(*shape, 1, dtype=torch.bool) if combined is None else combined.any(-1, keepdim=True)
    grad = torch.randn_like(reference) * seen
    expected = torch.autograd.grad(reference, [q, k, v, bias], grad)
    for mode in attention.MASK_MODES:
        out, _ = attend(q, k, v, function="softmax", bias=bias, visible=visible, causal=causal_mask, scaling=0.4,
                        mask_mode=mode)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out * seen, reference * seen)
        for a, b in zip(torch.autograd.grad(out, [q, k, v, bias], grad), expected):
            torch.testing.assert_close(a, b)


def test_padding_feature_widens_q_and_k_to_an_aligned_width(sdpa_calls):
    q, k, v = torch.randn(2, 5, 6), torch.randn(2, 7, 6), torch.randn(2, 7, 3)
    visible = torch.arange(7) < torch.tensor([[7], [4]]).unsqueeze(1)  # B x 1 x K
    attend(q, k, v, function="softmax", bias=torch.randn(5, 7), visible=visible, scaling=0.5, mask_mode="features")
    call, = sdpa_calls
    assert call["q"].shape == (2, 1, 5, 8) and call["k"].shape == (2, 1, 7, 8)  # 6 columns + 2, in 4-D
    assert call["mask"].shape == (5, 7)  # the bias alone, broadcast by SDPA


def test_incremental_step_keeps_the_small_explicit_mask(sdpa_calls):
    """One query against a few keys: the explicit mask (B x 1 x K) is smaller than the feature."""
    q, k, v = torch.randn(2, 1, 1, 6), torch.randn(2, 1, 9, 6), torch.randn(2, 1, 9, 3)
    visible = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    attend(q, k, v, function="softmax", bias=torch.randn(1, 9), visible=visible, scaling=0.5)
    assert sdpa_calls[0]["q"].size(-1) == 6 and sdpa_calls[0]["mask"].shape == (2, 1, 1, 9)


def test_bias_gradient_of_the_fused_kernel_stays_under_its_budget(sdpa_calls, monkeypatch):
    """The memory-efficient backward allocates the bias gradient at the size of the mask broadcast
    to every entry (B x H x Q x K, keys rounded up to 16): queries run in blocks of rows that keep
    it under ``_BIAS_GRAD_BYTES``, with the outputs and gradients of a single call."""
    torch.manual_seed(0)
    q, k = (torch.randn(3, 2, 10, 6, dtype=DTYPE, requires_grad=True) for _ in range(2))
    v = torch.randn(3, 2, 10, 4, dtype=DTYPE, requires_grad=True)
    bias = torch.randn(10, 10, dtype=DTYPE, requires_grad=True)
    visible = torch.rand(3, 2, 1, 10) > 0.2
    causal = torch.arange(10).unsqueeze(-1) >= torch.arange(10)

    def run():
        out, _ = attend(q, k, v, function="softmax", bias=bias, visible=visible, causal=causal, scaling=0.4)
        return out, torch.autograd.grad(out.square().sum(), [q, k, v, bias])

    whole, whole_grads = run()
    budget = 3 * 3 * 2 * 16 * 8  # three rows of 3 x 2 entries, 16 keys, float64
    monkeypatch.setattr(attention, "_BIAS_GRAD_BYTES", budget, raising=False)
    sdpa_calls.clear()
    blocked, blocked_grads = run()
    assert len(sdpa_calls) == 4  # rows 0-2, 3-5, 6-8, 9
    for call in sdpa_calls:
        assert call["mask"].requires_grad
        assert 3 * 2 * call["q"].size(-2) * 16 * 8 <= budget
    torch.testing.assert_close(blocked, whole)
    for a, b in zip(blocked_grads, whole_grads):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------------------------
# Layers on the fused dispatch
# ----------------------------------------------------------------------------------------------

def _layer(causal, chunk, **sizes):
    options = dict(embed_dim=4, z_dim=4, hidden_dim=4, n_dim=2, ffn_embed_dim=0, chunk_size=chunk, dropout=0.0,
                   max_positions=128)
    options.update(sizes)
    torch.manual_seed(0)
    return MovingAverageGatedAttention(MegaLayerConfig(**options), causal=causal)


@pytest.mark.parametrize("causal,padding,chunk", [(False, "right", -1), (False, "right", 48), (True, "right", -1),
                                                  (True, "left", -1), (True, "left", 48)])
def test_fused_path_keeps_nothing_score_sized(causal, padding, chunk, sdpa_calls, monkeypatch):
    """What the layer saves for the backward pass, and what SDPA's memory-efficient kernel keeps of
    its arguments, holds far fewer elements than the scores (B x L x c; c = L for full attention):
    the causal mask is folded into the shared c x c bias, key padding is a column of q and k,
    and a right-padded causal layer drops it. (The explicit path kept a B x nc x c x c mask.)"""
    monkeypatch.setattr(attention, "uses_cpu_kernel", lambda device: False)
    bsz, length = 4, 96
    layer = _layer(causal, chunk)
    x = torch.randn(bsz, length, 4, requires_grad=True)
    mask = key_padding([96, 50, 20, 5], length, padding)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out, _ = layer(x, mask, right_padded=padding == "right")
    scores = bsz * length * (chunk if chunk > 0 else length)
    largest = max(storage_elements(t) for t in saved + sdpa_calls.kept())
    assert largest < scores / 2, (largest, scores)
    dropped = causal and padding == "right"
    assert all(call["q"].size(-1) == (4 if dropped else 8) for call in sdpa_calls)  # z, or z + the feature
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("causal,chunk,padding", [(False, -1, "right"), (False, 4, "left"), (False, 4, None),
                                                  (True, -1, "right"), (True, 4, "right"), (True, -1, "left"),
                                                  (True, 4, None)])
def test_fused_layer_matches_the_cpu_kernel_and_the_explicit_weights(causal, chunk, padding, monkeypatch):
    """The dispatch of CUDA (fused attention on whole chunks, default and explicit masks) against
    the CPU blocked kernel and the explicit weights (need_weights): outputs at real positions and
    gradients of a loss over them. A right-padded causal layer drops its padding mask."""
    layer = _layer(causal, chunk, embed_dim=8, z_dim=6, hidden_dim=10, n_dim=3, max_positions=32).to(DTYPE)
    x = torch.randn(2, 13, 8, dtype=DTYPE, requires_grad=True)
    mask = key_padding([13, 6], 13, padding) if padding else None
    real = torch.ones(2, 13, 1, dtype=torch.bool) if mask is None else ~mask.unsqueeze(-1)
    params = [x] + list(layer.parameters())

    def run(need_weights=False, mask_mode="auto", right_padded=False):
        layer.mask_mode = mask_mode
        out, _ = layer(x, mask, need_weights=need_weights, right_padded=right_padded)
        assert torch.isfinite(out).all()
        out = out * real
        return out, torch.autograd.grad(out.square().sum(), params)

    reference, reference_grads = run(need_weights=True)  # explicit weights
    results = [run(right_padded=right_padded) for right_padded in {False, padding == "right"}]  # the CPU kernel
    monkeypatch.setattr(attention, "uses_cpu_kernel", lambda device: False)
    results += [run(mask_mode=mode, right_padded=right_padded) for mode in ("auto", "explicit")
                for right_padded in {False, padding == "right"}]
    for out, grads in results:
        torch.testing.assert_close(out, reference)
        for a, b in zip(grads, reference_grads):
            torch.testing.assert_close(a, b)


def test_cross_attention_gives_sdpa_4d_inputs(sdpa_calls):
    """Every fused SDPA kernel takes only 4-D inputs: decoder queries B x L x z over encoder keys
    B x S x z reach it as B x 1 x L x z, and the result equals the explicit weights'."""
    cfg = MegaLayerConfig(embed_dim=8, z_dim=8, hidden_dim=8, n_dim=2, dropout=0.0, max_positions=16)
    torch.manual_seed(0)
    block = GatedCrossAttention(cfg).to(DTYPE).eval()
    query, memory = torch.randn(3, 5, 8, dtype=DTYPE), torch.randn(3, 7, 8, dtype=DTYPE)
    memory_padding = key_padding([7, 4, 1], 7, "right")
    fused, _ = block(query, memory, memory_padding)
    explicit, weights = block(query, memory, memory_padding, need_weights=True)
    assert [call["q"].dim() for call in sdpa_calls] == [4]
    assert all(call[name].size(1) == 1 for call in sdpa_calls for name in ("q", "k", "v"))
    assert weights is not None
    torch.testing.assert_close(fused, explicit)
