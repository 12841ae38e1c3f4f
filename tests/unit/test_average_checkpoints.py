"""scripts/average_checkpoints.py on small fake checkpoints: the newest epoch or update checkpoints, or
the files given, averaged (float16 and integer tensors too), the rest from the newest; its refusals."""

import shutil
from pathlib import Path

import pytest
import torch

from helpers import script


def fake_checkpoint(path: Path, seed: int, step: int):
    g = torch.Generator().manual_seed(seed)
    state = {
        "model": {
            # multiples of 1/8: sums and halves are exact in float32 and float16
            "encoder.weight": torch.randint(-64, 64, (4, 3), generator=g).float() / 8,
            "decoder.half": (torch.randint(-64, 64, (5,), generator=g).float() / 8).half(),
            "decoder.steps": torch.tensor([step, 3 * step + seed]),
        },
        "cfg": {"model": {"_name": "transformer"}, "seed": seed},
        "extra_state": {"train_iterator": {"epoch": step}, "best": 1.5 + seed},
        "optimizer_history": [{"num_updates": 10 * step}],
        "last_optimizer_state": {"state": {0: {"exp_avg": torch.full((2,), float(seed))}}},
    }
    torch.save(state, path)
    return state


@pytest.fixture
def checkpoints(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    states = {}
    for epoch in (1, 2, 3, 10):
        states[f"checkpoint{epoch}.pt"] = fake_checkpoint(folder / f"checkpoint{epoch}.pt", epoch, epoch)
    for epoch, update in ((1, 50), (2, 100), (2, 150)):
        name = f"checkpoint_{epoch}_{update}.pt"
        states[name] = fake_checkpoint(folder / name, update, update)
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        shutil.copy(folder / "checkpoint10.pt", folder / name)
    return folder, states


def expected_average(states, names):
    models = [states[n]["model"] for n in names]
    return {
        "encoder.weight": sum(m["encoder.weight"] for m in models) / len(models),
        "decoder.half": (sum(m["decoder.half"].float() for m in models) / len(models)).half(),
        "decoder.steps": sum(m["decoder.steps"] for m in models) // len(models),
    }


def assert_model_equal(model, expected):
    assert list(model) == list(expected)
    for k, v in expected.items():
        assert model[k].dtype == v.dtype and torch.equal(model[k], v), k


def test_average_epoch_checkpoints(checkpoints, capsys):
    folder, states = checkpoints
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = folder / "averaged.pt"
    script("average_checkpoints").main(["--inputs", str(folder), "--num-epoch-checkpoints", "3",
                                             "--output", str(out)])
    output = capsys.readouterr().out
    assert "checkpoint10.pt, " in output and "checkpoint3.pt" in output and "checkpoint1.pt" not in output
    averaged = torch.load(out, map_location="cpu", weights_only=True)
    newest_three = ["checkpoint10.pt", "checkpoint3.pt", "checkpoint2.pt"]
    assert_model_equal(averaged["model"], expected_average(states, newest_three))
    # everything else from the newest checkpoint
    newest = states["checkpoint10.pt"]
    assert averaged["cfg"] == newest["cfg"] and averaged["extra_state"] == newest["extra_state"]
    assert averaged["optimizer_history"] == newest["optimizer_history"]
    assert torch.equal(averaged["last_optimizer_state"]["state"][0]["exp_avg"], torch.full((2,), 10.0))
    # the inputs are untouched, no temporary file is left
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p != out} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([*before, "averaged.pt"])


def test_average_update_checkpoints_and_files(checkpoints, tmp_path):
    folder, states = checkpoints
    average = script("average_checkpoints")
    paths = average.last_n_checkpoints(folder, 2, update_based=True)
    assert [p.name for p in paths] == ["checkpoint_2_150.pt", "checkpoint_2_100.pt"]
    bounded = average.last_n_checkpoints(folder, 2, update_based=False, upper_bound=3)
    assert [p.name for p in bounded] == ["checkpoint3.pt", "checkpoint2.pt"]
    state = average.average_checkpoints(paths)
    assert_model_equal(state["model"], expected_average(states, ["checkpoint_2_150.pt", "checkpoint_2_100.pt"]))
    assert state["cfg"]["seed"] == 150
    # explicit files: all of them, the rest from the first
    files = [folder / "checkpoint1.pt", folder / "checkpoint_1_50.pt"]
    state = average.average_checkpoints(files)
    assert_model_equal(state["model"], expected_average(states, ["checkpoint1.pt", "checkpoint_1_50.pt"]))
    assert state["cfg"]["seed"] == 1


def test_average_refusals(checkpoints, capsys):
    folder, _ = checkpoints
    average = script("average_checkpoints")
    for args, message in (
            (["--inputs", folder / "checkpoint1.pt", folder / "checkpoint2.pt", "--output", folder / "checkpoint2.pt"],
             "is one of the inputs"),
            (["--inputs", folder, "--num-update-checkpoints", "5", "--output", folder / "avg.pt"],
             "has 3 update (checkpoint_E_U.pt) checkpoints, need 5"),
            (["--inputs", folder, "--output", folder / "avg.pt"], "needs --num-epoch-checkpoints")):
        with pytest.raises(SystemExit) as exit_info:
            average.main([str(a) for a in args])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (folder / "avg.pt").exists()
