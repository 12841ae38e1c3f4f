"""Training and decoding speed and memory of Mega, Mega-chunk and Transformer baselines on CPU.

    python -m mega_fairseq.benchmark --json bench.json --plot bench.png

Training: forward + backward of a stack of encoder layers on random B x L x d inputs, a fixed
number of tokens per step (B = tokens // L), reported as milliseconds per 1K tokens (best of
``--repeats`` steps after one warm-up step, all in one worker process, the models of one length
taking turns step by step so that load on a shared machine hits them alike) and peak memory (one
step in a fresh process per configuration, after a one-chunk warm-up step: growth of the peak
resident set size over the resident set size just before the step, so it counts activations,
gradients and temporaries, not the interpreter, libraries, parameters or warm-up state).
The Mega-chunk rows also get a FLOP count (``mega_forward_flops``) and the achieved rate,
next to the rate of a plain matmul of the projections' shape measured in the same worker.

Models: ``mega`` and ``mega_chunk`` (this package's MegaLayer, full attention and chunks of
``--chunk-size``), ``hf_mega`` / ``hf_mega_chunk`` (the Hugging Face ``transformers`` port of
the official code, skipped when transformers < 4.41 is not installed),
``torch_transformer`` (``nn.TransformerEncoder``, fused scaled-dot-product attention) and
``fairseq_transformer`` (fairseq's ``TransformerEncoderLayerBase``). Same width everywhere:
d, FFN size, layers; the Transformers use ``--heads`` heads of d / heads dims.

Decoding: median per-token latency of a causal chunked Mega stack fed one token at a time
with an ``incremental_state`` after a context of 256, 4K and 16K tokens, against fairseq's
``transformer_lm`` decoder of the same size with its key/value cache.

Workers run in subprocesses so that the OpenMP settings (``--threads``,
``--omp-wait-policy``) are in place before torch loads.
"""

import argparse
import gc
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from mega_fairseq.modules import NORM_TYPES, MegaLayer, SequenceNorm
from mega_fairseq.modules.ema import fast_fft_length

MEGA_MODELS = ("mega", "mega_chunk")
HF_MODELS = ("hf_mega", "hf_mega_chunk")
TRANSFORMER_MODELS = ("torch_transformer", "fairseq_transformer")
ALL_MODELS = MEGA_MODELS + HF_MODELS + TRANSFORMER_MODELS

DEFAULT_SIZES = dict(layers=2, embed_dim=128, zdim=64, hdim=256, ndim=16, ffn_dim=256, chunk_size=128,
                     norm_type="scalenorm", rel_pos_bias="simple")
DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384)
DEFAULT_CHUNK_LENGTHS = (32768, 65536)
DEFAULT_DECODE_CONTEXTS = (256, 4096, 16384)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mega_fairseq.benchmark",
        description="Forward+backward time per 1K tokens and peak memory of Mega, Mega-chunk and Transformer "
                    "encoders, FLOP/s of the Mega-chunk step, and per-token decoding latency, on CPU.")
    sizes = parser.add_argument_group(
        "model sizes (defaults: 2 bidirectional layers as wide as mega_lra_imdb, or those of --arch; a flag "
        "given explicitly wins)")
    sizes.add_argument("--arch", metavar="NAME",
                       help="take the sizes of a registered Mega architecture (e.g. mega_lm_enwik8_base): layers, "
                            "d, z, v, N, FFN, chunk (if it has one), norm and relative bias")
    sizes.add_argument("--layers", type=int, help=f"number of layers ({DEFAULT_SIZES['layers']})")
    sizes.add_argument("--embed-dim", type=int, help=f"model dimension d ({DEFAULT_SIZES['embed_dim']})")
    sizes.add_argument("--zdim", type=int,
                       help=f"Mega shared representation (query/key) dim z ({DEFAULT_SIZES['zdim']})")
    sizes.add_argument("--hdim", type=int,
                       help=f"Mega attention value dim v, the paper's hidden dim ({DEFAULT_SIZES['hdim']})")
    sizes.add_argument("--ndim", type=int, help=f"Mega EMA expansion dim N ({DEFAULT_SIZES['ndim']})")
    sizes.add_argument("--ffn-dim", type=int, help=f"FFN hidden size, all models ({DEFAULT_SIZES['ffn_dim']})")
    sizes.add_argument("--chunk-size", type=int,
                       help=f"chunk size c of the chunked models ({DEFAULT_SIZES['chunk_size']})")
    sizes.add_argument("--heads", type=int, help="attention heads of the Transformer baselines (d / 64)")
    sizes.add_argument("--norm-type", choices=NORM_TYPES,
                       help=f"Mega norm; the Transformers use layernorm ({DEFAULT_SIZES['norm_type']})")
    sizes.add_argument("--rel-pos-bias", choices=("simple", "rotary"),
                       help=f"Mega relative bias ({DEFAULT_SIZES['rel_pos_bias']})")
    runs = parser.add_argument_group("what to run")
    runs.add_argument("--models", nargs="+", default=list(ALL_MODELS), choices=ALL_MODELS, metavar="MODEL",
                      help=f"models to train ({', '.join(ALL_MODELS)}; default: all)")
    runs.add_argument("--lengths", type=int, nargs="+", default=None,
                      help=f"sequence lengths for every model (default: {' '.join(map(str, DEFAULT_LENGTHS))})")
    runs.add_argument("--chunk-lengths", type=int, nargs="*", default=None,
                      help="extra lengths for mega_chunk only (default: "
                           f"{' '.join(map(str, DEFAULT_CHUNK_LENGTHS))})")
    runs.add_argument("--timing-workers", type=int, default=1,
                      help="run the timing worker this many times, each a fresh process, and keep the best of "
                           "each measurement (on shared VMs a whole process can run slower than the next)")
    runs.add_argument("--tokens-per-step", type=int, default=8192, help="tokens per training step; B = this // L")
    runs.add_argument("--repeats", type=int, default=3,
                      help="timed training steps per configuration (best is kept); the models of one length take "
                           "turns, one step each")
    runs.add_argument("--decode-contexts", type=int, nargs="*", default=None,
                      help=f"decoding context lengths (default: {' '.join(map(str, DEFAULT_DECODE_CONTEXTS))})")
    runs.add_argument("--decode-steps", type=int, default=128, help="tokens decoded per context (median latency kept)")
    runs.add_argument("--vocab-size", type=int, default=64, help="vocabulary of the decoding benchmark")
    runs.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    runs.add_argument("--memory-jobs", type=int, default=1,
                      help="peak-memory subprocesses run at once (each measures only itself; mind the RAM)")
    runs.add_argument("--quick", action="store_true",
                      help="a short run: lengths 1K and 4K, mega_chunk also at 16K, one timed step")
    env = parser.add_argument_group("machine")
    env.add_argument("--threads", type=int, default=2, help="torch/OpenMP threads in the workers")
    env.add_argument("--omp-wait-policy", default="active", choices=("active", "passive", "inherit"),
                     help="OMP_WAIT_POLICY of the workers: 'active' keeps idle OpenMP threads spinning, which on "
                          "small VMs avoids a scheduler tick of wake-up latency per parallel op")
    env.add_argument("--timeout", type=float, default=7200, help="seconds allowed to each worker process")
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write all measurements as JSON")
    out.add_argument("--plot", metavar="PATH", help="draw time and memory against length (needs matplotlib)")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.lengths is None:
        args.lengths = [1024, 4096] if args.quick else list(DEFAULT_LENGTHS)
    if args.chunk_lengths is None:
        args.chunk_lengths = [16384] if args.quick else list(DEFAULT_CHUNK_LENGTHS)
    if args.decode_contexts is None:
        args.decode_contexts = list(DEFAULT_DECODE_CONTEXTS)
    if args.quick:
        args.repeats = 1
    defaults = dict(DEFAULT_SIZES)
    if args.arch:
        try:
            defaults.update(arch_sizes(args.arch))
        except ValueError as error:
            parser.error(str(error))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.heads is None:
        args.heads = max(1, args.embed_dim // 64)
    return args


def arch_sizes(name: str) -> dict:
    """The benchmark's sizes from a registered Mega architecture (``--arch``)."""
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    from mega_fairseq.models.mega_lm import MegaLanguageModel, base_architecture

    mega_archs = sorted(arch for arch, model in ARCH_MODEL_REGISTRY.items() if model is MegaLanguageModel)
    if name not in mega_archs:
        raise ValueError(f"--arch {name}: not a registered Mega architecture; choose one of {', '.join(mega_archs)}")
    cfg = argparse.Namespace()
    ARCH_CONFIG_REGISTRY[name](cfg)
    base_architecture(cfg)  # mega_lm itself is applied when the model is built
    sizes = dict(layers=cfg.decoder_layers, embed_dim=cfg.decoder_embed_dim, zdim=cfg.decoder_z_dim,
                 hdim=cfg.decoder_hidden_dim, ndim=cfg.decoder_n_dim, ffn_dim=cfg.decoder_ffn_embed_dim,
                 norm_type=str(cfg.normalization_type), rel_pos_bias=str(cfg.rel_pos_bias))
    if cfg.decoder_chunk_size > 0:
        sizes["chunk_size"] = cfg.decoder_chunk_size
    return sizes


# ----------------------------------------------------------------------------------------------
# Models. Each builder returns a module mapping a B x L x d float input to a B x L x d output.
# ----------------------------------------------------------------------------------------------

class MegaStack(nn.Module):
    """``layers`` MegaLayers (bidirectional for training, causal for decoding)."""

    def __init__(self, sizes: dict, *, chunk_size: int, max_positions: int, causal: bool = False):
        super().__init__()
        self.layers = nn.ModuleList(
            MegaLayer(sizes["embed_dim"], zdim=sizes["zdim"], hdim=sizes["hdim"], ffn_hidden_dim=sizes["ffn_dim"],
                      ndim=sizes["ndim"], causal=causal, chunk_size=chunk_size, norm_type=sizes["norm_type"],
                      rel_pos_bias=sizes["rel_pos_bias"], max_positions=max_positions)
            for _ in range(sizes["layers"]))

    def forward(self, x: Tensor, incremental_state: Optional[dict] = None) -> Tensor:
        for layer in self.layers:
            x, _ = layer(x, incremental_state=incremental_state)
        return x


class HFMega(nn.Module):
    """transformers' MegaModel on input embeddings (no token embedding, no pooler)."""

    def __init__(self, sizes: dict, *, chunk_size: int, max_positions: int):
        super().__init__()
        from transformers import MegaConfig, MegaModel

        config = MegaConfig(
            hidden_size=sizes["embed_dim"], num_hidden_layers=sizes["layers"], intermediate_size=sizes["hdim"],
            nffn_hidden_size=sizes["ffn_dim"], shared_representation_size=sizes["zdim"],
            ema_projection_size=sizes["ndim"], use_chunking=chunk_size > 0, chunk_size=chunk_size,
            max_positions=max_positions, relative_positional_bias=sizes["rel_pos_bias"],
            normalization_type=sizes["norm_type"], dropout_prob=0.0, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, nffn_activation_dropout_prob=0.0)
        self.model = MegaModel(config, add_pooling_layer=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(inputs_embeds=x).last_hidden_state


class FairseqTransformerEncoder(nn.Module):
    """fairseq's pre-norm TransformerEncoderLayerBase stack (fairseq works in L x B x d)."""

    def __init__(self, sizes: dict):
        super().__init__()
        from fairseq.models.transformer import TransformerConfig
        from fairseq.modules.transformer_layer import TransformerEncoderLayerBase

        cfg = TransformerConfig()
        cfg.encoder.embed_dim = sizes["embed_dim"]
        cfg.encoder.ffn_embed_dim = sizes["ffn_dim"]
        cfg.encoder.attention_heads = sizes["heads"]
        cfg.encoder.normalize_before = True
        cfg.dropout = cfg.attention_dropout = cfg.activation_dropout = 0.0
        self.layers = nn.ModuleList(TransformerEncoderLayerBase(cfg) for _ in range(sizes["layers"]))

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(0, 1)  # L x B x d
        for layer in self.layers:
            x = layer(x, encoder_padding_mask=None)
        return x.transpose(0, 1)


def torch_transformer_encoder(sizes: dict) -> nn.Module:
    layer = nn.TransformerEncoderLayer(sizes["embed_dim"], sizes["heads"], dim_feedforward=sizes["ffn_dim"],
                                       dropout=0.0, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, sizes["layers"], enable_nested_tensor=False)


def hf_available() -> bool:
    try:
        from transformers import MegaModel  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(name: str, sizes: dict, length: int) -> nn.Module:
    chunk = sizes["chunk_size"]
    if name == "mega":
        return MegaStack(sizes, chunk_size=-1, max_positions=length)
    if name == "mega_chunk":
        return MegaStack(sizes, chunk_size=chunk, max_positions=chunk)
    if name == "hf_mega":
        return HFMega(sizes, chunk_size=-1, max_positions=length)
    if name == "hf_mega_chunk":
        return HFMega(sizes, chunk_size=chunk, max_positions=chunk)
    if name == "torch_transformer":
        return torch_transformer_encoder(sizes)
    if name == "fairseq_transformer":
        return FairseqTransformerEncoder(sizes)
    raise ValueError(f"unknown model {name!r}")


def batch_size(length: int, tokens_per_step: int) -> int:
    return max(1, tokens_per_step // length)


def train_step(model: nn.Module, x: Tensor):
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()


# ----------------------------------------------------------------------------------------------
# FLOP count of a Mega training step
# ----------------------------------------------------------------------------------------------

def mega_forward_flops(sizes: dict, batch: int, length: int, chunk: int) -> Dict[str, float]:
    """Forward FLOPs of one bidirectional Mega layer stack, by kind (multiply-add = 2 FLOPs).

    projections: v, [phi, z, gamma, h] and output projections plus the FFN;
    attention: Q K^T and weights x V within each chunk (c keys per query; c = L for full);
    fft: the EMA's real FFT of the input and inverse FFT of the output per channel
    (2.5 n log2 n each, n the FFT length), one kernel FFT per layer and the spectrum product.
    Norms, activations, gates, softmax and the EMA kernel itself are not counted.
    """
    d, z, h, f = sizes["embed_dim"], sizes["zdim"], sizes["hdim"], sizes["ffn_dim"]
    tokens = batch * length
    keys = chunk if 0 < chunk < length else length
    n = fast_fft_length(2 * length - 1)
    per_transform = 2.5 * n * math.log2(n)
    layers = sizes["layers"]
    return {
        "projections": layers * 2.0 * tokens * (d * h + d * (z + h + 2 * d) + h * d + 2 * d * f),
        "attention": layers * 2.0 * tokens * keys * (z + h),
        "fft": layers * (d * (2 * batch + 1) * per_transform + batch * d * 6 * (n // 2 + 1)),
    }


def mega_training_flops(sizes: dict, batch: int, length: int, chunk: int) -> Dict[str, float]:
    """Training step = 3 x forward: the backward pass costs two forwards (the gradients with
    respect to inputs and to weights; for the EMA, FFTs of the output gradient and of the input)."""
    forward = mega_forward_flops(sizes, batch, length, chunk)
    counts = {kind: 3.0 * value for kind, value in forward.items()}
    counts["total"] = sum(counts.values())
    return counts


# ----------------------------------------------------------------------------------------------
# Measurements (run inside worker processes)
# ----------------------------------------------------------------------------------------------

def time_training(names: List[str], sizes: dict, length: int, tokens_per_step: int, repeats: int) -> List[dict]:
    """Training steps of several models at one length, timed in turns (one step of each model
    per round, ``repeats`` rounds after a warm-up round), so that every model meets the same
    spells of a shared machine's load and their ratios stay comparable."""
    torch.manual_seed(0)
    batch = batch_size(length, tokens_per_step)
    x = torch.randn(batch, length, sizes["embed_dim"])
    models = {name: build_model(name, sizes, length).train() for name in names}
    for model in models.values():
        train_step(model, x)  # warm-up
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            train_step(model, x)
            times[name].append(time.perf_counter() - start)
    per_1k = 1000.0 / (batch * length)
    return [{"model": name, "length": length, "batch": batch, "tokens": batch * length,
             "step_s": min(times[name]), "ms_per_1k_tokens": 1e3 * min(times[name]) * per_1k,
             "ms_per_1k_tokens_median": 1e3 * statistics.median(times[name]) * per_1k, "repeats": repeats}
            for name in names]


def matmul_rate(shape: List[int], repeats: int = 10) -> dict:
    """GFLOP/s of one plain torch.matmul (... x m x k) @ (... x k x n), shape [..., m, k, n], best of ``repeats``."""
    *batch, rows, inner, cols = shape
    a, b = torch.randn(*batch, rows, inner), torch.randn(*batch, inner, cols)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return {"shape": list(shape), "gflops": 2.0 * math.prod(shape) / best / 1e9}


class MegaDecoder(nn.Module):
    """Token embedding, causal chunked Mega layers, final norm, tied output projection."""

    def __init__(self, sizes: dict, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, sizes["embed_dim"])
        self.stack = MegaStack(sizes, chunk_size=sizes["chunk_size"], max_positions=sizes["chunk_size"],
                               causal=True)
        self.norm = SequenceNorm(sizes["norm_type"], sizes["embed_dim"])

    def forward(self, tokens: Tensor, incremental_state: dict) -> Tensor:
        x = self.stack(self.embed(tokens), incremental_state=incremental_state)  # B x L x d
        return torch.matmul(self.norm(x), self.embed.weight.t())  # B x L x V


def fairseq_transformer_lm(sizes: dict, vocab_size: int, max_positions: int) -> nn.Module:
    """fairseq's transformer_lm with the benchmark's sizes, built by fairseq's own build_model."""
    import dataclasses

    from fairseq.data import Dictionary
    from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig

    dictionary = Dictionary()
    for i in range(vocab_size - len(dictionary)):
        dictionary.add_symbol(f"w{i}")
    defaults = TransformerLanguageModelConfig()
    values = {field.name: getattr(defaults, field.name) for field in dataclasses.fields(defaults)}
    d = sizes["embed_dim"]
    values.update(decoder_layers=sizes["layers"], decoder_embed_dim=d, decoder_input_dim=d, decoder_output_dim=d,
                  decoder_ffn_embed_dim=sizes["ffn_dim"], decoder_attention_heads=sizes["heads"],
                  decoder_normalize_before=True, share_decoder_input_output_embed=True, dropout=0.0,
                  attention_dropout=0.0, activation_dropout=0.0, max_target_positions=max_positions,
                  tokens_per_sample=max_positions, add_bos_token=False, tpu=False)
    task = argparse.Namespace(source_dictionary=dictionary, target_dictionary=dictionary)
    return TransformerLanguageModel.build_model(argparse.Namespace(**values), task)


def median_step_time(step: Callable[[int], object], steps: int) -> float:
    """Median seconds of ``step(i)`` for i < steps (robust to other processes' bursts)."""
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def mega_decode_latency(model: MegaDecoder, context: int, steps: int, vocab_size: int) -> float:
    """Seconds per token (median) after a real prefill of ``context`` tokens (one call, incremental)."""
    state: dict = {}
    model(torch.randint(vocab_size, (1, context)), state)
    tokens = torch.randint(vocab_size, (steps, 1, 1))
    return median_step_time(lambda i: model(tokens[i], state), steps)


def fairseq_decode_latency(model: nn.Module, sizes: dict, context: int, steps: int, vocab_size: int) -> float:
    """Seconds per token (median) with a key/value cache of ``context`` positions.

    fairseq's decoder runs only the last token when given an incremental state, so the cache is
    filled directly with random keys and values of the right shape (the cost of a step does not
    depend on their values).
    """
    heads = sizes["heads"]
    head_dim = sizes["embed_dim"] // heads
    state: dict = {}
    for layer in model.decoder.layers:
        layer.self_attn._set_input_buffer(state, {
            "prev_key": torch.randn(1, heads, context, head_dim),
            "prev_value": torch.randn(1, heads, context, head_dim),
            "prev_key_padding_mask": None})
    tokens = torch.randint(4, vocab_size, (1, context + steps))
    return median_step_time(lambda i: model.decoder(tokens[:, :context + i + 1], incremental_state=state), steps)


def measure_decoding(sizes: dict, contexts: List[int], steps: int, vocab_size: int) -> List[dict]:
    torch.manual_seed(0)
    mega = MegaDecoder(sizes, vocab_size).eval()
    transformer = fairseq_transformer_lm(sizes, vocab_size, max(contexts) + steps + 1).eval()
    rows = []
    with torch.no_grad():
        for context in contexts:
            rows.append({"context": context,
                         "mega_chunk_ms_per_token": 1e3 * mega_decode_latency(mega, context, steps, vocab_size),
                         "fairseq_transformer_ms_per_token": 1e3 * fairseq_decode_latency(
                             transformer, sizes, context, steps, vocab_size)})
    return rows


def timing_worker(spec: dict) -> dict:
    sizes, configs = spec["sizes"], spec["configs"]
    results = {"train": [], "matmul": [], "decode": []}
    lengths = list(dict.fromkeys(length for _, length in configs))
    for length in lengths:
        names = [name for name, config_length in configs if config_length == length]
        for row in time_training(names, sizes, length, spec["tokens_per_step"], spec["repeats"]):
            results["train"].append(row)
            print(f"  timed {row['model']} L={length}: {row['ms_per_1k_tokens']:.1f} ms/1K tokens",
                  file=sys.stderr, flush=True)
        gc.collect()
    d, z, h, c = sizes["embed_dim"], sizes["zdim"], sizes["hdim"], sizes["chunk_size"]
    tokens = spec["tokens_per_step"]
    # the [phi, z, gamma, h] projection, and a chunk's weights times values
    results["matmul"] = [matmul_rate([tokens, d, z + h + 2 * d]), matmul_rate([max(1, tokens // c), c, c, h])]
    if spec["decode_contexts"]:
        results["decode"] = measure_decoding(sizes, spec["decode_contexts"], spec["decode_steps"],
                                             spec["vocab_size"])
    return results


def _resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _peak_resident_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def memory_worker(spec: dict) -> dict:
    """Peak memory of one training step: growth of the peak RSS over the RSS just before it.

    A one-chunk warm-up step first makes the libraries allocate their lazily created state
    (thread pools, FFT and BLAS buffers), which a long training run pays once, not per step.
    """
    name, length, sizes = spec["model"], spec["length"], spec["sizes"]
    torch.manual_seed(0)
    model = build_model(name, sizes, length).train()
    train_step(model, torch.randn(1, min(length, sizes["chunk_size"]), sizes["embed_dim"]))
    x = torch.randn(batch_size(length, spec["tokens_per_step"]), length, sizes["embed_dim"])
    model.zero_grad(set_to_none=True)
    gc.collect()
    before = _resident_mb()
    train_step(model, x)
    return {"model": name, "length": length, "peak_mb": _peak_resident_mb() - before, "resident_before_mb": before}


# ----------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------

def worker_env(args: argparse.Namespace) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    return env


def describe(spec: dict) -> str:
    if spec["kind"] == "memory":
        return f"memory worker for {spec['model']} at L={spec['length']}"
    return "timing worker"


def run_worker(spec: dict, args: argparse.Namespace) -> Optional[dict]:
    """Runs ``spec`` in a fresh interpreter; returns its result, or None (with a note) on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, result_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "result.json")
        with open(spec_path, "w") as f:
            json.dump(dict(spec, result_path=result_path), f)
        try:
            proc = subprocess.run([sys.executable, "-m", "mega_fairseq.benchmark", "--worker", spec_path],
                                  env=worker_env(args), timeout=args.timeout, stdout=subprocess.PIPE)
        except subprocess.TimeoutExpired:
            print(f"note: {describe(spec)} timed out after {args.timeout:.0f} s")
            return None
        if proc.returncode != 0 or not os.path.exists(result_path):
            print(f"note: {describe(spec)} failed (exit code {proc.returncode})")
            return None
        with open(result_path) as f:
            return json.load(f)


def worker_main(spec_path: str):
    with open(spec_path) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    result = (timing_worker if spec["kind"] == "timing" else memory_worker)(spec)
    with open(spec["result_path"], "w") as f:
        json.dump(result, f)


def model_sizes(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key) for key in ("layers", "embed_dim", "zdim", "hdim", "ndim", "ffn_dim",
                                                 "chunk_size", "heads", "norm_type", "rel_pos_bias")}


def training_configs(args: argparse.Namespace, models: List[str]) -> List[list]:
    configs = [[name, length] for name in models for length in args.lengths]
    if "mega_chunk" in models:
        configs += [["mega_chunk", length] for length in args.chunk_lengths if length not in args.lengths]
    return configs


def machine_description(args: argparse.Namespace) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": args.threads,
            "omp_wait_policy": args.omp_wait_policy, "torch": torch.__version__, "python": platform.python_version()}


def best_of_workers(timings: List[dict]) -> dict:
    """The fastest measurement of each configuration over timing workers (fresh processes)."""
    first = timings[0]
    return {
        "train": [min((by_key(t["train"])[(row["model"], row["length"])] for t in timings),
                      key=lambda r: r["ms_per_1k_tokens"]) for row in first["train"]],
        "matmul": [max((t["matmul"][i] for t in timings), key=lambda r: r["gflops"])
                   for i in range(len(first["matmul"]))],
        "decode": [{"context": row["context"], **{key: min(t["decode"][i][key] for t in timings)
                                                  for key in row if key != "context"}}
                   for i, row in enumerate(first["decode"])],
    }


def by_key(rows: List[dict]) -> Dict[tuple, dict]:
    return {(row["model"], row["length"]): row for row in rows}


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def compute_ratios(train: Dict[tuple, dict], decode: List[dict], lengths: List[int]) -> Dict[str, Optional[float]]:
    """Speed-ups (other model's time / Mega's time), memory fractions and length scaling."""

    def time_of(model, length):
        return train.get((model, length), {}).get("ms_per_1k_tokens")

    def memory_of(model, length):
        return train.get((model, length), {}).get("peak_mb")

    def memory_per_token(model, length):
        memory, tokens = memory_of(model, length), train.get((model, length), {}).get("tokens")
        return memory / tokens if memory is not None and tokens else None

    ratios = {}
    for length in lengths:
        ratios[f"mega_chunk_speedup_vs_hf_mega_chunk@{length}"] = ratio(time_of("hf_mega_chunk", length),
                                                                        time_of("mega_chunk", length))
        ratios[f"mega_speedup_vs_hf_mega@{length}"] = ratio(time_of("hf_mega", length), time_of("mega", length))
        ratios[f"mega_chunk_speedup_vs_torch_transformer@{length}"] = ratio(time_of("torch_transformer", length),
                                                                            time_of("mega_chunk", length))
        ratios[f"mega_time_vs_torch_transformer@{length}"] = ratio(time_of("mega", length),
                                                                   time_of("torch_transformer", length))
        ratios[f"mega_chunk_memory_vs_hf_mega_chunk@{length}"] = ratio(memory_of("mega_chunk", length),
                                                                       memory_of("hf_mega_chunk", length))
    base = min(lengths)
    for model in ALL_MODELS:
        for length in sorted({key[1] for key in train if key[0] == model}):
            if length != base:
                ratios[f"{model}_time_per_token@{length}_vs@{base}"] = ratio(time_of(model, length),
                                                                            time_of(model, base))
                ratios[f"{model}_memory_per_token@{length}_vs@{base}"] = ratio(memory_per_token(model, length),
                                                                              memory_per_token(model, base))
    if len(decode) > 1:
        first, last = decode[0], decode[-1]
        for key in ("mega_chunk_ms_per_token", "fairseq_transformer_ms_per_token"):
            ratios[f"decode_{key.replace('_ms_per_token', '')}@{last['context']}_vs@{first['context']}"] = ratio(
                last[key], first[key])
    return ratios


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(results: dict) -> str:
    train = by_key(results["train"])
    models = [m for m in ALL_MODELS if any(key[0] == m for key in train)]
    lengths = sorted({key[1] for key in train})
    lines = ["## Training: forward + backward, ms per 1K tokens (peak MB of one step)", "",
             "| L | B | " + " | ".join(models) + " |", "|---" * (len(models) + 2) + "|"]
    for length in lengths:
        cells = []
        for model in models:
            row = train.get((model, length))
            cells.append("-" if row is None else f"{_fmt(row['ms_per_1k_tokens'])} ({_fmt(row.get('peak_mb'), 0)})")
        batch = next(row["batch"] for key, row in train.items() if key[1] == length)
        lines.append(f"| {length} | {batch} | " + " | ".join(cells) + " |")
    if results.get("flops"):
        lines += ["", "## Mega-chunk training step: counted FLOPs and achieved rate", "",
                  "| L | GFLOP per step (proj / attn / fft) | GFLOP/s | fraction of matmul rate |", "|---|---|---|---|"]
        reference = results["matmul"][0]["gflops"] if results.get("matmul") else None
        for row in results["flops"]:
            lines.append(f"| {row['length']} | {_fmt(row['total_gflop'])} ({_fmt(row['projections_gflop'])} / "
                         f"{_fmt(row['attention_gflop'])} / {_fmt(row['fft_gflop'])}) | {_fmt(row['gflops'])} | "
                         f"{_fmt(ratio(row['gflops'], reference), 2)} |")
        for mm in results.get("matmul", []):
            lines.append(f"\nplain torch.matmul {' x '.join(map(str, mm['shape']))}: {_fmt(mm['gflops'])} GFLOP/s")
    if results.get("decode"):
        lines += ["", "## Decoding: ms per token after a context of L tokens (batch 1)", "",
                  "| context | Mega-chunk (incremental) | fairseq transformer_lm (kv cache) |", "|---|---|---|"]
        for row in results["decode"]:
            lines.append(f"| {row['context']} | {_fmt(row['mega_chunk_ms_per_token'], 2)} | "
                         f"{_fmt(row['fairseq_transformer_ms_per_token'], 2)} |")
    lines += ["", "## Ratios", ""]
    lines += [f"- {key}: {_fmt(value, 2)}" for key, value in results["ratios"].items() if value is not None]
    return "\n".join(lines)


def plot(results: dict, path: str) -> bool:
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq sets the root logger to DEBUG
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot drawn (pip install matplotlib)")
        return False
    train = by_key(results["train"])
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in ALL_MODELS:
        rows = sorted((row for key, row in train.items() if key[0] == model), key=lambda row: row["length"])
        if not rows:
            continue
        lengths = [row["length"] for row in rows]
        time_axis.plot(lengths, [row["ms_per_1k_tokens"] for row in rows], marker="o", label=model)
        memory = [(row["length"], row["peak_mb"]) for row in rows if row.get("peak_mb")]
        if memory:
            memory_axis.plot(*zip(*memory), marker="o", label=model)
    for axis, label in ((time_axis, "forward+backward ms per 1K tokens"), (memory_axis, "peak MB of one step")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length L")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    time_axis.legend(fontsize=8)
    machine = results["machine"]
    figure.suptitle(f"{machine['cpu']}, {machine['threads']} threads, "
                    f"{results['settings']['tokens_per_step']} tokens per step")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def flops_rows(results: dict, sizes: dict) -> List[dict]:
    rows = []
    for row in results["train"]:
        if row["model"] != "mega_chunk":
            continue
        counts = mega_training_flops(sizes, row["batch"], row["length"], sizes["chunk_size"])
        rows.append({"length": row["length"], "gflops": counts["total"] / row["step_s"] / 1e9,
                     **{f"{kind}_gflop": value / 1e9 for kind, value in counts.items()}})
    return rows


def select_models(args: argparse.Namespace) -> List[str]:
    models = list(args.models)
    if any(m in HF_MODELS for m in models) and not hf_available():
        print("note: transformers' MegaModel is not importable (pip install 'transformers<4.41'); "
              "skipping " + ", ".join(m for m in models if m in HF_MODELS))
        models = [m for m in models if m not in HF_MODELS]
    return models


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return {}
    models = select_models(args)
    sizes = model_sizes(args)
    configs = training_configs(args, models)
    common = {"sizes": sizes, "tokens_per_step": args.tokens_per_step, "threads": args.threads}
    timings = []
    for index in range(args.timing_workers):
        print(f"timing {len(configs)} training configurations and decoding in one worker "
              f"({args.threads} threads; worker {index + 1} of {args.timing_workers})", flush=True)
        timing = run_worker(dict(common, kind="timing", configs=configs, repeats=args.repeats,
                                 decode_contexts=args.decode_contexts, decode_steps=args.decode_steps,
                                 vocab_size=args.vocab_size), args)
        if timing is None:
            raise SystemExit("the timing worker failed")
        timings.append(timing)
    timing = best_of_workers(timings)
    if not args.no_memory:
        print(f"measuring peak memory: {len(configs)} subprocesses", flush=True)
        specs = [dict(common, kind="memory", model=name, length=length) for name, length in configs]
        with ThreadPoolExecutor(args.memory_jobs) as pool:
            memory = by_key([row for row in pool.map(lambda spec: run_worker(spec, args), specs) if row is not None])
        for row in timing["train"]:
            row["peak_mb"] = memory.get((row["model"], row["length"]), {}).get("peak_mb")
    results = {"machine": machine_description(args), "sizes": dict(sizes, arch=args.arch),
               "settings": {"tokens_per_step": args.tokens_per_step, "repeats": args.repeats,
                            "timing_workers": args.timing_workers,
                            "lengths": args.lengths, "chunk_lengths": args.chunk_lengths},
               **timing}
    results["flops"] = flops_rows(results, sizes)
    results["ratios"] = compute_ratios(by_key(results["train"]), results["decode"], args.lengths)
    print(format_report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    main()
