"""Cache Speech Commands clips for training (``scripts/prepare_sc.sh`` runs this into a temporary
folder): the WAV files are decoded once, by the rules of the ``mega_sequence_classification``
task, into fixed-length float32 rows that training memory-maps.

    python -m mega_fairseq.data.speech_commands RAW_DIR OUT_DIR [--words sc10] [--split-protocol random]
        [--short-clips drop] [--shorten-method none] [--resample]

The defaults are the paper's SC10 protocol (the official code's, as S4's and Kidger et al.'s):
the ten words, clips shorter than one second dropped, then a stratified random 70/15/15 split;
``--split-protocol lists`` takes the release's validation and testing lists instead.

OUT_DIR receives ``input0/{train,valid,test}.npy`` (N x 16000 float32, numpy memory maps),
``label/{split}.label`` (one class per line) and ``meta.json`` (the words in label order, the
options, and the mean and standard deviation of the training samples, which normalise every
split).
"""

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .classification import (META_FILE, SPEECH_COMMANDS, SPLITS, DataError, read_clip, speech_commands_split,
                             speech_words)
from .progress import progress

PROG = "python -m mega_fairseq.data.speech_commands"


def cache(raw: Path, out: Path, cfg) -> dict:
    words = speech_words(cfg.words)
    split = speech_commands_split(raw, cfg)
    (out / "input0").mkdir(parents=True, exist_ok=True)
    (out / "label").mkdir(parents=True, exist_ok=True)
    statistics = None
    for name in SPLITS:
        clips = split.clips[name]
        if not clips:
            raise DataError(f"{raw}: no {name} clips (of {', '.join(words)})")
        start = time.time()
        rows = np.lib.format.open_memmap(out / "input0" / f"{name}.npy", mode="w+", dtype=np.float32,
                                         shape=(len(clips), cfg.max_positions))
        total = total_square = 0.0
        for row, (path, _) in enumerate(progress(clips, desc=name, unit="clip")):
            audio = read_clip(path, cfg)  # never None: the split holds no clip that is dropped
            rows[row] = audio
            total += float(audio.sum(dtype=np.float64))
            total_square += float(np.square(audio, dtype=np.float64).sum())
        rows.flush()
        del rows
        labels = [label for _, label in clips]
        (out / "label" / f"{name}.label").write_text("".join(f"{label}\n" for label in labels))
        if name == "train":
            count = len(clips) * cfg.max_positions
            mean = total / count
            statistics = (mean, float(np.sqrt(max(total_square - count * mean * mean, 0.0) / (count - 1))))
        print(f"{split.describe(name, cfg)}, per class {np.bincount(labels, minlength=len(words)).tolist()} "
              f"({time.time() - start:.0f}s)", flush=True)
    meta = dict(source=str(raw), data_format=SPEECH_COMMANDS.data_format, input_type=SPEECH_COMMANDS.input_type,
                paired=False, num_classes=len(words), words=list(words), max_positions=cfg.max_positions,
                split_protocol=cfg.split_protocol, short_clips=cfg.short_clips,
                shorten_method=cfg.shorten_method, resample=cfg.resample,
                mean=statistics[0], std=statistics[1], examples={name: len(split.clips[name]) for name in SPLITS})
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", type=Path, help="the extracted Speech Commands release")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--words", default="sc10", help="sc10 (default), all (35 words) or a comma-separated list")
    parser.add_argument("--split-protocol", choices=("random", "lists"), default="random",
                        help="random (default): the paper's SC10 protocol, the official code's stratified random "
                             "70/15/15 split after dropping short clips; lists: the release's validation_list.txt "
                             "and testing_list.txt")
    parser.add_argument("--short-clips", choices=("drop", "pad"), default="drop",
                        help="clips shorter than one second: dropped (default; the official SC10 protocol) or "
                             "padded with zeros at the end")
    parser.add_argument("--shorten-method", choices=("none", "truncate"), default="none",
                        help="clips longer than one second: an error (default) or cut to their first second")
    parser.add_argument("--resample", action="store_true", help="resample audio that is not 16 kHz")
    args = parser.parse_args(argv)
    cfg = SimpleNamespace(words=args.words, split_protocol=args.split_protocol, short_clips=args.short_clips,
                          shorten_method=args.shorten_method, resample=args.resample,
                          max_positions=SPEECH_COMMANDS.max_positions)
    try:
        meta = cache(args.raw_dir, args.out_dir, cfg)
    except (DataError, FileNotFoundError, ValueError) as error:
        sys.exit(f"{PROG}: error: {error}")
    print(f"training samples: mean {meta['mean']:.6g}, std {meta['std']:.6g}")


if __name__ == "__main__":
    main()
