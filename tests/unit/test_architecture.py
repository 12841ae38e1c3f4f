"""The shared parts every model family is built from: MegaStack, the encoder and its output
contract, embeddings, pooling, and the layer config that all of them take."""

import dataclasses

import pytest
import torch

from mega_fairseq.modules import (MegaLayer, MegaLayerConfig, MegaStack, RealValuedEmbedding, TokenEmbedding,
                                  pool)

DTYPE = torch.float64


def config(**kwargs):
    options = dict(layers=2, embed_dim=8, z_dim=6, hidden_dim=10, ffn_embed_dim=12, n_dim=3, max_positions=64,
                   dropout=0.0, normalize_before=True, chunk_size=4)
    options.update(kwargs)
    return MegaLayerConfig(**options)


def padding(lengths, length):
    return torch.arange(length).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)


def test_stack_equals_its_layers_applied_in_turn():
    """An independent composition: each MegaLayer on the previous output, then the final norm."""
    torch.manual_seed(0)
    stack = MegaStack(config(), causal=False).to(DTYPE).eval()
    x = torch.randn(2, 9, 8, dtype=DTYPE)
    expected = x
    for layer in stack.layers:
        expected, _ = layer(expected)
    expected = stack.final_norm(expected)
    out = stack(x)
    torch.testing.assert_close(out.out, expected)
    assert len(out.inner_states) == 3 and out.inner_states[0] is x


def test_postnorm_stack_has_no_final_norm():
    assert MegaStack(config(normalize_before=False), causal=True).final_norm is None


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [-1, 4])
def test_stack_padded_batch_equals_each_alone(causal, chunk):
    torch.manual_seed(0)
    stack = MegaStack(config(chunk_size=chunk), causal=causal).to(DTYPE).eval()
    lengths = [11, 5, 8]
    x = torch.randn(3, 11, 8, dtype=DTYPE)
    batched = stack(x, padding(lengths, 11)).out
    for i, n in enumerate(lengths):
        torch.testing.assert_close(batched[i, :n], stack(x[i:i + 1, :n]).out[0])
        assert (batched[i, n:] == 0).all()


def test_decoder_stack_with_cross_attention_decodes_incrementally():
    torch.manual_seed(0)
    encoder = MegaStack(config(), causal=False).to(DTYPE).eval()
    decoder = MegaStack(config(), causal=True, cross_attention=True).to(DTYPE).eval()
    source_mask = padding([7, 4], 7)
    memory = encoder(torch.randn(2, 7, 8, dtype=DTYPE), source_mask).out
    target = torch.randn(2, 10, 8, dtype=DTYPE)
    full = decoder(target, memory=memory, memory_padding_mask=source_mask).out
    state, steps = {}, []
    for t in range(10):
        steps.append(decoder(target[:, t:t + 1], memory=memory, memory_padding_mask=source_mask,
                             incremental_state=state).out)
    torch.testing.assert_close(torch.cat(steps, 1), full)
    with pytest.raises(ValueError, match="needs the encoder output"):
        decoder(target)


def test_every_module_takes_the_one_config():
    cfg = config(attention_activation_fn="laplace", rel_pos_bias="rotary", normalization_type="scalenorm",
                 feature_dropout=True, dropout=0.2, truncation_length=5)
    layer = MegaLayer(cfg, causal=True, cross_attention=True)
    attention, cross, ffn = layer.mega_layer, layer.cross_attn, layer.nffn
    assert attention.attention_activation == cross.attention_activation == "laplace"
    assert attention.move.truncation == 5 and attention.chunk_size == 4
    assert type(attention.rel_pos_bias).__name__ == type(cross.rel_pos_bias).__name__ == "RotaryRelativePositionalBias"
    assert all(m.norm.norm_type == "scalenorm" for m in (attention, cross, ffn))
    assert all(type(m.dropout).__name__ == "FeatureDropout" and m.dropout.p == 0.2 for m in (attention, cross, ffn))
    assert MegaLayerConfig(truncation_length=0).truncation is None  # the official recipes' "no truncation"


def test_each_dropout_module_is_named_after_its_option():
    layer = MegaLayer(config(dropout=0.1, attention_dropout=0.2, hidden_dropout=0.3, activation_dropout=0.4),
                      causal=True, cross_attention=True)
    attention, cross, ffn = layer.mega_layer, layer.cross_attn, layer.nffn
    assert attention.attention_dropout == cross.attention_dropout == 0.2  # on the attention weights
    assert attention.hidden_dropout.p == cross.hidden_dropout.p == 0.3  # on the attention values
    assert ffn.activation_dropout.p == 0.4  # inside the FFN
    assert all(m.dropout.p == 0.1 for m in (attention, cross, ffn))


def test_layer_options_are_declared_once():
    """The fairseq model config is derived from MegaLayerConfig: its layer fields carry the same
    names (per-stack ones prefixed) and help texts."""
    from mega_fairseq.models.mega_config import option_names
    from mega_fairseq.models.mega_lm import MegaLMConfig

    lm_fields = {f.name: f for f in dataclasses.fields(MegaLMConfig)}
    for layer_field in dataclasses.fields(MegaLayerConfig):
        if layer_field.name in ("max_positions", "max_source_positions"):
            continue
        name = option_names("decoder")[layer_field.name]
        assert lm_fields[name].metadata["help"].startswith(layer_field.metadata["help"]), name


def test_base_presets_start_from_the_layer_defaults():
    """Each family's base preset is MegaLayerConfig's defaults plus what it changes: a default
    changed in modules/config.py reaches every base preset (the classifier's base is narrower)."""
    from mega_fairseq.models.mega_classifier import CLASSIFIER_PRESETS
    from mega_fairseq.models.mega_config import layer_defaults
    from mega_fairseq.models.mega_lm import LM_PRESETS
    from mega_fairseq.models.mega_translation import MT_PRESETS

    defaults = MegaLayerConfig()
    lm = layer_defaults(["decoder"])
    assert (lm["decoder_z_dim"], lm["dropout"], lm["truncation_length"]) == (defaults.z_dim, defaults.dropout, 0)
    assert LM_PRESETS.explicit("mega_lm").items() >= lm.items()
    assert MT_PRESETS.explicit("mega") == layer_defaults(["encoder", "decoder"])
    classifier = CLASSIFIER_PRESETS.explicit("mega_classifier")
    changed = {name for name, value in layer_defaults(["encoder"]).items() if classifier[name] != value}
    assert changed == {"encoder_embed_dim", "encoder_hidden_dim", "encoder_z_dim", "truncation_length"}


def test_token_embedding_scales_projects_and_normalises():
    torch.manual_seed(0)
    table = torch.nn.Embedding(20, 6, padding_idx=1)
    embedding = TokenEmbedding(table, 8, input_dim=6, scale=True, norm_type="layernorm").eval()
    tokens = torch.tensor([[3, 4, 1]])
    expected = torch.nn.functional.layer_norm(embedding.project_in_dim(8 ** 0.5 * table.weight[tokens]), (8,),
                                              embedding.norm.norm.weight, embedding.norm.norm.bias)
    torch.testing.assert_close(embedding(tokens), expected)
    plain = TokenEmbedding(torch.nn.Embedding(20, 8), 8, input_dim=8, scale=False)
    assert plain.project_in_dim is None and plain.norm is None
    torch.testing.assert_close(plain(tokens), plain.embed_tokens.weight[tokens])


def test_real_valued_embedding_is_value_times_vector_plus_bias():
    torch.manual_seed(0)
    embedding = RealValuedEmbedding(5).eval()
    values = torch.tensor([[0.0, 0.5, -2.0]])
    for t in range(3):
        torch.testing.assert_close(embedding(values)[0, t], values[0, t] * embedding.weight + embedding.bias)


def test_pooling():
    x = torch.randn(3, 6, 4, dtype=DTYPE)
    mask = padding([6, 2, 4], 6)
    mean = pool("mean", x, mask)
    for i, n in enumerate([6, 2, 4]):
        torch.testing.assert_close(mean[i], x[i, :n].mean(0))
    torch.testing.assert_close(pool("mean", x), x.mean(1))
    torch.testing.assert_close(pool("first", x, mask), x[:, 0])
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool("max", x)


@pytest.fixture(scope="module")
def tiny_dictionary():
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(30):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def encoder_and_decoder(dictionary):
    from mega_fairseq.models.mega_decoder import MegaDecoder
    from mega_fairseq.models.mega_encoder import MegaEncoder

    def embedding():
        return TokenEmbedding(torch.nn.Embedding(len(dictionary), 8, padding_idx=dictionary.pad()), 8, input_dim=8)

    encoder = MegaEncoder(dictionary, embedding(), MegaStack(config(), causal=False), padding_idx=dictionary.pad(),
                          max_source_positions=64)
    decoder_embedding = embedding()
    projection = torch.nn.Linear(8, len(dictionary), bias=False)
    decoder = MegaDecoder(dictionary, decoder_embedding, MegaStack(config(), causal=True, cross_attention=True),
                          output_projection=projection, adaptive_softmax=None, max_target_positions=64)
    return encoder.to(DTYPE).eval(), decoder.to(DTYPE).eval()


def test_encoder_output_contract_and_reordering(tiny_dictionary):
    torch.manual_seed(0)
    encoder, _ = encoder_and_decoder(tiny_dictionary)
    pad = tiny_dictionary.pad()
    tokens = torch.randint(4, 30, (3, 7))
    tokens[1, 5:] = pad
    out = encoder(tokens, torch.tensor([7, 5, 7]))
    assert out["encoder_out"][0].shape == (3, 7, 8)  # batch-first
    assert out["encoder_padding_mask"][0].tolist()[1] == [False] * 5 + [True] * 2
    assert (out["encoder_out"][0][1, 5:] == 0).all()
    torch.testing.assert_close(out["encoder_out"][0][1, :5], encoder(tokens[1:2, :5])["encoder_out"][0][0])
    assert not encoder(tokens[:1])["encoder_padding_mask"][0].any()  # nothing padded
    order = torch.tensor([2, 0, 0, 1])
    reordered = encoder.reorder_encoder_out(out, order)
    for key, values in out.items():
        for before, after in zip(values, reordered[key]):
            torch.testing.assert_close(after, before.index_select(0, order))
    with pytest.raises(ValueError, match="bidirectional"):
        type(encoder)(tiny_dictionary, encoder.embedding, MegaStack(config(), causal=True), padding_idx=pad,
                      max_source_positions=64)


@pytest.mark.parametrize("chunk", [-1, 3])
def test_left_and_right_padded_sources_equal_each_alone(tiny_dictionary, chunk):
    """fairseq left-pads translation sources: the encoder moves them to the left edge, so chunk
    boundaries and the EMA start where they would for the source alone."""
    from mega_fairseq.models.mega_encoder import MegaEncoder

    torch.manual_seed(0)
    pad = tiny_dictionary.pad()
    table = torch.nn.Embedding(len(tiny_dictionary), 8, padding_idx=pad)
    encoder = MegaEncoder(tiny_dictionary, TokenEmbedding(table, 8, input_dim=8),
                          MegaStack(config(chunk_size=chunk), causal=False), padding_idx=pad,
                          max_source_positions=64).to(DTYPE).eval()
    lengths = [8, 3, 6]
    sources = [torch.randint(4, 30, (n,)) for n in lengths]
    right = torch.full((3, 8), pad)
    left = torch.full((3, 8), pad)
    for i, (n, source) in enumerate(zip(lengths, sources)):
        right[i, :n] = source
        left[i, 8 - n:] = source
    for batch in (right, left):
        out = encoder(batch, torch.tensor(lengths))
        assert out["encoder_padding_mask"][0].tolist() == padding(lengths, 8).tolist()
        for i, (n, source) in enumerate(zip(lengths, sources)):
            alone = encoder(source.unsqueeze(0))["encoder_out"][0][0]
            torch.testing.assert_close(out["encoder_out"][0][i, :n], alone)


def test_decoder_reads_the_encoder_output_incrementally_with_beam_reordering(tiny_dictionary):
    torch.manual_seed(0)
    encoder, decoder = encoder_and_decoder(tiny_dictionary)
    source = torch.randint(4, 30, (2, 6))
    target = torch.randint(4, 30, (2, 9))
    memory = encoder(source)
    order = torch.tensor([1, 1, 0])
    full, _ = decoder(target[order], encoder.reorder_encoder_out(memory, order))
    state = {}
    decoder(target[:, :4], memory, incremental_state=state)
    decoder.reorder_incremental_state_scripting(state, order)
    memory = encoder.reorder_encoder_out(memory, order)
    steps = [decoder(target[order, :t + 1], memory, incremental_state=state)[0] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 4:])


def test_alignment_weights_are_in_the_source_order_alone_and_in_a_left_padded_batch(tiny_dictionary):
    """With need_attn (--print-alignment) the decoder returns the cross-attention weights of
    alignment_layer over the source as fairseq padded it: a left-padded sentence's weights are its
    weights alone, moved right, zero at padding; decoding step by step gives the same weights."""
    torch.manual_seed(0)
    encoder, decoder = encoder_and_decoder(tiny_dictionary)
    pad = tiny_dictionary.pad()
    lengths = [8, 3, 6]
    sources = [torch.randint(4, 30, (n,)) for n in lengths]
    left = torch.full((3, 8), pad)
    for i, (n, source) in enumerate(zip(lengths, sources)):
        left[i, 8 - n:] = source
    target = torch.randint(4, 30, (3, 5))
    memory = encoder(left, torch.tensor(lengths))
    assert decoder(target, memory)[1]["attn"] == [None]  # not asked for
    decoder.make_generation_fast_(need_attn=True)
    weights = decoder(target, memory)[1]["attn"][0]
    assert weights.shape == (3, 5, 8)
    for i, (n, source) in enumerate(zip(lengths, sources)):
        alone = decoder(target[i:i + 1], encoder(source.unsqueeze(0)))[1]["attn"][0][0]
        torch.testing.assert_close(weights[i, :, 8 - n:], alone)
        assert (weights[i, :, :8 - n] == 0).all()
        torch.testing.assert_close(alone.sum(-1), torch.ones(5, dtype=DTYPE))  # softmax rows
    state = {}
    steps = [decoder(target[:, :t + 1], memory, incremental_state=state)[1]["attn"][0] for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, 1), weights)
    decoder.alignment_layer = 0
    assert not torch.allclose(decoder(target, memory)[1]["attn"][0], weights)  # another layer's


def test_only_the_alignment_layer_forms_attention_weights(tiny_dictionary, monkeypatch):
    """Without need_attn no layer forms explicit weights (the fused kernels run); with it, only
    the cross-attention of alignment_layer does."""
    from mega_fairseq.modules import attention

    calls = []
    original = attention.attention_weights
    monkeypatch.setattr(attention, "attention_weights", lambda *a, **k: calls.append(1) or original(*a, **k))
    encoder, decoder = encoder_and_decoder(tiny_dictionary)
    source, target = torch.randint(4, 30, (2, 6)), torch.randint(4, 30, (2, 5))
    memory = encoder(source)
    calls.clear()
    decoder(target, memory)
    assert calls == []
    decoder.need_attn = True
    decoder(target, memory)
    assert calls == [1]


def test_alignment_layer_out_of_range_is_named(tiny_dictionary):
    from mega_fairseq.models.mega_decoder import MegaDecoder

    _, decoder = encoder_and_decoder(tiny_dictionary)
    with pytest.raises(ValueError, match="--alignment-layer 2 is not a layer of this 2-layer decoder"):
        MegaDecoder(tiny_dictionary, decoder.embedding, decoder.stack, output_projection=decoder.output_projection,
                    adaptive_softmax=None, max_target_positions=64, alignment_layer=2)


class DeviceReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts reads of a tensor's value by the host (``int(t)``, ``bool(t)``, ``.item()``): each
    is a device synchronisation on a GPU."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("chunk", [-1, 4])
def test_decoding_steps_read_no_device_values(tiny_dictionary, chunk):
    torch.manual_seed(0)
    stack = MegaStack(config(layers=3, chunk_size=chunk), causal=True, cross_attention=True).eval()
    memory = torch.randn(2, 5, 8)
    state = {}
    with torch.no_grad():
        stack(torch.randn(2, 6, 8), memory=memory, incremental_state=state)
        for _ in range(3):
            with DeviceReads() as reads:
                stack(torch.randn(2, 1, 8), memory=memory, incremental_state=state)
            assert reads.count == 0
    _, decoder = encoder_and_decoder(tiny_dictionary)
    memory = {"encoder_out": [torch.randn(2, 5, 8, dtype=DTYPE)], "encoder_padding_mask": [padding([5, 3], 5)]}
    tokens = torch.randint(4, 30, (2, 8))
    state = {}
    with torch.no_grad():
        decoder(tokens[:, :4], memory, incremental_state=state)
        with DeviceReads() as reads:
            decoder(tokens[:, :5], memory, incremental_state=state)
    assert reads.count <= 1  # at most the CPU-only check for padding, once per step, not per layer
