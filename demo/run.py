"""Quick start on CPU, no download: a small Mega model against a same-size fairseq Transformer.

--task lm (default): a corpus from Python's own docstrings, binarised with fairseq-preprocess;
a Mega LM and a transformer_lm trained for the same number of updates with fairseq-train,
scored with fairseq-eval-lm (perplexity).

--task mt: a generated English-German corpus (demo/mt_corpus.py: agreement and reordering; valid and
test use adjective-noun pairs held out of training), prepared like WMT16 (scripts/prepare_wmt16_en_de.sh:
joint sentencepiece model, joined dictionary); a Mega encoder-decoder and a fairseq transformer trained
for the same number of updates, validated every MT_VALID_EVERY updates and scored with
scripts/eval_bleu.sh (beam 5, tokenized BLEU and SacreBLEU) at MT_BLEU_POINTS checkpoints; the valid
loss curves of both go to OUT/curves.{png,svg} (scripts/plot_curves.py).

--task lra: generated ListOps (mega_fairseq.data.listops, shorter expressions than LRA's
500-2000 tokens), binarised with scripts/prepare_lra.sh; a small Mega (mega_lra_listops), its
Mega-chunk variant and a Transformer (the transformer_lra preset) of the same width and depth,
trained for the same number of updates, scored with scripts/eval_cls.sh (test accuracy).

--task speech: spoken words synthesised with espeak-ng (demo/speech_words.py: ten
words, many voices, speeds and pitches, with noise) in the Speech Commands layout, cached with
scripts/prepare_sc.sh on the generated lists (--split-protocol lists: no speaker in two splits); a
small Mega (mega_sc_raw_tiny on the raw 16 kHz waveforms, chunk 100) trained with fairseq-train,
scored with scripts/eval_cls.sh (test accuracy; chance is 10%).

Tensorboard logs go under OUT/tensorboard; the demo prints a table. A rerun reuses the data and
trains again.

    python -m demo                 # or: make demo
    python -m demo --task mt       # or: make demo-mt
    python -m demo --task lra      # or: make demo-lra
    python -m demo --task speech   # or: make demo-speech
"""

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from demo import lm_corpus, mt_corpus

ROOT = Path(__file__).resolve().parents[1]

SHARED = ["--tokens-per-sample", "128", "--max-tokens", "2048", "--optimizer", "adam", "--adam-betas",
          "(0.9, 0.98)", "--lr", "2e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50",
          "--clip-norm", "1.0", "--dropout", "0.1", "--cpu", "--num-workers", "0", "--seed", "1",
          "--log-format", "simple", "--log-interval", "50", "--validate-interval-updates", "100",
          "--no-epoch-checkpoints"]

MODELS = {
    "mega_lm": ["--user-dir", str(ROOT / "mega_fairseq"), "--task", "mega_language_modeling", "--arch", "mega_lm",
                "--decoder-layers", "2", "--decoder-embed-dim", "64", "--decoder-hidden-dim", "128",
                "--decoder-ffn-embed-dim", "128", "--decoder-z-dim", "32", "--decoder-n-dim", "8",
                "--decoder-chunk-size", "64", "--normalize-before", "--max-target-positions", "256"],
    "transformer_lm": ["--task", "language_modeling", "--arch", "transformer_lm", "--decoder-layers", "2",
                       "--decoder-embed-dim", "64", "--decoder-input-dim", "64", "--decoder-output-dim", "64",
                       "--decoder-ffn-embed-dim", "256",
                       "--decoder-attention-heads", "2", "--decoder-normalize-before"],
}


# Mega starts slower than the Transformer and passes it later: 3000 updates of 2048 tokens (the tokens of 1500 updates
# of 4096, in about the same time) go past that point
MT_SHARED = ["--task", "translation", "--share-all-embeddings", "--criterion", "label_smoothed_cross_entropy",
             "--label-smoothing", "0.1", "--max-tokens", "2048", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
             "--lr", "2e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100", "--clip-norm", "1.0",
             "--dropout", "0.1", "--cpu", "--num-workers", "0", "--seed", "1", "--log-format", "simple",
             "--log-interval", "50", "--no-epoch-checkpoints"]
MT_VALID_EVERY = 100  # updates between validations: the points of the valid loss curves
MT_BLEU_POINTS = 2  # checkpoints scored with BLEU: about this many, evenly spaced, validated, the last included
MT_TABLE_ROWS = 10  # validations in the printed table of both curves: about this many, chosen as MT_BLEU_POINTS
# the valid curves (fairseq's names: the names printed): the label-smoothed loss that training minimises, and the
# NLL (log2 of the perplexity)
MT_METRICS = {"loss": "loss", "nll_loss": "nll"}

MT_MODELS = {
    "mega": ["--user-dir", str(ROOT / "mega_fairseq"), "--arch", "mega_mt_tiny", "--encoder-embed-dim", "64",
             "--decoder-embed-dim", "64", "--encoder-hidden-dim", "128", "--decoder-hidden-dim", "128",
             "--encoder-z-dim", "32", "--decoder-z-dim", "32", "--encoder-n-dim", "8", "--decoder-n-dim", "8",
             "--normalize-before"],  # prenorm: at this size it learns faster than the recipe's postnorm
    "transformer": ["--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "2",
                    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "256",
                    "--decoder-ffn-embed-dim", "256", "--encoder-attention-heads", "2",
                    "--decoder-attention-heads", "2"],
}


LRA_SHARED = ["--user-dir", str(ROOT / "mega_fairseq"), "--task", "mega_sequence_classification", "--input-type",
              "tokens", "--num-classes", "10", "--max-positions", "200", "--criterion", "sentence_prediction",
              "--batch-size", "32", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "2e-3",
              "--lr-scheduler", "polynomial_decay", "--warmup-updates", "100", "--clip-norm", "1.0",
              "--weight-decay", "0.01", "--cpu", "--num-workers", "0", "--seed", "1", "--log-format", "simple",
              "--log-interval", "100", "--validate-interval-updates", "250", "--no-epoch-checkpoints",
              "--required-batch-size-multiple", "1", "--best-checkpoint-metric", "accuracy",
              "--maximize-best-checkpoint-metric", "--classifier-hidden-dim", "64", "--encoder-layers", "2",
              "--encoder-embed-dim", "64"]
_MEGA_LRA = ["--arch", "mega_lra_listops", "--encoder-hidden-dim", "128", "--encoder-z-dim", "32",
             "--encoder-n-dim", "8"]
LRA_MODELS = {
    "mega": _MEGA_LRA,
    "mega_chunk": _MEGA_LRA + ["--encoder-chunk-size", "32"],
    # the base of the transformer_lra_* presets (untied layers, unlike transformer_lra_listops)
    "transformer": ["--arch", "transformer_lra", "--encoder-ffn-embed-dim", "320", "--encoder-attention-heads", "4"],
}


SPEECH_ARGS = ["--user-dir", str(ROOT / "mega_fairseq"), "--task", "mega_sequence_classification", "--input-type",
               "waveform", "--num-classes", "10", "--max-positions", "16000", "--arch", "mega_sc_raw_tiny",
               "--encoder-chunk-size", "100", "--criterion", "sentence_prediction", "--batch-size", "8",
               "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "1e-2", "--lr-scheduler",
               "polynomial_decay", "--warmup-updates", "25", "--clip-norm", "1.0", "--weight-decay", "0.01",
               "--cpu", "--num-workers", "0", "--seed", "1", "--log-format", "simple", "--log-interval", "25",
               "--validate-interval-updates", "100", "--no-epoch-checkpoints", "--required-batch-size-multiple",
               "1", "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric"]


def run(cmd, log: Path, env=None):
    """Runs cmd, showing its output as it comes (fairseq logs every --log-interval updates) and
    keeping a copy in log; exits with the log's tail when cmd fails."""
    print("$ " + " ".join(cmd), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                env=None if env is None else {**os.environ, **env}) as proc:
        for line in proc.stdout:
            out.write(line)
            print("  " + line.rstrip()[:200], flush=True)  # the printed configuration is one long line
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}); see {log}:\n" + log.read_text()[-3000:])
    return log.read_text()


def last(pattern, text, cast=float):
    found = re.findall(pattern, text)
    return cast(found[-1].replace(",", "")) if found else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("lm", "mt", "lra", "speech"), default="lm",
                        help="language modelling, translation, LRA ListOps, or raw speech classification")
    parser.add_argument("--out", type=Path, help="working folder (default: data/demo, data/demo_mt, data/demo_lra, "
                                                 "data/demo_speech)")
    parser.add_argument("--updates", type=int, help="training updates per model (default: 300 lm, 3000 mt, "
                                                    "1000 lra, 300 speech)")
    parser.add_argument("--tiny", action="store_true", help="generate a few hundred examples instead of thousands: "
                                                            "runs the pipeline quickly; the scores mean nothing")
    args = parser.parse_args(argv)
    args.out = args.out or ROOT / "data" / {"lm": "demo", "mt": "demo_mt", "lra": "demo_lra",
                                            "speech": "demo_speech"}[args.task]
    args.updates = args.updates or {"lm": 300, "mt": 3000, "lra": 1000, "speech": 300}[args.task]
    {"lm": demo_lm, "mt": demo_mt, "lra": demo_lra, "speech": demo_speech}[args.task](args)


def demo_lm(args):
    raw, data = args.out / "raw", args.out / "bin"
    if not (data / "dict.txt").exists():
        size = ["--max-train-words", "20000"] if args.tiny else []
        lm_corpus.main(["--out", str(raw), *size])
        args.out.mkdir(parents=True, exist_ok=True)
        run(["fairseq-preprocess", "--only-source", "--trainpref", str(raw / "train.txt"), "--validpref",
             str(raw / "valid.txt"), "--testpref", str(raw / "test.txt"), "--destdir", str(data),
             "--thresholdsrc", "3", "--workers", "2"], args.out / "preprocess.log")

    rows = []
    for name, model_args in MODELS.items():
        save = args.out / "checkpoints" / name
        log, seconds = train(data, model_args + SHARED, save, args, name)
        user_dir = model_args[:2] if model_args[0] == "--user-dir" else []
        evaluation = run(["fairseq-eval-lm", str(data), *user_dir, "--path", str(save / "checkpoint_last.pt"),
                          "--gen-subset", "test", "--cpu", "--task", "language_modeling", "--tokens-per-sample",
                          "128", "--batch-size", "16", "--required-batch-size-multiple", "1"],
                         args.out / f"eval_{name}.log")
        rows.append((name, last(r"num\. shared model params: ([0-9,]+)", log, str),
                     f"{last(r'valid on .valid. subset [|] loss [0-9.]+ [|] ppl ([0-9.]+)', log):.1f}",
                     f"{last(r'Perplexity: ([0-9.]+)', evaluation):.1f}",
                     f"{last(r'[|] train [|].*? wps ([0-9.]+)', log):.0f}", f"{seconds:.0f}"))
    table(args, ["model", "params", "valid ppl", "test ppl", "train wps", "time (s)"], rows)


def demo_mt(args):
    raw, data = args.out / "raw", args.out / "data"
    if not (data / "bin").exists():
        size = ["--train-pairs", "500", "--valid-pairs", "50", "--test-pairs", "50"] if args.tiny else []
        mt_corpus.main(["--out", str(raw), *size])
        run(["bash", str(ROOT / "scripts" / "prepare_wmt16_en_de.sh"), "--vocab-size", "400" if args.tiny else "700",
             str(data), str(raw)],
            args.out / "prepare.log")

    points = spaced(args.updates, MT_BLEU_POINTS)  # BLEU at these updates: the checkpoints saved
    schedule = ["--validate-interval-updates", str(MT_VALID_EVERY), "--save-interval-updates", str(points[0])]
    runs = {name: train(data / "bin", model_args + MT_SHARED + schedule, args.out / "checkpoints" / name, args, name)
            for name, model_args in MT_MODELS.items()}
    report_mt(args, data, points, runs)


def spaced(updates: int, count: int):
    """About count validated updates (multiples of MT_VALID_EVERY), evenly spaced up to updates, updates included."""
    every = MT_VALID_EVERY * max(1, math.ceil(updates / count / MT_VALID_EVERY))
    return sorted({*range(every, updates, every), updates})


def report_mt(args, data: Path, points, runs):
    """Scores both models' checkpoints at points (updates) with BLEU, prints the tables and the crossover lines,
    and plots the valid curves. runs: {name: (fairseq-train log, seconds)} for each of MT_MODELS."""
    rows, curves, scores = [], {}, {}
    for name, (log, seconds) in runs.items():
        save = args.out / "checkpoints" / name
        curves[name] = valid_curves(log)
        scores[name] = {update: bleu(checkpoint_at(save, update, args.updates), data,
                                     args.out / f"eval_{name}_{update}.log") for update in points}
        rows.append((name, last(r"num\. shared model params: ([0-9,]+)", log, str),
                     *(f"{curves[name][metric].get(args.updates, float('nan')):.3f}" for metric in MT_METRICS),
                     *scores[name][points[-1]], f"{last(r'[|] train [|].*? wps ([0-9.]+)', log):.0f}",
                     f"{seconds:.0f}"))
    table(args, ["model", "params", *(f"valid {shown}" for shown in MT_METRICS.values()), "test BLEU (tok)",
                 "test SacreBLEU", "train wps", "time (s)"], rows)
    print()
    print_table(["updates", *(f"{name} {shown}" for shown in MT_METRICS.values() for name in MT_MODELS),
                 *(f"{name} BLEU (tok)" for name in MT_MODELS)],
                [(update, *(f"{curves[name][metric].get(update, float('nan')):.3f}" for metric in MT_METRICS
                            for name in MT_MODELS), *(scores[name].get(update, ("",))[0] for name in MT_MODELS))
                 for update in sorted({*spaced(args.updates, MT_TABLE_ROWS), *points})])
    print()
    for metric, shown in MT_METRICS.items():
        since = crossover(curves["mega"][metric], curves["transformer"][metric])
        print(f"Mega's valid {shown} is below the Transformer's from update {since} on (validated every "
              f"{MT_VALID_EVERY})" if since else f"Mega's valid {shown} is not below the Transformer's at the end")
    run([sys.executable, str(ROOT / "scripts" / "plot_curves.py"),
         *(str(args.out / "tensorboard" / name) for name in MT_MODELS),
         "--tags", ",".join(f"valid/{metric}" for metric in MT_METRICS), "--log-y", "--out", str(args.out / "curves")],
        args.out / "plot.log")


def valid_curves(log: str):
    """{metric: {update: value}} of every validation in a fairseq-train log, for each of MT_METRICS."""
    found = re.findall(r"valid on 'valid' subset [|] loss ([0-9.]+) [|] nll_loss ([0-9.]+) [|].*?[|] num_updates (\d+)",
                       log)
    return {metric: {int(row[2]): float(row[i]) for row in found} for i, metric in enumerate(MT_METRICS)}


def crossover(mega, transformer):
    """The first validated update from which Mega's value stays below the Transformer's; None when it is not
    below at the last common validation. mega, transformer: {update: value}."""
    updates = sorted(set(mega) & set(transformer))
    since = None
    for update in updates:
        if mega[update] >= transformer[update]:
            since = None
        elif since is None:
            since = update
    return since


def checkpoint_at(save: Path, update: int, last_update: int):
    """The checkpoint saved at an update (fairseq names it checkpoint_EPOCH_UPDATE.pt), or None."""
    if update == last_update:
        return save / "checkpoint_last.pt"
    return next(iter(sorted(save.glob(f"checkpoint_*_{update}.pt"))), None)


def bleu(checkpoint, data: Path, log: Path):
    """(tokenized BLEU, SacreBLEU) of a checkpoint on the test split, as text; n/a without a checkpoint."""
    if checkpoint is None:  # an epoch ended at that update: fairseq saved no update checkpoint
        return "n/a", "n/a"
    evaluation = run(["bash", str(ROOT / "scripts" / "eval_bleu.sh"), str(checkpoint), str(data)], log,
                     env={"CPU": "1"})
    return (f"{last(r'tokenized BLEU [(]compound split[)]: ([0-9.]+)', evaluation):.2f}",
            f"{last(r'SacreBLEU: ([0-9.]+)', evaluation):.2f}")


def demo_lra(args):
    raw, data = args.out / "raw", args.out / "listops"
    if not (data / "meta.json").exists():
        counts = (200, 50, 50) if args.tiny else (4000, 500, 500)
        subprocess.run([sys.executable, "-m", "mega_fairseq.data.listops", str(raw), "--train",
                        str(counts[0]), "--valid", str(counts[1]), "--test", str(counts[2]), "--min-length", "20",
                        "--max-length", "200"], check=True)
        run(["bash", str(ROOT / "scripts" / "prepare_lra.sh"), "listops", str(raw), str(data)],
            args.out / "prepare.log", env={"FORCE": "1"})

    schedule = ["--total-num-update", str(args.updates)]  # linear decay to 0 at the last update
    rows = [classifier_row(name, data, LRA_SHARED + model_args + schedule, args)
            for name, model_args in LRA_MODELS.items()]
    table(args, ["model", "params", "best valid acc", "test acc (best)", "train wps", "time (s)"], rows)


def demo_speech(args):
    raw, data = args.out / "raw", args.out / "sc10"
    if not (data / "meta.json").exists():
        if not (raw / "validation_list.txt").exists():
            size = ["--per-word", "12"] if args.tiny else []
            from demo import speech_words  # numpy, scipy and soundfile: only here

            speech_words.main([str(raw), "--force", *size])
        run(["bash", str(ROOT / "scripts" / "prepare_sc.sh"), str(raw), str(data), "--split-protocol", "lists"],
            args.out / "prepare.log", env={"FORCE": "1"})
    schedule = ["--total-num-update", str(args.updates)]
    name, params, valid, test, _, seconds = classifier_row("mega", data, SPEECH_ARGS + schedule, args)
    table(args, ["model", "params", "best valid acc", "test acc (best)", "time (s)"],
          [("mega_sc_raw_tiny", params, valid, test, seconds)])


def classifier_row(name: str, data: Path, train_args, args):
    """Trains a classifier, scores its best checkpoint on test with scripts/eval_cls.sh; returns
    (name, parameters, best valid accuracy, test accuracy, train wps, seconds)."""
    save = args.out / "checkpoints" / name
    log, seconds = train(data, train_args, save, args, name)
    evaluation = run(["bash", str(ROOT / "scripts" / "eval_cls.sh"), str(save / "checkpoint_best.pt"), str(data)],
                     args.out / f"eval_{name}.log", env={"CPU": "1"})
    return (name, last(r"num\. shared model params: ([0-9,]+)", log, str),
            f"{last(r'valid on .valid. subset .*? accuracy ([0-9.]+)', log):.1f}",
            f"{last(r'test accuracy: ([0-9.]+)', evaluation):.1f}",
            f"{last(r'[|] train [|].*? wps ([0-9.]+)', log):.0f}", f"{seconds:.0f}")


def train(data: Path, model_args, save: Path, args, name: str):
    """Trains from scratch (a rerun replaces the model's checkpoints and TensorBoard log); returns (log, seconds)."""
    for stale in (save, args.out / "tensorboard" / name):
        shutil.rmtree(stale, ignore_errors=True)
    start = time.time()
    log = run(["fairseq-train", str(data), *model_args, "--max-update", str(args.updates), "--save-dir", str(save),
               "--tensorboard-logdir", str(args.out / "tensorboard" / name)], args.out / f"train_{name}.log")
    return log, time.time() - start


def table(args, header, rows):
    print(f"\n{args.updates} updates each, CPU; tensorboard --logdir {args.out / 'tensorboard'}\n")
    print_table(header, rows)


def print_table(header, rows):
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    print("| " + " | ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in
                            enumerate(zip(header, widths))) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in
                                enumerate(zip(row, widths))) + " |")

