"""Our layers against the official Mega math, executed by the transformers port.

`transformers` (< 4.41) ships `MegaBlock`, whose outputs equal the official fairseq-fork code
bit for bit. Its weights are renamed to the official names, converted with our checkpoint
converter, and both implementations run on the same inputs.
"""

import itertools

import pytest
import torch

from mega_fairseq.models.official_names import convert_official_state_dict
from mega_fairseq.modules import MegaLayer, MegaLayerConfig

# transformers < 4.41 ships the port (make install installs it)
modeling_mega = pytest.importorskip("transformers.models.mega.modeling_mega")

# transformers' names -> the official fairseq-fork names
HF_TO_OFFICIAL = {
    "ema_gate.damping_factor": "move.delta",  # multiplies beta: the paper's alpha
    "ema_gate.decay_factor": "move.alpha",  # the paper's damping delta
    "ema_gate.ema_expansion_matrix": "move.beta",
    "ema_gate.kernel_projection_matrix": "move.gamma",
    "ema_gate.residual_weight": "move.omega",
    "qk_weight": "gamma",
    "qk_bias": "beta",
    "rel_pos_bias.b_param": "rel_pos_bias.beta",
}


def official_names(state):
    renamed = {}
    for name, value in state.items():
        for hf, official in HF_TO_OFFICIAL.items():
            if name.endswith("mega_layer." + hf):
                name = name[: -len(hf)] + official
        renamed[name] = value
    return renamed


CASES = list(itertools.product(
    [False, True],  # causal
    [-1, 4],  # chunk size
    ["softmax", "laplace", "relu2"],
    ["simple", "rotary"],
    # (rmsnorm is left out: the transformers port drops its normalisation, a bug of the port)
    [("layernorm", True), ("scalenorm", False), ("batchnorm", True)],
))


@pytest.mark.parametrize("causal,chunk,function,bias,norm", CASES)
def test_layer_matches_official(causal, chunk, function, bias, norm):
    norm_type, prenorm = norm
    torch.manual_seed(0)
    config = modeling_mega.MegaConfig(
        hidden_size=8, shared_representation_size=6, intermediate_size=10, ema_projection_size=3,
        nffn_hidden_size=12, use_normalized_ffn=True, bidirectional=not causal, use_chunking=chunk > 0,
        chunk_size=chunk, max_positions=32, relative_positional_bias=bias, attention_activation=function,
        normalization_type=norm_type, normalize_before_mega=prenorm, normalize_before_ffn=prenorm,
        truncation=None, dropout_prob=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        nffn_activation_dropout_prob=0.0, is_decoder=causal)
    reference = modeling_mega.MegaBlock(config).double().eval()
    with torch.no_grad():  # untrained EMA/attention parameters are near-degenerate: randomise them
        for parameter in reference.parameters():
            parameter.normal_(0.0, 0.5)

    ours = MegaLayer(MegaLayerConfig(embed_dim=8, z_dim=6, hidden_dim=10, ffn_embed_dim=12, n_dim=3, chunk_size=chunk,
                                     attention_activation_fn=function, rel_pos_bias=bias, normalization_type=norm_type,
                                     normalize_before=prenorm, max_positions=32, dropout=0.0),
                     causal=causal).double().eval()
    state = convert_official_state_dict(official_names(reference.state_dict()))
    table = "mega_layer.rel_pos_bias.rel_pos_bias"
    if table in state:  # transformers allocates 2*max_positions-1 weights and uses the first 2*c-1
        state[table] = state[table][: ours.state_dict()[table].numel()]
    ours.load_state_dict(state)

    for length in (12, 11):  # 11: not a multiple of the chunk, our layer pads itself
        x = torch.randn(length, 2, 8, dtype=torch.float64)  # time first, as the official code
        keep = torch.ones(2, length, dtype=torch.long)
        keep[1, length - 3:] = 0  # right padding of the second example
        actual, _ = ours(x.transpose(0, 1), keep.eq(0))
        expected = official(reference, x, keep, causal, chunk)
        valid = keep.bool()
        torch.testing.assert_close(actual[valid], expected[valid], rtol=0, atol=TOLERANCE)


TOLERANCE = 1e-6  # the official EMA runs its FFT in float32 (measured: up to 7.3e-7)


def official(reference, x, keep, causal, chunk):
    """The official layer on x (L x B x D), padded at the end to whole chunks as its callers must;
    a decoder is given no padding mask (its causal mask keeps the valid positions from seeing the
    padding, so their outputs are what they would be alone)."""
    length = x.size(0)
    block = chunk if chunk > 0 else length
    pad = -length % block
    x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad))
    keep = torch.nn.functional.pad(keep, (0, pad))
    causal_mask = torch.tril(torch.ones(block, block, dtype=torch.long)) if causal else None
    with torch.no_grad():
        if causal:
            out = reference(x, causal_mask=causal_mask)[0]
        else:
            out = reference(x, attention_mask=keep)[0]
    return out.transpose(0, 1)[:, :length]
