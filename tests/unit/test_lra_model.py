"""The sequence classifier: a document's logits do not depend on its batch (padding, length,
position), pairs give the same result in either batch position, and the LRA presets hold the
paper's settings."""

from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary

from helpers import ROOT
from mega_fairseq.models.mega_classifier import (CLASSIFIER_PRESETS, HEAD_NAME, MegaSequenceClassifier, combine_pair,
                                                 preset_table)

TINY = dict(encoder_layers=2, encoder_embed_dim=16, encoder_hidden_dim=24, encoder_ffn_embed_dim=24, encoder_z_dim=8,
            encoder_n_dim=3, classifier_hidden_dim=12, encoder_attention_heads=2)


def dictionary(size=20):
    d = Dictionary()
    for i in range(size):
        d.add_symbol(f"t{i}")
    return d


def build(arch, input_type="tokens", paired=False, num_classes=3, max_positions=64, dtype=torch.float64, **changes):
    cfg = SimpleNamespace(num_classes=num_classes, input_type=input_type, max_positions=max_positions,
                          **{**TINY, **changes})
    CLASSIFIER_PRESETS.apply(arch, cfg)
    task = SimpleNamespace(source_dictionary=dictionary(), cfg=SimpleNamespace(paired=paired))
    torch.manual_seed(0)
    model = MegaSequenceClassifier.build_model(cfg, task).to(dtype)
    return model.eval()


def documents(input_type, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    if input_type == "tokens":
        return [torch.randint(4, 24, (n,), generator=g) for n in lengths]
    return [torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1 for n in lengths]


def batch(docs, pad, left=False):
    width = max(len(d) for d in docs)
    out = torch.full((len(docs), width), pad, dtype=docs[0].dtype)
    for i, d in enumerate(docs):
        if left:
            out[i, width - len(d):] = d
        else:
            out[i, :len(d)] = d
    return out, torch.tensor([len(d) for d in docs])


CASES = [("mega_lra_listops", "tokens", {}), ("mega_lra_listops_chunk", "tokens", dict(encoder_chunk_size=4)),
         ("mega_lra_text", "tokens", {}), ("mega_lra_image", "pixels", {}),
         ("mega_lra_pathx_chunk", "pixels", dict(encoder_chunk_size=8)),
         ("transformer_lra_listops", "tokens", {}), ("transformer_lra_image", "pixels", {}),
         ("mega_classifier", "tokens", dict(pooling="first"))]


@pytest.mark.parametrize("arch,input_type,changes", CASES, ids=[c[0] + ("_first" if c[2].get("pooling") else "")
                                                                 for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logits_do_not_depend_on_the_batch(arch, input_type, changes, dtype):
    model = build(arch, input_type, dtype=dtype, **changes)
    docs = documents(input_type, [13, 5, 21, 9])
    docs = [d.to(dtype) if d.is_floating_point() else d for d in docs]
    pad = 1 if input_type == "tokens" else 0.0
    alone = torch.cat([model(*batch([d], pad))[0] for d in docs])
    tolerance = dict(atol=1e-10, rtol=1e-8) if dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)
    together, _ = model(*batch(docs, pad))
    torch.testing.assert_close(together, alone, **tolerance)
    reversed_order, _ = model(*batch(docs[::-1], pad))
    torch.testing.assert_close(reversed_order.flip(0), alone, **tolerance)
    if input_type == "tokens":  # left padding is moved to the right by the encoder
        left, _ = model(*batch(docs, pad, left=True))
        torch.testing.assert_close(left, alone, **tolerance)


def test_bfloat16_autocast_matches_float32():
    model = build("mega_lra_listops", dtype=torch.float32)
    tokens, lengths = batch(documents("tokens", [30, 17]), 1)
    reference, _ = model(tokens, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = model(tokens, lengths)
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), reference, atol=0.1, rtol=0.1)


@pytest.mark.parametrize("combination", ["concat", "concat_product_difference"])
def test_pair_gives_the_same_result_in_either_batch_position(combination):
    model = build("mega_lra_retrieval", paired=True, pair_combination=combination)
    first, second = documents("tokens", [11, 4, 19, 7], seed=1), documents("tokens", [6, 23, 3, 12], seed=2)
    logits, extra = model(*batch(first, 1), *batch(second, 1))
    assert extra["features"].shape == (4, 16 * (2 if combination == "concat" else 4))
    for i in range(4):
        alone, _ = model(*batch([first[i]], 1), *batch([second[i]], 1))
        torch.testing.assert_close(logits[i:i + 1], alone, atol=1e-10, rtol=1e-8)
    swapped, _ = model(*batch(first[::-1], 1), *batch(second[::-1], 1))
    torch.testing.assert_close(swapped.flip(0), logits, atol=1e-10, rtol=1e-8)
    # the order of the two documents matters: [u, v] is not [v, u]
    crossed, _ = model(*batch(second, 1), *batch(first, 1))
    assert not torch.allclose(crossed, logits)


def test_pair_combination_values():
    u, v = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    assert combine_pair("concat", u, v).tolist() == [[1.0, 2.0, 3.0, -1.0]]
    assert combine_pair("concat_product_difference", u, v).tolist() == [[1, 2, 3, -1, 3, -2, -2, 3]]


def test_mean_pooling_is_the_mean_of_the_encoder_states():
    model = build("mega_lra_listops")
    tokens, lengths = batch(documents("tokens", [9, 4]), 1)
    out = model.encoder(tokens, lengths)["encoder_out"][0]
    expected = torch.stack([out[0, :9].mean(0), out[1, :4].mean(0)])
    torch.testing.assert_close(model.encode(tokens, lengths), expected)


def test_head_and_criterion_interface():
    model = build("mega_lra_listops", num_classes=7)
    assert list(model.classification_heads) == [HEAD_NAME]
    head = model.classification_heads[HEAD_NAME]
    assert [tuple(layer.weight.shape) for layer in head.hidden] == [(12, 16)]
    assert head.out_proj.bias is None and head.out_proj.out_features == 7
    with pytest.raises(ValueError, match="classification-head-name"):
        model(*batch(documents("tokens", [3]), 1), classification_head_name="other")


def test_first_token_pooling_adds_one_learned_position():
    model = build("transformer_lra_text")
    assert model.encoder.first_token is not None
    out = model.encoder(*batch(documents("tokens", [5]), 1))
    assert out["encoder_out"][0].shape[1] == 6
    assert build("mega_lra_text").encoder.first_token is None


def test_transformer_baseline_ties_layers_as_the_official_listops_baseline():
    model = build("transformer_lra_listops", encoder_layers=3)
    assert len(model.encoder.stack.layers) == 1 and model.encoder.stack.num_layers == 3
    assert len(build("transformer_lra_text", encoder_layers=3).encoder.stack.layers) == 3


def test_real_valued_input_rejects_embedding_norm():
    with pytest.raises(ValueError, match="--normalize-embedding needs a token input"):
        build("mega_lra_image", input_type="pixels", normalize_embedding=True)


# The paper's / official presets: layers, d, v (= FFN), z, N, norm, prenorm, attention, chunk, truncation, head,
# dropout, pooling
PAPER = {
    "mega_lra_listops": (6, 80, 160, 64, 16, "layernorm", False, "softmax", -1, 1024, 160, 0.1, "mean"),
    "mega_lra_text": (4, 128, 256, 64, 16, "scalenorm", False, "softmax", -1, 1024, 256, 0.1, "mean"),
    "mega_lra_retrieval": (6, 128, 256, 64, 16, "scalenorm", False, "softmax", -1, 1024, 256, 0.1, "mean"),
    "mega_lra_image": (8, 160, 320, 96, 16, "batchnorm", True, "laplace", -1, 1024, 320, 0.0, "mean"),
    "mega_lra_pathfinder": (6, 128, 256, 64, 16, "batchnorm", True, "laplace", -1, 1024, 256, 0.0, "mean"),
    "mega_lra_pathx": (4, 64, 128, 32, 16, "syncbatchnorm", True, "laplace", -1, 4096, 128, 0.0, "mean"),
}
OFFICIAL_NAMES = {"mega_lra_listop": "mega_lra_listops", "mega_lra_imdb": "mega_lra_text",
                  "mega_lra_aan": "mega_lra_retrieval", "mega_lra_cifar10": "mega_lra_image",
                  "mega_lra_pf32": "mega_lra_pathfinder", "mega_lra_pf128": "mega_lra_pathx"}
# official Transformer baselines: layers, d, FFN, heads, head width, tied layers
BASELINES = {"transformer_lra_listops": (6, 512, 2048, 8, 2048, True),
             "transformer_lra_text": (4, 256, 1024, 4, 1024, False),
             "transformer_lra_retrieval": (4, 128, 512, 4, 512, False),
             "transformer_lra_image": (1, 64, 128, 8, 128, False),
             "transformer_lra_pathfinder": (1, 128, 128, 4, 256, False),
             "transformer_lra_pathx": (1, 128, 128, 4, 256, False)}


@pytest.mark.parametrize("arch", PAPER)
def test_presets_hold_the_paper_settings(arch):
    v = CLASSIFIER_PRESETS.resolve(arch)
    assert (v["encoder_layers"], v["encoder_embed_dim"], v["encoder_hidden_dim"], v["encoder_ffn_embed_dim"],
            v["encoder_z_dim"], v["encoder_n_dim"], v["normalization_type"], v["normalize_before"],
            v["attention_activation_fn"], v["encoder_chunk_size"], v["truncation_length"],
            v["classifier_hidden_dim"], v["dropout"], v["pooling"]) == PAPER[arch][:3] + PAPER[arch][2:]
    chunked = CLASSIFIER_PRESETS.resolve(f"{arch}_chunk")
    assert chunked.pop("encoder_chunk_size") == (4096 if arch == "mega_lra_pathx" else 128)
    v.pop("encoder_chunk_size")
    assert chunked == v
    assert v["activation_fn"] == "silu" and v["encoder_type"] == "mega" and v["attention_dropout"] == 0.0


@pytest.mark.parametrize("official,ours", OFFICIAL_NAMES.items())
def test_official_names_are_aliases(official, ours):
    assert CLASSIFIER_PRESETS.resolve(official) == CLASSIFIER_PRESETS.resolve(ours)


@pytest.mark.parametrize("arch", BASELINES)
def test_transformer_baselines(arch):
    v = CLASSIFIER_PRESETS.resolve(arch)
    assert (v["encoder_layers"], v["encoder_embed_dim"], v["encoder_ffn_embed_dim"], v["encoder_attention_heads"],
            v["classifier_hidden_dim"], v["tie_layer_weights"]) == BASELINES[arch]
    assert v["encoder_type"] == "transformer" and v["activation_fn"] == "gelu"


def test_docs_preset_table_is_current():
    page = (ROOT / "docs" / "lra.md").read_text()
    assert preset_table() in page
