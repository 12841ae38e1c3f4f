"""Checkpoints of the official Mega code converted: MT, the LRA classifiers (Mega and Transformer),
speech. The official state dicts are written from the official module structure
(tests/helpers/official.py); official-style checkpoints through the converter and fairseq's own CLI:
tests/cli/test_official_checkpoints_cli.py."""

import argparse
import re

import pytest
import torch
import torch.nn.functional as F

from helpers.official import (LABELS, OFFICIAL, mt_official_args, official_args, official_classifier_shapes,
                              official_dictionary, official_mt_shapes, random_tensors, save_official)
from mega_fairseq.conversion import convert as converter
from mega_fairseq.conversion.arguments import convert_official_args
from mega_fairseq.conversion.classifier import convert_official_classifier
from mega_fairseq.models.official_names import ConversionError

HEAD = "classification_heads.sentence_classification_head"


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
