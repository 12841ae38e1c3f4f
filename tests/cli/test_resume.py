"""A training run killed with SIGKILL and restarted with the same command ends exactly where an
uninterrupted run with the same seed ends: the same parameters, optimizer state and data position
(bit for bit) and the same logged metrics at every update.

For a language model (dropout 0.1) and a classifier with batch norm (dropout 0.1) on ListOps, one
run is killed three ways in turn, the same command restarting it each time:
1. mid-epoch, between checkpoint saves (killed from outside once the log shows update K; the
   restart resumes from the mid-epoch checkpoint_last.pt and redoes the lost updates);
2. while a checkpoint is being written (the LM: during the copy of the new checkpoint onto
   checkpoint_last.pt; the classifier: during the write of the new checkpoint_1_N.pt): the
   previous checkpoint_last.pt is intact and the restart resumes from it;
3. not at all: it runs to the end, and is compared with the uninterrupted run.
Without the plugin's atomic saves (mega_fairseq/fairseq_fixes.py), a kill during the copy
leaves a truncated checkpoint_last.pt that the restart cannot load.

Each training run is a process forked from one that has imported fairseq (a multiprocessing
forkserver: tests/helpers/forked.py, shared with tests/cli/test_distributed.py): a real process,
killed with a real SIGKILL, without paying the import each time.

The data preparation scripts, killed mid-way, leave no output folder: they write into a hidden
temporary folder and rename it into place when complete.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import ROOT, USER_DIR
from helpers.forked import TIMING, assert_same_tensors, fairseq_processes, finish, load, logged_updates, start
from helpers.tiny import write_listops, write_lm_corpus

COMMON = ["--user-dir", USER_DIR, "--no-progress-bar", "--log-format", "simple", "--log-interval", "1",
          "--num-workers", "0", "--optimizer", "adam", "--lr", "1e-3", "--no-epoch-checkpoints",
          "--required-batch-size-multiple", "1", "--seed", "7", "--dropout", "0.1", "--batch-size", "4",
          "--max-valid-steps", "1", "--cpu"]
# family: (fairseq-train arguments after the data, the update after which the first run is killed,
#          the file being written when the second run is killed)
FAMILIES = {
    "lm": (["--task", "mega_language_modeling", "--tokens-per-sample", "32", "--arch", "mega_lm_tiny",
            "--max-update", "14", "--save-interval-updates", "4"], 6, "checkpoint_last"),
    # 60 examples in batches of 4: 15 updates an epoch, so the run crosses into epoch 2
    "cls": (["--task", "mega_sequence_classification", "--num-classes", "10", "--max-positions", "100",
             "--arch", "mega_classifier_tiny", "--normalization-type", "batchnorm",
             "--criterion", "sentence_prediction", "--max-update", "20", "--save-interval-updates", "6"],
            8, "checkpoint_1_"),
}


# ---------------------------------------------------------------- killing and reading the runs


def kill_after_update(process, log, update, timeout=300):
    """SIGKILL the process once its log shows the given update (it may have done a few more)."""
    pattern = re.compile(rf"num_updates={update}\b")
    deadline = time.time() + timeout
    while not (Path(log).is_file() and pattern.search(Path(log).read_text())):
        assert process.is_alive() and time.time() < deadline, Path(log).read_text()[-4000:]
        time.sleep(0.02)
    process.kill()
    finish(process, log, -signal.SIGKILL)


def epoch_summaries(log):
    """{epoch: metrics of its end-of-epoch train line}, timing left out."""
    found = {}
    for line in Path(log).read_text().splitlines():
        match = re.search(r"\| train \| epoch (\d+) \| (.*)$", line)
        if match:
            metrics = dict(item.split(" ", 1) for item in match.group(2).split(" | "))
            found[int(match.group(1))] = {k: v for k, v in metrics.items() if k not in TIMING}
    return found


def resumed_from(log):
    match = re.search(r"Loaded checkpoint \S+ \(epoch \d+ @ (\d+) updates\)", Path(log).read_text())
    assert match, Path(log).read_text()[-4000:]
    return int(match.group(1))


# ---------------------------------------------------------------- the runs


def snapshot(save_dir: Path):
    """The temporary files a killed save left in save_dir, and what checkpoint_last.pt holds."""
    try:
        last = load(save_dir / "checkpoint_last.pt")["optimizer_history"][-1]["num_updates"]
    except RuntimeError as error:
        last = error
    return {"tmp": sorted(path.name for path in save_dir.glob("*.tmp")), "last": last}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Logs and checkpoints of the runs, and snapshots of the save folders just after the kills
    during saves."""
    root = tmp_path_factory.mktemp("resume")
    context = fairseq_processes()
    corpus = write_lm_corpus(root / "corpus")
    log = root / "preprocess.log"
    finish(start(context, ["--only-source", "--trainpref", corpus / "train.txt", "--validpref", corpus / "valid.txt",
                           "--destdir", root / "lm_bin", "--workers", "1"], log, command="preprocess"), log)
    data = {"lm": root / "lm_bin", "cls": write_listops(root / "listops")}
    snapshots = {}

    def command(family, save_dir):
        return [data[family], *COMMON, *FAMILIES[family][0], "--save-dir", root / save_dir]

    def reference(family):
        log = root / f"{family}_reference.log"
        finish(start(context, command(family, f"{family}_reference"), log), log)

    def interrupted(family):
        _, kill_at, writing = FAMILIES[family]
        argv = command(family, f"{family}_interrupted")
        logs = [root / f"{family}_run{k}.log" for k in (1, 2, 3)]
        kill_after_update(start(context, argv, logs[0]), logs[0], kill_at)
        finish(start(context, argv, logs[1], die_writing=(writing, 1)), logs[1], -signal.SIGKILL)
        snapshots[family] = snapshot(root / f"{family}_interrupted")
        finish(start(context, argv, logs[2]), logs[2])

    def stock(family):
        """fairseq's own saving, killed while copying the second checkpoint onto checkpoint_last.pt,
        then restarted."""
        logs = [root / f"{family}_stock{k}.log" for k in (1, 2)]
        argv = command(family, f"{family}_stock")
        finish(start(context, argv, logs[0], stock_saving=True, die_writing=("checkpoint_last", 2)), logs[0],
               -signal.SIGKILL)
        snapshots[f"{family}_stock"] = snapshot(root / f"{family}_stock")
        finish(start(context, argv, logs[1], stock_saving=True), logs[1], 1)

    with ThreadPoolExecutor(3) as pool:  # a sequence of runs per thread, processes side by side
        futures = [pool.submit(function, family) for function in (interrupted, reference) for family in FAMILIES]
        futures.append(pool.submit(stock, "lm"))
        for future in futures:
            future.result()
    return root, snapshots


@pytest.mark.parametrize("family", FAMILIES)
def test_killed_mid_epoch_resumes_from_the_mid_epoch_checkpoint(runs, family):
    root, _ = runs
    _, kill_at, _ = FAMILIES[family]
    killed, restarted = logged_updates(root / f"{family}_run1.log"), root / f"{family}_run2.log"
    start_point = resumed_from(restarted)
    assert max(killed) >= kill_at > start_point > 0  # killed between saves: updates were lost
    assert min(logged_updates(restarted)) == start_point + 1  # ... and are redone
    state = load(root / f"{family}_interrupted" / f"checkpoint_1_{start_point}.pt")
    assert state["extra_state"]["train_iterator"]["iterations_in_epoch"] == start_point  # mid-epoch


@pytest.mark.parametrize("family", FAMILIES)
def test_killed_while_saving_keeps_the_previous_checkpoint(runs, family):
    root, snapshots = runs
    _, _, writing = FAMILIES[family]
    killed_at = resumed_from(root / f"{family}_run2.log")
    assert max(logged_updates(root / f"{family}_run2.log")) > killed_at  # it died saving a later checkpoint
    tmp, last = snapshots[family]["tmp"], snapshots[family]["last"]
    # the file it was writing, half written under a temporary name, never renamed into place ...
    assert len(tmp) == 1 and tmp[0].startswith(writing), tmp
    # ... and checkpoint_last.pt whole, as it was: the restart resumes from it
    assert last == killed_at == resumed_from(root / f"{family}_run3.log")


@pytest.mark.parametrize("family", FAMILIES)
def test_restarted_run_ends_like_an_uninterrupted_one(runs, family):
    root, _ = runs
    reference = logged_updates(root / f"{family}_reference.log")
    max_update = int(FAMILIES[family][0][FAMILIES[family][0].index("--max-update") + 1])
    assert sorted(reference) == list(range(1, max_update + 1))
    for k in (1, 2, 3):  # every update logged by every run, redone or not, as in the reference
        logged = logged_updates(root / f"{family}_run{k}.log")
        assert logged and all(logged[n] == reference[n] for n in logged), k
    assert max(logged_updates(root / f"{family}_run3.log")) == max_update
    assert epoch_summaries(root / f"{family}_run3.log") == epoch_summaries(root / f"{family}_reference.log")

    first = load(root / f"{family}_reference" / "checkpoint_last.pt")
    second = load(root / f"{family}_interrupted" / "checkpoint_last.pt")
    for entry in ("model", "last_optimizer_state"):
        assert_same_tensors(first[entry], second[entry], entry)
    # (a restart appends an entry to the history: the last ones hold the state)
    assert first["optimizer_history"][-1] == second["optimizer_history"][-1]
    assert first["extra_state"]["train_iterator"] == second["extra_state"]["train_iterator"]


def test_without_atomic_saves_a_kill_while_saving_breaks_the_restart(runs):
    """fairseq 0.12 alone copies the new checkpoint onto checkpoint_last.pt in place: a kill during
    the copy leaves it truncated, and the restart fails loading it."""
    root, snapshots = runs
    assert snapshots["lm_stock"]["tmp"] == []
    assert isinstance(snapshots["lm_stock"]["last"], RuntimeError)  # torch: "failed reading zip archive"
    restart = (root / "lm_stock2.log").read_text()
    assert "checkpoint_last.pt" in restart and "zip archive" in restart


# ---------------------------------------------------------------- data preparation, killed mid-way

# stand-ins on PATH, which write part of their output where the script asked, then kill the whole
# job: fairseq-preprocess (--destdir) and the LRA and speech converters (their output folder)
FAKE_PREPROCESS = """#!/usr/bin/env bash
while [[ $# -gt 0 ]]; do [[ "$1" == --destdir ]] && dest="$2"; shift; done
mkdir -p "$dest"
echo "w0 10" > "$dest/dict.txt"
head -c 1000 /dev/zero > "$dest/train.bin"
kill -KILL 0
"""
PYTHON = """#!/usr/bin/env bash
case "$1 $2" in
    "-m mega_fairseq.data.lra") dest="$5" ;;  # TASK RAW_DIR OUT
    "-m mega_fairseq.data.speech_commands") dest="$4" ;;  # RAW_DIR OUT [options]
    *) exec "{python}" "$@" ;;
esac
mkdir -p "$dest/input0"
echo "{{}}" > "$dest/meta.json"
kill -KILL 0
"""


def write_wikitext(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"wiki.{split}.tokens").write_text(" \n = Title = \n \n w1 w2 w3 . \n")
    return folder


def preparation(script: str, tmp_path: Path):
    """(arguments, environment, the outputs that must not exist after a kill, the folder its
    temporary folder is made in, the name that temporary folder starts with)."""
    out = tmp_path / "out"
    if script in ("prepare_lra.sh", "prepare_sc.sh"):
        raw = tmp_path / "raw"
        raw.mkdir()
        (raw / "validation_list.txt").touch()  # a Speech Commands release (no download)
        return (["listops"] if script == "prepare_lra.sh" else []) + [raw, out], {}, [out], tmp_path, ".out.tmp."
    if script == "prepare_enwik8.sh":
        raw = tmp_path / "enwik8"
        raw.write_bytes(bytes(random.Random(0).choices(range(32, 127), k=3000)) + b"\n")
        return ([out, raw], {"VALID_BYTES": "500", "TEST_BYTES": "500"}, [out / "text", out / "bin"], out,
                ".bin.tmp.")
    return [out, write_wikitext(tmp_path / "raw")], {}, [out / "bin"], out, ".bin.tmp."


@pytest.mark.parametrize("script", ["prepare_lra.sh", "prepare_sc.sh", "prepare_enwik8.sh", "prepare_wikitext103.sh"])
def test_killed_data_preparation_leaves_no_output(tmp_path, script):
    args, env, outputs, temporary_in, temporary_name = preparation(script, tmp_path)
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, text in (("fairseq-preprocess", FAKE_PREPROCESS), ("python", PYTHON.format(python=sys.executable))):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    result = subprocess.run(["bash", ROOT / "scripts" / script, *args], capture_output=True, text=True, timeout=120,
                            start_new_session=True,  # its own process group, which the stand-ins kill
                            env={**os.environ, **env, "WORKERS": "1", "PATH": f"{shims}:{os.environ['PATH']}"})
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    # killed while writing into its temporary folder, which it had not renamed into place
    assert [path.name for path in temporary_in.iterdir() if path.name.startswith(temporary_name)]
    assert not [path for path in outputs if path.exists()]
