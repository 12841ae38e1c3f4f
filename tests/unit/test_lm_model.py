"""The mega_lm model and mega_language_modeling task through fairseq's Python API."""

import pytest
import torch
import torch.nn.functional as F
from fairseq import options, tasks
from fairseq.sequence_generator import SequenceGenerator

import mega_fairseq.models  # noqa: F401  (registers the plugin before fairseq's parsers list the tasks)
from helpers import USER_DIR
from mega_fairseq.modules import attention


def build(data, *extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data), "--user-dir", USER_DIR, "--task", "mega_language_modeling", "--arch", "mega_lm_tiny",
        "--tokens-per-sample", "32", "--max-target-positions", "256", "--seed", "1", *extra])
    torch.manual_seed(1)
    task = tasks.setup_task(args)
    model = task.build_model(args).double().eval()
    return task, model


def log_probs(model, src_tokens, **kwargs):
    out = model(src_tokens, **kwargs)
    return model.get_normalized_probs(out, log_probs=True)


@pytest.mark.parametrize("arch_args", [[], ["--decoder-chunk-size", "-1"], ["--attention-activation-fn", "laplace"]])
def test_beam_search_scores_equal_full_forward(lm_data, arch_args):
    """SequenceGenerator decodes incrementally (and reorders state for the beam)."""
    task, model = build(lm_data, *arch_args)
    dictionary = task.target_dictionary
    prefix = torch.tensor([[dictionary.index(w) for w in "the module returns".split()]] * 2)
    generator = SequenceGenerator([model], dictionary, beam_size=3, max_len_b=40, min_len=25)
    sample = {"net_input": {"src_tokens": prefix, "src_lengths": torch.tensor([3, 3])}}
    hypos = generator.generate([model], sample, prefix_tokens=prefix, bos_token=dictionary.eos())
    for hypo in (h for beam in hypos for h in beam):
        tokens = hypo["tokens"]  # ends with eos
        assert len(tokens) > 20  # longer than one chunk (16)
        source = torch.cat([tokens.new_tensor([dictionary.eos()]), tokens[:-1]]).unsqueeze(0)
        with torch.no_grad():
            full = log_probs(model, source)[0].gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(hypo["positional_scores"].double(), full.double(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("truncation", [[], ["--truncation-length", "24"]])
def test_stream_segments_equal_one_long_forward(lm_data, truncation):
    """Streams far longer than the segments (40) and the EMA truncation (24 taps)."""
    task, model = build(lm_data, "--eval-streams", "3", "--eval-segment-length", "40", *truncation)
    task.load_dataset("test")
    dataset = task.dataset("test")
    batches = list(task.get_batch_iterator(dataset).next_epoch_itr(shuffle=False))
    assert len(batches) == dataset.num_segments > 5
    scores = [[] for _ in range(3)]
    with torch.no_grad():
        for batch in batches:
            assert batch["net_input"]["src_tokens"].size(0) == 3
            lp = log_probs(model, **batch["net_input"])
            target = batch["target"]
            for s in range(3):
                keep = target[s].ne(task.dictionary.pad())
                scores[s].append(lp[s].gather(-1, target[s].unsqueeze(-1)).squeeze(-1)[keep])
        for s, (source, target) in enumerate(dataset.streams):
            full = log_probs(model, source.unsqueeze(0))[0].gather(-1, target.unsqueeze(-1)).squeeze(-1)
            torch.testing.assert_close(torch.cat(scores[s]), full)


def test_stream_streams_cover_the_split_once(lm_data):
    task, _ = build(lm_data, "--eval-streams", "4")
    task.load_dataset("test")
    dataset = task.dataset("test")
    raw = torch.cat([t for _, t in dataset.streams])
    batches = list(task.get_batch_iterator(dataset).next_epoch_itr(shuffle=False))
    targets = [[] for _ in range(4)]
    for batch in batches:
        for s in range(4):
            row = batch["target"][s]
            targets[s].append(row[row.ne(task.dictionary.pad())])
    assert torch.equal(torch.cat([torch.cat(t) for t in targets]), raw)
    assert sum(b["ntokens"] for b in batches) == raw.numel()


def test_variable_blocks_partition_the_training_stream(lm_data):
    task, _ = build(lm_data, "--variant-block-multiple-min", "2", "--variant-block-multiple-max", "4")
    task.load_dataset("train", epoch=1)
    blocks = task.dataset("train")
    sizes = blocks.sizes
    assert sizes.max() <= 128 and (sizes[:-1] >= 64).all() and len(set(sizes.tolist())) >= 3
    items = [blocks[i] for i in range(len(blocks))]
    stream = torch.cat([item["target"] for item in items])
    sources = torch.cat([item["source"] for item in items])
    assert torch.equal(sources[1:], stream[:-1])  # each block's source is its target shifted by one
    task.load_dataset("train", epoch=2)
    assert not torch.equal(torch.as_tensor(task.dataset("train").sizes[:50]), torch.as_tensor(sizes[:50]))


def test_context_window_scores_equal_each_window_alone(lm_data):
    """fairseq-eval-lm --context-window 16 (it lowers --tokens-per-sample 32 to 16): blocks of 16
    tokens, each scored after the 16 tokens before it, in right-padded batches, as by a forward
    pass over each window alone."""
    from itertools import islice
    from fairseq.sequence_scorer import SequenceScorer

    task, model = build(lm_data, "--tokens-per-sample", "16")
    task.load_dataset("test")
    blocks = task.dataset("test")
    sources = torch.cat([blocks[i]["source"] for i in range(len(blocks))])
    targets = torch.cat([blocks[i]["target"] for i in range(len(blocks))])
    sizes = torch.as_tensor(blocks.sizes.astype("int64"))
    starts = sizes.cumsum(0) - sizes
    batches = task.eval_lm_dataloader(blocks, batch_size=8, max_positions=model.max_positions(), num_workers=0,
                                      context_window=16)
    scorer = SequenceScorer(task.target_dictionary)
    scored = 0
    with torch.no_grad():
        for batch in islice(batches, 3):
            for index, hypos in zip(batch["id"].tolist(), scorer.generate([model], batch)):
                start = int(starts[index])
                end, first = start + int(sizes[index]), max(0, start - 16)
                window = log_probs(model, sources[first:end].unsqueeze(0))[0, start - first:]
                alone = window.gather(-1, targets[start:end].unsqueeze(-1)).squeeze(-1)
                torch.testing.assert_close(hypos[0]["positional_scores"].double(), alone.double())
                scored += 1
    assert scored == 24


def test_padded_batch_equals_each_sequence_alone(lm_data):
    task, model = build(lm_data)
    pad = task.dictionary.pad()
    lengths = [37, 20, 5]
    tokens = torch.randint(4, len(task.dictionary), (3, 37))
    for i, n in enumerate(lengths):
        tokens[i, n:] = pad
    with torch.no_grad():
        batched = log_probs(model, tokens)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(batched[i, :n], log_probs(model, tokens[i:i + 1, :n])[0])


def test_right_padded_decoder_attends_without_a_padding_mask(lm_data, monkeypatch):
    """fairseq's collaters pad targets on the right, where a real query sees no padded key: on the
    fused dispatch (CUDA's, forced here) SDPA gets q of width z and the c x c bias alone."""
    task, model = build(lm_data)
    monkeypatch.setattr(attention, "uses_cpu_kernel", lambda device: False)
    calls = []
    sdpa = F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, **kwargs):
        calls.append((q.size(-1), attn_mask.dim()))
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    tokens = torch.randint(4, len(task.dictionary), (2, 20))
    tokens[1, 9:] = task.dictionary.pad()
    with torch.no_grad():
        log_probs(model, tokens)
    assert calls and set(calls) == {(model.decoder.stack.cfg.z_dim, 2)}


def test_adaptive_input_narrower_than_the_model(lm_data):
    """Adaptive input projects to d itself: no second projection of the wrong width."""
    task, model = build(lm_data, "--adaptive-input", "--adaptive-input-cutoff", "300,1000",
                        "--adaptive-softmax-cutoff", "300,1000", "--decoder-input-dim", "24")
    assert model.decoder.embedding.project_in_dim is None
    tokens = torch.randint(4, len(task.dictionary), (2, 20))
    with torch.no_grad():
        features, _ = model(tokens, features_only=True)
    assert features.shape == (2, 20, 32) and torch.isfinite(features).all()
