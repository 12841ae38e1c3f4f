"""The paper's efficiency table, end to end: training speed and peak memory of Mega and Mega-chunk
against the Transformer on LRA Text (4K bytes), through fairseq's trainer.

    python -m benchmarks paper              # or: make bench-paper
    python -m benchmarks paper --quick      # a few minutes on CPU

``mega_lra_text``, ``mega_lra_text_chunk`` and ``transformer_lra_text`` (the presets as registered)
train on the plugin's ``mega_sequence_classification`` task, with the Text recipe's optimiser
(Adam, weight decay and gradient clipping of ``configs/lra/text.yaml``, one batch per update),
through ``fairseq.trainer.Trainer.train_step`` (forward, backward, clipping, Adam step), on the
same batches: an aclImdb folder of 2 x ``--batch-size`` reviews of exactly ``--length`` random
ASCII bytes (default 4000, the task's ``max_positions`` in LRA_TASKS["text"]), written by the
benchmark and read by the task's IMDB reader. Each model trains in its own worker process (a
fresh interpreter: peaks do not mix).

Speed: steps per second over ``--steps`` training steps after ``--warmup-steps`` untimed ones (on
CUDA bracketed by ``torch.cuda.synchronize()``); the JSON also records the worker's CPU seconds per
step (all its threads: OpenMP's spinning counts too, so with ``--omp-wait-policy passive`` it is
what a shared machine's load changes less than wall time). Peak memory: growth over what the
worker holds just before its first training step (the model on its device, the batches read), so
that it counts gradients, Adam's state, activations and temporaries, and not the interpreter, the
libraries or the parameters: on CPU the peak resident set size (``ru_maxrss``) minus the resident
set then; on CUDA ``torch.cuda.max_memory_allocated()`` minus ``torch.cuda.memory_allocated()``
then (tensor memory, not the allocator's cache or the CUDA context). Both are the peak over the
warm-up and timed steps.

The table prints each model's ratio to the Transformer (its steps/s over the Transformer's, its
peak over the Transformer's) beside the paper's: Mega 2.9x faster at 0.31x the memory, Mega-chunk
5.5x at 0.13x. Precision: float32 on CPU; on CUDA fairseq's ``--amp`` (float16 autocast) by
default, ``--precision fp16`` for fairseq's ``--fp16`` (float16 weights, float32 master copy).
"""

import argparse
import json
import os
import random
import string
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from mega_fairseq.data.classification import LRA_TASKS

from . import harness
from .report import device_label

TEXT = LRA_TASKS["text"]
RECIPE = Path(harness.ROOT) / "configs" / "lra" / "text.yaml"
USER_DIR = os.path.join(harness.ROOT, "mega_fairseq")
BASELINE = "transformer_lra_text"
ARCHS = ("mega_lra_text", "mega_lra_text_chunk", BASELINE)
# the paper's speed and memory relative to the Transformer on Text at 4K: (speed-up, memory fraction)
PAPER = {"mega_lra_text": (2.9, 0.31), "mega_lra_text_chunk": (5.5, 0.13)}
# sequences per step: the Text recipe's 25 on GPUs; 2 on CPU, where a 4K Transformer step then takes 7 GB
DEFAULT_BATCH = {"cpu": 2, "cuda": 25}
# (timed steps, warm-up steps): a few hundred steps, or --quick
DEFAULT_STEPS = {False: (200, 5), True: (5, 1)}
# --precision: fairseq's own flags (its --bf16 means TPU training)
PRECISION_FLAGS = {"fp32": [], "amp": ["--amp"], "fp16": ["--fp16"]}
DEFAULT_PRECISION = {"cpu": "fp32", "cuda": "amp"}
PRECISION_LABELS = {"fp32": "float32", "amp": "float16 autocast (--amp)", "fp16": "float16 (--fp16)"}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks paper",
        description="Training steps/s and peak memory of mega_lra_text, mega_lra_text_chunk and "
                    "transformer_lra_text on LRA Text inputs through fairseq's trainer, relative to the "
                    "Transformer, beside the paper's figures.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: {plural(DEFAULT_STEPS[True][0], 'timed step')} after "
                             f"{plural(DEFAULT_STEPS[True][1], 'warm-up step')} (a few minutes on CPU)")
    parser.add_argument("--steps", type=int, help=f"timed training steps per model ({DEFAULT_STEPS[False][0]})")
    parser.add_argument("--warmup-steps", type=int,
                        help=f"untimed training steps first ({DEFAULT_STEPS[False][1]}); the peak counts them too")
    parser.add_argument("--batch-size", type=int,
                        help=f"sequences per step, every model alike ({DEFAULT_BATCH['cpu']} on CPU, "
                             f"{DEFAULT_BATCH['cuda']} on CUDA: the Text recipe's)")
    parser.add_argument("--length", type=int, default=TEXT.max_positions,
                        help=f"bytes per input ({TEXT.max_positions}, LRA Text's)")
    parser.add_argument("--device", choices=harness.DEVICES, default="auto",
                        help="'auto' (default) is cuda when torch.cuda.is_available(), else cpu")
    parser.add_argument("--precision", choices=PRECISION_FLAGS,
                        help="fp32, or on CUDA fairseq's --amp or --fp16 (default: amp on CUDA, fp32 on CPU)")
    harness.add_worker_options(parser)
    parser.add_argument("--json", metavar="PATH", help="write the measurements as JSON")
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    cuda = torch.cuda.is_available()
    if args.device == "auto":
        args.device = "cuda" if cuda else "cpu"
    elif args.device == "cuda" and not cuda:
        parser.error(f"--device cuda: torch.cuda.is_available() is False here (torch {torch.__version__})")
    args.precision = args.precision or DEFAULT_PRECISION[args.device]
    if args.precision != "fp32" and args.device == "cpu":
        parser.error(f"--precision {args.precision} needs --device cuda (fairseq's --amp and --fp16 train on GPUs)")
    steps, warmup = DEFAULT_STEPS[args.quick]
    args.steps = steps if args.steps is None else args.steps
    args.warmup_steps = warmup if args.warmup_steps is None else args.warmup_steps
    args.batch_size = args.batch_size or DEFAULT_BATCH[args.device]
    for flag in ("steps", "batch_size", "length"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.warmup_steps < 0:
        parser.error("--warmup-steps must not be negative")
    return args


def write_reviews(folder: Path, count: int, length: int, seed: int = 0) -> Path:
    """An aclImdb folder (``train/{neg,pos}/<i>_<rating>.txt``, the layout the task's IMDB reader
    takes) of ``count`` reviews of exactly ``length`` random letters and spaces, labels alternating."""
    rng = random.Random(seed)
    for index in range(count):
        label = index % 2
        name, rating = ("pos", 8) if label else ("neg", 2)
        (folder / "train" / name).mkdir(parents=True, exist_ok=True)
        text = "".join(rng.choices(string.ascii_lowercase + " ", k=length))
        (folder / "train" / name / f"{index}_{rating}.txt").write_text(text, encoding="ascii")
    return folder


# ----------------------------------------------------------------------------------------------
# The worker: one model through fairseq's trainer
# ----------------------------------------------------------------------------------------------

def recipe_flags() -> List[str]:
    """The Text recipe's optimiser as fairseq-train flags: Adam's state and the clipping pass are
    part of a step's memory and time (the learning rate stays at its peak: no schedule)."""
    from omegaconf import OmegaConf

    recipe = OmegaConf.load(RECIPE)
    optimizer, optimization = recipe.optimizer, recipe.optimization
    return ["--optimizer", optimizer._name, "--adam-betas", str(optimizer.adam_betas),
            "--adam-eps", str(optimizer.adam_eps), "--weight-decay", str(optimizer.weight_decay),
            "--lr", str(optimization.lr[0]), "--clip-norm", str(optimization.clip_norm)]


def fairseq_flags(spec: dict) -> List[str]:
    return [spec["data"], "--user-dir", USER_DIR, "--task", "mega_sequence_classification",
            "--input-type", TEXT.input_type, "--num-classes", str(TEXT.num_classes),
            "--max-positions", str(spec["length"]), "--arch", spec["arch"], "--criterion", "sentence_prediction",
            *recipe_flags(), "--batch-size", str(spec["batch_size"]), "--required-batch-size-multiple", "1",
            "--num-workers", "0", "--seed", "1", "--no-save", "--no-progress-bar",
            *(["--cpu"] if spec["device"] == "cpu" else []), *PRECISION_FLAGS[spec["precision"]]]


def build_trainer(spec: dict):
    """fairseq-train's set-up (``fairseq_cli.train.main``) in process; returns the trainer and the
    epoch's batches (on the CPU; the trainer moves each to the device)."""
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.trainer import Trainer

    import mega_fairseq.models  # noqa: F401  (registers the plugin before fairseq lists the tasks' names)

    parser = options.get_training_parser()
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, fairseq_flags(spec)))
    utils.set_torch_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    trainer = Trainer(cfg, task, model, task.build_criterion(cfg.criterion))
    batches = list(trainer.get_train_iterator(epoch=1).next_epoch_itr(shuffle=False))
    return trainer, batches


def memory_mark(device: str) -> float:
    """MB held now (the resident set on CPU, the allocator's tensors on CUDA), after which the
    peak is counted afresh."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2 ** 20
    return harness.resident_mb()


def memory_peak(device: str) -> float:
    """MB at the peak since ``memory_mark`` (on CPU: since the process started, which the mark precedes)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return harness.peak_resident_mb()


def train_steps(trainer, batches: List[dict], start: int, count: int) -> Optional[dict]:
    """``count`` training steps on the batches in turn, from the ``start``-th; the last step's
    logging output (its loss)."""
    log = None
    for index in range(start, start + count):
        log = trainer.train_step([batches[index % len(batches)]])
    return log


def train_worker(spec: dict) -> dict:
    """Warm-up steps, then ``steps`` timed steps of one model: its steps/s (and CPU seconds per
    step) and the growth of its peak memory."""
    import logging
    import warnings

    # the set-up's log lines and the libraries' deprecation warnings would bury the table
    logging.disable(logging.INFO)
    warnings.simplefilter("ignore")
    device = spec["device"]
    trainer, batches = build_trainer(spec)
    before = memory_mark(device)
    train_steps(trainer, batches, 0, spec["warmup_steps"])
    harness.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    log = train_steps(trainer, batches, spec["warmup_steps"], spec["steps"])
    harness.synchronize(device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"arch": spec["arch"], "steps": spec["steps"], "warmup_steps": spec["warmup_steps"],
            "updates": trainer.get_num_updates(), "batch_size": spec["batch_size"], "length": spec["length"],
            "parameters": sum(p.numel() for p in trainer.model.parameters()), "seconds": seconds,
            "steps_per_s": spec["steps"] / seconds, "cpu_s_per_step": cpu_seconds / spec["steps"],
            "peak_mb": memory_peak(device) - before, "before_mb": before, "loss": (log or {}).get("loss")}


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------

def compute_ratios(rows: List[dict]) -> Dict[str, dict]:
    """Each model's steps/s over the Transformer's and its peak memory over the Transformer's."""
    baseline = next(row for row in rows if row["arch"] == BASELINE)
    return {row["arch"]: {"speed": row["steps_per_s"] / baseline["steps_per_s"],
                          "memory": row["peak_mb"] / baseline["peak_mb"]} for row in rows}


def memory_label(device: str) -> str:
    if device == "cuda":
        return ("growth of torch.cuda.max_memory_allocated() over torch.cuda.memory_allocated() just before the "
                "first step")
    return "growth of the peak resident set size (ru_maxrss) over the resident set just before the first step"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_table(results: dict) -> str:
    settings = results["settings"]
    lines = [f"### LRA Text, {settings['length']} bytes, batch {settings['batch_size']}: training through fairseq's "
             f"Trainer ({device_label(results['machine'])}; {PRECISION_LABELS[settings['precision']]})", "",
             "| model | steps/s | peak MB | speed vs Transformer (paper) | memory vs Transformer (paper) |",
             "|---|---|---|---|---|"]
    for row in results["rows"]:
        ratios = results["ratios"][row["arch"]]
        paper = PAPER.get(row["arch"])
        speed, memory = f"{ratios['speed']:.2f}x", f"{ratios['memory']:.2f}x"
        if paper:
            speed, memory = f"{speed} ({paper[0]}x)", f"{memory} ({paper[1]}x)"
        lines.append(f"| {row['arch']} | {row['steps_per_s']:#.3g} | {row['peak_mb']:.0f} | {speed} | {memory} |")
    lines += ["", f"{plural(settings['steps'], 'timed step')} after {plural(settings['warmup_steps'], 'warm-up step')} "
                  f"per model, each model in its own process; peak MB: {memory_label(results['machine']['device'])}."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        with open(args.worker) as f:
            spec = json.load(f)
        torch.set_num_threads(spec["threads"])
        result = train_worker(spec)
        with open(spec["result_path"], "w") as f:
            json.dump(result, f)
        return result
    settings = {key: getattr(args, key) for key in ("device", "precision", "batch_size", "length", "steps",
                                                    "warmup_steps", "threads")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_reviews(Path(tmp) / "aclImdb", 2 * args.batch_size, args.length)
        for arch in ARCHS:
            print(f"training {arch} for {args.warmup_steps} + {args.steps} steps on {args.device}", flush=True)
            row = harness.run_worker(dict(settings, kind="trainer", arch=arch, data=str(data)), args,
                                     subcommand=["paper"])
            if row is None:
                raise SystemExit(f"the training worker for {arch} failed")
            rows.append(row)
    results = {"machine": harness.machine_description(args), "settings": settings, "rows": rows,
               "ratios": compute_ratios(rows), "paper": PAPER}
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results
