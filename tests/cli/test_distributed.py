"""Two processes on CPU (gloo, one process per rank, fairseq's legacy_ddp) train as one process on
the same data with the same seed:
- a language model with the commands scripts/train.sh builds (NPROC=2 CPU=1, each rank run with
  the environment torchrun gives it; the torchrun launch itself is tests/cli/test_recipes.py's
  test_train_two_processes_on_cpu): 2 ranks of B tokens against one process with update_freq 2;
- a ListOps classifier with plain batch norm: 2 ranks of B against one process of B with
  --update-freq 2 (each batch normalised by its own statistics in both);
- a ListOps classifier and the raw-speech classifier (mega_sc_raw_tiny: unpadded clips, the case
  nn.SyncBatchNorm cannot sync on CPU) with syncbatchnorm: 2 ranks of B against one process of 2B
  (--batch-size 2B, update-freq 1: statistics over the same 2B examples). --curriculum keeps the
  batches in order, so that the two ranks' batches of a step are the halves of the one process's.

fairseq gives rank r the batches r, r + 2, ... of the epoch's batch list, and one process with
--update-freq 2 accumulates batches 2k and 2k + 1 in step k: the same examples. With two ranks
every all-reduced gradient element is one sum a + b, which IEEE arithmetic rounds the same in
either order, as the one process's accumulation; the division by the world size and the
multiplication back are by powers of two. So the first two comparisons hold bit for bit. The
syncbatchnorm ones sum statistics and losses over other groupings of the examples (and pad each
rank's batch to its own longest input), so they hold within float tolerance.

The batch-norm ranks then resume from their checkpoint, which rank 0 reads and broadcasts.

Dropout is 0: the ranks draw their masks from the same seed, one process draws a step's two
batches from one stream, so the masks differ by design.
"""

import os
import shlex
import shutil
import subprocess

import pytest
import torch

from helpers import ROOT, USER_DIR
from helpers.forked import assert_same_tensors, fairseq_processes, finish, free_port, load, logged_updates, start
from helpers.tiny import write_listops, write_lm_corpus, write_speech_commands

COMMON = ["--user-dir", USER_DIR, "--no-progress-bar", "--log-format", "simple", "--log-interval", "1",
          "--num-workers", "0", "--no-epoch-checkpoints", "--required-batch-size-multiple", "1", "--seed", "3",
          "--dropout", "0", "--disable-validation", "--cpu"]
ADAM = ["--optimizer", "adam", "--lr", "1e-3"]
# Adam divides each gradient by its own running size: a parameter whose gradient is zero up to
# rounding (a bias right before a batch norm, which subtracts it) would step by +-lr whichever way
# the rounding points. SGD steps by lr times the rounding: what the tolerance below is about.
SGD = ["--optimizer", "sgd", "--lr", "0.1"]
CLASSIFY = ["--task", "mega_sequence_classification", "--criterion", "sentence_prediction", "--num-classes", "10"]
LISTOPS = [*CLASSIFY, "--max-positions", "100", "--arch", "mega_classifier_tiny", "--max-update", "4"]
# the first quarter second of each clip: a quarter of the time
SPEECH = [*CLASSIFY, "--input-type", "waveform", "--split-protocol", "lists", "--max-positions", "4000",
          "--shorten-method", "truncate", "--arch", "mega_sc_raw_tiny", "--encoder-chunk-size", "100", "--max-update",
          "3"]
IN_ORDER = ["--curriculum", "1000"]  # batches in order (no shuffling) for the first 1000 epochs
# family: (data, arguments of both runs, of the two ranks, of the one process)
FAMILIES = {
    "listops_batchnorm": ("listops", [*LISTOPS, *ADAM, "--normalization-type", "batchnorm", "--batch-size", "4"],
                          [], ["--update-freq", "2"]),
    "listops_syncbatchnorm": ("listops", [*LISTOPS, *SGD, "--normalization-type", "syncbatchnorm", *IN_ORDER],
                              ["--batch-size", "4"], ["--batch-size", "8"]),
    "speech_syncbatchnorm": ("speech", [*SPEECH, *SGD, "--normalization-type", "syncbatchnorm", *IN_ORDER],
                             ["--batch-size", "2"], ["--batch-size", "4"]),
}
LM_RECIPE = ["model.dropout=0", "task.tokens_per_sample=16", "task.max_target_positions=64", "dataset.max_tokens=256",
             "dataset.disable_validation=true", "optimization.max_update=4", "common.log_interval=1", "common.seed=3",
             "common.tensorboard_logdir=null"]
# times the largest value of each tensor (at least 1e-3); measured: 1.2e-5 (ListOps), 5e-5 (speech)
PARAMETER_TOLERANCE = 3e-4
LOSS_TOLERANCE = 0.0015  # the logged losses are rounded to 3 decimals


RESUMED_EXIT_CODES = []  # of the two resumed ranks (the fixture's other runs must not depend on them)


def distributed(port, rank):
    return ["--distributed-world-size", "2", "--distributed-rank", str(rank), "--distributed-backend", "gloo",
            "--ddp-backend", "legacy_ddp", "--distributed-no-spawn", "--distributed-init-method",
            f"tcp://127.0.0.1:{port}"]


def train_sh(data, save_dir, overrides, env):
    """The fairseq-hydra-train arguments scripts/train.sh lm/demo runs (DRY_RUN=1 prints them)."""
    result = subprocess.run(["bash", ROOT / "scripts" / "train.sh", "lm/demo", data, save_dir, *overrides],
                            capture_output=True, text=True, env={**os.environ, "CPU": "1", "DRY_RUN": "1", **env})
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("train.sh: running: "))
    command = shlex.split(line.partition(": running: ")[2])
    entry = command.index("fairseq_cli.hydra_train") if "torchrun" in command[0] else 0
    return command[:entry + 1], command[entry + 1:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    context = fairseq_processes()
    corpus = write_lm_corpus(root / "corpus")
    log = root / "preprocess.log"
    finish(start(context, ["--only-source", "--trainpref", corpus / "train.txt", "--destdir", root / "lm_bin",
                           "--workers", "1"], log, command="preprocess"), log)
    data = {"listops": write_listops(root / "listops", counts=(40, 8, 8)),
            "speech": write_speech_commands(root / "speech", per_word=4)}

    launcher, ranks_argv = train_sh(root / "lm_bin", root / "lm_ranks", LM_RECIPE,
                                    {"NPROC": "2", "MASTER_PORT": str(free_port())})
    assert launcher[:2] == ["torchrun", "--nproc_per_node=2"], launcher
    port = launcher[2].removeprefix("--master_port=")
    one_launcher, one_argv = train_sh(root / "lm_bin", root / "lm_one", [*LM_RECIPE, "optimization.update_freq=[2]"],
                                      {})
    assert one_launcher == ["fairseq-hydra-train"], one_launcher
    jobs = {"lm_one": (one_argv, "hydra_train", None)}
    for rank in (0, 1):  # what torchrun puts in each rank's environment
        jobs[f"lm_rank{rank}"] = (ranks_argv, "hydra_train", {
            "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
    for family, (dataset, both, two, one) in FAMILIES.items():
        port = free_port()
        argv = [data[dataset], *COMMON, *both]
        jobs[f"{family}_one"] = ([*argv, *one, "--save-dir", root / f"{family}_one"], "train", None)
        for rank in (0, 1):
            jobs[f"{family}_rank{rank}"] = (
                [*argv, *two, *distributed(port, rank), "--save-dir", root / f"{family}_ranks"], "train", None)

    started = {}
    for name, (argv, command, env) in jobs.items():  # the ranks of a family wait for each other
        started[name] = start(context, argv, root / f"{name}.log", command=command, env=env)
        if name.endswith("rank1"):
            for other in [other for other in started if other.startswith(name[:-len("rank1")])]:
                finish(started.pop(other), root / f"{other}.log")
    for name, process in started.items():
        finish(process, root / f"{name}.log")
    # the batch-norm ranks go on from their checkpoint_last.pt: rank 0 reads it and broadcasts it
    dataset, both, two, _ = FAMILIES["listops_batchnorm"]
    shutil.copytree(root / "listops_batchnorm_ranks", root / "listops_batchnorm_resumed")
    port = free_port()
    resumed = [start(context, [data[dataset], *COMMON, *both, *two, *distributed(port, rank), "--save-dir",
                               root / "listops_batchnorm_resumed", "--max-update", "6"],
                     root / f"listops_batchnorm_resumed_rank{rank}.log", command="train") for rank in (0, 1)]
    for process in resumed:
        process.join(timeout=300)
    RESUMED_EXIT_CODES[:] = [process.exitcode for process in resumed]
    return root


def results(root, family):
    """(checkpoint of the two ranks, of the one process), (their logged updates)."""
    save = {"lm": ("lm_ranks/checkpoints", "lm_one/checkpoints")}.get(family, (f"{family}_ranks", f"{family}_one"))
    return ([load(root / folder / "checkpoint_last.pt") for folder in save],
            [logged_updates(root / f"{family}_{run}.log") for run in ("rank0", "one")])


@pytest.mark.parametrize("family", ["lm", "listops_batchnorm"])
def test_two_processes_train_as_one_with_update_freq_2_bit_for_bit(runs, family):
    (ranks, one), (ranks_log, one_log) = results(runs, family)
    assert ranks["cfg"]["distributed_training"]["distributed_world_size"] == 2
    assert one["cfg"]["optimization"]["update_freq"] == [2]
    updates = int(ranks["optimizer_history"][-1]["num_updates"])
    assert updates == one["optimizer_history"][-1]["num_updates"] and sorted(one_log) == list(range(1, updates + 1))
    assert ranks_log == one_log  # loss, gnorm, batch sizes, learning rate: every update
    # Batch norm's running averages are each rank's own (legacy_ddp does not broadcast buffers):
    # the checkpoint holds rank 0's, taken over half the batches. Everything else is equal.
    running = [name for name in one["model"] if ".running_" in name or name.endswith("num_batches_tracked")]
    assert bool(running) == (family == "listops_batchnorm")
    for state in (ranks, one):
        for name in running:
            del state["model"][name]
    for entry in ("model", "last_optimizer_state"):
        assert_same_tensors(ranks[entry], one[entry], entry)


def test_two_processes_resume_from_the_checkpoint_rank_0_broadcasts(runs):
    """fairseq loads checkpoint_last.pt on rank 0 and sends it to the other ranks with torch.save /
    torch.load: the received state (an OmegaConf config, fairseq's tensor placeholders) is no
    checkpoint file, and torch's weights-only default refused it on rank 1."""
    logs = [(runs / f"listops_batchnorm_resumed_rank{rank}.log").read_text() for rank in (0, 1)]
    assert RESUMED_EXIT_CODES == [0, 0], logs[1][-3000:]
    state = load(runs / "listops_batchnorm_resumed" / "checkpoint_last.pt")
    assert state["optimizer_history"][-1]["num_updates"] == 6
    assert sorted(logged_updates(runs / "listops_batchnorm_resumed_rank0.log")) == [5, 6]


@pytest.mark.parametrize("family", ["listops_syncbatchnorm", "speech_syncbatchnorm"])
def test_two_processes_with_syncbatchnorm_train_as_one_with_the_doubled_batch(runs, family):
    (ranks, one), (ranks_log, one_log) = results(runs, family)
    assert ranks["cfg"]["model"]["normalization_type"] == "syncbatchnorm"
    assert ranks["cfg"]["dataset"]["batch_size"] * 2 == one["cfg"]["dataset"]["batch_size"]
    assert ranks_log.keys() == one_log.keys() and len(one_log) == ranks["optimizer_history"][-1]["num_updates"]
    for step in one_log:
        assert ranks_log[step]["bsz"] == one_log[step]["bsz"]  # the same examples in every step
        for metric in ("loss", "gnorm"):
            assert abs(float(ranks_log[step][metric]) - float(one_log[step][metric])) <= LOSS_TOLERANCE, (step, metric)
    # the running averages too: both ranks normalise with, and average, the statistics of all 2B
    first, second = ranks["model"], one["model"]
    assert first.keys() == second.keys()
    for name, value in first.items():
        scale = value.abs().max().clamp(min=1e-3).item() if value.is_floating_point() else 1
        assert torch.allclose(value.double(), second[name].double(), rtol=0, atol=PARAMETER_TOLERANCE * scale), name
