"""Validates a GPU machine in at most 10 minutes on one GPU (``make gpu-check``), everything into one log.

    python -m benchmarks.gpu_check --log gpu_check.log          # on the GPU
    python -m benchmarks.gpu_check --cpu --log dry_run.log      # make gpu-check CPU=1: a quick dry run on CPU

Sections, in order (each ends in ok, FAIL, skipped or unsupported, with its reason):

1. machine: torch, CUDA, GPU, fairseq.
2. CUDA tests: ``pytest -m cuda tests`` (on CPU collected only, and counted).
3. SDPA backends: the backend of torch's scaled_dot_product_attention that the attention of every
   Mega preset gets (self-attention of each stack, the translation decoder's cross-attention), in
   training (forward + backward, the preset's attention dropout) and evaluation, in float32, as
   ``--bf16`` and ``--fp16`` run it (weights converted) and as ``--amp`` does (float16 autocast).
   On CPU the tiny presets at short lengths.
4. accuracy: ``attend`` (fused path) and a ``MovingAverageGatedAttention`` forward + backward
   in each precision against float64 on CPU (the explicit reference path): relative error in
   norm of the outputs and of the gradients (q, k, v and the bias; the block's input and
   parameters), each against a limit.
5. training: ``fairseq-train`` of ``mega_lm_tiny``, ``mega_mt_tiny`` and ``mega_classifier_tiny``
   with batch norm (ListOps) for 20 updates in float32, ``--fp16``, ``--bf16`` and ``--amp``, on
   data generated here; then ``fairseq-generate --fp16`` with the translation model. On CPU: 5
   updates, float32 and ``--bf16`` only (half precision needs CUDA), ``fairseq-generate`` in float32.
6. benchmark: ``python -m benchmarks --quick`` (bfloat16 autocast); on CPU tiny sizes.
7. paper table: ``python -m benchmarks paper`` when this checkout has it.

A summary with the figures closes the log; the exit code is 1 if anything failed.
"""

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .profiling import sdpa_backend_of

ROOT = Path(__file__).resolve().parents[1]
USER_DIR = ROOT / "mega_fairseq"

# Precisions of sections 3 and 4: (dtype the module's weights and inputs are converted to, autocast dtype)
PRECISIONS = {"fp32": (torch.float32, None), "bf16": (torch.bfloat16, None), "fp16": (torch.float16, None),
              "amp": (torch.float32, torch.float16)}
CPU_PRECISIONS = ("fp32", "bf16")  # CPU kernels do not cover float16 everywhere
# fairseq-train flags of each precision
TRAIN_FLAGS = {"fp32": [], "fp16": ["--fp16"], "bf16": ["--bf16"], "amp": ["--amp"]}
# Relative error limits against float64 (in norm), far above what rounding gives (measured on CPU with
# torch's bf16/fp16 attention: 2.4e-3 and 3e-4 for outputs and gradients), far below what a wrong mask,
# scale or bias gives (order 1).
ATTEND_LIMITS = {"fp32": 1e-4, "bf16": 2e-2, "fp16": 3e-3}
# a whole block (projections, EMA, gates, norm) with float32 weights under autocast in this dtype
BLOCK_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "amp": torch.float16}
BLOCK_LIMITS = {"fp32": 1e-4, "bf16": 6e-2, "amp": 1e-2}

OK, FAIL, SKIPPED, UNSUPPORTED = "ok", "FAIL", "skipped", "unsupported"
# what the check writes in its work folder
WORK_ITEMS = ("lm", "mt", "listops", "checkpoints", "bench.json")
BUDGET_S = 600  # the whole check on one GPU; the paper table, last, gets what is left (at least a minute)


class Log:
    """One log file for everything; section headings and results also go to stdout."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "w")
        self.results: List[Tuple[str, str, str]] = []
        self.started = time.time()

    def write(self, text: str = ""):
        self.file.write(text + "\n")
        self.file.flush()

    def section(self, title: str):
        line = f"## {title} (at {time.time() - self.started:.0f} s)"
        self.write(f"\n{line}\n")
        print(line, flush=True)

    def result(self, name: str, status: str, detail: str = ""):
        """One checked item: ``status`` is ok, FAIL, skipped or unsupported; ``detail`` its figures or reason."""
        self.results.append((name, status, detail))
        line = f"[{status}] {name}" + (f": {detail}" if detail else "")
        self.write(line)
        print(f"  {line}", flush=True)

    def run(self, command: Sequence, timeout: float, cwd: Path = ROOT) -> Tuple[int, str]:
        """Runs a command, its output into the log; (exit code, output); a timeout is exit code 124."""
        command = [str(part) for part in command]
        self.write("$ " + " ".join(command))
        started = time.time()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in os.environ.get(
            "PYTHONPATH", "").split(os.pathsep) if p]))
        try:
            proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=timeout)
            code, output = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as error:
            code, output = 124, (error.output or b"").decode(errors="replace") + f"\n(timed out after {timeout:.0f} s)"
        self.write(output.rstrip())
        self.write(f"(exit code {code} after {time.time() - started:.0f} s)")
        return code, output

    def guarded(self, name: str, work: Callable[[], None]):
        """Runs one section; an exception is a failure of it, with its traceback in the log."""
        try:
            work()
        except Exception:  # noqa: BLE001  the check goes on to the next section
            self.write(traceback.format_exc())
            self.result(name, FAIL, "raised " + traceback.format_exc().strip().splitlines()[-1])


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    reference = reference.double().cpu()
    return float((value.double().cpu() - reference).norm() / reference.norm().clamp(min=1e-30))


# ----------------------------------------------------------------------------------------------
# 1. machine, 2. CUDA tests
# ----------------------------------------------------------------------------------------------

def machine(log: Log, device: str):
    import fairseq

    log.section("machine")
    facts = {"python": platform.python_version(), "torch": torch.__version__, "torch CUDA": torch.version.cuda,
             "fairseq": fairseq.__version__, "device": device}
    if device == "cuda":
        facts.update(gpu=torch.cuda.get_device_name(),
                     capability=".".join(map(str, torch.cuda.get_device_capability())),
                     memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2 ** 30, 1),
                     tf32_matmul=torch.backends.cuda.matmul.allow_tf32)
    for key, value in facts.items():
        log.write(f"- {key}: {value}")
    log.result("machine", OK, ", ".join(f"{key} {value}" for key, value in facts.items()))


def cuda_tests(log: Log, device: str):
    """On CUDA runs every test marked cuda; on CPU collects them (they would be skipped) and counts them."""
    log.section("CUDA tests (pytest -m cuda)")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests"]
    if device == "cpu":
        code, output = log.run(command + ["--collect-only"], timeout=300)
        match = re.search(r"(\d+)/\d+ tests collected", output)
        count = int(match.group(1)) if match else 0
        log.result("CUDA tests", OK if code == 0 and count > 0 else FAIL,
                   f"{count} collected, not run (no GPU)")
        return
    code, output = log.run(command, timeout=420)
    summary = output.strip().splitlines()[-1] if output.strip() else "no output"
    log.result("CUDA tests", OK if code == 0 and " passed" in summary else FAIL, summary)


# ----------------------------------------------------------------------------------------------
# 3. SDPA backends per preset shape
# ----------------------------------------------------------------------------------------------

def attention_shapes(cpu: bool) -> Dict[str, dict]:
    """Every distinct attention of the Mega presets: description -> {presets, layer config, kind,
    causal, length}. Full attention runs at 1024 positions, chunked attention at its chunk; on CPU
    only the tiny presets, at most 64 positions."""
    from mega_fairseq.models.mega_classifier import CLASSIFIER_PRESETS
    from mega_fairseq.models.mega_config import layer_config
    from mega_fairseq.models.mega_lm import LM_PRESETS
    from mega_fairseq.models.mega_translation import MT_PRESETS

    families = [(LM_PRESETS, [("decoder", "self", True)]),
                (MT_PRESETS, [("encoder", "self", False), ("decoder", "self", True), ("decoder", "cross", True)]),
                (CLASSIFIER_PRESETS, [("encoder", "self", False)])]
    shapes: Dict[str, dict] = {}
    for table, stacks in families:
        for name, preset in table.presets.items():
            if preset.alias_of or table.resolve(name).get("encoder_type") == "transformer" or \
                    (cpu and not name.endswith("_tiny")):
                continue
            cfg = argparse.Namespace()
            table.apply(name, cfg)
            for prefix, kind, causal in stacks:
                chunk = getattr(cfg, f"{prefix}_chunk_size")
                length = chunk if chunk > 0 else 1024
                if cpu:
                    length = min(length, 64)
                layer = layer_config(cfg, prefix, max_positions=length, max_source_positions=length)
                description = (f"{kind} {'causal' if causal else 'bidirectional'}, L={length}"
                               f"{f' (chunk {chunk})' if chunk > 0 else ''}, d={layer.embed_dim}, z={layer.z_dim}, "
                               f"v={layer.hidden_dim if kind == 'self' else layer.embed_dim}, "
                               f"{layer.attention_activation_fn}, attention dropout {layer.attention_dropout}")
                shape = shapes.setdefault(description, dict(presets=[], layer=layer, kind=kind, causal=causal,
                                                            length=length))
                shape["presets"].append(f"{name} {prefix}")
    return shapes


def attention_block(shape: dict):
    from mega_fairseq.modules import GatedCrossAttention, MovingAverageGatedAttention

    if shape["kind"] == "cross":
        return GatedCrossAttention(shape["layer"])
    return MovingAverageGatedAttention(shape["layer"], causal=shape["causal"])


def block_backend(shape: dict, device: str, precision: str, training: bool) -> str:
    """The SDPA backend of one training step (or evaluation forward) of the shape's block."""
    dtype, autocast = PRECISIONS[precision]
    torch.manual_seed(0)
    block = attention_block(shape).to(device=device, dtype=dtype).train(training)
    x = torch.randn(2, shape["length"], shape["layer"].embed_dim, device=device, dtype=dtype)
    inputs = (x, x) if shape["kind"] == "cross" else (x,)

    def step():
        with torch.set_grad_enabled(training), torch.autocast(device, dtype=autocast or torch.float16,
                                                              enabled=autocast is not None):
            out = block(*inputs)[0]
        if training:
            out.float().sum().backward()

    return sdpa_backend_of(step)


def sdpa_backends(log: Log, device: str):
    log.section("SDPA backend of each preset's attention (training / evaluation)")
    precisions = list(PRECISIONS) if device == "cuda" else list(CPU_PRECISIONS)
    shapes = attention_shapes(cpu=device == "cpu")
    log.write("| attention | presets | " + " | ".join(precisions) + " |")
    log.write("|---" * (len(precisions) + 2) + "|")
    backends = set()
    for description, shape in shapes.items():
        cells = []
        for precision in precisions:
            pair = [block_backend(shape, device, precision, training) for training in (True, False)]
            backends.update(pair)
            cells.append(" / ".join(pair))
        log.write(f"| {description} | {', '.join(shape['presets'])} | " + " | ".join(cells) + " |")
    log.result("SDPA backends", OK, f"{len(shapes)} attention shapes x {', '.join(precisions)}, training and "
                                    f"evaluation: {', '.join(sorted(backends))}")


# ----------------------------------------------------------------------------------------------
# 4. accuracy against float64
# ----------------------------------------------------------------------------------------------

def attend_errors(device: str, precision: str, causal: bool, padded: bool, sizes: Tuple[int, ...]) -> dict:
    """Relative errors of ``attend``'s fused softmax path in the precision against the explicit
    path in float64 on CPU, on the same (rounded) inputs: output and gradients of q, k, v, bias.

    Shapes: q, k: B x nc x c x z; v: B x nc x c x h; bias: c x c (as Mega's chunks)."""
    from mega_fairseq.modules import attend

    batch, chunks, chunk, z, h = sizes
    dtype = PRECISIONS[precision][0]
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(batch, chunks, chunk, z, generator=generator),
              torch.randn(batch, chunks, chunk, z, generator=generator),
              torch.randn(batch, chunks, chunk, h, generator=generator),
              0.5 * torch.randn(chunk, chunk, generator=generator)]
    inputs = [t.to(dtype) for t in inputs]  # the reference sees the same rounded values
    grad = torch.randn(batch, chunks, chunk, h, generator=generator)
    visible = None
    if padded:  # the second sequence's last quarter is padding
        visible = torch.ones(batch, chunks, 1, chunk, dtype=torch.bool)
        visible[1, -1, :, chunk - chunk // 4:] = False
    if causal:
        below = torch.ones(chunk, chunk, dtype=torch.bool).tril()
        visible = below if visible is None else visible & below

    def run(reference: bool):
        """The fused path on the device, or the explicit weights (need_weights) in float64 on CPU."""
        on, float_type = ("cpu", torch.float64) if reference else (device, torch.float32)
        leaves = [(t.double() if reference else t).to(on, copy=True).requires_grad_() for t in inputs]
        out, _ = attend(*leaves[:3], function="softmax", bias=leaves[3],
                        visible=None if visible is None else visible.to(on), scaling=z ** -0.5,
                        need_weights=reference)
        (out.to(float_type) * grad.to(on, float_type)).sum().backward()
        return [out.detach()] + [leaf.grad for leaf in leaves]

    backend = sdpa_backend_of(lambda: run(reference=False))
    fused, reference = run(reference=False), run(reference=True)
    names = ["output", "dq", "dk", "dv", "dbias"]
    return {"backend": backend, **{name: relative_error(a, b) for name, a, b in zip(names, fused, reference)}}


def block_errors(device: str, precision: str, causal: bool, sizes: dict) -> dict:
    """Relative errors of a MovingAverageGatedAttention forward + backward (float32 weights, the
    precision's autocast) against the same block in float64 on CPU with explicit attention
    weights: output, input gradient and the worst parameter gradient. ``sizes``: layer options
    (MegaLayerConfig's names) and the sequence ``length``."""
    import copy

    from mega_fairseq.modules import MegaLayerConfig, MovingAverageGatedAttention

    torch.manual_seed(0)
    length = sizes["length"]
    cfg = MegaLayerConfig(**{name: value for name, value in sizes.items() if name != "length"},
                          max_positions=length, dropout=0.0)
    block = MovingAverageGatedAttention(cfg, causal=causal).eval()
    with torch.no_grad():  # untrained EMA and attention parameters are near-degenerate
        for parameter in block.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randn(2, length, cfg.embed_dim)
    padding = None if causal else torch.arange(length) >= torch.tensor([[length], [length * 3 // 4]])

    def run(reference: bool):
        """Under the precision's autocast on the device, or in float64 on CPU with explicit attention weights."""
        on, float_type = ("cpu", torch.float64) if reference else (device, torch.float32)
        autocast = None if reference else BLOCK_AUTOCAST[precision]
        module = copy.deepcopy(block).to(on, float_type)
        inputs = x.to(on, float_type, copy=True).requires_grad_()
        with torch.autocast(on, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            out, _ = module(inputs, None if padding is None else padding.to(on), need_weights=reference)
        out.to(float_type).square().mean().backward()
        return out.detach(), inputs.grad, {name: p.grad for name, p in module.named_parameters()}

    (out, dx, grads), (ref_out, ref_dx, ref_grads) = run(reference=False), run(reference=True)
    worst = max(grads, key=lambda name: relative_error(grads[name], ref_grads[name]))
    return {"output": relative_error(out, ref_out), "dx": relative_error(dx, ref_dx),
            "worst parameter": relative_error(grads[worst], ref_grads[worst]), "worst": worst}


def accuracy(log: Log, device: str):
    log.section("accuracy against float64 (relative error in norm)")
    cpu = device == "cpu"
    attend_sizes = (2, 2, 32, 16, 32) if cpu else (2, 4, 256, 64, 256)  # B, chunks, c, z, h
    log.write(f"attend (fused softmax path) on B x nc x c x z / h = {' x '.join(map(str, attend_sizes))}, "
              f"limits {ATTEND_LIMITS}")
    log.write("\n| precision | mask | SDPA backend | output | dq | dk | dv | dbias |")
    log.write("|---|---|---|---|---|---|---|---|")
    for precision in (CPU_PRECISIONS if cpu else ("fp32", "bf16", "fp16")):
        for causal, padded in ((False, False), (False, True), (True, False)):
            mask = "causal" if causal else ("padded" if padded else "none")
            errors = attend_errors(device, precision, causal, padded, attend_sizes)
            figures = {key: value for key, value in errors.items() if key != "backend"}
            log.write(f"| {precision} | {mask} | {errors['backend']} | "
                      + " | ".join(f"{value:.1e}" for value in figures.values()) + " |")
            worst = max(figures, key=figures.get)
            log.result(f"attend {precision} {mask}", OK if figures[worst] <= ATTEND_LIMITS[precision] else FAIL,
                       f"{errors['backend']}; worst {worst} {figures[worst]:.1e} "
                       f"(limit {ATTEND_LIMITS[precision]:.0e})")
    block_sizes = dict(embed_dim=16, z_dim=8, hidden_dim=32, n_dim=4, chunk_size=16, length=48) if cpu else \
        dict(embed_dim=128, z_dim=64, hidden_dim=256, n_dim=16, chunk_size=128, length=512)
    log.write(f"\nMovingAverageGatedAttention {block_sizes}, float32 weights under autocast, limits {BLOCK_LIMITS}")
    log.write("\n| precision | attention | output | dx | worst parameter gradient |\n|---|---|---|---|---|")
    for precision in (CPU_PRECISIONS if cpu else BLOCK_AUTOCAST):
        for causal in (False, True):
            errors = block_errors(device, precision, causal, block_sizes)
            kind = "causal" if causal else "bidirectional, padded"
            log.write(f"| {precision} | {kind} | {errors['output']:.1e} | {errors['dx']:.1e} | "
                      f"{errors['worst parameter']:.1e} ({errors['worst']}) |")
            worst = max(errors["output"], errors["dx"], errors["worst parameter"])
            log.result(f"block {precision} {kind}", OK if worst <= BLOCK_LIMITS[precision] else FAIL,
                       f"worst {worst:.1e} (limit {BLOCK_LIMITS[precision]:.0e})")


# ----------------------------------------------------------------------------------------------
# 5. training and decoding
# ----------------------------------------------------------------------------------------------

def prepare_data(log: Log, work: Path, cpu: bool) -> Dict[str, List[str]]:
    """Generated corpora (no download): fairseq-train arguments of each family, data first."""
    python = sys.executable
    lm, mt, listops = work / "lm", work / "mt", work / "listops"
    steps = [
        [python, "-m", "demo.lm_corpus", "--out", lm, "--max-train-words", 5000 if cpu else 40000],
        ["fairseq-preprocess", "--only-source", "--trainpref", lm / "train.txt", "--validpref", lm / "valid.txt",
         "--destdir", lm / "bin", "--thresholdsrc", "2", "--workers", "1"],
        [python, "-m", "demo.mt_corpus", "--out", mt, "--train-pairs", 500 if cpu else 4000,
         "--valid-pairs", 20 if cpu else 200, "--test-pairs", 20 if cpu else 200, "--tokenize"],
        ["fairseq-preprocess", "--source-lang", "en", "--target-lang", "de", "--trainpref", mt / "train",
         "--validpref", mt / "valid", "--testpref", mt / "test", "--destdir", mt / "bin", "--joined-dictionary",
         "--workers", "1"],
        [python, "-m", "mega_fairseq.data.listops", listops, "--train", 200 if cpu else 2000, "--valid", 32,
         "--test", 32, "--min-length", 10, "--max-length", 100],
    ]
    for step in steps:
        code, _ = log.run(step, timeout=300)
        if code != 0:
            raise RuntimeError(f"preparing the data failed: {' '.join(map(str, step))}")
    return {
        "lm": [lm / "bin", "--task", "mega_language_modeling", "--arch", "mega_lm_tiny", "--tokens-per-sample",
               64 if cpu else 256, "--batch-size", 8],
        "mt": [mt / "bin", "--task", "translation", "--source-lang", "en", "--target-lang", "de", "--arch",
               "mega_mt_tiny", "--max-tokens", 256 if cpu else 4096],
        "lra_batchnorm": [listops, "--task", "mega_sequence_classification", "--criterion", "sentence_prediction",
                          "--num-classes", 10, "--max-positions", 100, "--arch", "mega_classifier_tiny",
                          "--normalization-type", "batchnorm", "--batch-size", 16],
    }


def last_stats(output: str, tag: str) -> dict:
    """The last fairseq log line of ``tag`` (train, valid) as {key: value}: '... | valid | ... | loss 3.2 | ...'."""
    lines = [line for line in output.splitlines() if f"| {tag} | " in line]
    if not lines:
        return {}
    stats = {}
    for field in lines[-1].split(" | "):
        key, _, value = field.strip().rpartition(" ")
        if key:
            stats[key] = value
    return stats


def training_status(code: int, output: str, updates: int) -> Tuple[str, str]:
    """(status, figures or reason) of one fairseq-train run."""
    train, valid = last_stats(output, "train"), last_stats(output, "valid")
    figures = (f"train loss {train.get('loss', '?')}, valid loss {valid.get('loss', '?')}, "
               f"wps {train.get('wps', '?')}, {train.get('train_wall', '?')} s training")
    if code != 0:
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        return FAIL, f"exit code {code}: {last}"
    done = train.get("num_updates") == str(updates)
    finite = all(math.isfinite(float(stats.get("loss", "nan"))) for stats in (train, valid))
    return (OK if done and finite else FAIL), figures + ("" if done else f"; {train.get('num_updates')} updates")


def training(log: Log, device: str, work: Path, updates: int):
    log.section(f"training: {updates} updates of fairseq-train per family and precision")
    cpu = device == "cpu"
    families = prepare_data(log, work, cpu)
    unsupported_bf16 = None
    for family, arguments in families.items():
        for precision, flags in TRAIN_FLAGS.items():
            name = f"train {family} {precision}"
            if cpu and precision in ("fp16", "amp"):
                log.result(name, SKIPPED, "float16 training needs CUDA (fairseq's --fp16 and --amp scale losses "
                                          "on the GPU; CPU kernels do not cover float16)")
                continue
            if precision == "bf16" and unsupported_bf16:
                log.result(name, UNSUPPORTED, unsupported_bf16)
                continue
            save = ["--save-dir", work / "checkpoints" / family, "--no-epoch-checkpoints"] \
                if (family, precision) == ("mt", "fp32") else ["--no-save"]
            code, output = log.run(["fairseq-train", *arguments, "--user-dir", USER_DIR, "--optimizer", "adam",
                                    "--lr", "1e-3", "--max-update", updates, "--log-format", "simple",
                                    "--log-interval", max(1, updates // 4), "--num-workers", "0", "--seed", "1",
                                    "--distributed-world-size", "1", *save, *flags,
                                    *(["--cpu", "--max-valid-steps", "2"] if cpu else [])], timeout=300)
            status, detail = training_status(code, output, updates)
            if precision == "bf16" and status == FAIL and "xla" in output.lower():
                # fairseq 0.12's options.parse_args_and_arch sets args.tpu when --bf16 is given
                unsupported_bf16 = ("fairseq 0.12 turns --bf16 into --tpu (fairseq/options.py), which needs "
                                    "torch_xla: fairseq-train cannot train in bfloat16 on GPUs or CPUs")
                status, detail = UNSUPPORTED, unsupported_bf16
            log.result(name, status, detail)


def generate(log: Log, device: str, work: Path, updates: int):
    log.section("decoding: fairseq-generate of the translation model")
    checkpoint = work / "checkpoints" / "mt" / "checkpoint_last.pt"
    name = "generate mt " + ("fp32" if device == "cpu" else "fp16")
    if not checkpoint.exists():
        log.result(name, FAIL, f"no {checkpoint}: the float32 translation run failed")
        return
    code, output = log.run(["fairseq-generate", work / "mt" / "bin", "--user-dir", USER_DIR, "--path", checkpoint,
                            "--source-lang", "en", "--target-lang", "de", "--gen-subset", "test",
                            "--beam", "2" if device == "cpu" else "4",
                            "--batch-size", "32", "--required-batch-size-multiple", "1", "--max-len-a", "1.2",
                            "--max-len-b", "10",
                            *(["--cpu"] if device == "cpu" else ["--fp16"])], timeout=300)
    bleu = re.search(r"BLEU4? = ([0-9.]+)", output)
    hypotheses = len(re.findall(r"^H-\d+\t", output, re.M))
    status = OK if code == 0 and bleu and hypotheses > 0 else FAIL
    log.result(name, status, f"{hypotheses} sentences, BLEU {bleu.group(1) if bleu else '?'} "
                             f"(a {updates}-update model: a smoke test)")


# ----------------------------------------------------------------------------------------------
# 6. benchmark, 7. paper table
# ----------------------------------------------------------------------------------------------

TINY_BENCH = ["--models", "mega_chunk", "torch_transformer", "--lengths", "64", "--chunk-lengths", "128", "--layers",
              "1", "--embed-dim", "16", "--z-dim", "8", "--hidden-dim", "16", "--n-dim", "2", "--ffn-embed-dim", "16",
              "--chunk-size", "32", "--heads", "2", "--tokens-per-step", "512", "--decode-contexts", "8",
              "--decode-steps", "2", "--threads", "1", "--no-memory"]


def bench(log: Log, device: str, work: Path):
    log.section("benchmark: python -m benchmarks --quick (bfloat16 autocast)")
    path = work / "bench.json"
    arguments = ["--device", "cpu", *TINY_BENCH] if device == "cpu" else ["--device", "cuda", "--memory-jobs", "4"]
    code, _ = log.run([sys.executable, "-m", "benchmarks", "--quick", "--precision", "bf16", "--json", path,
                       *arguments], timeout=420)
    if code != 0 or not path.exists():
        log.result("benchmark", FAIL, f"exit code {code}")
        return
    results = json.loads(path.read_text())
    figures = "; ".join(f"{row['model']} L={row['length']} {row['ms_per_1k_tokens']:.2f} ms/1K tokens "
                        f"({row['sdpa_backend']})" for row in results["train"])
    log.result("benchmark", OK, f"{results['settings']['precision']}: {figures}")


def paper_table(log: Log, device: str):
    log.section("the paper's efficiency table: python -m benchmarks paper")
    code, output = log.run([sys.executable, "-m", "benchmarks", "paper", "--help"], timeout=120)
    # without the command, argparse prints the benchmark's own help (exit code 0 too), whose usage has no "paper"
    if code != 0 or not re.search(r"usage:.*\bpaper\b", output):
        log.result("paper table", SKIPPED, "this checkout has no `python -m benchmarks paper` (not written yet)")
        return
    quick = ["--quick"] if device == "cpu" and "--quick" in output else []
    left = max(60.0, BUDGET_S - (time.time() - log.started))
    code, _ = log.run([sys.executable, "-m", "benchmarks", "paper", *quick], timeout=left)
    log.result("paper table", OK if code == 0 else FAIL,
               f"did not finish in the {left:.0f} s left of the check's {BUDGET_S} s" if code == 124
               else f"exit code {code}")


# ----------------------------------------------------------------------------------------------

def summary(log: Log) -> int:
    log.section("summary")
    counts = {status: sum(1 for _, s, _ in log.results if s == status) for status in (OK, FAIL, SKIPPED, UNSUPPORTED)}
    for name, status, detail in log.results:
        if status != OK:
            log.write(f"- {status}: {name}: {detail}")
    line = (f"gpu-check: {counts[OK]} ok, {counts[FAIL]} failed, {counts[SKIPPED]} skipped, "
            f"{counts[UNSUPPORTED]} unsupported in {time.time() - log.started:.0f} s; log {log.path}")
    log.write(line)
    print(line)
    return 1 if counts[FAIL] else 0


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true",
                        help="a quick dry run on CPU (what runs there; half precision is skipped with its reason)")
    parser.add_argument("--log", type=Path, default=Path("gpu_check.log"), help="the log (default: gpu_check.log)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for generated data, checkpoints and the benchmark's JSON (default: next to the "
                             "log, LOG.work)")
    parser.add_argument("--updates", type=int, default=None, help="fairseq-train updates per run (20; 5 with --cpu)")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error(f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA {torch.version.cuda}); "
                     "install a CUDA build of torch, or run the CPU dry run with --cpu (make gpu-check CPU=1)")
    if args.work is None:
        args.work = args.log.with_name(args.log.name + ".work")
    if args.updates is None:
        args.updates = 5 if args.cpu else 20
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    device = "cpu" if args.cpu else "cuda"
    log = Log(args.log.resolve())
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for name in WORK_ITEMS:  # an earlier run's checkpoint would be resumed, its data or JSON read as this run's
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    log.write(f"# gpu-check on {device} ({'dry run' if args.cpu else 'GPU'}), {time.strftime('%Y-%m-%d %H:%M:%S')}")
    log.guarded("machine", lambda: machine(log, device))
    log.guarded("CUDA tests", lambda: cuda_tests(log, device))
    log.guarded("SDPA backends", lambda: sdpa_backends(log, device))
    log.guarded("accuracy", lambda: accuracy(log, device))
    log.guarded("training", lambda: training(log, device, work, args.updates))
    log.guarded("generate", lambda: generate(log, device, work, args.updates))
    log.guarded("benchmark", lambda: bench(log, device, work))
    log.guarded("paper table", lambda: paper_table(log, device))
    return summary(log)


if __name__ == "__main__":
    sys.exit(main())
