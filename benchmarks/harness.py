"""The benchmark's harness: command line, worker subprocesses, timing and memory measurements.

Workers run in fresh interpreters (``python -m benchmarks --worker SPEC``, with this checkout on
PYTHONPATH so that any working directory does) so that the OpenMP and malloc settings
(``--threads``, ``--omp-wait-policy``, ``--malloc``) are in place before torch loads, and so that
each memory measurement starts from a fresh CUDA caching allocator on GPU.

On CUDA (``--device cuda``, or ``auto`` with a GPU) kernels run asynchronously: every timed
region starts and ends with ``torch.cuda.synchronize()``, and peak memory is the allocator's
peak (``torch.cuda.max_memory_allocated()`` after ``torch.cuda.reset_peak_memory_stats()``)
above ``torch.cuda.memory_allocated()`` just before the step.

Precision (``--precision``): the forward passes run under autocast in bfloat16 or float16 (the
backward pass follows autocast's dtypes), or in float32; the plain matmul uses operands of the
same dtype. After the timed steps, one more step of every configuration runs under
torch.profiler to record what ran: the backend of torch's scaled_dot_product_attention and
the busiest kernels (``profiling``). The decoding measurements live in ``decoding``.
"""

import argparse
import gc
import json
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
from contextlib import AbstractContextManager
from typing import Callable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from mega_fairseq.modules import NORM_TYPES

from .cases import ALL_MODELS, DEFAULT_MODELS, DEFAULT_SIZES, HF_MODELS, arch_sizes, build_model, ema_path, hf_available
from .profiling import profile
from .report import by_key, compute_ratios, flops_rows, format_report, plot

# the folder holding the ``benchmarks`` package, put on the workers' PYTHONPATH
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384)
DEFAULT_CHUNK_LENGTHS = (32768, 65536, 131072, 262144)
DEFAULT_DECODE_CONTEXTS = (256, 1024, 4096, 16384)
DEFAULT_BEAM_LENGTHS = (128, 512)
DEFAULT_TOKENS_PER_STEP = {"cpu": 8192, "cuda": 32768}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# What models train in on each device: bfloat16 autocast on GPUs; float32 on CPUs, where
# bfloat16 matmuls are emulated unless the CPU has AVX512-BF16 or AMX.
DEFAULT_PRECISION = {"cpu": "fp32", "cuda": "bf16"}
# glibc's malloc maps every allocation over 32 MB anew (mmap) and unmaps it when freed: "heap"
# serves them from the heap and keeps freed memory there for the next step
MALLOC_SETTINGS = {"heap": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(64 * 2 ** 30)}}


def add_worker_options(parser) -> None:
    """The worker processes' settings: threads, OpenMP wait policy, malloc, time allowed (shared with
    python -m benchmarks paper)."""
    parser.add_argument("--threads", type=int, default=2,
                        help="torch/OpenMP threads in the workers (what matters on CPU; set on CUDA too)")
    parser.add_argument("--omp-wait-policy", default="active", choices=("active", "passive", "inherit"),
                        help="OMP_WAIT_POLICY of the workers: 'active' keeps idle OpenMP threads spinning, which on "
                             "small VMs avoids a scheduler tick of wake-up latency per parallel op")
    parser.add_argument("--malloc", default="heap", choices=tuple(MALLOC_SETTINGS) + ("inherit",),
                        help="glibc malloc settings of the workers: 'heap' (MALLOC_MMAP_MAX_=0 and a 64 GB "
                             "MALLOC_TRIM_THRESHOLD_) keeps freed memory in the process, so that tensors over 32 MB "
                             "reuse it instead of being mapped anew each time, every page faulted in and zeroed by the "
                             "kernel (at 256K positions half of a step's time); 'inherit' keeps the environment's")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds allowed to each worker process")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Forward+backward time per 1K tokens and peak memory of Mega, Mega-chunk and Transformer "
                    "encoders, FLOP/s of the Mega-chunk step, and per-token decoding latency, on the GPU when "
                    "torch sees one (CUDA), else on CPU (see --device).")
    sizes = parser.add_argument_group(
        "model sizes (defaults: 2 bidirectional layers as wide as mega_lra_imdb, or those of --arch; a flag "
        "given explicitly wins)")
    sizes.add_argument("--arch", metavar="NAME",
                       help="take the sizes of a registered Mega architecture (e.g. mega_lm_enwik8_base): layers, "
                            "d, z, v, N, FFN, chunk (if it has one), norm and relative bias")
    sizes.add_argument("--layers", type=int, help=f"number of layers ({DEFAULT_SIZES['layers']})")
    sizes.add_argument("--embed-dim", type=int, help=f"model dimension d ({DEFAULT_SIZES['embed_dim']})")
    sizes.add_argument("--z-dim", type=int,
                       help=f"Mega shared representation (query/key) dim z ({DEFAULT_SIZES['z_dim']})")
    sizes.add_argument("--hidden-dim", type=int,
                       help=f"Mega attention value dim v, the paper's hidden dim ({DEFAULT_SIZES['hidden_dim']})")
    sizes.add_argument("--n-dim", type=int, help=f"Mega EMA expansion dim N ({DEFAULT_SIZES['n_dim']})")
    sizes.add_argument("--ffn-embed-dim", type=int,
                       help=f"FFN hidden size, all models ({DEFAULT_SIZES['ffn_embed_dim']})")
    sizes.add_argument("--chunk-size", type=int,
                       help=f"chunk size c of the chunked models ({DEFAULT_SIZES['chunk_size']})")
    sizes.add_argument("--heads", type=int, help="attention heads of the Transformer baselines (d / 64)")
    sizes.add_argument("--normalization-type", choices=NORM_TYPES,
                       help=f"Mega norm; the Transformers use layernorm ({DEFAULT_SIZES['normalization_type']})")
    sizes.add_argument("--rel-pos-bias", choices=("simple", "rotary"),
                       help=f"Mega relative bias ({DEFAULT_SIZES['rel_pos_bias']})")
    runs = parser.add_argument_group("what to run")
    runs.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=ALL_MODELS, metavar="MODEL",
                      help=f"models to train ({', '.join(ALL_MODELS)}; default: all but mega_chunk_fft and "
                           "mega_chunk_chunked, Mega-chunk with its EMA forced onto the FFT or the chunk path at "
                           "every length, to compare the EMA's paths with mega_chunk's automatic choice)")
    runs.add_argument("--lengths", type=int, nargs="+", default=None,
                      help=f"sequence lengths for every model (default: {' '.join(map(str, DEFAULT_LENGTHS))})")
    runs.add_argument("--chunk-lengths", type=int, nargs="*", default=None,
                      help="extra lengths for mega_chunk only (default: "
                           f"{' '.join(map(str, DEFAULT_CHUNK_LENGTHS))})")
    runs.add_argument("--timing-workers", type=int, default=1,
                      help="run the timing worker this many times, each a fresh process, and keep the best of "
                           "each measurement (on shared VMs a whole process can run slower than the next)")
    runs.add_argument("--tokens-per-step", type=int, default=None,
                      help="tokens per training step; B = this // L (default: "
                           f"{DEFAULT_TOKENS_PER_STEP['cpu']} on CPU, {DEFAULT_TOKENS_PER_STEP['cuda']} on CUDA, "
                           "where small batches leave the GPU idle)")
    runs.add_argument("--repeats", type=int, default=3,
                      help="timed training steps per configuration (best is kept); the models of one length take "
                           "turns, one step each")
    runs.add_argument("--decode-contexts", type=int, nargs="*", default=None,
                      help=f"decoding context lengths (default: {' '.join(map(str, DEFAULT_DECODE_CONTEXTS))})")
    runs.add_argument("--decode-steps", type=int, default=128, help="tokens decoded per context (median latency kept)")
    runs.add_argument("--vocab-size", type=int, default=64, help="vocabulary of the decoding benchmark")
    runs.add_argument("--beam-size", type=int, default=5, help="beam of the beam search benchmark")
    runs.add_argument("--beam-batch", type=int, default=32, help="sequences decoded at once by the beam search")
    runs.add_argument("--beam-lengths", type=int, nargs="*", default=None,
                      help="tokens decoded per sequence by the beam search, one run each (best of --repeats); none "
                           f"skips it (default: {' '.join(map(str, DEFAULT_BEAM_LENGTHS))}; --quick: "
                           f"{DEFAULT_BEAM_LENGTHS[0]})")
    runs.add_argument("--translation-beam-lengths", type=int, nargs="*", default=[],
                      help="target tokens per sentence of a translation beam search (fairseq's SequenceGenerator, "
                           "--beam-size, --beam-batch sentences of --source-length tokens) with this package's mega "
                           "translation model (full attention, as the WMT16 recipe) and fairseq's transformer of the "
                           "same sizes, one run each (best of --repeats); none (the default) skips it")
    runs.add_argument("--source-length", type=int, default=32, help="source tokens of the translation beam search")
    runs.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    runs.add_argument("--memory-jobs", type=int, default=1,
                      help="peak-memory subprocesses run at once (each measures only itself; mind the RAM)")
    runs.add_argument("--quick", action="store_true",
                      help="a short run: lengths 1K and 4K, mega_chunk also at 16K, one timed step")
    env = parser.add_argument_group("machine")
    env.add_argument("--device", choices=DEVICES, default="auto",
                     help="where the models run: 'auto' (default) is cuda when torch.cuda.is_available(), else "
                          "cpu; on cuda every timed step is bracketed by torch.cuda.synchronize() and peak memory "
                          "is the CUDA allocator's (max_memory_allocated growth), on cpu the resident set's")
    env.add_argument("--precision", choices=PRECISIONS, default=None,
                     help="forward passes under bf16 or fp16 autocast, or in fp32 (on CUDA with TF32 off, "
                          "torch's default); default: bf16 on CUDA, fp32 on CPU. fp16 needs CUDA (CPU autocast "
                          "does not cover float16 for every operator)")
    add_worker_options(env)
    out = parser.add_argument_group("output")
    out.add_argument("--json", metavar="PATH", help="write all measurements as JSON")
    out.add_argument("--plot", metavar="PATH", help="draw time and memory against length (needs matplotlib)")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if args.device == "auto":
        args.device = "cuda" if cuda else "cpu"
    elif args.device == "cuda" and not cuda:
        parser.error(f"--device cuda: torch.cuda.is_available() is False here (torch {torch.__version__}); "
                     "use --device cpu or auto")
    if args.precision is None:
        args.precision = DEFAULT_PRECISION[args.device]
    elif args.precision == "fp16" and args.device == "cpu":
        parser.error("--precision fp16 needs --device cuda (CPU autocast does not cover float16 for every "
                     "operator); use bf16 or fp32 on CPU")
    if args.tokens_per_step is None:
        args.tokens_per_step = DEFAULT_TOKENS_PER_STEP[args.device]
    if args.lengths is None:
        args.lengths = [1024, 4096] if args.quick else list(DEFAULT_LENGTHS)
    if args.chunk_lengths is None:
        args.chunk_lengths = [16384] if args.quick else list(DEFAULT_CHUNK_LENGTHS)
    if args.decode_contexts is None:
        args.decode_contexts = list(DEFAULT_DECODE_CONTEXTS)
    if args.beam_lengths is None:
        args.beam_lengths = list(DEFAULT_BEAM_LENGTHS[:1] if args.quick else DEFAULT_BEAM_LENGTHS)
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


# ----------------------------------------------------------------------------------------------
# Measurements (run inside worker processes)
# ----------------------------------------------------------------------------------------------

def batch_size(length: int, tokens_per_step: int) -> int:
    return max(1, tokens_per_step // length)


def autocast(device: str, precision: str) -> AbstractContextManager:
    """Autocast to the precision's dtype (the forward pass only); disabled for fp32."""
    return torch.autocast(device, dtype=PRECISIONS[precision], enabled=precision != "fp32")


def train_step(model: nn.Module, x: Tensor, precision: str = "fp32"):
    model.zero_grad(set_to_none=True)
    with autocast(x.device.type, precision):
        loss = model(x).float().sum()
    loss.backward()


def synchronize(device: str):
    """Waits until the kernels queued on the GPU have run (CUDA runs them asynchronously); a no-op on CPU."""
    if device == "cuda":
        torch.cuda.synchronize()


def timed(work: Callable[[], object], device: str) -> float:
    """Seconds ``work()`` takes, on CUDA from an idle GPU until its last kernel has finished."""
    synchronize(device)
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def time_training(names: List[str], sizes: dict, length: int, tokens_per_step: int, repeats: int,
                  device: str = "cpu", precision: str = "fp32") -> List[dict]:
    """Training steps of several models at one length, timed in turns (one step of each model
    per round, ``repeats`` rounds after a warm-up round), so that every model meets the same
    spells of a shared machine's load and their ratios stay comparable; then one profiled step
    of each (its SDPA backend and busiest kernels)."""
    torch.manual_seed(0)
    batch = batch_size(length, tokens_per_step)
    x = torch.randn(batch, length, sizes["embed_dim"], device=device)
    models = {name: build_model(name, sizes, length).to(device).train() for name in names}
    for model in models.values():
        train_step(model, x, precision)  # warm-up
    synchronize(device)
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name, model in models.items():
            times[name].append(timed(lambda: train_step(model, x, precision), device))
    profiles = {name: profile(lambda: train_step(model, x, precision), device) for name, model in models.items()}
    per_1k = 1000.0 / (batch * length)
    return [{"model": name, "length": length, "batch": batch, "tokens": batch * length,
             "ema_path": ema_path(name, length, device),
             "step_s": min(times[name]), "ms_per_1k_tokens": 1e3 * min(times[name]) * per_1k,
             "ms_per_1k_tokens_median": 1e3 * statistics.median(times[name]) * per_1k, "repeats": repeats,
             **profiles[name]}
            for name in names]


def matmul_rate(shape: List[int], repeats: int = 10, device: str = "cpu", precision: str = "fp32") -> dict:
    """GFLOP/s of one plain torch.matmul (... x m x k) @ (... x k x n), shape [..., m, k, n], best of
    ``repeats``, operands in the precision's dtype (what autocast runs a matmul in), and its kernels."""
    *batch, rows, inner, cols = shape
    dtype = PRECISIONS[precision]
    a = torch.randn(*batch, rows, inner, device=device, dtype=dtype)
    b = torch.randn(*batch, inner, cols, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = min(timed(lambda: torch.matmul(a, b), device) for _ in range(repeats))
    return {"shape": list(shape), "gflops": 2.0 * math.prod(shape) / best / 1e9,
            "kernels": profile(lambda: torch.matmul(a, b), device)["kernels"]}


def timing_worker(spec: dict) -> dict:
    sizes, configs, device = spec["sizes"], spec["configs"], spec["device"]
    results = {"train": [], "matmul": [], "decode": [], "beam_search": [], "translation_beam_search": []}
    lengths = list(dict.fromkeys(length for _, length in configs))
    for length in lengths:
        names = [name for name, config_length in configs if config_length == length]
        for row in time_training(names, sizes, length, spec["tokens_per_step"], spec["repeats"],
                                 device, spec["precision"]):
            results["train"].append(row)
            print(f"  timed {row['model']} L={length}: {row['ms_per_1k_tokens']:.1f} ms/1K tokens",
                  file=sys.stderr, flush=True)
        gc.collect()
    d, z, h, c = sizes["embed_dim"], sizes["z_dim"], sizes["hidden_dim"], sizes["chunk_size"]
    tokens = spec["tokens_per_step"]
    # the [phi, z, gamma, h] projection, and a chunk's weights times values
    results["matmul"] = [matmul_rate([tokens, d, z + h + 2 * d], device=device, precision=spec["precision"]),
                         matmul_rate([max(1, tokens // c), c, c, h], device=device, precision=spec["precision"])]
    if spec["decode_contexts"] or spec["beam"]["lengths"] or spec["beam"]["translation_lengths"]:
        from .decoding import measure_decoding  # it times with this module's timed: imported once this one is

        results.update(measure_decoding(sizes, spec["decode_contexts"], spec["decode_steps"], spec["vocab_size"],
                                        spec["beam"], device, spec["precision"]))
    return results


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2 ** 20


def peak_resident_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def cuda_step_peak_mb(model: nn.Module, x: Tensor, precision: str) -> dict:
    """Peak of the CUDA allocator's tensor memory during one training step, above what is
    allocated just before it (parameters, the input and warm-up state such as cuBLAS workspaces)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    train_step(model, x, precision)
    torch.cuda.synchronize()
    return {"peak_mb": (torch.cuda.max_memory_allocated() - before) / 2 ** 20, "allocated_before_mb": before / 2 ** 20}


def memory_worker(spec: dict) -> dict:
    """Peak memory of one training step: on CPU, growth of the peak RSS over the RSS just
    before it; on CUDA, growth of the allocator's peak over its allocation just before it.

    A one-chunk warm-up step first makes the libraries allocate their lazily created state
    (thread pools, FFT and BLAS buffers, cuBLAS handles), which a long training run pays once, not per step.
    """
    name, length, sizes, device = spec["model"], spec["length"], spec["sizes"], spec["device"]
    precision = spec["precision"]
    torch.manual_seed(0)
    model = build_model(name, sizes, length).to(device).train()
    train_step(model, torch.randn(1, min(length, sizes["chunk_size"]), sizes["embed_dim"], device=device), precision)
    x = torch.randn(batch_size(length, spec["tokens_per_step"]), length, sizes["embed_dim"], device=device)
    model.zero_grad(set_to_none=True)
    gc.collect()
    if device == "cuda":
        return {"model": name, "length": length, **cuda_step_peak_mb(model, x, precision)}
    before = resident_mb()
    train_step(model, x, precision)
    return {"model": name, "length": length, "peak_mb": peak_resident_mb() - before, "resident_before_mb": before}


# ----------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------

def worker_env(args: argparse.Namespace) -> dict:
    python_path = [ROOT] + [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=os.pathsep.join(python_path))
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    env.update(MALLOC_SETTINGS.get(args.malloc, {}))
    return env


def describe(spec: dict) -> str:
    if spec["kind"] == "memory":
        return f"memory worker for {spec['model']} at L={spec['length']}"
    if spec["kind"] == "trainer":
        return f"training worker for {spec['arch']}"
    return "timing worker"


def run_worker(spec: dict, args: argparse.Namespace, subcommand: Sequence[str] = ()) -> Optional[dict]:
    """Runs ``spec`` in a fresh interpreter (``python -m benchmarks [SUBCOMMAND] --worker SPEC``);
    returns its result, or None (with a note) on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, result_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "result.json")
        with open(spec_path, "w") as f:
            json.dump(dict(spec, result_path=result_path), f)
        try:
            proc = subprocess.run([sys.executable, "-m", "benchmarks", *subcommand, "--worker", spec_path],
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
    return {key: getattr(args, key) for key in [*DEFAULT_SIZES, "heads"]}


def training_configs(args: argparse.Namespace, models: List[str]) -> List[list]:
    configs = [[name, length] for name in models for length in args.lengths]
    if "mega_chunk" in models:
        configs += [["mega_chunk", length] for length in args.chunk_lengths if length not in args.lengths]
    return configs


def machine_description(args: argparse.Namespace) -> dict:
    """The host (CPU model, threads, versions) and the device the models ran on: ``device`` is
    "cpu" or "cuda", and on CUDA ``gpu`` names the GPU and ``cuda`` the CUDA version of torch."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    machine = {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": args.threads,
               "omp_wait_policy": args.omp_wait_policy, "malloc": args.malloc, "torch": torch.__version__,
               "python": platform.python_version(), "device": args.device}
    if args.device == "cuda":
        machine.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                       tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    return machine


def best_of_workers(timings: List[dict]) -> dict:
    """The fastest measurement of each configuration over timing workers (fresh processes)."""
    first = timings[0]
    return {
        "train": [min((by_key(t["train"])[(row["model"], row["length"])] for t in timings),
                      key=lambda r: r["ms_per_1k_tokens"]) for row in first["train"]],
        "matmul": [max((t["matmul"][i] for t in timings), key=lambda r: r["gflops"])
                   for i in range(len(first["matmul"]))],
        "decode": [{**row, **{key: min(t["decode"][i][key] for t in timings)
                              for key in row if key.endswith("_ms_per_token")}}
                   for i, row in enumerate(first["decode"])],
        **{name: [{**row, **{key: max(t[name][i][key] for t in timings) for key in row
                             if key.endswith("_tokens_per_s")}}
                  for i, row in enumerate(first[name])] for name in ("beam_search", "translation_beam_search")},
    }


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
    common = {"sizes": sizes, "tokens_per_step": args.tokens_per_step, "threads": args.threads,
              "device": args.device, "precision": args.precision}
    timings = []
    for index in range(args.timing_workers):
        print(f"timing {len(configs)} training configurations and decoding in one worker on {args.device} "
              f"in {args.precision} ({args.threads} threads; worker {index + 1} of {args.timing_workers})", flush=True)
        timing = run_worker(dict(common, kind="timing", configs=configs, repeats=args.repeats,
                                 decode_contexts=args.decode_contexts, decode_steps=args.decode_steps,
                                 vocab_size=args.vocab_size,
                                 beam=dict(size=args.beam_size, batch=args.beam_batch, lengths=args.beam_lengths,
                                           repeats=args.repeats, translation_lengths=args.translation_beam_lengths,
                                           source_length=args.source_length)), args)
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
               "settings": {"device": args.device, "precision": args.precision,
                            "tokens_per_step": args.tokens_per_step, "repeats": args.repeats,
                            "timing_workers": args.timing_workers,
                            "lengths": args.lengths, "chunk_lengths": args.chunk_lengths},
               **timing}
    results["flops"] = flops_rows(results, sizes)
    results["ratios"] = compute_ratios(by_key(results["train"]), results["decode"], args.lengths,
                                       results["beam_search"], results["translation_beam_search"])
    print(format_report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return results

