"""Every LRA task end to end through fairseq's entry points, on tiny data in each release format:
every named arch trains 2 updates and validates, each task's best Mega checkpoint is evaluated
on the test split with fairseq-validate, and every recipe of configs/lra composes and trains.
The shell scripts (prepare_lra.sh, train.sh, eval_cls.sh) run once, on the pair task."""

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from helpers import ROOT, USER_DIR
from helpers.fairseq_jobs import run, run_jobs
from helpers.tiny import write_aan, write_cifar10, write_imdb, write_listops, write_pathfinder
from mega_fairseq.data.classification import LRA_TASKS

SCRIPTS = ROOT / "scripts"
TASKS = list(LRA_TASKS)
TINY = ["--encoder-layers", "1", "--encoder-embed-dim", "16", "--encoder-hidden-dim", "32", "--encoder-z-dim", "8",
        "--encoder-n-dim", "2", "--classifier-hidden-dim", "16", "--encoder-attention-heads", "2"]
TINY_HYDRA = ["++model.encoder_layers=1", "++model.encoder_embed_dim=16", "++model.encoder_hidden_dim=32",
              "++model.encoder_z_dim=8", "++model.encoder_n_dim=2", "++model.classifier_hidden_dim=16",
              "optimization.max_update=2", "dataset.batch_size=4", "dataset.batch_size_valid=8",
              "optimization.update_freq=[1]", "lr_scheduler.warmup_updates=1"]


def archs(task):
    return [f"mega_lra_{task}", f"mega_lra_{task}_chunk", f"transformer_lra_{task}"]


def task_args(task, data):
    spec = LRA_TASKS[task]
    return [str(data), "--user-dir", USER_DIR, "--task", "mega_sequence_classification", "--input-type",
            spec.input_type, *(["--paired"] if spec.paired else []), "--num-classes", str(spec.num_classes),
            "--max-positions", str(spec.max_positions), "--shorten-method", spec.shorten_method,
            "--pixel-mean", str(spec.pixel_mean), "--pixel-std", str(spec.pixel_std), "--cpu"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """A tiny data folder per task, in its release format (Path-X: 32 x 32 images, to stay cheap; the
    reading of 128 x 128 images is tested in tests/unit/test_lra_data.py)."""
    root = tmp_path_factory.mktemp("lra_raw")
    return {"listops": write_listops(root / "listops"), "text": write_imdb(root / "aclImdb"),
            "retrieval": write_aan(root / "tsv_data"), "image": write_cifar10(root / "cifar-10-batches-py"),
            "pathfinder": write_pathfinder(root / "pathfinder32", count=40, size=32),
            "pathx": write_pathfinder(root / "pathfinder_x", count=20, size=32)}


@pytest.fixture(scope="module")
def driven(raw, tmp_path_factory):
    """Runs every job in one job driver; returns {job name: (output, save dir)}."""
    root = tmp_path_factory.mktemp("lra_runs")
    jobs, names, saves = [], [], []
    for task in TASKS:
        for arch in archs(task):
            save = root / arch
            jobs.append(["train", task_args(task, raw[task]) + [
                "--arch", arch, *TINY, "--criterion", "sentence_prediction", "--optimizer", "adam", "--lr", "1e-3",
                "--batch-size", "4", "--max-update", "2", "--save-dir", str(save), "--no-progress-bar",
                "--log-format", "simple", "--log-interval", "1", "--required-batch-size-multiple", "1",
                "--num-workers", "0", "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric",
                "--no-epoch-checkpoints"]])
            names.append(("train", arch))
            saves.append(save)
        best = root / f"mega_lra_{task}" / "checkpoint_best.pt"
        jobs.append(["validate", [str(raw[task]), "--user-dir", USER_DIR, "--task", "mega_sequence_classification",
                                  "--path", str(best), "--valid-subset", "test", "--batch-size", "4",
                                  "--required-batch-size-multiple", "1", "--num-workers", "0", "--cpu"]])
        names.append(("validate", task))
        saves.append(None)
    # one batch of the 12 test reviews, with the default --required-batch-size-multiple (8)
    jobs.append(["validate", [str(raw["text"]), "--user-dir", USER_DIR, "--task", "mega_sequence_classification",
                              "--path", str(root / "mega_lra_text" / "checkpoint_best.pt"), "--valid-subset", "test",
                              "--batch-size", "64", "--num-workers", "0", "--cpu"]])
    names.append(("validate", "every example"))
    saves.append(None)
    for task in TASKS:
        save = root / f"recipe_{task}"
        jobs.append(["hydra", str(ROOT / "configs" / "lra"), task,
                     [f"task.data={raw[task]}", f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={save}",
                      *TINY_HYDRA, "common.cpu=true"]])
        names.append(("recipe", task))
        saves.append(save)
    done = run_jobs(jobs, root / "jobs", timeout=1200)
    outputs = [output for output, _ in done.reports()]
    results = {}
    for index, name in enumerate(names):
        if index < len(outputs):
            results[name] = (outputs[index], saves[index])
        else:
            results[name] = (None, done.rest()[-4000:])
    return results


def job(driven, name):
    output, save = driven[name]
    assert output is not None, f"{name} did not run; the driver stopped with:\n{save}"
    return output, save


@pytest.mark.parametrize("task,arch", [(task, arch) for task in TASKS for arch in archs(task)])
def test_every_arch_trains_two_updates_and_validates(driven, task, arch):
    output, save = job(driven, ("train", arch))
    assert re.search(r"\| train \|.*num_updates 2\b", output) or "num_updates 2" in output, output[-2000:]
    valid = re.findall(r"valid on 'valid' subset .*? accuracy ([0-9.]+)", output)
    assert valid and 0 <= float(valid[-1]) <= 100, output[-2000:]
    state = torch.load(save / "checkpoint_best.pt", map_location="cpu", weights_only=False)
    model = state["cfg"]["model"]
    assert model["_name"] == arch and model["encoder_embed_dim"] == 16
    assert model["encoder_type"] == ("transformer" if arch.startswith("transformer") else "mega")
    assert state["cfg"]["task"]["input_type"] == LRA_TASKS[task].input_type


@pytest.mark.parametrize("task", TASKS)
def test_fairseq_validate_reports_test_accuracy(driven, task):
    output, _ = job(driven, ("validate", task))
    found = re.findall(r"valid on 'test' subset .*? accuracy ([0-9.]+)", output)
    assert found and 0 <= float(found[-1]) <= 100, output[-2000:]


def test_fairseq_validate_scores_every_example(driven):
    """This fairseq build drops a last batch whose size is no multiple of --required-batch-size-multiple
    (8 of the 12 reviews would be scored); the task batches evaluation splits without a multiple."""
    output, _ = job(driven, ("validate", "every example"))
    assert re.search(r"valid on 'test' subset .*\| bsz 12\b", output), output[-2000:]


# The official recipes (the paper's appendix): lr, batch, update_freq, updates, warmup, weight decay.
RECIPES = {"listops": (1e-3, 64, 1, 90000, 3000, 0.01), "text": (4e-3, 25, 2, 25000, 10000, 0.01),
           "retrieval": (3e-3, 8, 8, 91960, 10000, 0.04), "image": (1e-2, 50, 1, 180000, 9000, 0.02),
           "pathfinder": (1e-2, 128, 1, 250000, 50000, 0.01), "pathx": (1e-2, 2, 8, 125000, 25000, 0.01)}


@pytest.mark.parametrize("task", TASKS)
def test_recipe_has_the_official_settings(task):
    cfg = OmegaConf.load(ROOT / "configs" / "lra" / f"{task}.yaml")
    lr, batch, update_freq, updates, warmup, weight_decay = RECIPES[task]
    assert cfg.optimization.lr == [lr] and cfg.optimization.update_freq == [update_freq]
    assert cfg.optimization.max_update == updates and cfg.dataset.batch_size == batch
    assert cfg.lr_scheduler.warmup_updates == warmup and cfg.optimizer.weight_decay == weight_decay
    assert cfg.optimizer.adam_betas == "(0.9,0.98)" and cfg.optimization.clip_norm == 1.0
    assert cfg.model._name == f"mega_lra_{task}" and cfg.criterion._name == "sentence_prediction"
    spec = LRA_TASKS[task]
    assert (cfg.task.input_type, cfg.task.get("paired", False), cfg.task.num_classes, cfg.task.max_positions,
            cfg.task.get("shorten_method", "none")) == (spec.input_type, spec.paired, spec.num_classes,
                                                        spec.max_positions, spec.shorten_method)
    if spec.input_type == "pixels":
        assert (cfg.task.pixel_mean, cfg.task.pixel_std) == (spec.pixel_mean, spec.pixel_std)


@pytest.mark.parametrize("task", TASKS)
def test_recipe_composes_and_trains_on_release_files(driven, task):
    output, save = job(driven, ("recipe", task))
    assert "num_updates 2" in output, output[-2000:]
    cfg = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["cfg"]
    lr, *_ , weight_decay = RECIPES[task]
    assert cfg["model"]["_name"] == f"mega_lra_{task}" and cfg["model"]["encoder_layers"] == 1
    assert cfg["optimization"]["lr"] == [lr] and cfg["optimizer"]["weight_decay"] == weight_decay
    assert cfg["checkpoint"]["best_checkpoint_metric"] == "accuracy"


def test_prepare_train_and_evaluate_with_the_scripts(raw, tmp_path):
    """prepare_lra.sh (pairs) -> train.sh lra/retrieval -> eval_cls.sh, which prints the accuracy last."""
    data = tmp_path / "retrieval"
    output = run(["bash", SCRIPTS / "prepare_lra.sh", "retrieval", raw["retrieval"], data])[1]
    assert "done" in output
    assert sorted(p.name for p in data.iterdir()) == ["input0", "input1", "label", "meta.json"]
    assert not list(tmp_path.glob(".retrieval.tmp.*"))
    save = tmp_path / "run"
    output = run(["bash", SCRIPTS / "train.sh", "lra/retrieval", data, save, *TINY_HYDRA], env={"CPU": "1"})[1]
    assert "num_updates 2" in output
    assert any((save / "tensorboard" / "train").iterdir())
    output = run(["bash", SCRIPTS / "eval_cls.sh", save / "checkpoints" / "checkpoint_best.pt", data],
                 env={"CPU": "1"})[1]
    last = output.strip().splitlines()[-1]
    assert re.fullmatch(r"test accuracy: [0-9.]+", last), output[-2000:]
    found = re.findall(r"valid on 'test' subset .*? accuracy ([0-9.]+)", output)
    assert last.endswith(found[-1])


def test_prepare_refuses_to_replace_output_and_names_bad_task(raw, tmp_path):
    (tmp_path / "out").mkdir()
    code, output = run(["bash", SCRIPTS / "prepare_lra.sh", "listops", raw["listops"], tmp_path / "out"], check=False)
    assert code != 0 and "already exists" in output
    code, output = run(["bash", SCRIPTS / "prepare_lra.sh", "listops", raw["image"], tmp_path / "new"], check=False)
    assert code != 0 and "reads listops data" in output and not (tmp_path / "new").exists()
    assert not list(tmp_path.glob(".new.tmp.*"))
    code, output = run(["bash", SCRIPTS / "prepare_lra.sh", "sudoku", raw["listops"], tmp_path / "new"], check=False)
    assert code != 0 and "unknown TASK" in output


def test_bad_data_stops_fairseq_train_before_training(raw, tmp_path):
    data = tmp_path / "listops"
    data.mkdir()
    for name in ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv"):
        (data / name).write_text((Path(raw["listops"]) / name).read_text())
    lines = (data / "basic_val.tsv").read_text().splitlines()
    lines[3] = lines[3].split("\t")[0] + "\t12"
    (data / "basic_val.tsv").write_text("\n".join(lines) + "\n")
    save = tmp_path / "save"
    code, output = run(["fairseq-train", *task_args("listops", data), "--arch", "mega_lra_listops", *TINY,
                        "--criterion", "sentence_prediction", "--optimizer", "adam", "--lr", "1e-3", "--batch-size",
                        "4", "--max-update", "2", "--save-dir", save], check=False)
    assert code != 0
    assert f"{data / 'basic_val.tsv'}:4: the label 12 is outside the 10 classes" in output
    assert "begin training" not in output and not (save / "checkpoint_last.pt").exists()


def test_eval_cls_names_a_missing_checkpoint(tmp_path):
    code, output = run(["bash", SCRIPTS / "eval_cls.sh", tmp_path / "none.pt", tmp_path], check=False, env={"CPU": "1"})
    assert code != 0 and "no such checkpoint" in output
