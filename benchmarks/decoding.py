"""The benchmark's decoding measurements: per-token latency of the two language models after a real context,
and the tokens per second of fairseq's beam search with the language models and, on request, the translation
models (``python -m benchmarks``; the worker that runs them is ``harness.timing_worker``)."""

import statistics
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor, nn

from .cases import fairseq_transformer_lm, fairseq_transformer_translation, mega_lm, mega_translation
from .harness import autocast, timed
from .profiling import profile


def decode_latencies(steps: Dict[str, Callable[[int], object]], count: int,
                     device: str = "cpu") -> Dict[str, Tuple[float, dict]]:
    """Median seconds of ``step(i)`` for i < count (robust to other processes' bursts) of each decoder,
    the decoders taking turns token by token (so that a shared machine's load meets them alike), and
    the profile of one more step of each, ``step(count)``; on CUDA each step is synchronised, so
    that it counts until its token's logits are computed."""
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for i in range(count):
        for name, step in steps.items():
            times[name].append(timed(lambda: step(i), device))
    return {name: (statistics.median(times[name]), profile(lambda: step(count), device))
            for name, step in steps.items()}


def mega_decode_step(model: nn.Module, tokens: Tensor, context: int) -> Callable[[int], object]:
    """Step ``i`` of ``mega_lm`` after a real prefill of ``context`` tokens (one incremental call):
    fairseq's incremental interface, the decoder running only the positions it has not seen."""
    state: dict = {}
    model.decoder(tokens[:, :context], incremental_state=state)
    return lambda i: model.decoder(tokens[:, :context + i + 1], incremental_state=state)


def fairseq_decode_step(model: nn.Module, sizes: dict, tokens: Tensor, context: int) -> Callable[[int], object]:
    """Step ``i`` of fairseq's transformer_lm with a key/value cache of ``context`` positions.

    fairseq's decoder runs only the last token when given an incremental state, so the cache is
    filled directly with random keys and values of the right shape (the cost of a step does not
    depend on their values).
    """
    heads = sizes["heads"]
    head_dim = sizes["embed_dim"] // heads
    state: dict = {}
    for layer in model.decoder.layers:
        layer.self_attn._set_input_buffer(state, {
            "prev_key": torch.randn(1, heads, context, head_dim, device=tokens.device),
            "prev_value": torch.randn(1, heads, context, head_dim, device=tokens.device),
            "prev_key_padding_mask": None})
    return lambda i: model.decoder(tokens[:, :context + i + 1], incremental_state=state)


def beam_search_rates(models: Dict[str, nn.Module], batch: int, beam: int, length: int, repeats: int,
                      device: str = "cpu", source_length: int = 1) -> Dict[str, float]:
    """Tokens per second of fairseq's SequenceGenerator (beam search) with each model: ``batch``
    sequences decoded from the start token, ``length`` tokens each (min_len = max_len: every
    hypothesis runs every step), ``batch * length / seconds``; a warm-up run of a few tokens, then
    ``repeats`` runs in which the models take turns, best kept. ``source_length``: the tokens of each
    source sentence (translation models; a language model's prefix is its one start token)."""
    vocab_size = len(next(iter(models.values())).decoder.dictionary)
    src_tokens = torch.randint(4, vocab_size, (batch, source_length), device=device)
    sample = {"net_input": {"src_tokens": src_tokens, "src_lengths": torch.full((batch,), source_length,
                                                                                device=device)}}
    for name, generator in _beam_searches(models, beam, min(length, 8)).items():
        generator.generate([models[name]], sample)  # warm-up
    generators = _beam_searches(models, beam, length)
    times: Dict[str, List[float]] = {name: [] for name in generators}
    for _ in range(repeats):
        for name, generator in generators.items():
            hypos: list = []
            times[name].append(timed(lambda: hypos.extend(generator.generate([models[name]], sample)), device))
            if any(len(hypo["tokens"]) != length + 1 for beam_hypos in hypos for hypo in beam_hypos):
                raise RuntimeError(f"{name}: a hypothesis of the beam search is not {length} tokens and eos long")
    return {name: batch * length / min(times[name]) for name in generators}


def beam_search_rows(models: Dict[str, nn.Module], beam: dict, lengths: List[int], device: str,
                     source_length: int = 1) -> List[dict]:
    """A row of ``beam_search_rates`` for each of ``lengths``: the length, beam and batch, and each model's
    ``NAME_tokens_per_s``."""
    rows = []
    for length in lengths:
        rates = beam_search_rates(models, beam["batch"], beam["size"], length, beam["repeats"], device, source_length)
        rows.append({"length": length, "beam": beam["size"], "batch": beam["batch"],
                     **{f"{name}_tokens_per_s": rate for name, rate in rates.items()}})
    return rows


def _beam_searches(models: Dict[str, nn.Module], beam: int, length: int) -> dict:
    """fairseq's SequenceGenerator for each model, decoding exactly ``length`` tokens and eos."""
    from fairseq.sequence_generator import SequenceGenerator

    return {name: SequenceGenerator([model], model.decoder.dictionary, beam_size=beam, max_len_a=0,
                                    max_len_b=length, min_len=length)
            for name, model in models.items()}


def measure_decoding(sizes: dict, contexts: List[int], steps: int, vocab_size: int, beam: dict,
                     device: str = "cpu", precision: str = "fp32") -> dict:
    """Per-token latency of both language models after each context, with the SDPA backend and the
    busiest kernels of one profiled token of each (``profiles``), and their beam search rates for
    each of ``beam["lengths"]`` (``beam_search_rates``), and those of the translation models for each of
    ``beam["translation_lengths"]``."""
    torch.manual_seed(0)
    max_positions = max(contexts + [0]) + steps + max(beam["lengths"] + [0]) + 2
    models = {"mega_chunk": mega_lm(sizes, vocab_size, max_positions).to(device).eval(),
              "fairseq_transformer": fairseq_transformer_lm(sizes, vocab_size, max_positions).to(device).eval()}
    rows = []
    with torch.no_grad(), autocast(device, precision):
        for context in contexts:
            tokens = torch.randint(4, vocab_size, (1, context + steps + 1), device=device)
            latencies = decode_latencies({
                "mega_chunk": mega_decode_step(models["mega_chunk"], tokens, context),
                "fairseq_transformer": fairseq_decode_step(models["fairseq_transformer"], sizes, tokens, context)},
                steps, device)
            rows.append({"context": context,
                         **{f"{name}_ms_per_token": 1e3 * latency for name, (latency, _) in latencies.items()},
                         "profiles": {name: record for name, (_, record) in latencies.items()}})
        beam_search = beam_search_rows(models, beam, beam["lengths"], device)
        translation = []
        if beam["translation_lengths"]:
            source_length = beam["source_length"]
            positions = source_length + max(beam["translation_lengths"]) + 2
            translators = {"mega": mega_translation(sizes, vocab_size, positions).to(device).eval(),
                           "fairseq_transformer": fairseq_transformer_translation(sizes, vocab_size, positions)
                           .to(device).eval()}
            translation = [dict(row, source_length=source_length)
                           for row in beam_search_rows(translators, beam, beam["translation_lengths"], device,
                                                       source_length)]
    return {"decode": rows, "beam_search": beam_search, "translation_beam_search": translation}
