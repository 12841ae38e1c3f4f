"""The official Mega code's criterion name, ``--criterion lra_cross_entropy``, through fairseq-train
(CPU, one driver process): an official-style command line trains exactly as ``sentence_prediction``
does (the same loss at every update, the same validation), and without ``--sentence-avg``, which
every official command line passes, it stops before training, naming the flag."""

import re

import pytest

from helpers import USER_DIR
from helpers.fairseq_jobs import driver_outputs
from helpers.tiny import write_listops

COMMON = ["--user-dir", USER_DIR, "--task", "mega_sequence_classification", "--num-classes", "10",
          "--max-positions", "100", "--arch", "mega_classifier_tiny", "--optimizer", "adam", "--lr", "1e-3",
          "--adam-betas", "(0.9, 0.98)", "--adam-eps", "1e-8", "--clip-norm", "1.0", "--batch-size", "8",
          "--required-batch-size-multiple", "1", "--max-update", "3", "--seed", "1", "--no-save",
          "--log-format", "simple", "--log-interval", "1", "--no-progress-bar", "--num-workers", "0", "--cpu"]
# the options of the official LRA command lines that concern the criterion
OFFICIAL = ["--criterion", "lra_cross_entropy", "--sentence-avg", "--best-checkpoint-metric", "accuracy",
            "--maximize-best-checkpoint-metric"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("criterions")
    data = str(write_listops(root / "listops"))
    jobs = [["train", [data, *COMMON, *OFFICIAL]],
            ["train", [data, *COMMON, "--criterion", "sentence_prediction"]],
            ["expect_error", "train", [data, *COMMON, "--criterion", "lra_cross_entropy"]]]
    return driver_outputs(jobs, root)


def metrics(output):
    """Every train_inner loss and the validation line's loss and accuracy."""
    train = re.findall(r"train_inner\W.*?\bloss=([0-9.]+)", output)
    valid = re.findall(r"valid on 'valid' subset \| loss ([0-9.]+) .*? accuracy ([0-9.]+)", output)
    return train, valid


def test_official_criterion_trains_as_sentence_prediction(outputs):
    official, ours = metrics(outputs[0]), metrics(outputs[1])
    assert len(official[0]) == 3 and len(official[1]) == 1, outputs[0][-2000:]
    assert official == ours


def test_official_criterion_without_sentence_avg_is_named(outputs):
    status = outputs[2].splitlines()[-1]
    assert status.startswith("JOB ERROR 2") and "lra_cross_entropy needs --sentence-avg" in status, status
    assert "train_inner" not in outputs[2]
