"""Checkpoints of the official Mega code, as the tests write them: the official state dicts (random
tensors of the official names and shapes), arguments and data folders, tiny. The state dicts follow
the official module structure (facebookresearch/mega):
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

import torch

from helpers.fairseq_jobs import preprocess
from helpers.tiny import write_aan, write_cifar10, write_imdb, write_listops, write_pairs, write_speech_commands

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
# Official data folders and checkpoints


def write_data(root):
    """{name: folder} of the release data each official arch reads (its ``_data``)."""
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


def write_dictionaries(data_dirs, root):
    """Official data folders (src-bin/dict.txt, label-bin/dict.txt) with dictionaries in another order
    than ours: ListOps misses one of our tokens and has one we lack; the byte dictionary holds ASCII
    characters and one that is no single byte; the labels are not in numeric order."""
    from mega_fairseq.data.classification import FORMATS
    from mega_fairseq.data.input_types import token_dictionary

    records = list(FORMATS["listops"].read(data_dirs["listops"], "train", argparse.Namespace()))
    ours = token_dictionary(records).symbols[4:]
    listops = official_dictionary(root / "listops" / "src-bin" / "dict.txt", list(reversed(ours[1:])) + ["[XOR"])
    text = official_dictionary(root / "text" / "src-bin" / "dict.txt", list("zyxwvutsrqponmlkjihgfedcba.<>/") + ["é"])
    official_dictionary(root / "listops" / "label-bin" / "dict.txt", LABELS[10])
    official_dictionary(root / "text" / "label-bin" / "dict.txt", LABELS[2])
    return {"listops": listops, "text": text, "missing": ours[0]}


def write_mt_bin(root):
    """A tiny parallel corpus binarised with a joined dictionary (fairseq-preprocess, in this process)."""
    for split, count, seed in (("train", 30, 0), ("valid", 4, 1), ("test", 30, 2)):
        write_pairs(root, split, count, seed)
    preprocess("--source-lang", "src", "--target-lang", "tgt", "--trainpref", root / "train", "--validpref",
               root / "valid", "--testpref", root / "test", "--destdir", root / "bin", "--joined-dictionary",
               "--workers", "1")
    return root / "bin"


def save_official(path, args, state):
    history = [{"criterion_name": "LRACrossEntropyCriterion", "optimizer_name": "FairseqAdam", "num_updates": 10,
                "lr_scheduler_state": {"best": 70.0}, "optimizer": {"state": {}}}]
    torch.save({"args": args, "model": state, "optimizer_history": history, "extra_state": {"val_loss": 0.7},
                "last_optimizer_state": {"state": {}}}, path)
    return path
