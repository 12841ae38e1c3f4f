"""Tiny data in each public release format the classification task reads, written by the tests.

Labels are learnable from the content, so that a few updates can move the accuracy: IMDB reviews
and AAN pairs use class words, CIFAR-10 images are bright or dark per class.
"""

import importlib.util
import pickle
import random
from pathlib import Path

import numpy as np

from mega_fairseq.data import listops, pathfinder

ROOT = Path(__file__).resolve().parents[1]

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
CLASS_WORDS = [["dull", "boring", "awful"], ["great", "superb", "lovely"]]


def script(name: str):
    """A module of scripts/, imported from its file."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_listops(folder: Path, counts=(60, 16, 16), seed=0, lengths=(10, 60)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    listops.main([str(folder), "--train", str(counts[0]), "--valid", str(counts[1]), "--test", str(counts[2]),
                  "--min-length", str(lengths[0]), "--max-length", str(lengths[1]), "--seed", str(seed)])
    return folder


def _review(rng: random.Random, label: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(4, 20)) + rng.choices(CLASS_WORDS[label], k=3)
    rng.shuffle(words)
    return " ".join(words) + " <br />é"  # a non-ASCII byte pair, as real reviews have


def write_imdb(folder: Path, per_class=(12, 6), seed=0) -> Path:
    """aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt"""
    rng = random.Random(seed)
    for split, count in zip(("train", "test"), per_class):
        for label, name in enumerate(("neg", "pos")):
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rating = rng.randint(7, 10) if label else rng.randint(1, 4)
                (folder / split / name / f"{i}_{rating}.txt").write_text(_review(rng, label), encoding="utf-8")
    return folder


def write_aan(folder: Path, counts=(40, 12, 12), seed=0) -> Path:
    """new_aan_pairs.{train,eval,test}.tsv: label, id1, id2, text1, text2 (positives share a topic word)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in zip(("train", "eval", "test"), counts):
        with open(folder / f"new_aan_pairs.{split}.tsv", "w", encoding="utf-8") as f:
            for i in range(count):
                label = i % 2
                first = rng.choice(WORDS)
                second = first if label else rng.choice([w for w in WORDS if w != first])
                texts = [" ".join([topic] * 3 + rng.choices(CLASS_WORDS[0], k=rng.randint(2, 9)))
                         for topic in (first, second)]
                f.write(f"{float(label)}\tP{i}-a\tP{i}-b\t{texts[0]}\t{texts[1]}\n")
    return folder


def write_cifar10(folder: Path, per_batch=8, seed=0) -> Path:
    """cifar-10-batches-py/data_batch_{1..5}, test_batch: pickled dicts of N x 3072 uint8 and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        base = np.array(labels, dtype=np.int64)[:, None] * 25
        data = np.clip(base + rng.integers(0, 20, (per_batch, 3072)), 0, 255).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"{i}.png".encode() for i in range(per_batch)]}, f, protocol=2)
    return folder


def write_pathfinder(folder: Path, count=40, size=32, seed=0) -> Path:
    """<folder>/curv_baseline/{imgs,metadata} of the release; returns the difficulty folder."""
    pathfinder.main([str(folder), "--size", str(size), "--count", str(count), "--per-folder",
                     str(max(count // 2, 1)), "--seed", str(seed)])
    return folder / "curv_baseline"


def tone(word_index: int, length: int = 16000, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A clip whose pitch depends on the word (learnable), with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    signal = 0.3 * np.sin(2 * np.pi * (200 + 150 * word_index) * t) + 0.01 * rng.standard_normal(length)
    return signal.astype(np.float32)


def write_speech_commands(folder: Path, words=("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"),
                          per_word=6, seed=0) -> Path:
    """Speech Commands v0.02 layout: <word>/<speaker>_nohash_<k>.wav (16 kHz mono 16-bit PCM), with
    validation_list.txt and testing_list.txt naming the clips of speakers 'v...' and 't...'."""
    import soundfile

    valid, test = [], []
    for index, word in enumerate(words):
        (folder / word).mkdir(parents=True, exist_ok=True)
        for k in range(per_word):
            speaker = ("v" if k == 0 else "t" if k == 1 else "s") + f"{k:07x}"
            name = f"{speaker}_nohash_0.wav"
            soundfile.write(folder / word / name, tone(index, seed=seed * 1000 + index * 10 + k), 16000,
                            subtype="PCM_16")
            (valid if k == 0 else test if k == 1 else []).append(f"{word}/{name}")
    (folder / "validation_list.txt").write_text("".join(f"{p}\n" for p in valid))
    (folder / "testing_list.txt").write_text("".join(f"{p}\n" for p in test))
    return folder


SENTIMENT_WORDS = {"negative": ["dull", "boring", "awful"], "neutral": ["okay", "average", "fine"],
                   "positive": ["great", "superb", "lovely"]}


def write_text_tsv(folder: Path, counts=(36, 9, 12), seed=0, header="text\tlabel") -> Path:
    """train.tsv, valid.tsv and test.tsv of sentences labelled negative, neutral or positive by
    their class words (learnable), under a header line; valid and test sentences also hold words
    that training never saw."""
    rng = random.Random(seed)
    labels = sorted(SENTIMENT_WORDS)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in zip(("train", "valid", "test"), counts):
        rows = [header] if header else []
        for i in range(count):
            label = labels[i % len(labels)]
            words = rng.choices(WORDS, k=rng.randint(3, 9)) + rng.choices(SENTIMENT_WORDS[label], k=2)
            if split != "train":
                words += [f"unseen{rng.randrange(5)}"]
            rng.shuffle(words)
            rows.append(f"{' '.join(words)}\t{label}")
        (folder / f"{split}.tsv").write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
    return folder
