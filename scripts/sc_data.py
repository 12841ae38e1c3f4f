#!/usr/bin/env python
"""Cache Speech Commands clips for training (``scripts/prepare_sc.sh`` calls this into a temporary
folder): the WAV files are decoded once, by the rules of the ``mega_sequence_classification``
task, into fixed-length float32 rows that training memory-maps.

    python scripts/sc_data.py RAW_DIR OUT_DIR [--words sc10] [--split-protocol lists]
        [--short-clips drop] [--resample]

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from mega_fairseq.tasks.classification_data import (SPLITS, DataError, read_clip, speech_commands_split,  # noqa: E402
                                                    speech_words)
from mega_fairseq.tasks.mega_sequence_classification import META_FILE, SPEECH_COMMANDS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import progress  # noqa: E402


def cache(raw: Path, out: Path, cfg) -> dict:
    words = speech_words(cfg.words)
    splits = speech_commands_split(raw, cfg)
    (out / "input0").mkdir(parents=True, exist_ok=True)
    (out / "label").mkdir(parents=True, exist_ok=True)
    counts, statistics = {}, None
    for split in SPLITS:
        start = time.time()
        rows = np.lib.format.open_memmap(out / "input0" / f"{split}.npy", mode="w+", dtype=np.float32,
                                         shape=(len(splits[split]), cfg.max_positions))
        labels, kept = [], 0
        total = total_square = 0.0
        for path, label in progress(splits[split], desc=split, unit="clip"):
            audio = read_clip(path, cfg)
            if audio is None:
                continue
            rows[kept] = audio
            kept += 1
            labels.append(label)
            total += float(audio.sum(dtype=np.float64))
            total_square += float(np.square(audio, dtype=np.float64).sum())
        rows.flush()
        del rows
        if kept < len(splits[split]):  # dropped short clips: rewrite without the unused rows
            full = np.load(out / "input0" / f"{split}.npy", mmap_mode="r")
            np.save(out / "input0" / f"{split}.tmp.npy", full[:kept])
            del full
            (out / "input0" / f"{split}.tmp.npy").replace(out / "input0" / f"{split}.npy")
        if not labels:
            raise DataError(f"{raw}: no {split} clips (of {', '.join(words)})")
        (out / "label" / f"{split}.label").write_text("".join(f"{label}\n" for label in labels))
        counts[split] = kept
        if split == "train":
            count = kept * cfg.max_positions
            mean = total / count
            statistics = (mean, float(np.sqrt(max(total_square - count * mean * mean, 0.0) / (count - 1))))
        print(f"{split}: {kept} clips ({len(splits[split]) - kept} short clips dropped), per class "
              f"{np.bincount(labels, minlength=len(words)).tolist()} ({time.time() - start:.0f}s)", flush=True)
    meta = dict(source=str(raw), data_format="speech_commands", input_type="waveform", paired=False,
                num_classes=len(words), words=list(words), max_positions=cfg.max_positions,
                split_protocol=cfg.split_protocol, short_clips=cfg.short_clips, resample=cfg.resample,
                mean=statistics[0], std=statistics[1], examples=counts)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_dir", type=Path, help="the extracted Speech Commands release")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--words", default="sc10", help="sc10 (default), all (35 words) or a comma-separated list")
    parser.add_argument("--split-protocol", choices=("lists", "random"), default="lists",
                        help="the release's validation/testing lists (default), or the official code's stratified "
                             "random 70/15/15 split")
    parser.add_argument("--short-clips", choices=("drop", "pad"), default="drop",
                        help="clips shorter than one second: dropped (default; the official SC10 protocol) or "
                             "padded with zeros at the end")
    parser.add_argument("--resample", action="store_true", help="resample audio that is not 16 kHz")
    args = parser.parse_args(argv)
    cfg = SimpleNamespace(words=args.words, split_protocol=args.split_protocol, short_clips=args.short_clips,
                          resample=args.resample, max_positions=SPEECH_COMMANDS.max_positions)
    try:
        meta = cache(args.raw_dir, args.out_dir, cfg)
    except (DataError, FileNotFoundError, ValueError) as error:
        sys.exit(f"sc_data.py: error: {error}")
    print(f"training samples: mean {meta['mean']:.6g}, std {meta['std']:.6g}")


if __name__ == "__main__":
    main()
