"""Every release-format reader fed truncated and random bytes: the data loads (a cut that happens to
leave valid content) or fails with a clear error naming the damaged file, never another exception
from deep inside a parser."""

import random
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers.tiny import (write_aan, write_cifar10, write_imdb, write_listops, write_pathfinder, write_speech_commands,
                          write_text_tsv)
from mega_fairseq.data.classification import LRA_TASKS, SPEECH_COMMANDS, BenchmarkTask, DataError, detect_format
from mega_fairseq.data.examples import label_dictionary, load_split
from mega_fairseq.data.input_types import byte_dictionary, token_dictionary


def load_all(task_spec, data: Path):
    cfg = SimpleNamespace(**task_spec._asdict(), words="sc10", split_protocol="lists", short_clips="pad",
                          resample=False)
    fmt = detect_format(data)
    dictionary = None
    if cfg.input_type == "bytes":
        dictionary = byte_dictionary()
    elif cfg.input_type == "tokens":
        dictionary = token_dictionary(list(fmt.read(data, "train", cfg)))
    labels = label_dictionary(data, fmt, lambda: list(fmt.read(data, "train", cfg)))
    for split in ("train", "valid", "test"):
        load_split(cfg, fmt, data, split, dictionary, labels)


def damaged(content: bytes, rng: random.Random):
    """Truncations at several points, and random bytes of a few lengths."""
    for fraction in (0.0, 0.01, 0.1, 0.37, 0.5, 0.93):
        yield f"truncated at {fraction:.0%}", content[:int(len(content) * fraction)]
    for length in (1, 64, len(content)):
        yield f"{length} random bytes", bytes(rng.randrange(256) for _ in range(length))


CASES = {
    "listops": (LRA_TASKS["listops"], lambda root: write_listops(root), "basic_train.tsv"),
    "aan": (LRA_TASKS["retrieval"], lambda root: write_aan(root), "new_aan_pairs.eval.tsv"),
    "imdb": (LRA_TASKS["text"], lambda root: write_imdb(root), "test/pos/1_7.txt"),
    "cifar10": (LRA_TASKS["image"], lambda root: write_cifar10(root), "data_batch_2"),
    "pathfinder_png": (LRA_TASKS["pathfinder"], lambda root: write_pathfinder(root, count=10), "imgs/0/sample_3.png"),
    "pathfinder_metadata": (LRA_TASKS["pathfinder"], lambda root: write_pathfinder(root, count=10), "metadata/0.npy"),
    "speech_wav": (SPEECH_COMMANDS, lambda root: write_speech_commands(root, per_word=3), "up/s0000002_nohash_0.wav"),
    "speech_list": (SPEECH_COMMANDS, lambda root: write_speech_commands(root, per_word=3), "testing_list.txt"),
    "tsv": (BenchmarkTask("tsv", "tokens", False, 3, 100), lambda root: write_text_tsv(root), "valid.tsv"),
}


@pytest.mark.parametrize("case", CASES)
def test_damaged_files_give_clear_errors(tmp_path, case):
    spec, writer, name = CASES[case]
    data = writer(tmp_path / "data")
    target = data / name
    if not target.exists():  # the IMDB fixture's file names carry a random rating
        target = sorted(target.parent.glob(target.name.split("_")[0] + "_*.txt"))[0]
    original = target.read_bytes()
    rng = random.Random(case)
    outcomes = []
    for what, content in damaged(original, rng):
        target.write_bytes(content)
        try:
            load_all(spec, data)
            outcomes.append("loaded")
        except (DataError, FileNotFoundError) as error:
            # named by the damaged file, or (a metadata file cut to nothing) the data folder left without a split
            assert str(target) in str(error) or re.match(f"{re.escape(str(data))}.*: the .* split is empty",
                                                         str(error)), f"{what}: {error}"
            outcomes.append("error")
    assert "error" in outcomes
    target.write_bytes(original)
    load_all(spec, data)  # and the undamaged data loads


def test_every_reader_is_fuzzed():
    """A reader added to FORMATS needs its cases here."""
    from mega_fairseq.data.classification import FORMATS

    covered = {spec.data_format for spec, _, _ in CASES.values()}
    assert {name for name, fmt in FORMATS.items() if fmt.read is not None} <= covered
