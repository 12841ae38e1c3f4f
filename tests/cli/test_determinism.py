"""Two runs of the same command with the same seed, in separate processes: on CPU they write
identical checkpoints (model and optimizer state, bit for bit), for a language model, a translation
model and a sequence classifier. On CUDA, where the memory-efficient attention backward adds in a
varying order, they log the same losses to the logged precision, and a language model trained
without dropout logs the losses of its CPU run within a tolerance."""

import re

import pytest
import torch

from helpers import USER_DIR
from helpers.fairseq_jobs import Driver, job_on, run
from helpers.forked import tensors
from helpers.tiny import write_listops

COMMON = ["--user-dir", USER_DIR, "--no-progress-bar", "--log-format", "simple", "--num-workers", "0",
          "--optimizer", "adam", "--lr", "1e-3", "--max-update", "3", "--no-epoch-checkpoints",
          "--required-batch-size-multiple", "1", "--seed", "7", "--dropout", "0.1", "--batch-size", "4",
          "--log-interval", "1"]
LM = ["--task", "mega_language_modeling", "--tokens-per-sample", "32", "--arch", "mega_lm_tiny"]
FAMILIES = ("lm", "mt", "cls")
needs_cuda = pytest.mark.cuda
# logged losses have 3 decimals: two CUDA runs round the same loss either way of a last digit
SAME_SEED_CUDA_TOLERANCE = 0.002
# float32 sums in another order, over a few updates: far below a step's change in loss
CPU_CUDA_TOLERANCE = 0.01


def train_twice(root, device, lm_data, mt_data):
    """Each family trained twice on DEVICE, by two job drivers side by side; returns
    {family: (output of run a, output of run b)}."""
    listops = write_listops(root / "listops")
    drivers = []
    for name in ("a", "b"):
        jobs = [["train", [str(lm_data), *COMMON, *LM, "--save-dir", str(root / name / "lm")]],
                ["train", [str(mt_data), *COMMON, "--task", "translation", "--source-lang", "src", "--target-lang",
                           "tgt", "--arch", "mega_mt_tiny", "--save-dir", str(root / name / "mt")]],
                ["train", [str(listops), *COMMON, "--task", "mega_sequence_classification", "--num-classes", "10",
                           "--max-positions", "100", "--arch", "mega_classifier_tiny", "--criterion",
                           "sentence_prediction", "--save-dir", str(root / name / "cls")]]]
        drivers.append(Driver([job_on(device, job) for job in jobs], root / name, threads=1))
    outputs = []
    for driver in drivers:
        done = driver.wait()
        assert done.returncode == 0, done.stdout[-3000:]
        outputs.append([output for output, _ in done.reports()][:len(FAMILIES)])
    return dict(zip(FAMILIES, zip(*outputs)))


def logged_losses(output):
    """{update: training loss} of the train_inner lines (--log-interval 1)."""
    return {int(update): float(loss)
            for loss, update in re.findall(r"train_inner\b.*?\bloss=([0-9.]+),.*?\bnum_updates=(\d+)", output)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lm_data, mt_data):
    root = tmp_path_factory.mktemp("determinism")
    train_twice(root, "cpu", lm_data, mt_data)
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


@pytest.fixture(scope="module")
def cuda_runs(tmp_path_factory, lm_data, mt_data):
    return train_twice(tmp_path_factory.mktemp("determinism_cuda"), "cuda", lm_data, mt_data)


@needs_cuda
@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_same_seed_same_losses(cuda_runs, family):
    a, b = (logged_losses(output) for output in cuda_runs[family])
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for update in a:
        assert abs(a[update] - b[update]) <= SAME_SEED_CUDA_TOLERANCE, (update, a[update], b[update])


@needs_cuda
def test_cuda_lm_training_logs_the_losses_of_the_cpu_run(lm_data, tmp_path):
    """Without dropout (whose masks come from another generator on each device)."""
    losses = {}
    for device in ("cpu", "cuda"):
        args = [*COMMON, *LM, "--dropout", "0", "--max-update", "6", "--save-dir", tmp_path / device]
        losses[device] = logged_losses(run(["fairseq-train", lm_data, *args, *(["--cpu"] if device == "cpu" else [])],
                                           device=device)[1])
    assert sorted(losses["cpu"]) == sorted(losses["cuda"]) == list(range(1, 7))
    for update, loss in losses["cpu"].items():
        assert abs(losses["cuda"][update] - loss) <= CPU_CUDA_TOLERANCE, (update, loss, losses["cuda"][update])
