"""Write a few examples of every data format the recipes read, for data/samples (see data/README.md).

Nothing is downloaded or copied: the samples come from the repository's own generators (the
demos' lm_corpus.py, mt_corpus.py, speech_words.py; the package's
mega_fairseq.data.listops, .pathfinder and .enwik8) or, for the formats no generator writes (aclImdb,
AAN, CIFAR-10), from short seeded templates here, each in the layout of its public release:

    lm/                 {train,valid,test}.txt: the first paragraphs of demo.lm_corpus's corpus
    enwik8/             enwik8 (a small page in the dump's XML) and text/{train,valid,test}.txt,
                        the bytes as prepare_enwik8.sh writes them
    mt/                 {train,valid,test}.{en,de}: demo.mt_corpus pairs (prepare_wmt16_en_de.sh's RAW_DIR)
    listops/            basic_{train,val,test}.tsv (lra_release/listops-1000)
    aclImdb/            {train,test}/{neg,pos}/<id>_<rating>.txt (the IMDB archive)
    aan/                new_aan_pairs.{train,eval,test}.tsv (lra_release/tsv_data)
    cifar-10-batches-py/  data_batch_{1..5}, test_batch, batches.meta (the CIFAR-10 python archive)
    pathfinder32/curv_contour_length_14/  imgs/<k>/sample_<i>.png, metadata/<k>.npy (lra_release)
    speech_commands/    yes/, no/ (16 kHz 16-bit WAVs), validation_list.txt, testing_list.txt
    made_with.json      the Python and espeak-ng versions the samples were made with

Every sample is seeded: a rerun writes the same bytes, except that lm/ follows the docstrings of
the running Python's standard library and speech_commands/ the installed espeak-ng (same
versions, same bytes). Each sample folder is written beside its final place and renamed into it.

    python -m demo.data_samples                      # all, into data/samples
    python -m demo.data_samples --out /tmp/samples listops mt
"""

import argparse
import json
import os
import pickle
import platform
import random
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Dict

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m demo.data_samples"

LM_LINES = 3  # paragraphs per split of the demo corpus
MT_PAIRS = (5, 3, 3)  # train, valid, test
LISTOPS_ROWS = (6, 3, 3)
IMDB_PER_CLASS = 2  # reviews per class and split
AAN_ROWS = (4, 2, 2)
CIFAR_PER_BATCH = 2
PATHFINDER_IMAGES = 10  # split 8/1/1 by the reader
SPEECH_WORDS = "yes,no"
SPEECH_PER_WORD = 3  # one speaker per split
MADE_WITH = "made_with.json"


# Language modelling --------------------------------------------------------------------------

def write_lm(out: Path):
    """The first LM_LINES paragraphs of each split, as demo.lm_corpus writes them."""
    from demo import lm_corpus as corpus

    seen, splits = set(), {"train": [], "valid": [], "test": []}
    for doc in corpus.docstrings(Path(sysconfig.get_paths()["stdlib"])):
        for paragraph in corpus.paragraphs(doc):
            if paragraph not in seen:
                seen.add(paragraph)
                splits[corpus.split_of(paragraph)].append(paragraph)
        if all(len(lines) >= LM_LINES for lines in splits.values()):
            break
    out.mkdir()
    for split, lines in splits.items():
        (out / f"{split}.txt").write_text("\n".join(lines[:LM_LINES]) + "\n", encoding="utf-8")


ENWIK8_PAGE = """\
<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.3/" version="0.3" xml:lang="en">
  <page>
    <title>Moving average</title>
    <id>1</id>
    <revision>
      <id>2</id>
      <timestamp>2006-03-04T01:41:25Z</timestamp>
      <text xml:space="preserve">A '''moving average''' smooths a [[time series]]: each value is
replaced by a weighted mean of the values before it.

An ''exponential'' moving average weights older values less &amp; less (caf\u00e9 is two bytes).
</text>
    </revision>
  </page>
</mediawiki>
"""


def write_enwik8(out: Path):
    """A small page in the layout of the enwik8 dump, and its text/ split as prepare_enwik8.sh writes it (the
    last 80 bytes as test, the 80 before them as valid, instead of 5M and 5M)."""
    from mega_fairseq.data import enwik8

    (out / "text").mkdir(parents=True)
    data = ENWIK8_PAGE.encode("utf-8")
    (out / "enwik8").write_bytes(data)
    for name, part in enwik8.split(data, 80, 80).items():
        enwik8.write_tokens(part, out / "text" / f"{name}.txt")


# Translation ---------------------------------------------------------------------------------

def write_mt(out: Path):
    from demo import mt_corpus as make_mt_corpus

    make_mt_corpus.main(["--out", str(out), "--train-pairs", str(MT_PAIRS[0]), "--valid-pairs", str(MT_PAIRS[1]),
                         "--test-pairs", str(MT_PAIRS[2]), "--seed", "1"])


# Long Range Arena ----------------------------------------------------------------------------

def write_listops(out: Path):
    from mega_fairseq.data import listops

    listops.main([str(out), "--train", str(LISTOPS_ROWS[0]), "--valid", str(LISTOPS_ROWS[1]), "--test",
                  str(LISTOPS_ROWS[2]), "--min-length", "10", "--max-length", "40", "--seed", "0"])


IMDB_OPENERS = ["I watched this film on a rainy evening.", "My friends talked me into this one.",
                "I had read the book before seeing the film.", "This was shown on television last week."]
IMDB_VERDICTS = [  # neg, pos
    ["The plot drags and the dialogue is wooden.", "The acting is flat and the ending makes no sense.",
     "Two hours I will never get back.", "Even the music could not save it."],
    ["The story is gripping from the first scene.", "The cast is superb and the score is lovely.",
     "I laughed, and then I cried.", "A small film with a big heart."]]


def write_imdb(out: Path):
    """aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt, one review per file (ratings 1-4 neg, 7-10 pos),
    with the <br /> line breaks and the non-ASCII characters real reviews have."""
    rng = random.Random(0)
    for split in ("train", "test"):
        for label, name in enumerate(("neg", "pos")):
            (out / split / name).mkdir(parents=True)
            for index in range(IMDB_PER_CLASS):
                rating = rng.randint(7, 10) if label else rng.randint(1, 4)
                review = (f"{rng.choice(IMDB_OPENERS)} {' '.join(rng.sample(IMDB_VERDICTS[label], 2))}<br /><br />"
                          f"{rating}/10 \u2014 {'worth it' if label else 'skip it'}, caf\u00e9 popcorn or not.")
                (out / split / name / f"{index}_{rating}.txt").write_text(review, encoding="utf-8")


AAN_TOPICS = ["parsing", "translation", "tagging", "summarization", "retrieval", "alignment"]
AAN_PHRASES = ["We present a method for {}.", "Experiments on {} show large gains.",
               "Our {} model is trained on annotated data.", "Previous work on {} used hand-written rules.",
               "We release code for {}."]


def _aan_paper(rng: random.Random, topic: str) -> str:
    return " ".join(phrase.format(topic) for phrase in rng.sample(AAN_PHRASES, 3))


def write_aan(out: Path):
    """new_aan_pairs.{train,eval,test}.tsv: label (1.0: the first paper cites the second), the two paper ids,
    the two texts; here a citing pair shares its topic."""
    rng = random.Random(0)
    out.mkdir()
    for split, rows in zip(("train", "eval", "test"), AAN_ROWS):
        lines = []
        for index in range(rows):
            label = index % 2
            first = rng.choice(AAN_TOPICS)
            second = first if label else rng.choice([t for t in AAN_TOPICS if t != first])
            ids = [f"{rng.choice('PDNW')}{rng.randint(0, 9):02d}-{rng.randint(1000, 1200)}" for _ in range(2)]
            lines.append(f"{float(label)}\t{ids[0]}\t{ids[1]}\t{_aan_paper(rng, first)}\t{_aan_paper(rng, second)}\n")
        (out / f"new_aan_pairs.{split}.tsv").write_text("".join(lines), encoding="utf-8")


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(out: Path):
    """cifar-10-batches-py: data_batch_{1..5} and test_batch (pickled dicts: b"data" N x 3072 uint8, the R, G
    and B planes of 32 x 32 images, b"labels", b"filenames", b"batch_label") and batches.meta. The images are
    a coloured square on a coloured background."""
    rng = np.random.default_rng(0)
    out.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(x) for x in rng.integers(0, 10, CIFAR_PER_BATCH)]
        images = np.empty((CIFAR_PER_BATCH, 3, 32, 32), dtype=np.uint8)
        for image in images:
            image[:] = rng.integers(0, 256, 3, dtype=np.uint8)[:, None, None]
            top, left = rng.integers(0, 20, 2)
            image[:, top:top + 12, left:left + 12] = rng.integers(0, 256, 3, dtype=np.uint8)[:, None, None]
        filenames = [f"{CIFAR_CLASSES[label]}_s_{index:06d}.png".encode() for index, label in enumerate(labels)]
        label = f"training batch {name[-1]} of 5" if name != "test_batch" else "testing batch 1 of 1"
        batch = {b"batch_label": label.encode(), b"labels": labels,
                 b"data": images.reshape(CIFAR_PER_BATCH, 3072), b"filenames": filenames}
        (out / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"num_cases_per_batch": CIFAR_PER_BATCH, b"label_names": [c.encode() for c in CIFAR_CLASSES],
            b"num_vis": 3072}
    (out / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def write_pathfinder(out: Path):
    from mega_fairseq.data import pathfinder

    pathfinder.main([str(out), "--size", "32", "--count", str(PATHFINDER_IMAGES), "--per-folder",
                     str(PATHFINDER_IMAGES // 2), "--difficulty", "curv_contour_length_14", "--seed", "0"])


# Speech --------------------------------------------------------------------------------------

def espeak_version() -> str:
    """The installed espeak-ng's version, e.g. '1.51'; '' when it is not installed."""
    if shutil.which("espeak-ng") is None:
        return ""
    listing = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"text-to-speech:\s*(\S+)", listing)
    return found.group(1) if found else listing.strip()


def write_speech_commands(out: Path):
    from demo import speech_words as make_speech_commands

    make_speech_commands.main([str(out), "--words", SPEECH_WORDS, "--per-word", str(SPEECH_PER_WORD), "--seed", "0"])


SAMPLES: Dict[str, Callable[[Path], None]] = {
    "lm": write_lm, "enwik8": write_enwik8, "mt": write_mt, "listops": write_listops, "aclImdb": write_imdb,
    "aan": write_aan, "cifar-10-batches-py": write_cifar10, "pathfinder32": write_pathfinder,
    "speech_commands": write_speech_commands,
}


def write_sample(name: str, out: Path):
    """Write sample `name` into a temporary folder beside out/name, then put it in place of out/name."""
    final = out / name
    tmp = out / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        SAMPLES[name](tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def update_made_with(out: Path, names):
    """Record the versions that lm/ (Python's standard library) and speech_commands/ (espeak-ng) depend on."""
    path = out / MADE_WITH
    made_with = json.loads(path.read_text()) if path.is_file() else {}
    if "lm" in names:
        made_with["python"] = platform.python_version()
    if "speech_commands" in names:
        made_with["espeak-ng"] = espeak_version()
    path.write_text(json.dumps(made_with, indent=2, sort_keys=True) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="SAMPLE", help=f"samples to write (default: all): "
                                                                    f"{', '.join(SAMPLES)}")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "samples",
                        help="folder of the samples (default: data/samples)")
    args = parser.parse_args(argv)
    names = args.names or list(SAMPLES)
    unknown = [name for name in names if name not in SAMPLES]
    if unknown:
        parser.error(f"unknown sample {', '.join(unknown)} (known: {', '.join(SAMPLES)})")
    if "speech_commands" in names and not espeak_version():
        sys.exit(f"{PROG}: error: speech_commands needs espeak-ng (apt-get install espeak-ng, or "
                 "brew install espeak-ng); name the other samples to write them without it")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_sample(name, args.out)
    update_made_with(args.out, names)
    for name in names:
        files = [p for p in (args.out / name).rglob("*") if p.is_file()]
        print(f"{args.out / name}: {len(files)} files, {sum(p.stat().st_size for p in files):,} bytes")


if __name__ == "__main__":
    main()
