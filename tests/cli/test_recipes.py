"""The recipe scripts end to end on tiny data: prepare (WikiText-103 and enwik8 layouts),
train every configs/lm recipe through scripts/train.sh (fairseq-hydra-train) for two
updates, and evaluate the checkpoints with scripts/eval_lm.sh."""

import math
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from helpers import ROOT, SCRIPTS
from helpers.fairseq_jobs import check, run_script
from helpers.forked import free_port
from helpers.tiny import TINY_LM_RECIPES as TINY, fake_enwik8, write_wikitext
from mega_fairseq.data import enwik8 as enwik8_data

RECIPES = ("lm/wikitext103", "lm/enwik8", "lm/demo")


def run(*args, env=None, timeout=300):
    """Run a script with bash (local launch mode unless env says otherwise)."""
    return run_script("bash", *args, env=env, timeout=timeout)


def load_tokens(bin_dir: Path, split: str):
    from fairseq.data import Dictionary, data_utils

    dictionary = Dictionary.load(str(bin_dir / "dict.txt"))
    dataset = data_utils.load_indexed_dataset(str(bin_dir / split), dictionary)
    return dictionary, [dataset[i] for i in range(len(dataset))]


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def wikitext(tmp_path_factory):
    raw = write_wikitext(tmp_path_factory.mktemp("wikitext_raw"))
    out = tmp_path_factory.mktemp("wikitext")
    check(run(SCRIPTS / "prepare_wikitext103.sh", out, raw, env={"WORKERS": "1"}))
    return raw, out


@pytest.fixture(scope="module")
def enwik8(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enwik8")
    data = fake_enwik8(200_000)
    zipped = folder / "enwik8.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("enwik8", data)
    out = folder / "prepared"
    check(run(SCRIPTS / "prepare_enwik8.sh", out, zipped,
              env={"WORKERS": "1", "VALID_BYTES": "20000", "TEST_BYTES": "30000"}))
    return data, out


def test_prepare_wikitext103_offline(wikitext):
    raw, out = wikitext
    for split in ("train", "valid", "test"):
        assert (out / "bin" / f"{split}.bin").is_file() and (out / "bin" / f"{split}.idx").is_file()
        text = (raw / f"wiki.{split}.tokens").read_text(encoding="utf-8").splitlines()
        dictionary, lines = load_tokens(out / "bin", split)
        assert len(lines) == len(text)
        # one token per word plus an end-of-sentence per line, nothing mapped to <unk> by accident
        assert [len(t) for t in lines] == [len(line.split()) + 1 for line in text]
        assert dictionary.string(lines[1]).split() == text[1].split()


def test_prepare_wikitext103_missing_file_is_named(tmp_path):
    raw = write_wikitext(tmp_path / "raw")
    (raw / "wiki.valid.tokens").unlink()
    result = run(SCRIPTS / "prepare_wikitext103.sh", tmp_path / "out", raw)
    assert result.returncode != 0
    assert "wiki.valid.tokens" in result.stderr
    assert not (tmp_path / "out" / "bin").exists()


def test_prepare_keeps_existing_output(wikitext):
    raw, out = wikitext
    before = (out / "bin" / "train.bin").stat().st_mtime_ns
    result = run(SCRIPTS / "prepare_wikitext103.sh", out, raw)
    assert result.returncode != 0 and "FORCE=1" in result.stderr
    assert (out / "bin" / "train.bin").stat().st_mtime_ns == before


def test_enwik8_standard_split():
    helper = enwik8_data
    data = bytes(range(256)) * (100_000_000 // 256) + bytes(100_000_000 % 256)
    assert len(data) == 100_000_000
    parts = helper.split(data, helper.HELD_OUT_BYTES, helper.HELD_OUT_BYTES)
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [90_000_000, 5_000_000, 5_000_000]
    assert parts["train"] == data[:90_000_000]
    assert parts["valid"] == data[90_000_000:95_000_000]
    assert parts["test"] == data[95_000_000:]


def test_enwik8_to_text_help():
    result = subprocess.run([sys.executable, "-m", "mega_fairseq.data.enwik8", "--help"], capture_output=True,
                            text=True)
    assert result.returncode == 0 and "--valid-bytes" in result.stdout and "90,000,000" in result.stdout


def test_prepare_enwik8(enwik8):
    data, out = enwik8
    expected = {"train": data[:-50_000], "valid": data[-50_000:-30_000], "test": data[-30_000:]}
    for split, part in expected.items():
        text = (out / "text" / f"{split}.txt").read_text(encoding="ascii")
        # lossless: decimal byte values per line, a line end per newline byte
        decoded = b"\n".join(bytes(int(v) for v in line.split()) for line in text.split("\n"))
        assert decoded == part + (b"" if part.endswith(b"\n") else b"\n")
        dictionary, lines = load_tokens(out / "bin", split)
        # one token per byte: newlines become end-of-sentence, plus one eos closing the last line
        assert sum(len(t) for t in lines) == len(part) + (not part.endswith(b"\n"))
        symbols = [dictionary[i] for i in range(dictionary.nspecial, len(dictionary))]
        # byte values, and the filler fairseq-preprocess adds to reach a multiple of 8
        assert {int(s) for s in symbols if not s.startswith("madeupword")} <= set(range(256)) - {10}


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tmp_path_factory, wikitext, enwik8):
    """Run scripts/train.sh once per recipe (lazily) and return its save dir and output."""
    data = {"lm/wikitext103": wikitext[1] / "bin", "lm/enwik8": enwik8[1] / "bin", "lm/demo": wikitext[1] / "bin"}
    runs = {}

    def train(recipe):
        if recipe not in runs:
            save = tmp_path_factory.mktemp(recipe.replace("/", "_"))
            output = check(run(SCRIPTS / "train.sh", recipe, data[recipe], save, *TINY[recipe], env={"CPU": "1"}))
            runs[recipe] = save, output, data[recipe]
        return runs[recipe]

    return train


def saved_cfg(save: Path):
    return torch.load(save / "checkpoints" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["cfg"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_train_recipe(trained, recipe):
    save, output, _ = trained(recipe)
    assert "fairseq-hydra-train --config-dir" in output
    assert re.search(r"num_updates 2\b", output), output[-2000:]
    assert (save / "checkpoints" / "checkpoint_best.pt").is_file()
    assert (save / "hydra_train.log").is_file() and (save / ".hydra" / "config.yaml").is_file()
    assert any((save / "tensorboard" / "train").iterdir())
    cfg = saved_cfg(save)
    assert cfg["common"]["user_dir"] == str(ROOT / "mega_fairseq")
    assert cfg["task"]["_name"] == "mega_language_modeling"
    assert cfg["model"]["decoder_layers"] == (2 if recipe == "lm/demo" else 1)


def test_wikitext103_recipe_settings(trained):
    cfg = saved_cfg(trained("lm/wikitext103")[0])
    model = cfg["model"]
    assert model["_name"] == "mega_lm_adaptive_big"
    # filled in by the arch preset (fairseq applies it while building the model)
    assert (model["rel_pos_bias"], model["normalize_before"], model["dropout"], model["attention_dropout"],
            model["hidden_dropout"], model["adaptive_input"], model["tie_adaptive_weights"]) == \
        ("rotary", True, 0.3, 0.1, 0.1, True, True)
    # set by the recipe
    assert model["no_affine_final_norm"] and model["truncation_length"] == 8192
    assert cfg["criterion"]["_name"] == "adaptive_loss"
    assert cfg["task"]["sample_break_mode"] == "complete"
    assert (cfg["task"]["variant_block_multiple_min"], cfg["task"]["variant_block_multiple_max"]) == (2, 6)
    assert cfg["optimization"]["lr"] == [5e-3] and cfg["optimization"]["clip_norm"] == 0.25
    assert cfg["optimizer"]["weight_decay"] == 0.1 and cfg["lr_scheduler"]["warmup_updates"] == 24000
    assert cfg["distributed_training"]["ddp_backend"] == "legacy_ddp"


def test_enwik8_recipe_settings(trained):
    cfg = saved_cfg(trained("lm/enwik8")[0])
    model = cfg["model"]
    assert model["_name"] == "mega_lm_enwik8_base"
    assert (model["rel_pos_bias"], model["normalize_before"], model["dropout"], model["attention_dropout"]) == \
        ("rotary", True, 0.1, 0.0)
    assert model["share_decoder_input_output_embed"] and model["no_affine_final_norm"]
    assert cfg["criterion"]["_name"] == "cross_entropy"
    assert cfg["task"]["max_target_positions"] == 512  # the test's override reaches the task
    assert cfg["task"]["variant_block_multiple_max"] == 4


def test_train_two_processes_on_cpu(tmp_path, wikitext):
    port = str(free_port())
    output = check(run(SCRIPTS / "train.sh", "lm/demo", wikitext[1] / "bin", tmp_path, "optimization.max_update=2",
                       env={"CPU": "1", "NPROC": "2", "MASTER_PORT": port}))
    assert "torchrun --nproc_per_node=2" in output
    assert "distributed init (rank 1)" in output
    assert re.search(r"num_updates 2\b", output)
    assert saved_cfg(tmp_path)["distributed_training"]["distributed_world_size"] == 2


def test_train_launch_commands(tmp_path, wikitext):
    data = wikitext[1] / "bin"
    slurm = check(run(SCRIPTS / "train.sh", "lm/wikitext103", data, tmp_path,
                      env={"DRY_RUN": "1", "SLURM_JOB_ID": "7", "SLURM_JOB_NUM_NODES": "3",
                           "SLURM_NTASKS_PER_NODE": "8"}))
    assert "srun --label --nodes=3 --ntasks-per-node=8 python -u -m fairseq_cli.hydra_train" in slurm
    assert "distributed_training.distributed_world_size=24" in slurm
    nodes = check(run(SCRIPTS / "train.sh", "lm/enwik8", data, tmp_path,
                      env={"DRY_RUN": "1", "NPROC": "4", "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "node0"}))
    assert "torchrun --nproc_per_node=4 --nnodes=2 --node_rank=1 --master_addr=node0" in nodes
    assert "distributed_training.distributed_world_size=8" in nodes
    missing = run(SCRIPTS / "train.sh", "lm/enwik8", data, tmp_path, env={"DRY_RUN": "1", "NPROC": "4", "NNODES": "2"})
    assert missing.returncode != 0 and "MASTER_ADDR" in missing.stderr


def test_train_unknown_recipe_lists_recipes(tmp_path, wikitext):
    result = run(SCRIPTS / "train.sh", "lm/wikitext-103", wikitext[1] / "bin", tmp_path)
    assert result.returncode != 0
    assert "lm/wikitext-103" in result.stderr
    for recipe in RECIPES:
        assert recipe in result.stderr


def test_train_rejects_fairseq_flags(tmp_path, wikitext):
    result = run(SCRIPTS / "train.sh", "lm/demo", wikitext[1] / "bin", tmp_path, "--lr", "1e-3")
    assert result.returncode != 0 and "'--lr'" in result.stderr


# ---------------------------------------------------------------- evaluation


def final_value(output: str, name: str) -> float:
    lines = [line for line in output.splitlines() if line.startswith(f"{name}: ")]
    assert lines, output[-2000:]
    return float(lines[-1].split(": ", 1)[1])


def test_eval_wikitext103(trained):
    save, _, data = trained("lm/wikitext103")
    output = check(run(SCRIPTS / "eval_lm.sh", save / "checkpoints" / "checkpoint_best.pt", data,
                       env={"CPU": "1"}))
    assert "--eval-streams 10" in output and "in 10 streams" in output
    ppl = final_value(output, "perplexity")
    assert math.isfinite(ppl) and ppl > 1
    # a larger test-time chunk (the paper's 2048 for 1024 in training) loads and scores
    output = check(run(SCRIPTS / "eval_lm.sh", save / "checkpoints" / "checkpoint_best.pt", data, "valid",
                       env={"CPU": "1", "CHUNK": "32", "SEGMENT": "64", "STREAMS": "2"}))
    assert "'decoder_chunk_size': 32" in output and "segments x 64 tokens" in output
    assert math.isfinite(final_value(output, "perplexity"))


def test_eval_enwik8_bits_per_character(trained):
    save, _, data = trained("lm/enwik8")
    output = check(run(SCRIPTS / "eval_lm.sh", save / "checkpoints" / "checkpoint_best.pt", data,
                       env={"CPU": "1", "BPC": "1", "STREAMS": "3", "SEGMENT": "128"}))
    bpc, ppl = final_value(output, "bits per character"), final_value(output, "perplexity")
    assert 0 < bpc < 16
    assert ppl == pytest.approx(2 ** bpc, rel=1e-3)


def test_eval_missing_checkpoint(tmp_path, wikitext):
    result = run(SCRIPTS / "eval_lm.sh", tmp_path / "nope.pt", wikitext[1] / "bin")
    assert result.returncode != 0 and "nope.pt" in result.stderr
