#!/usr/bin/env python
"""Quick start: a small Mega LM against a same-size fairseq transformer_lm, on CPU, no download.

Builds a corpus from Python's own docstrings, binarises it with fairseq-preprocess, trains
both models for the same number of updates with fairseq-train (tensorboard logs under
OUT/tensorboard), scores the test split with fairseq-eval-lm and prints a table.

    python scripts/demo.py            # or: make demo
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

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


def run(cmd, log: Path):
    print("$ " + " ".join(cmd), flush=True)
    with log.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}); see {log}:\n" + log.read_text()[-3000:])
    return log.read_text()


def last(pattern, text, cast=float):
    found = re.findall(pattern, text)
    return cast(found[-1].replace(",", "")) if found else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "demo", help="working folder")
    parser.add_argument("--updates", type=int, default=300, help="training updates per model")
    args = parser.parse_args(argv)

    raw, data = args.out / "raw", args.out / "bin"
    if not (data / "dict.txt").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_demo_corpus.py"), "--out", str(raw)], check=True)
        args.out.mkdir(parents=True, exist_ok=True)
        run(["fairseq-preprocess", "--only-source", "--trainpref", str(raw / "train.txt"), "--validpref",
             str(raw / "valid.txt"), "--testpref", str(raw / "test.txt"), "--destdir", str(data),
             "--thresholdsrc", "3", "--workers", "2"], args.out / "preprocess.log")

    rows = []
    for name, model_args in MODELS.items():
        save = args.out / "checkpoints" / name
        start = time.time()
        log = run(["fairseq-train", str(data), *model_args, *SHARED, "--max-update", str(args.updates),
                   "--save-dir", str(save), "--tensorboard-logdir", str(args.out / "tensorboard" / name)],
                  args.out / f"train_{name}.log")
        seconds = time.time() - start
        user_dir = model_args[:2] if model_args[0] == "--user-dir" else []
        evaluation = run(["fairseq-eval-lm", str(data), *user_dir, "--path", str(save / "checkpoint_last.pt"),
                          "--gen-subset", "test", "--cpu", "--task", "language_modeling", "--tokens-per-sample",
                          "128", "--batch-size", "16", "--required-batch-size-multiple", "1"],
                         args.out / f"eval_{name}.log")
        rows.append((name, last(r"num\. shared model params: ([0-9,]+)", log, str),
                     last(r"valid on 'valid' subset \| loss [0-9.]+ \| ppl ([0-9.]+)", log),
                     last(r"Perplexity: ([0-9.]+)", evaluation), last(r"\| train \|.*? wps ([0-9.]+)", log), seconds))

    print(f"\n{args.updates} updates each, CPU; tensorboard --logdir {args.out / 'tensorboard'}\n")
    print(f"| {'model':<15}| {'params':>9} | {'valid ppl':>9} | {'test ppl':>9} | {'train wps':>9} | {'time (s)':>8} |")
    print("|" + "-" * 16 + "|" + "-" * 11 + "|" + "-" * 11 + "|" + "-" * 11 + "|" + "-" * 11 + "|" + "-" * 10 + "|")
    for name, params, valid, test, wps, seconds in rows:
        print(f"| {name:<15}| {params:>9} | {valid:>9.1f} | {test:>9.1f} | {wps:>9.0f} | {seconds:>8.0f} |")


if __name__ == "__main__":
    main()
