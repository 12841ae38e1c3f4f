"""Checkpoints of the official Mega code converted: MT, the LRA classifiers (Mega and Transformer),
speech.

The official state dicts are written here from the official module structure (facebookresearch/mega):
- fairseq/models/lra/model.py: ``LRAModel`` holds ``encoder`` (``LRAEncoder``) whose ``encoder`` is
  the sentence encoder; the head is ``classifier`` = [Sequential(Linear, Dropout)] x layers and
  ``sentence_projection_layer`` (no bias). It concatenates a pair as [second, first].
- fairseq/models/lra/mega_lra_encoder.py: ``embed_tokens`` (a wrapper whose ``embed`` is the
  nn.Embedding, or ``RealNumberEmbedding`` with ``weight``, ``bias`` of size D), ``embed_norm``,
  ``layers.N`` (``MegaSentenceEncoderLayer``: ``mega_layer``, ``nffn``), ``final_norm`` (prenorm).
- fairseq/models/lra/transformer_lra_encoder.py: ``embed_tokens`` (nn.Embedding), ``embed_positions``
  (learned: max_positions + padding_idx + 1 rows; sinusoidal: a ``_float_tensor`` buffer), ``layers.N``
  (fairseq's ``TransformerSentenceEncoderLayer``), ``emb_layer_norm``.
- fairseq/models/speech_commands/model.py, mega_scraw_encoder.py: the LRA head; ``embed_tokens`` is a
  ``RealNumberEmbedding``; ``layers.N``, ``final_norm``.
- fairseq/models/mega.py: ``encoder``/``decoder`` with ``embed_tokens``, ``embed_norm``, ``layers.N``
  (``MegaEncoderLayer``: ``mega_layer``, ``nffn``; ``MegaDecoderLayer``: + ``cross_attn``),
  ``final_norm``, ``output_projection``, a ``version`` buffer.
- fairseq/modules/: moving_average_gated_attention.py (``norm``, ``move``, ``v_proj``, ``mx_proj``,
  ``h_proj``, ``gamma``, ``beta``, ``rel_pos_bias``; the bias spans the chunk, or max_positions),
  exponential_moving_average.py (``alpha``, ``delta``, ``beta`` D x N x 1, ``gamma`` D x N, ``omega``;
  D doubled when bidirectional), gated_cross_attention.py (``norm``, ``k_proj``, ``v_proj``,
  ``q_proj``, ``h_proj``, ``rel_pos_bias``), normalized_feedforward_network.py (``norm``, ``fc1``,
  ``fc2``), sequence_norm.py (``norm`` = LayerNorm, ScaleNorm ``scalar``, BatchNorm1d),
  relative_positional_bias.py (simple: ``rel_pos_bias`` 2P-1; rotary: ``alpha``, ``beta``,
  ``_float_tensor``).
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, USER_DIR
from lra_fixtures import write_aan, write_cifar10, write_imdb, write_listops, write_speech_commands
from mega_fairseq.conversion import convert as converter
from mega_fairseq.conversion.arguments import convert_official_args
from mega_fairseq.conversion.classifier import convert_official_classifier
from mega_fairseq.models.official_names import ConversionError
HEAD = "classification_heads.sentence_classification_head"

# ---------------------------------------------------------------------------------------------
# Official names and shapes


def sequence_norm(prefix, kind, dim):
    if kind == "scalenorm":
        return {f"{prefix}.norm.scalar": (1,)}
    if kind in ("batchnorm", "syncbatchnorm"):
        return {f"{prefix}.norm.{k}": (dim,) for k in ("weight", "bias", "running_mean", "running_var")} | {
            f"{prefix}.norm.num_batches_tracked": ()}
    return {f"{prefix}.norm.weight": (dim,), f"{prefix}.norm.bias": (dim,)}


def linear(prefix, out_dim, in_dim, bias=True):
    return {f"{prefix}.weight": (out_dim, in_dim)} | ({f"{prefix}.bias": (out_dim,)} if bias else {})


def relative_bias(prefix, kind, positions, z):
    if kind == "rotary":
        return {f"{prefix}.alpha": (1, z), f"{prefix}.beta": (1, z), f"{prefix}._float_tensor": (1,)}
    return {f"{prefix}.rel_pos_bias": (2 * positions - 1,)}


def mega_block(prefix, *, d, z, v, n, ffn, norm, bidirectional, positions, bias="simple"):
    kernel = 2 * d if bidirectional else d
    shapes = sequence_norm(f"{prefix}.mega_layer.norm", norm, d)
    shapes |= {f"{prefix}.mega_layer.move.{k}": (kernel, n, 1) for k in ("alpha", "delta", "beta")}
    shapes |= {f"{prefix}.mega_layer.move.gamma": (kernel, n), f"{prefix}.mega_layer.move.omega": (d,)}
    shapes |= linear(f"{prefix}.mega_layer.v_proj", v, d) | linear(f"{prefix}.mega_layer.mx_proj", z + v + 2 * d, d)
    shapes |= linear(f"{prefix}.mega_layer.h_proj", d, v)
    shapes |= {f"{prefix}.mega_layer.gamma": (2, z), f"{prefix}.mega_layer.beta": (2, z)}
    shapes |= relative_bias(f"{prefix}.mega_layer.rel_pos_bias", bias, positions, z)
    shapes |= sequence_norm(f"{prefix}.nffn.norm", norm, d)
    return shapes | linear(f"{prefix}.nffn.fc1", ffn, d) | linear(f"{prefix}.nffn.fc2", d, ffn)


def cross_attention(prefix, *, d, z, norm, positions):
    shapes = sequence_norm(f"{prefix}.norm", norm, d) | linear(f"{prefix}.k_proj", z, d)
    shapes |= linear(f"{prefix}.v_proj", d, d) | linear(f"{prefix}.q_proj", 2 * d + z, d)
    return shapes | linear(f"{prefix}.h_proj", d, d) | relative_bias(f"{prefix}.rel_pos_bias", "simple", positions, z)


def transformer_layer(prefix, d, ffn):
    shapes = {}
    for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
        shapes |= linear(f"{prefix}.self_attn.{name}", d, d)
    shapes |= {f"{prefix}.self_attn_layer_norm.{k}": (d,) for k in ("weight", "bias")}
    shapes |= linear(f"{prefix}.fc1", ffn, d) | linear(f"{prefix}.fc2", d, ffn)
    return shapes | {f"{prefix}.final_layer_norm.{k}": (d,) for k in ("weight", "bias")}


def official_classifier_shapes(a, rows=None, pad=1):
    """The official ``lra``/``sc_raw`` model of the official arguments ``a``; ``rows``: the size of
    the token table (None for pixels and samples)."""
    d, enc = a.encoder_embed_dim, "encoder.encoder"
    if rows is None:
        shapes = {f"{enc}.embed_tokens.weight": (d,), f"{enc}.embed_tokens.bias": (d,)}
    elif a.layer_type == "mega":
        shapes = {f"{enc}.embed_tokens.embed.weight": (rows, d)}
    else:
        shapes = {f"{enc}.embed_tokens.weight": (rows, d)}
    if a.layer_type == "mega":
        if getattr(a, "normalize_embedding", False):
            shapes |= sequence_norm(f"{enc}.embed_norm", a.norm_type, d)
        positions = a.chunk_size if a.chunk_size > 0 else a.max_positions
        for i in range(a.encoder_layers):
            shapes |= mega_block(f"{enc}.layers.{i}", d=d, z=a.z_dim, v=a.encoder_hidden_dim, n=a.n_dim,
                                 ffn=a.encoder_ffn_embed_dim, norm=a.norm_type, bidirectional=True, positions=positions)
        if a.encoder_normalize_before:
            shapes |= sequence_norm(f"{enc}.final_norm", a.norm_type, d)
    else:
        if a.encoder_learned_pos:
            shapes[f"{enc}.embed_positions.weight"] = (a.max_positions + (pad + 1 if rows else 0), d)
        else:
            shapes[f"{enc}.embed_positions._float_tensor"] = (1,)
        for i in range(1 if getattr(a, "tie_layer_weights", False) else a.encoder_layers):
            shapes |= transformer_layer(f"{enc}.layers.{i}", d, a.encoder_ffn_embed_dim)
        if a.encoder_normalize_before:
            shapes |= {f"{enc}.emb_layer_norm.{k}": (d,) for k in ("weight", "bias")}
    dims = [a.classifier_in_dim] + [a.classifier_out_dim] * a.classifier_layers
    for i in range(a.classifier_layers):
        shapes |= linear(f"classifier.{i}.0", dims[i + 1], dims[i])
    return shapes | linear("sentence_projection_layer", a.sentence_class_num, a.classifier_out_dim, bias=False)


def official_mt_shapes(a, vocab):
    shapes = {"encoder.embed_tokens.weight": (vocab, a.encoder_embed_dim), "encoder.version": (1,),
              "decoder.embed_tokens.weight": (vocab, a.decoder_embed_dim), "decoder.version": (1,),
              "decoder.output_projection.weight": (vocab, a.decoder_embed_dim)}
    for side in ("encoder", "decoder"):
        get = lambda name: getattr(a, f"{side}_{name}")  # noqa: E731
        positions = getattr(a, f"max_{'source' if side == 'encoder' else 'target'}_positions")
        for i in range(get("layers")):
            shapes |= mega_block(f"{side}.layers.{i}", d=get("embed_dim"), z=get("z_dim"), v=get("hidden_dim"),
                                 n=get("n_dim"), ffn=get("ffn_embed_dim"), norm=a.normalization_type,
                                 bidirectional=side == "encoder", positions=positions)
            if side == "decoder":
                shapes |= cross_attention(f"decoder.layers.{i}.cross_attn", d=get("embed_dim"), z=get("z_dim"),
                                          norm=a.normalization_type,
                                          positions=max(a.max_source_positions, a.max_target_positions))
    return shapes


def random_tensors(shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.3
    return state


# ---------------------------------------------------------------------------------------------
# Official arguments (what the official arch functions and recipes put in a checkpoint)

COMMON = dict(optimizer="adam", lr=[0.001], adam_betas="(0.9, 0.98)", adam_eps=1e-8, clip_norm=1.0, weight_decay=0.01,
              lr_scheduler="linear_decay", total_num_update=1000, end_learning_rate=0.0, warmup_updates=10,
              warmup_init_lr=1e-07, seed=1, max_update=1000)
TINY = dict(encoder_layers=2, encoder_embed_dim=16, encoder_hidden_dim=32, encoder_ffn_embed_dim=32, z_dim=8, n_dim=4,
            classifier_layers=1, classifier_out_dim=24, classifier_activation_fn="gelu", dropout=0.0,
            attention_dropout=0.0, act_dropout=0.0, feature_dropout=False, activation_fn="silu",
            rel_pos_bias="simple", truncation_length=1024, sent_loss=True, use_p=False, apply_bert_init=False,
            encoder_layerdrop=0.0, quant_noise_pq=0.0, criterion="lra_cross_entropy", num_classes=-1)
MEGA = dict(layer_type="mega", sen_rep_type="mp", normalize_embedding=False)
# official arch -> (task, its benchmark's settings, data fixture): tiny sizes, the recipe's norms
OFFICIAL = {
    "mega_lra_listop": dict(MEGA, task="lra-text", input_type="text", norm_type="layernorm", chunk_size=-1,
                            encoder_normalize_before=False, attention_activation_fn="softmax", sentence_class_num=10,
                            max_positions=2002, classifier_in_dim=16, _data="listops"),
    "mega_lra_imdb": dict(MEGA, task="lra-text", input_type="text", norm_type="scalenorm", chunk_size=8,
                          encoder_normalize_before=False, normalize_embedding=True, attention_activation_fn="softmax",
                          sentence_class_num=2, max_positions=4002, classifier_in_dim=16, _data="imdb"),
    "mega_lra_aan": dict(MEGA, task="lra-text", input_type="text", norm_type="scalenorm", chunk_size=-1,
                         encoder_normalize_before=False, attention_activation_fn="softmax", sentence_class_num=2,
                         max_positions=64, classifier_in_dim=32, _data="aan"),
    "mega_lra_cifar10": dict(MEGA, task="lra-image", input_type="image", norm_type="batchnorm", chunk_size=-1,
                             encoder_normalize_before=True, attention_activation_fn="laplace", sentence_class_num=10,
                             max_positions=1024, classifier_in_dim=16, pixel_normalization=[0.48, 0.24],
                             _data="cifar10"),
    "mega_lra_pf32": dict(MEGA, task="lra-image", input_type="image", norm_type="batchnorm", chunk_size=128,
                          encoder_normalize_before=True, attention_activation_fn="laplace", sentence_class_num=2,
                          max_positions=1024, classifier_in_dim=16, pixel_normalization=[0.5, 0.5], _data="cifar10"),
    "mega_lra_pf128": dict(MEGA, task="lra-image", input_type="image", norm_type="syncbatchnorm", chunk_size=4096,
                           encoder_normalize_before=True, attention_activation_fn="laplace", sentence_class_num=2,
                           max_positions=16384, truncation_length=4096, classifier_in_dim=16,
                           pixel_normalization=[0.5, 0.5], _data="cifar10"),
    "transformer_lra_listop": dict(task="lra-text", activation_fn="gelu", input_type="text",
                                   layer_type="transformer", sen_rep_type="cls",
                                   encoder_normalize_before=True, tie_layer_weights=True, encoder_learned_pos=True,
                                   encoder_attention_heads=4, max_positions=2002, sentence_class_num=10,
                                   classifier_in_dim=16, norm_type=None, _data="listops"),
    "transformer_lra_cifar10": dict(task="lra-image", activation_fn="gelu", input_type="image",
                                    layer_type="transformer", sen_rep_type="mp",
                                    encoder_normalize_before=True, encoder_learned_pos=False,
                                    encoder_attention_heads=4, max_positions=1024, sentence_class_num=10,
                                    classifier_in_dim=16, norm_type=None, _data="cifar10"),
    "mega_sc_raw_big": dict(MEGA, task="speech_commands", norm_type="batchnorm", chunk_size=1000,
                            encoder_normalize_before=True, attention_activation_fn="laplace", sentence_class_num=10,
                            max_positions=16000, truncation_length=1000, classifier_in_dim=16, sc_all_classes=False,
                            sc_dropped_rate=0.0, mfcc=False, _data="speech"),
}


def official_args(name, data_dirs, **changes):
    values = {**COMMON, **TINY, **OFFICIAL[name], "arch": name, **changes}
    values["data"] = str(data_dirs[values.pop("_data")])
    return argparse.Namespace(**values)


def mt_official_args(data):
    stack = dict(layers=2, embed_dim=16, hidden_dim=32, ffn_embed_dim=32, z_dim=8, n_dim=4, chunk_size=-1)
    return argparse.Namespace(
        **COMMON, arch="mega_wmt_en_de", task="translation", data=str(data), source_lang="src", target_lang="tgt",
        **{f"{side}_{k}": v for side in ("encoder", "decoder") for k, v in stack.items()},
        decoder_input_dim=16, encoder_embed_path=None, decoder_embed_path=None, dropout=0.15, attention_dropout=0.1,
        hidden_dropout=0.1, activation_dropout=0.1, feature_dropout=False, rel_pos_bias="simple",
        normalization_type="layernorm", normalize_before=False, normalize_embedding=False, no_scale_embedding=False,
        activation_fn="silu", attention_activation_fn="softmax", truncation_length=0, share_all_embeddings=True,
        share_decoder_input_output_embed=True, adaptive_softmax_cutoff=None, tie_adaptive_weights=False,
        max_source_positions=1024, max_target_positions=1024, criterion="label_smoothed_cross_entropy",
        label_smoothing=0.1)


# ---------------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("official_data")
    return {"listops": write_listops(root / "listops"), "imdb": write_imdb(root / "aclImdb"),
            "aan": write_aan(root / "aan"), "cifar10": write_cifar10(root / "cifar10"),
            "speech": write_speech_commands(root / "speech", per_word=10)}


def official_dictionary(path, symbols):
    """An official src-bin/dict.txt or label-bin/dict.txt (fairseq's format: symbol count)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s} {100 - i}\n" for i, s in enumerate(symbols)))
    return path


# official label dictionaries (label-bin/dict.txt): fairseq-preprocess orders labels by frequency
LABELS = {10: "0 9 8 1 4 7 5 3 6 2".split(), 2: ["1", "0"]}


@pytest.fixture(scope="module")
def dictionaries(data_dirs, tmp_path_factory):
    """Official data folders (src-bin/dict.txt, label-bin/dict.txt) with dictionaries in another order
    than ours: ListOps misses one of our tokens and has one we lack; the byte dictionary holds ASCII
    characters and one that is no single byte; the labels are not in numeric order."""
    from mega_fairseq.data.classification import FORMATS
    from mega_fairseq.data.input_types import token_dictionary

    root = tmp_path_factory.mktemp("official_dicts")
    records = list(FORMATS["listops"].read(data_dirs["listops"], "train", argparse.Namespace()))
    ours = token_dictionary(records).symbols[4:]
    listops = official_dictionary(root / "listops" / "src-bin" / "dict.txt", list(reversed(ours[1:])) + ["[XOR"])
    text = official_dictionary(root / "text" / "src-bin" / "dict.txt", list("zyxwvutsrqponmlkjihgfedcba.<>/") + ["é"])
    official_dictionary(root / "listops" / "label-bin" / "dict.txt", LABELS[10])
    official_dictionary(root / "text" / "label-bin" / "dict.txt", LABELS[2])
    return {"listops": listops, "text": text, "missing": ours[0]}


def build_ours(args):
    """Our model (and task) of converted arguments, built as fairseq builds it from a checkpoint."""
    from fairseq import tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    cfg = convert_namespace_to_omegaconf(argparse.Namespace(**vars(args)))
    task = tasks.setup_task(cfg.task)
    return task.build_model(cfg.model).eval(), task


def converted_classifier(arch, data_dirs, dictionaries, **changes):
    """(official arguments, official state, our model, converted state, notes)."""
    official = official_args(arch, data_dirs, **changes)
    converted = convert_official_args(official)
    args = converted.args
    vocabulary, offset, official_dict = None, 0, None
    if args.input_type in ("tokens", "bytes"):
        official_dict = dictionaries["listops" if args.input_type == "tokens" else "text"]
        vocabulary, offset = converter.classifier_vocabulary(args, official_dict)
    rows = len(vocabulary.official) if vocabulary else None
    state = random_tensors(official_classifier_shapes(official, rows))
    model, _ = build_ours(args)
    ours, notes = convert_official_classifier(state, real_valued=vocabulary is None, paired=args.paired,
                                              vocabulary=vocabulary, position_offset=offset,
                                              class_rows=converter.classifier_class_rows(args, official_dict, None))
    return official, state, model, ours, converted.notes + notes, vocabulary


def shapes(state):
    return {name: tuple(value.shape) for name, value in state.items()}


# ---------------------------------------------------------------------------------------------
# (a) every official tensor has its place, with its shape

@pytest.mark.parametrize("arch", list(OFFICIAL))
def test_classifier_state_matches_ours_tensor_by_tensor(arch, data_dirs, dictionaries):
    official, state, model, ours, notes, _ = converted_classifier(arch, data_dirs, dictionaries)
    assert shapes(ours) == shapes(model.state_dict())
    model.load_state_dict(ours, strict=True)
    assert any("--task" in note and "mega_sequence_classification" in note for note in notes), notes
    # a text Transformer with sinusoidal positions says that its positions start elsewhere
    sinusoidal_text = (arch.startswith("transformer") and official.task == "lra-text"
                       and not getattr(official, "encoder_learned_pos", False))
    assert any("sinusoidal positions" in note for note in notes) == sinusoidal_text, notes


def test_sinusoidal_text_transformer_says_its_positions_differ(data_dirs, dictionaries):
    official, _, model, ours, notes, _ = converted_classifier("transformer_lra_listop", data_dirs, dictionaries,
                                                              encoder_learned_pos=False)
    model.load_state_dict(ours, strict=True)
    assert any("sinusoidal positions start at 0 here" in note for note in notes), notes


def test_translation_state_matches_ours_tensor_by_tensor(mt_bin):
    from fairseq.data import Dictionary
    from mega_fairseq.models.official_names import check_seq2seq_names, convert_official_state_dict

    official = mt_official_args(mt_bin)
    converted = convert_official_args(official)
    assert converted.family == "mt" and converted.args.arch == "mega_wmt_en_de"
    assert converted.args.lr_scheduler == "polynomial_decay" and converted.args.power == 1.0
    assert not hasattr(converted.args, "warmup_init_lr") and not hasattr(converted.args, "encoder_embed_path")
    vocab = len(Dictionary.load(str(mt_bin / "dict.src.txt")))
    state = random_tensors(official_mt_shapes(official, vocab))
    shared = state["encoder.embed_tokens.weight"]  # --share-all-embeddings
    state["decoder.output_projection.weight"] = state["decoder.embed_tokens.weight"] = shared
    check_seq2seq_names(state)
    model, _ = build_ours(converted.args)
    ours = convert_official_state_dict(state)
    assert shapes(ours) == shapes(model.state_dict())
    model.load_state_dict(ours, strict=True)
    with pytest.raises(ConversionError, match="'decoder.alignment_heads.weight'"):
        check_seq2seq_names({**state, "decoder.alignment_heads.weight": torch.ones(1)})


# ---------------------------------------------------------------------------------------------
# (b) numbers: what differs from the official model, computed here from the official tensors

def test_retrieval_head_reads_the_pair_as_the_official_model(data_dirs, dictionaries):
    official, state, model, ours, notes, vocabulary = converted_classifier("mega_lra_aan", data_dirs, dictionaries)
    model = model.double()
    model.load_state_dict(ours)
    first = torch.randint(4, 260, (3, 11))
    second = torch.randint(4, 260, (3, 7))
    lengths = torch.tensor([11, 9, 6]), torch.tensor([7, 7, 4])
    for tokens, length in zip((first, second), lengths):
        tokens[torch.arange(tokens.size(1)) >= length.view(-1, 1)] = 1
    with torch.no_grad():
        logits, _ = model(first, lengths[0], second, lengths[1])
        u, v = model.encode(first, lengths[0]), model.encode(second, lengths[1])
    # the official LRAModel.forward: cat([second, first]), (linear, dropout, GELU), projection to the
    # classes in label dictionary order
    weight, bias = state["classifier.0.0.weight"].double(), state["classifier.0.0.bias"].double()
    projection = state["sentence_projection_layer.weight"].double()[[LABELS[2].index(str(c)) for c in range(2)]]
    expected = F.gelu(torch.cat([v, u], -1) @ weight.T + bias) @ projection.T
    torch.testing.assert_close(logits, expected)
    unswapped = F.gelu(torch.cat([u, v], -1) @ weight.T + bias) @ projection.T
    assert not torch.allclose(logits, unswapped)
    assert any("swapped" in note for note in notes)


def test_byte_embeddings_follow_the_official_dictionary(data_dirs, dictionaries):
    _, state, model, ours, notes, vocabulary = converted_classifier("mega_lra_imdb", data_dirs, dictionaries)
    table = state["encoder.encoder.embed_tokens.embed.weight"]
    converted = ours["encoder.embedding.embed_tokens.weight"]
    official = list(vocabulary.official)
    for char in "az./":
        assert torch.equal(converted[4 + ord(char)], table[official.index(f"{ord(char):02x}")])
    assert torch.equal(converted[4 + ord("Q")], table[official.index("<unk>")])  # not in the official dictionary
    assert torch.equal(converted[1], table[1])  # padding
    assert any("no row here" in note and "é" in note for note in notes), notes


def test_listops_tokens_and_the_transformer_first_position(data_dirs, dictionaries):
    _, state, model, ours, notes, vocabulary = converted_classifier("transformer_lra_listop", data_dirs, dictionaries)
    table = state["encoder.encoder.embed_tokens.weight"]
    official = list(vocabulary.official)
    ours_symbols = list(vocabulary.ours)
    for symbol in ours_symbols[4:]:
        expected = table[official.index(symbol if symbol in official else "<unk>")]
        assert torch.equal(ours["encoder.embedding.embed_tokens.weight"][ours_symbols.index(symbol)], expected)
    assert dictionaries["missing"] not in official
    assert torch.equal(ours["encoder.first_token"], table[official.index("<CLS>")])
    # official learned positions: the first (CLS) token is at padding_idx + 1 = 2
    positions = state["encoder.encoder.embed_positions.weight"]
    assert torch.equal(ours["encoder.stack.positions.weight"], positions[2:])
    assert model.encoder.first_token is not None and model.max_positions() == 2001


def official_transformer_logits(state, a, tokens):
    """The official Transformer classifier with learned positions (transformer_lra_encoder.py, then
    LRAModel.forward's head) on official ids B x T (<CLS> first, right-padded with 1), computed from
    the official tensors: one logit per official class (label dictionary row)."""
    from fairseq import utils
    from fairseq.modules import TransformerSentenceEncoderLayer

    enc, pad = "encoder.encoder.", 1
    x = F.embedding(tokens, state[enc + "embed_tokens.weight"])  # embed_scale None: no sqrt(d)
    x = x + F.embedding(utils.make_positions(tokens, pad), state[enc + "embed_positions.weight"])
    x = F.layer_norm(x, x.shape[-1:], state[enc + "emb_layer_norm.weight"], state[enc + "emb_layer_norm.bias"])
    padding = tokens.eq(pad)
    x = x.masked_fill(padding.unsqueeze(-1), 0.0).transpose(0, 1)
    layer = TransformerSentenceEncoderLayer(a.encoder_embed_dim, a.encoder_ffn_embed_dim, a.encoder_attention_heads,
                                            activation_fn=a.activation_fn).double().eval()
    prefix = enc + "layers.0."
    layer.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    with torch.no_grad():
        for _ in range(a.encoder_layers):  # tie_layer_weights: one layer, applied encoder_layers times
            x, _ = layer(x, self_attn_padding_mask=padding)
    hidden = F.gelu(x[0] @ state["classifier.0.0.weight"].T + state["classifier.0.0.bias"])
    return hidden @ state["sentence_projection_layer.weight"].T


def test_transformer_with_learned_positions_computes_the_official_logits(data_dirs, dictionaries):
    """Unscaled embeddings with learned positions, the <CLS> row as first position, the official
    positions from padding index + 1, and the classes in label order instead of label dictionary rows."""
    official, state, model, ours, notes, vocabulary = converted_classifier("transformer_lra_listop", data_dirs,
                                                                           dictionaries)
    assert official.encoder_learned_pos
    state = {name: value.double() for name, value in state.items()}
    model = model.double()
    model.load_state_dict(ours)
    shared = [symbol for symbol in vocabulary.ours[4:] if symbol in vocabulary.official]
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([9, 6, 3])
    picks = torch.randint(len(shared), (3, 9), generator=generator)
    ids = {"ours": torch.ones(3, 9, dtype=torch.long), "official": torch.ones(3, 10, dtype=torch.long)}
    for b, length in enumerate(lengths.tolist()):
        symbols = [shared[k] for k in picks[b, :length].tolist()]
        ids["ours"][b, :length] = torch.tensor([list(vocabulary.ours).index(s) for s in symbols])
        ids["official"][b, :length + 1] = torch.tensor([list(vocabulary.official).index(s)
                                                        for s in ["<CLS>", *symbols]])
    with torch.no_grad():
        logits, _ = model(ids["ours"], lengths)
    expected = official_transformer_logits(state, official, ids["official"])
    rows = [LABELS[10].index(str(label)) for label in range(10)]  # the official class of each of ours
    torch.testing.assert_close(logits, expected[:, rows])
    assert any(note.startswith("classes: the official output rows 0 3 9 7 4 6 8 5 2 1") for note in notes), notes


@pytest.mark.parametrize("arch", ["mega_lra_listop", "mega_lra_imdb", "mega_lra_aan"])
def test_classes_follow_the_official_label_dictionary(arch, data_dirs, dictionaries, tmp_path, capsys):
    """The official lra-text class k is the label in row k of label-bin/dict.txt (found beside
    src-bin/); ours is the label's value: the converter puts the output rows in label order."""
    official = official_args(arch, data_dirs)
    args = convert_official_args(official).args
    tokens = args.input_type == "tokens"
    official_dict = dictionaries["listops" if tokens else "text"]
    vocabulary, _ = converter.classifier_vocabulary(args, official_dict)
    state = random_tensors(official_classifier_shapes(official, len(vocabulary.official)))
    source = save_official(tmp_path / "official.pt", official, state)
    converter.main([str(source), str(tmp_path / "ours.pt"), "--official-dict", str(official_dict),
                    *(["--data", str(data_dirs["listops"])] if tokens else [])])
    output = torch.load(tmp_path / "ours.pt", weights_only=True)["model"][f"{HEAD}.out_proj.weight"]
    labels = LABELS[args.num_classes]
    assert labels != sorted(labels)
    for row, label in enumerate(labels):
        assert torch.equal(output[int(label)], state["sentence_projection_layer.weight"][row]), (row, label)
    assert "note: classes: the official output rows" in capsys.readouterr().out


def test_bad_official_label_dictionaries_are_errors(data_dirs, dictionaries, tmp_path):
    official = official_args("mega_lra_imdb", data_dirs)
    vocabulary, _ = converter.classifier_vocabulary(convert_official_args(official).args, dictionaries["text"])
    source = save_official(tmp_path / "official.pt", official,
                           random_tensors(official_classifier_shapes(official, len(vocabulary.official))))
    convert = [str(source), str(tmp_path / "ours.pt"), "--official-dict", str(dictionaries["text"]), "--force"]
    for labels, message in ((["1", "pos"], r"labels\.txt:2: the label 'pos' is not an integer"),
                            (["1", "2"], "holds the labels 1 2, not each of the 2 classes 0 .. 1 once")):
        path = official_dictionary(tmp_path / "labels.txt", labels)
        with pytest.raises(SystemExit, match=message):
            converter.main([*convert, "--official-labels", str(path)])
    with pytest.raises(SystemExit, match="no-such.txt: no such file; pass --official-labels"):
        converter.main([*convert, "--official-labels", str(tmp_path / "no-such.txt")])


def test_real_valued_embedding_and_speech_arguments(data_dirs, dictionaries):
    official, state, model, ours, notes, _ = converted_classifier("mega_sc_raw_big", data_dirs, dictionaries)
    model.load_state_dict(ours)
    samples = torch.randn(2, 5)
    with torch.no_grad():  # the official RealNumberEmbedding: x * weight + bias
        expected = samples.unsqueeze(-1) * state["encoder.encoder.embed_tokens.weight"] + \
            state["encoder.encoder.embed_tokens.bias"]
        torch.testing.assert_close(model.encoder.embedding(samples), expected)
    args = convert_official_args(official).args
    assert (args.arch, args.input_type, args.words, args.split_protocol, args.short_clips, args.num_classes) == \
        ("mega_sc_raw_big", "waveform", "sc10", "random", "drop", 10)
    assert (args.encoder_z_dim, args.normalization_type, args.normalize_before, args.pooling) == \
        (8, "batchnorm", True, "mean")
    every = convert_official_args(official_args("mega_sc_raw_big", data_dirs, sc_all_classes=True,
                                                sentence_class_num=35)).args
    assert (every.words, every.short_clips, every.split_protocol, every.num_classes) == ("all", "pad", "lists", 35)


def test_unknown_tensors_and_options_are_errors(data_dirs, dictionaries):
    official, state, model, ours, notes, _ = converted_classifier("mega_lra_cifar10", data_dirs, dictionaries)
    for extra in ("encoder.encoder.layer_norm.weight", "encoder.sentence_encoder.weight", "classifier.0.1.weight"):
        with pytest.raises(ConversionError, match=re.escape(repr(extra))):
            convert_official_classifier({**state, extra: torch.ones(2)}, real_valued=True, paired=False)
    buffers = {**state, "encoder.encoder.version": torch.ones(1)}  # weightless buffers are dropped
    assert convert_official_classifier(buffers, real_valued=True, paired=False)[0].keys() == ours.keys()
    with pytest.raises(ConversionError, match="--use-p True"):
        convert_official_args(official_args("mega_lra_cifar10", data_dirs, use_p=True))
    with pytest.raises(ConversionError, match="--layer-type luna"):
        convert_official_args(official_args("mega_lra_cifar10", data_dirs, layer_type="luna"))
    with pytest.raises(ConversionError, match="--arch lra: .* name the benchmark"):
        convert_official_args(official_args("mega_lra_cifar10", data_dirs, arch="lra"))
    assert convert_official_args(official_args("mega_lra_cifar10", data_dirs, arch="lra"), "image").args.arch == \
        "mega_classifier"
    with pytest.raises(ConversionError, match="--official-dict"):
        converter.classifier_vocabulary(convert_official_args(official_args("mega_lra_imdb", data_dirs)).args, None)
    args = convert_official_args(official).args
    assert (args.pixel_mean, args.pixel_std, args.hidden_dropout, args.criterion) == \
        (0.48, 0.24, 0.0, "sentence_prediction")
    assert any(note.startswith("dropped --sent-loss") for note in notes), notes


# ---------------------------------------------------------------------------------------------
# (c) official-style checkpoints through the converter script and fairseq's own CLI

def save_official(path, args, state):
    history = [{"criterion_name": "LRACrossEntropyCriterion", "optimizer_name": "FairseqAdam", "num_updates": 10,
                "lr_scheduler_state": {"best": 70.0}, "optimizer": {"state": {}}}]
    torch.save({"args": args, "model": state, "optimizer_history": history, "extra_state": {"val_loss": 0.7},
                "last_optimizer_state": {"state": {}}}, path)
    return path


def accuracy_and_loss(checkpoint, data, subset):
    """sentence_prediction's accuracy (percent) and loss (bits per example) of a checkpoint, computed
    in this process."""
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)],
                                                                    arg_overrides={"data": str(data)})
    model = models[0].eval()
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        logits, _ = model(**batch["net_input"])
    loss = F.cross_entropy(logits.float(), batch["target"], reduction="sum").item() / len(dataset) / math.log(2)
    return 100.0 * (logits.argmax(-1) == batch["target"]).float().mean().item(), loss


@pytest.fixture(scope="module")
def mt_bin(tmp_path_factory):
    """A tiny parallel corpus binarised with a joined dictionary (fairseq-preprocess, in this process)."""
    from fairseq import options
    from fairseq_cli import preprocess

    from conftest import write_pairs

    root = tmp_path_factory.mktemp("official_mt")
    for split, count, seed in (("train", 30, 0), ("valid", 4, 1), ("test", 30, 2)):
        write_pairs(root, split, count, seed)
    parser = options.get_preprocessing_parser()
    preprocess.main(parser.parse_args(["--source-lang", "src", "--target-lang", "tgt",
                                       "--trainpref", str(root / "train"), "--validpref", str(root / "valid"),
                                       "--testpref", str(root / "test"),
                                       "--destdir", str(root / "bin"), "--joined-dictionary", "--workers", "1"]))
    return root / "bin"


def test_official_checkpoints_convert_and_run_in_fairseq(data_dirs, dictionaries, mt_bin, tmp_path, capsys):
    from fairseq.data import Dictionary

    aan_args = official_args("mega_lra_aan", data_dirs)
    vocabulary, _ = converter.classifier_vocabulary(convert_official_args(aan_args).args, dictionaries["text"])
    aan = save_official(tmp_path / "aan.pt", aan_args,
                        random_tensors(official_classifier_shapes(aan_args, len(vocabulary.official)), seed=1))
    sc_args = official_args("mega_sc_raw_big", data_dirs)
    speech = save_official(tmp_path / "sc.pt", sc_args, random_tensors(official_classifier_shapes(sc_args), seed=2))
    mt_args = mt_official_args(mt_bin)
    vocab = len(Dictionary.load(str(mt_bin / "dict.src.txt")))
    mt_state = random_tensors(official_mt_shapes(mt_args, vocab), seed=3)
    mt_state["decoder.output_projection.weight"] = mt_state["decoder.embed_tokens.weight"] = \
        mt_state["encoder.embed_tokens.weight"]
    mt = save_official(tmp_path / "mt.pt", mt_args, mt_state)

    converter.main([str(aan), str(tmp_path / "aan_ours.pt"), "--official-dict", str(dictionaries["text"])])
    out = capsys.readouterr().out
    assert "note: pair head: official [second, first] halves swapped" in out
    assert "(mega_lra_retrieval)" in out and "--lr-scheduler linear_decay -> polynomial_decay" in out
    converter.main([str(speech), str(tmp_path / "sc_ours.pt")])
    assert "(mega_sc_raw_big)" in capsys.readouterr().out
    converter.main([str(mt), str(tmp_path / "mt_ours.pt")])
    assert "(mega_wmt_en_de)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="pass --official-dict"):
        converter.main([str(aan), str(tmp_path / "again.pt")])

    common = ["--user-dir", USER_DIR, "--cpu", "--num-workers", "0", "--log-format", "simple"]
    jobs = [["validate", [str(data_dirs["aan"]), *common, "--path", str(tmp_path / "aan_ours.pt"), "--valid-subset",
                          "test", "--task", "mega_sequence_classification", "--batch-size", "64",
                          "--required-batch-size-multiple", "1", "--model-overrides",
                          repr({"data": str(data_dirs["aan"])})]],
            ["generate", [str(mt_bin), *common, "--path", str(tmp_path / "mt_ours.pt"), "--gen-subset", "test",
                          "--beam", "2", "--max-len-a", "0", "--max-len-b", "4", "--batch-size", "32"]]]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, ROOT / "tests" / "fairseq_driver.py", tmp_path / "jobs.json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "JOB OK 1" in proc.stdout, log[-4000:]
    found = re.search(r"valid on 'test' subset \| loss ([\d.]+) .*\| accuracy ([\d.]+)", log)
    assert found, log[-4000:]
    accuracy, loss = accuracy_and_loss(tmp_path / "aan_ours.pt", data_dirs["aan"], "test")
    assert float(found.group(2)) == pytest.approx(accuracy, abs=0.05)
    assert float(found.group(1)) == pytest.approx(loss, abs=2e-3)
    hypotheses = re.findall(r"^H-\d+\t", log, flags=re.M)
    assert hypotheses and len(hypotheses) == len(re.findall(r"^S-\d+\t", log, flags=re.M))
