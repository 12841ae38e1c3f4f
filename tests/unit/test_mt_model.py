"""The ``mega`` translation model on fairseq's ``translation`` task, through fairseq's Python API:
beam search against teacher forcing, padding, and the presets."""

import pytest
import torch
from fairseq import options, tasks
from fairseq.sequence_generator import SequenceGenerator

import mega_fairseq.models  # noqa: F401  (registers the plugin before fairseq's parsers list the tasks)
from helpers import USER_DIR


def build(data, *extra, arch="mega_mt_tiny"):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data), "--user-dir", USER_DIR, "--task", "translation", "--arch", arch, "--source-lang", "src",
        "--target-lang", "tgt", "--seed", "1", *extra])
    torch.manual_seed(1)
    task = tasks.setup_task(args)
    model = task.build_model(args).double().eval()
    return task, model


def log_probs(model, src_tokens, src_lengths, prev_output_tokens):
    out = model(src_tokens, src_lengths, prev_output_tokens)
    return model.get_normalized_probs(out, log_probs=True)


@pytest.mark.parametrize("arch_args", [[], ["--encoder-chunk-size", "4", "--decoder-chunk-size", "4"],
                                       ["--attention-activation-fn", "laplace", "--normalize-before"]])
def test_beam_search_scores_equal_teacher_forcing(mt_data, arch_args):
    """fairseq's SequenceGenerator decodes incrementally, reordering the decoder state and the
    encoder output for the beam; every hypothesis is rescored by the full model."""
    task, model = build(mt_data, *arch_args)
    task.load_dataset("test")
    dictionary = task.target_dictionary
    batch = task.dataset("test").collater([task.dataset("test")[i] for i in range(4)])
    generator = SequenceGenerator([model], dictionary, beam_size=3, max_len_b=20, min_len=6)
    hypos = generator.generate([model], batch)
    sources = batch["net_input"]["src_tokens"]  # left-padded, fairseq's default
    for i, beam in enumerate(hypos):
        assert len(beam) == 3
        for hypo in beam:
            tokens = hypo["tokens"]  # ends with eos
            prev = torch.cat([tokens.new_tensor([dictionary.eos()]), tokens[:-1]]).unsqueeze(0)
            source = sources[i][sources[i].ne(dictionary.pad())].unsqueeze(0)
            with torch.no_grad():
                full = log_probs(model, source, torch.tensor([source.size(1)]), prev)[0]
            full = full.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(hypo["positional_scores"].double(), full.double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", ["-1", "3"])
def test_padded_batch_equals_each_sentence_alone(mt_data, chunk):
    """Sources left-padded (fairseq's default) or right-padded, targets right-padded: each
    sentence's scores equal those of the sentence alone."""
    task, model = build(mt_data, "--encoder-chunk-size", chunk, "--decoder-chunk-size", chunk)
    pad, eos = task.source_dictionary.pad(), task.source_dictionary.eos()
    torch.manual_seed(0)
    sources = [torch.randint(4, 40, (n,)) for n in (9, 4, 6)]
    targets = [torch.randint(4, 40, (n,)) for n in (5, 8, 2)]
    prev = torch.full((3, 8), pad)
    for i, t in enumerate(targets):
        prev[i, :len(t)] = t
    lengths = torch.tensor([len(s) for s in sources])
    for left in (True, False):
        src = torch.full((3, 9), pad)
        for i, s in enumerate(sources):
            if left:
                src[i, 9 - len(s):] = s
            else:
                src[i, :len(s)] = s
        with torch.no_grad():
            batched = log_probs(model, src, lengths, prev)
            for i, (s, t) in enumerate(zip(sources, targets)):
                alone = log_probs(model, s.unsqueeze(0), lengths[i:i + 1], t.unsqueeze(0))[0]
                torch.testing.assert_close(batched[i, :len(t)], alone)
    assert eos not in sources[0]


def test_shared_embeddings_and_presets(mt_data):
    _, model = build(mt_data, "--share-all-embeddings")
    assert model.encoder.embed_tokens is model.decoder.embed_tokens
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight
    # right-padded targets (fairseq's default) let causal attention drop the padding mask
    assert not model.decoder.left_pad and build(mt_data, "--left-pad-target")[1].decoder.left_pad
    _, model = build(mt_data, arch="mega_wmt_en_de")
    layer = model.decoder.stack.layers[0]
    assert layer.cross_attn is not None and model.encoder.stack.layers[0].cross_attn is None
    assert layer.mega_layer.move.truncation is None  # the official recipe's --truncation-length 0: none
    assert (model.encoder.stack.cfg.embed_dim, model.encoder.stack.cfg.hidden_dim, model.encoder.stack.cfg.z_dim,
            len(model.encoder.stack.layers), len(model.decoder.stack.layers)) == (512, 1024, 128, 6, 6)
    assert layer.mega_layer.dropout.p == 0.15 and layer.mega_layer.attention_dropout == 0.1
    with pytest.raises(ValueError, match="--encoder-embed-dim \\(32\\) equal to --decoder-embed-dim \\(16\\)"):
        build(mt_data, "--share-all-embeddings", "--decoder-embed-dim", "16")
