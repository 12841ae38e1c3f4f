"""Two CPU runs of the same command with the same seed, in separate processes, write identical
checkpoints (model and optimizer state, bit for bit), for a language model, a translation model and
a sequence classifier."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, USER_DIR, tensors
from lra_fixtures import write_listops

COMMON = ["--user-dir", USER_DIR, "--no-progress-bar", "--log-format", "simple", "--num-workers", "0",
          "--optimizer", "adam", "--lr", "1e-3", "--max-update", "3", "--no-epoch-checkpoints",
          "--required-batch-size-multiple", "1", "--seed", "7", "--dropout", "0.1", "--batch-size", "4"]
FAMILIES = ("lm", "mt", "cls")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lm_data, mt_data):
    root = tmp_path_factory.mktemp("determinism")
    listops = write_listops(root / "listops")
    procs = []
    for run in ("a", "b"):
        jobs = [["train", [str(lm_data), *COMMON, "--task", "mega_language_modeling", "--tokens-per-sample", "32",
                           "--arch", "mega_lm_tiny", "--save-dir", str(root / run / "lm")]],
                ["train", [str(mt_data), *COMMON, "--task", "translation", "--source-lang", "src", "--target-lang",
                           "tgt", "--arch", "mega_mt_tiny", "--save-dir", str(root / run / "mt")]],
                ["train", [str(listops), *COMMON, "--task", "mega_sequence_classification", "--num-classes", "10",
                           "--max-positions", "100", "--arch", "mega_classifier_tiny", "--criterion",
                           "sentence_prediction", "--save-dir", str(root / run / "cls")]]]
        (root / f"{run}.json").write_text(json.dumps(jobs))
        procs.append(subprocess.Popen([sys.executable, ROOT / "tests" / "fairseq_driver.py", root / f"{run}.json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"}))
    for proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
    return root


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_checkpoint(runs, family):
    a, b = (torch.load(runs / run / family / "checkpoint_last.pt", map_location="cpu", weights_only=True)
            for run in ("a", "b"))
    assert a["optimizer_history"][-1]["num_updates"] == 3
    for entry in ("model", "last_optimizer_state"):
        first, second = tensors(a[entry]), tensors(b[entry])
        assert first.keys() == second.keys() and first
        different = [name for name in first if not torch.equal(first[name], second[name])]
        assert not different, f"{entry}: {different[:5]}"
