"""A checkpoint crafted to run code when unpickled (a pickled call to os.system) is refused, with
an error naming the file, on every path that loads checkpoints: fairseq-train --restore-file and
--finetune-from-model, fairseq-eval-lm, fairseq-interactive, fairseq-generate, fairseq-validate
(scripts/eval_cls.sh), ``from_pretrained``, the checkpoint averaging and conversion scripts. Each
path runs with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which turns torch's weights-only default off:
only an explicit ``weights_only=True`` still refuses. The genuine checkpoints the crafted ones are
made from still load (with --finetune-from-model here; the family tests load genuine checkpoints on
the other paths)."""

import os
import re
import subprocess

import pytest
import torch

from helpers import ROOT, USER_DIR, script
from helpers.fairseq_jobs import run_jobs
from helpers.tiny import RunsCode, write_listops


def craft(genuine, crafted, marker):
    state = torch.load(genuine, map_location="cpu", weights_only=True)
    state["extra_state"] = {"payload": RunsCode(marker)}
    torch.save(state, crafted)


COMMON = ["--user-dir", USER_DIR, "--no-progress-bar", "--log-format", "simple", "--num-workers", "0", "--cpu"]
TRAIN = ["--optimizer", "adam", "--lr", "1e-3", "--max-update", "1", "--no-epoch-checkpoints",
         "--required-batch-size-multiple", "1"]
# torch's switch that turns its weights-only default off (it yields to an explicit weights_only)
NO_WEIGHTS_ONLY_DEFAULT = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, lm_data, mt_data):
    root = tmp_path_factory.mktemp("safe_loading")
    listops = write_listops(root / "listops")
    marker = root / "code_ran"
    lm_args = [str(lm_data), *COMMON, "--task", "mega_language_modeling", "--tokens-per-sample", "32",
               "--batch-size", "4"]
    mt_args = [str(mt_data), *COMMON, "--task", "translation", "--source-lang", "src", "--target-lang", "tgt",
               "--batch-size", "4"]
    cls_args = [str(listops), *COMMON, "--task", "mega_sequence_classification", "--num-classes", "10",
                "--max-positions", "100", "--batch-size", "4"]
    (root / "input.txt").write_text("the\n")
    genuine = {"lm": root / "lm" / "checkpoint_last.pt", "mt": root / "mt" / "checkpoint_last.pt",
               "cls": root / "cls" / "checkpoint_last.pt"}
    jobs = [["train", lm_args + ["--arch", "mega_lm_tiny", *TRAIN, "--save-dir", str(root / "lm")]],
            ["train", mt_args + ["--arch", "mega_mt_tiny", *TRAIN, "--save-dir", str(root / "mt")]],
            ["train", cls_args + ["--arch", "mega_classifier_tiny", "--criterion", "sentence_prediction", *TRAIN,
                                  "--save-dir", str(root / "cls")]]]

    def paths(kind, checkpoint):
        """The jobs of every loading path, with ``checkpoint`` as the one of family ``kind``."""
        lm, mt, cls = (str(checkpoint) if k == kind else str(genuine[k]) for k in ("lm", "mt", "cls"))
        return {
            "restore_file": ["train", lm_args + ["--arch", "mega_lm_tiny", *TRAIN, "--max-update", "2",
                                                 "--save-dir", str(root / f"resume_{checkpoint.stem}"),
                                                 "--restore-file", lm, "--reset-optimizer"]],
            "finetune_from_model": ["train", cls_args + ["--arch", "mega_classifier_tiny", "--criterion",
                                                         "sentence_prediction", *TRAIN, "--save-dir",
                                                         str(root / f"finetune_{checkpoint.stem}"),
                                                         "--finetune-from-model", cls]],
            "eval_lm": ["eval_lm", lm_args + ["--path", lm, "--gen-subset", "test"]],
            "interactive": ["interactive", [str(lm_data), "--user-dir", USER_DIR, "--task", "language_modeling",
                                            "--path", lm, "--input", str(root / "input.txt"), "--beam", "1",
                                            "--max-len-b", "3", "--cpu"]],
            "generate": ["generate", mt_args + ["--path", mt, "--gen-subset", "test", "--beam", "2"]],
            "validate": ["validate", cls_args + ["--path", cls, "--valid-subset", "test"]],
        }

    trained = run_jobs(jobs, root / "jobs", merged=False)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    crafted = {}
    for kind, checkpoint in genuine.items():
        crafted[kind] = checkpoint.with_name(f"crafted_{kind}.pt")
        craft(checkpoint, crafted[kind], marker)
    names = list(paths("lm", genuine["lm"]))
    jobs = [["expect_error", *paths(kind_of(name), crafted[kind_of(name)])[name]] for name in names]
    # the genuine checkpoints load (the other paths load genuine checkpoints in the family tests)
    jobs += [paths("lm", genuine["lm"])["finetune_from_model"]]
    loaded = run_jobs(jobs, root / "jobs2", env={NO_WEIGHTS_ONLY_DEFAULT: "1"})
    results = {name: loaded.status(index) for index, name in enumerate(names)}
    results["genuine_finetune_from_model"] = loaded.status(len(names)) == f"JOB OK {len(names)}"
    return dict(results=results, crafted=crafted, genuine=genuine, marker=marker, root=root,
                tail=loaded.stdout[-3000:], listops=listops, lm_data=lm_data)


def kind_of(name):
    return {"restore_file": "lm", "eval_lm": "lm", "interactive": "lm", "generate": "mt", "finetune_from_model": "cls",
            "validate": "cls"}[name]


@pytest.mark.parametrize("path", ["restore_file", "finetune_from_model", "eval_lm", "interactive", "generate",
                                  "validate"])
def test_crafted_checkpoint_is_refused(runs, path):
    line = runs["results"][path]
    assert line is not None, runs["tail"]
    crafted = runs["crafted"][kind_of(path)]
    assert line.startswith("JOB ERROR"), line
    assert f"{crafted}: refusing to load this checkpoint" in line and "posix.system" in line, line
    assert not runs["marker"].exists()


def test_genuine_checkpoint_loads_with_finetune_from_model(runs):
    assert runs["results"]["genuine_finetune_from_model"], runs["tail"]


def test_from_pretrained_refuses_crafted_checkpoints(runs, monkeypatch):
    from mega_fairseq.checkpoint_loading import UnsafeCheckpointError
    from mega_fairseq.models.mega_lm import MegaLanguageModel

    monkeypatch.setenv(NO_WEIGHTS_ONLY_DEFAULT, "1")
    crafted = runs["crafted"]["lm"]
    with pytest.raises(UnsafeCheckpointError, match=f"^{re.escape(str(crafted))}: refusing to load"):
        MegaLanguageModel.from_pretrained(crafted.parent, checkpoint_file=crafted.name,
                                          data_name_or_path=str(runs["lm_data"]))
    assert not runs["marker"].exists()


def test_scripts_refuse_crafted_checkpoints(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(NO_WEIGHTS_ONLY_DEFAULT, "1")
    crafted = runs["crafted"]["lm"]
    with pytest.raises(SystemExit):
        script("average_checkpoints").load(crafted)
    message = capsys.readouterr().err
    assert f"{crafted}: refusing to load this checkpoint" in message and "posix.system" in message
    from mega_fairseq.checkpoint_loading import UnsafeCheckpointError
    from mega_fairseq.conversion.convert import convert

    with pytest.raises(UnsafeCheckpointError, match=f"{re.escape(str(crafted))}: refusing to load"):
        convert(crafted, tmp_path / "converted.pt")
    assert not runs["marker"].exists()
    code = subprocess.run(["bash", ROOT / "scripts" / "eval_cls.sh", runs["crafted"]["cls"], runs["listops"]],
                          capture_output=True, text=True, env={**os.environ, "CPU": "1"})
    assert code.returncode != 0 and "refusing to load this checkpoint" in code.stdout + code.stderr
    assert not runs["marker"].exists()
