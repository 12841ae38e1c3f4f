"""The mega_language_modeling task through fairseq-hydra-train (scripts/train.sh): the demo recipe
trains and validates on splits renamed with dataset.train_subset/valid_subset."""

import re

import pytest

from helpers import ROOT
from helpers.fairseq_jobs import run
from helpers.tiny import write_long_lines_corpus


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_long_lines_corpus(tmp_path_factory.mktemp("lm_task"))


def test_custom_subset_names_through_hydra_train(data, tmp_path):
    """fairseq-hydra-train (scripts/train.sh) with the demo recipe and renamed splits."""
    _, out = run(["bash", ROOT / "scripts" / "train.sh", "lm/demo", data, tmp_path, "dataset.train_subset=mytrain",
                  "dataset.valid_subset=myvalid", "optimization.max_update=1", "checkpoint.no_save=true"],
                 env={"CPU": "1"})
    assert re.search(r"mytrain: \d+ blocks of \d+-\d+ tokens", out), out[-3000:]
    assert re.search(r"myvalid: \d+ tokens in 4 streams", out), out[-3000:]
    assert re.search(r"valid on 'myvalid' subset .*\| num_updates 1\b", out), out[-3000:]
