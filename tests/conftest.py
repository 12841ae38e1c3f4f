"""Seen by every test, in tests/unit and tests/cli: the checkout and tests/helpers on sys.path, the
cuda marker, and the session's shared data (lm_data, mt_data)."""

import os
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
# test this checkout, whichever copy is installed: in this process and in the commands it runs; and
# the helpers package (tests/helpers) importable by the tests of both folders
sys.path[:0] = [str(TESTS.parent), str(TESTS)]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")]))

from helpers.fairseq_jobs import preprocess  # noqa: E402  (once this checkout comes first)
from helpers.tiny import write_pairs  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU, skipped without one (pytest -m cuda runs them all)")


def pytest_collection_modifyitems(config, items):
    """The cuda marker is the one place that says a test needs a GPU: it is skipped without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lm_data(tmp_path_factory):
    """A small corpus from Python's own docstrings, binarised by fairseq-preprocess."""
    from demo import lm_corpus

    root = tmp_path_factory.mktemp("lm_data")
    lm_corpus.main(["--out", str(root), "--max-train-words", "20000"])
    preprocess("--only-source", "--trainpref", root / "train.txt", "--validpref", root / "valid.txt", "--testpref",
               root / "test.txt", "--destdir", root / "bin", "--thresholdsrc", "2", "--workers", "1")
    return root / "bin"


@pytest.fixture(scope="session")
def mt_data(tmp_path_factory):
    """A small parallel corpus (src -> tgt), binarised with a joined dictionary."""
    root = tmp_path_factory.mktemp("mt_data")
    for split, count, seed in (("train", 400, 0), ("valid", 30, 1), ("test", 30, 2)):
        write_pairs(root, split, count, seed)
    preprocess("--source-lang", "src", "--target-lang", "tgt", "--trainpref", root / "train", "--validpref",
               root / "valid", "--testpref", root / "test", "--destdir", root / "bin", "--joined-dictionary",
               "--workers", "1")
    return root / "bin"


# the official code's data, dictionaries and binarised translation data (tests/helpers/official.py),
# for the conversion tests of both folders
@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    from helpers import official

    return official.write_data(tmp_path_factory.mktemp("official_data"))


@pytest.fixture(scope="module")
def dictionaries(data_dirs, tmp_path_factory):
    from helpers import official

    return official.write_dictionaries(data_dirs, tmp_path_factory.mktemp("official_dicts"))


@pytest.fixture(scope="module")
def mt_bin(tmp_path_factory):
    from helpers import official

    return official.write_mt_bin(tmp_path_factory.mktemp("official_mt"))
