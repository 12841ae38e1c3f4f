"""Tiny data in every format the project reads, written by the tests, and the tiny settings several
tests share.

Classification: each public release format the task reads; labels are learnable from the content,
so that a few updates can move the accuracy: IMDB reviews and AAN pairs use class words, CIFAR-10
images are bright or dark per class, Speech Commands clips are tones whose pitch is the word's.
Language modelling: plain text, the WikiText-103 and enwik8 releases. Translation: a reordering
word-for-word task (src -> tgt) and English-German text in the WMT16 layout. Checkpoints: one whose
unpickling runs code.
"""

import os
import pickle
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mega_fairseq.data import listops, pathfinder

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
CLASS_WORDS = [["dull", "boring", "awful"], ["great", "superb", "lovely"]]


# ---------------------------------------------------------------- classification


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


def write_wav(path: Path, samples, rate=16000, subtype="PCM_16") -> Path:
    import soundfile

    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def speech_cfg(**changes):
    """The settings of the speech reader and task (Speech Commands' defaults, SC10 on the release's
    lists), with CHANGES."""
    from mega_fairseq.data.classification import SPEECH_COMMANDS

    values = dict(SPEECH_COMMANDS._asdict(), words="sc10", split_protocol="lists", short_clips="drop",
                  resample=False, data_format="auto", seed=1, pixel_mean=0.5, pixel_std=0.5)
    values.update(changes)
    return SimpleNamespace(**values)


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


# ---------------------------------------------------------------- language modelling


def write_lm_corpus(folder: Path, seed=0) -> Path:
    """Lines of words drawn with a skew (something to learn), split into train and valid."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in (("train", 500), ("valid", 20)):
        text = "".join(" ".join(rng.choices(words, weights=range(60, 0, -1), k=rng.randint(4, 20))) + "\n"
                       for _ in range(lines))
        (folder / f"{split}.txt").write_text(text)
    return folder


def write_long_lines_corpus(root: Path) -> Path:
    """train/valid of short lines and, every sixth line, lines far longer than 16 tokens (the
    --tokens-per-sample of the tests that read it), binarised into root/bin; the same splits also as
    mytrain/myvalid there (the .bin/.idx files copied)."""
    from helpers.fairseq_jobs import preprocess

    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(40)]
    for split, lines in (("train", 60), ("valid", 12)):
        with (root / f"{split}.txt").open("w") as f:
            for i in range(lines):
                length = rng.randint(70, 130) if i % 6 == 2 else rng.randint(2, 12)
                f.write(" ".join(rng.choice(vocab) for _ in range(length)) + "\n")
    preprocess("--only-source", "--trainpref", root / "train.txt", "--validpref", root / "valid.txt", "--destdir",
               root / "bin", "--workers", "1")
    for split in ("train", "valid"):
        for ext in ("bin", "idx"):
            shutil.copy(root / "bin" / f"{split}.{ext}", root / "bin" / f"my{split}.{ext}")
    return root / "bin"


def write_wikitext(folder: Path, seed=0):
    """Three files in the wiki.*.tokens layout: blank lines, ' = Title = ' headings, paragraphs."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)] + ["<unk>", "@-@", ",", "."]
    folder.mkdir(parents=True, exist_ok=True)
    for split, articles in (("train", 30), ("valid", 4), ("test", 4)):
        with (folder / f"wiki.{split}.tokens").open("w", encoding="utf-8") as f:
            for a in range(articles):
                f.write(f" \n = Article {a} = \n \n")
                for _ in range(20):
                    f.write(" " + " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 30))) + " \n")
    return folder


def fake_enwik8(size: int, seed=0) -> bytes:
    """XML-ish text with multi-byte UTF-8 characters and newlines, like enwik8."""
    rng = random.Random(seed)
    words = ["<page>", "<title>", "the", "of", "[[link]]", "café", "naïve", "{{cite}}", "&amp;", "1999", "東京"]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choice(words) for _ in range(rng.randint(0, 8))) + "\n").encode()
    return bytes(out[:size])


# the Hydra overrides that shrink each configs/lm recipe to a few thousand parameters; the recipe's
# other settings stay
TINY_LM_MODEL = ["model.decoder_layers=1", "model.decoder_embed_dim=32", "model.decoder_hidden_dim=64",
                 "model.decoder_z_dim=16", "model.decoder_n_dim=4", "model.decoder_chunk_size=16"]
TINY_LM_RUN = ["task.tokens_per_sample=16", "task.max_target_positions=512", "dataset.max_tokens=1024",
               "optimization.max_update=2"]
TINY_LM_RECIPES = {
    "lm/wikitext103": TINY_LM_MODEL + TINY_LM_RUN + ['model.adaptive_input_cutoff="100,200"',
                                                    'model.adaptive_softmax_cutoff="100,200"'],
    "lm/enwik8": TINY_LM_MODEL + TINY_LM_RUN,
    "lm/demo": ["optimization.max_update=2"],
}


# ---------------------------------------------------------------- translation

MT_WORDS = [f"w{i}" for i in range(40)]
MT_LANGS = ["--source-lang", "src", "--target-lang", "tgt"]  # of write_pairs
# a tiny translation model, as fairseq-train flags
TINY_MT = ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "16", "--decoder-embed-dim", "16",
           "--encoder-hidden-dim", "32", "--decoder-hidden-dim", "32", "--encoder-z-dim", "8", "--decoder-z-dim", "8",
           "--encoder-n-dim", "2", "--decoder-n-dim", "2"]


def write_pairs(folder, split, count, seed, source="src", target="tgt"):
    """Source: random words; target: each word mapped to another, in reverse order (a learnable,
    reordering 'translation')."""
    rng = random.Random(seed)
    with open(folder / f"{split}.{source}", "w") as src, open(folder / f"{split}.{target}", "w") as tgt:
        for _ in range(count):
            words = rng.choices(MT_WORDS, k=rng.randint(3, 14))
            src.write(" ".join(words) + "\n")
            tgt.write(" ".join(f"t{w[1:]}" for w in reversed(words)) + "\n")


# a made-up lexicon: English word -> German word (hyphenated compounds and umlauts included)
NOUNS = {"cat": "Katze", "dog": "Hund", "house": "Haus", "e-mail": "E-Mail", "tree": "Baum", "river": "Fluss",
         "city": "Stadt", "teacher": "Lehrer", "bird": "Vogel", "garden": "Garten", "car": "Auto",
         "T-shirt": "T-Shirt", "book": "Buch", "child": "Kind", "road": "Straße", "window": "Fenster",
         "mountain": "Berg", "village": "Dorf", "doctor": "Ärztin", "flower": "Blume", "bridge": "Brücke",
         "letter": "Brief", "kitchen": "Küche", "student": "Studentin", "forest": "Wald", "horse": "Pferd",
         "computer": "Rechner", "newspaper": "Zeitung", "island": "Insel", "musician": "Musiker",
         "train": "Zug", "market": "Markt", "lake": "See", "fox": "Fuchs", "baker": "Bäcker",
         "neighbour": "Nachbar", "painting": "Gemälde", "station": "Bahnhof", "song": "Lied", "key": "Schlüssel"}
ADJECTIVES = {"big": "große", "small": "kleine", "old": "alte", "green": "grüne", "quiet": "ruhige",
              "fast": "schnelle", "happy": "glückliche", "well-known": "bekannte", "young": "junge",
              "tired": "müde", "clever": "kluge", "strange": "seltsame", "beautiful": "schöne",
              "dark": "dunkle", "friendly": "freundliche", "empty": "leere", "famous": "berühmte",
              "brave": "mutige", "cold": "kalte", "red": "rote"}
VERBS = {"sees": "sieht", "likes": "mag", "finds": "findet", "paints": "malt", "follows": "folgt",
         "hears": "hört", "visits": "besucht", "forgets": "vergisst", "draws": "zeichnet", "buys": "kauft",
         "answers": "beantwortet", "carries": "trägt", "remembers": "erinnert", "watches": "beobachtet",
         "opens": "öffnet", "describes": "beschreibt"}
WMT_SIZES = {"train": 300, "valid": 20, "test": 24}


def sentence_pair(rng):
    n1, n2 = rng.sample(sorted(NOUNS), 2)
    adj, verb = rng.choice(sorted(ADJECTIVES)), rng.choice(sorted(VERBS))
    en = f"The {adj} {n1} {verb} the {n2}."
    de = f"Die {ADJECTIVES[adj]} {NOUNS[n1]} {VERBS[verb]} die {NOUNS[n2]}."
    kind = rng.random()
    if kind < 0.15:  # typographic quotes and a doubled space: the normaliser's work
        en, de = f"“{en}”  she said.", f"„{de}“  sagte sie."
    elif kind < 0.25:
        en, de = f"{en} And {n2}s, too!", f"{de} Und auch {NOUNS[n2]}!"
    return en, de


def write_wmt_raw(folder: Path, seed=0, sizes=WMT_SIZES):
    """{train,valid,test}.{en,de} of the WMT16 layout, one sentence a line."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        pairs = [sentence_pair(rng) for _ in range(n)]
        if split == "train":  # lengths far apart: clean-corpus-n's ratio filter drops it
            pairs[5] = ("Yes.", "Ja, " + ", ".join(["ganz sicher und ohne jeden Zweifel"] * 6) + ".")
        for index, lang in enumerate(("en", "de")):
            (folder / f"{split}.{lang}").write_text("".join(p[index] + "\n" for p in pairs), encoding="utf-8")
    return folder


# ---------------------------------------------------------------- checkpoints


class RunsCode:
    """Unpickles to a call of os.system: what a malicious checkpoint would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_checkpoint(folder: Path):
    """(folder/crafted.pt, the file that appears when its code runs): a checkpoint whose unpickling
    runs code."""
    import torch

    path, marker = folder / "crafted.pt", folder / "code_ran"
    torch.save({"model": {"w": torch.ones(1)}, "extra_state": {"payload": RunsCode(marker)}}, path)
    return path, marker


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
