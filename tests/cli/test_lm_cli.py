"""End to end through fairseq's real command-line tools with --user-dir mega_fairseq."""

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, USER_DIR
from helpers.fairseq_jobs import driver_outputs, run
from mega_fairseq.models.mega_config import option_names
from mega_fairseq.models.mega_lm import LM_PRESETS

TINY = ["--decoder-layers", "1", "--decoder-embed-dim", "16", "--decoder-input-dim", "16",
        "--decoder-hidden-dim", "32", "--decoder-ffn-embed-dim", "32", "--decoder-z-dim", "8",
        "--decoder-n-dim", "2"]
ADAPTIVE = ["--adaptive-input-cutoff", "300,1000", "--adaptive-softmax-cutoff", "300,1000",
            "--criterion", "adaptive_loss", "--ddp-backend", "legacy_ddp"]


def train(data, save_dir, *extra, arch="mega_lm_tiny", updates=2, check=True):
    return run(["fairseq-train", data, "--user-dir", USER_DIR, "--task", "mega_language_modeling",
                "--arch", arch, "--tokens-per-sample", "32", "--max-target-positions", "128",
                "--max-tokens", "256", "--optimizer", "adam", "--lr", "1e-3", "--max-update", str(updates),
                "--save-dir", save_dir, "--cpu", "--num-workers", "0", "--no-progress-bar", "--log-interval", "1",
                "--seed", "1", *extra], check=check)


def perplexity(output):
    match = re.search(r"Loss \(base 2\): ([0-9.]+), Perplexity: ([0-9.]+)", output)
    assert match, output[-3000:]
    return float(match.group(1)), float(match.group(2))


def overridden(flags):
    return {flag[2:].replace("-", "_") for flag in flags if flag.startswith("--")}


@pytest.mark.parametrize("arch", list(LM_PRESETS.presets))
def test_every_named_arch_trains(lm_data, tmp_path, arch):
    preset = LM_PRESETS.resolve(arch)
    extra = TINY + (ADAPTIVE if preset.get("adaptive_input") else [])
    _, out = train(lm_data, tmp_path, *extra, arch=arch, updates=1)
    assert "num_updates 1" in out
    cfg = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["cfg"]["model"]
    assert cfg["decoder_layers"] == 1 and cfg["decoder_embed_dim"] == 16
    # every value the preset sets is stored, concretely, unless the command line overrode it
    for name, value in preset.items():
        if name not in overridden(extra):
            assert cfg[name] == value, (arch, name, cfg[name])
    assert all(cfg[name] is not None for name in option_names("decoder").values())
    if arch == "mega_lm":
        from fairseq import checkpoint_utils
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "checkpoint_last.pt")])
        layer = models[0].decoder.stack.layers[0].mega_layer
        assert layer.chunk_size == -1 and not layer.prenorm and type(layer.rel_pos_bias).__name__.startswith("Simple")


def test_config_help_and_defaults_come_from_the_preset_table():
    from dataclasses import fields
    from mega_fairseq.models.mega_lm import MegaLMConfig

    config_fields = {f.name: f for f in fields(MegaLMConfig)}
    for name in LM_PRESETS.resolve("mega_lm"):  # left to the arch functions
        assert config_fields[name].default is None, name
    assert config_fields["decoder_z_dim"].metadata["help"].endswith("(set by --arch; mega_lm: 128)")
    assert config_fields["normalization_type"].default == "layernorm"  # no preset sets it


def test_train_resume_evaluate_sample(lm_data, tmp_path):
    tb = tmp_path / "tb"
    _, out = train(lm_data, tmp_path / "ckpt", "--variant-block-multiple-max", "3", "--eval-streams", "3",
                   "--tensorboard-logdir", tb, updates=4)
    assert re.search(r"train: \d+ blocks of 32-96 tokens", out)
    assert list(tb.rglob("events.out.tfevents.*")), "no tensorboard event files"

    _, out = train(lm_data, tmp_path / "ckpt", "--variant-block-multiple-max", "3", "--eval-streams", "3",
                   "--restore-file", "checkpoint_last.pt", updates=6)
    assert re.search(r"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 4 updates\)", out), out[-3000:]
    assert "num_updates 6" in out

    checkpoint = tmp_path / "ckpt" / "checkpoint_last.pt"
    common = [lm_data, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu", "--tokens-per-sample", "32"]
    streamed, blocks, window, fairseq_window, validated = driver_outputs([
        ["eval_lm", common + ["--gen-subset", "test", "--task", "mega_language_modeling", "--eval-streams", "2"]],
        ["eval_lm", common + ["--gen-subset", "test", "--task", "language_modeling", "--batch-size", "8"]],
        # fairseq's sliding window: blocks of 32 - 16 tokens, each after the 16 tokens before it
        ["eval_lm", common + ["--gen-subset", "test", "--task", "mega_language_modeling", "--context-window", "16"]],
        ["eval_lm", common + ["--gen-subset", "test", "--task", "language_modeling", "--context-window", "16"]],
        # the blocks in one batch, with the default --required-batch-size-multiple (8)
        ["validate", [*common, "--task", "mega_language_modeling", "--valid-subset", "test",
                      "--model-overrides", "{'eval_streams': 0}",
                      "--batch-size", "100000", "--max-tokens", "100000"]],
    ], tmp_path)
    loss_streamed, ppl_streamed = perplexity(streamed)
    assert math.isfinite(ppl_streamed) and 1 < ppl_streamed < 1e5
    # each scores every test token once
    counts = [int(re.search(r"Evaluated ([0-9,]+) tokens", o).group(1).replace(",", ""))
              for o in (streamed, blocks, window, fairseq_window)]
    assert counts == [counts[0]] * 4, counts
    assert perplexity(window) == perplexity(fairseq_window)  # the task batches the window as fairseq's does
    blocks_of_32 = -(-counts[0] // 32)
    assert blocks_of_32 % 8, "the test split must not fill whole batches of 8"
    assert re.search(rf"valid on 'test' subset .*\| wpb {counts[0]} \| bsz {blocks_of_32}\b", validated), \
        validated[-2000:]

    sampled = _interactive(lm_data, checkpoint)
    hypotheses = [line for line in sampled.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == 2 and all(len(h.split("\t")[2].split()) > 2 for h in hypotheses), sampled[-2000:]


def _interactive(data, checkpoint):
    import subprocess
    proc = subprocess.run(["fairseq-interactive", str(data), "--user-dir", USER_DIR, "--task", "language_modeling",
                           "--path", str(checkpoint), "--cpu", "--sampling", "--sampling-topk", "10", "--beam", "1",
                           "--max-len-b", "12", "--seed", "3"],
                          input="the module\nreturn a new\n", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_bad_option_value_is_named(lm_data, tmp_path):
    code, out = train(lm_data, tmp_path, "--attention-activation-fn", "sigmoid", check=False)
    assert code != 0 and "invalid choice: 'sigmoid'" in out


def test_nonpositive_chunk_size_is_named(lm_data, tmp_path):
    code, out = train(lm_data, tmp_path, "--decoder-chunk-size", "0", check=False)
    assert code != 0 and "--decoder-chunk-size must be positive" in out


def test_tied_output_of_a_narrower_embedding_is_named(lm_data, tmp_path):
    code, out = train(lm_data, tmp_path, "--decoder-input-dim", "24", "--share-decoder-input-output-embed",
                      check=False)
    assert code != 0 and "--share-decoder-input-output-embed needs --decoder-input-dim" in out


def test_blocks_longer_than_model_positions_are_named(lm_data, tmp_path):
    code, out = train(lm_data, tmp_path, "--variant-block-multiple-max", "6", "--max-target-positions", "64",
                      check=False)
    assert code != 0 and "raise --max-target-positions" in out


def test_checkpoint_of_another_model_is_a_clear_error(lm_data, tmp_path):
    other = tmp_path / "transformer"
    run(["fairseq-train", lm_data, "--task", "language_modeling", "--arch", "transformer_lm",
         "--decoder-layers", "1", "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "16",
         "--decoder-attention-heads", "2", "--tokens-per-sample", "32", "--max-tokens", "256",
         "--optimizer", "adam", "--lr", "1e-3", "--max-update", "1", "--save-dir", other, "--cpu",
         "--num-workers", "0"])
    target = tmp_path / "mega"
    target.mkdir()
    shutil.copy(other / "checkpoint_last.pt", target / "checkpoint_last.pt")
    before = (target / "checkpoint_last.pt").read_bytes()
    code, out = train(lm_data, target, check=False)
    assert code != 0 and "Cannot load model parameters from checkpoint" in out
    assert "please ensure that the architectures match" in out
    assert (target / "checkpoint_last.pt").read_bytes() == before, "the existing checkpoint was modified"


def test_legacy_checkpoint_objects_load_with_weights_only(tmp_path):
    """fairseq <= 0.10 checkpoints (e.g. the official Mega ones) pickle an argparse.Namespace
    and numpy scalars; safe loading must accept them once the plugin is loaded."""
    checkpoint = tmp_path / "legacy.pt"
    run([sys.executable, "-c", "import argparse, numpy as np, torch; torch.save({'args': argparse.Namespace("
         "arch='mega_lm', decoder_layers=2), 'model': {'w': torch.ones(2)}, 'extra_state': {'val_loss': "
         "np.float64(3.5), 'best': np.array(1.0, dtype=np.float32)}}, %r)" % str(checkpoint)])
    load = "torch.load(%r, weights_only=True)" % str(checkpoint)
    code, out = run([sys.executable, "-c", "import torch; " + load], check=False)
    assert code != 0 and "Weights only load failed" in out
    _, out = run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import mega_fairseq.models, torch; "
                  "state = %s; print(state['args'].decoder_layers, float(state['extra_state']['val_loss']))"
                  % (str(ROOT), load)])
    assert out.strip().endswith("2 3.5")


def _to_official_names(state):
    """Our state dict with the official Mega code's names and shapes (inverse of the converter)."""
    from mega_fairseq.models.official_names import OFFICIAL_LAYOUT, rename_prefixes

    ema = {"alpha": "delta", "delta": "alpha", "beta": "beta", "eta": "gamma", "omega": "omega"}
    official = {}
    for name, value in state.items():
        prefix, _, leaf = name.rpartition(".")
        if prefix.endswith(".move") and leaf in ema:
            name, value = f"{prefix}.{ema[leaf]}", (value.unsqueeze(-1) if leaf != "eta" and value.dim() == 2
                                                     else value)
        elif prefix.endswith("mega_layer") and leaf in ("kappa", "mu"):
            name = f"{prefix}.{'gamma' if leaf == 'kappa' else 'beta'}"
        official[name] = value
    rename_prefixes(official, "decoder", {new: old for old, new in OFFICIAL_LAYOUT.items()})
    assert "decoder.layers.0.mega_layer.gamma" in official and "decoder.embed_tokens.weight" in official
    official["decoder.version"] = torch.tensor([3.0])
    return official


def test_official_checkpoint_converts_and_evaluates(lm_data, tmp_path):
    import argparse
    from fairseq import checkpoint_utils
    from mega_fairseq.models.official_names import ConversionError

    train(lm_data, tmp_path / "ours", "--decoder-chunk-size", "8", updates=2)
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "ours" / "checkpoint_last.pt")])
    ours = models[0].eval()
    # an official-style checkpoint: fairseq-0.9 argparse arguments and the official names
    args = argparse.Namespace(
        arch="mega_lm_tiny", task="language_modeling", data=str(lm_data), tokens_per_sample=32,
        decoder_chunk_size=8, max_target_positions=128, criterion="cross_entropy", optimizer="adam",
        lr=[0.001], seed=1, valid_block="splits:10", variant_block_multiple_min=2, report_ema_alpha=False)
    history = [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam", "num_updates": 2,
                "lr_scheduler_state": {"best": 5.0}, "optimizer": {"state": {}}}]
    torch.save({"args": args, "model": _to_official_names(ours.state_dict()), "optimizer_history": history,
                "extra_state": {"val_loss": 5.0}, "last_optimizer_state": {"state": {}}}, tmp_path / "official.pt")

    # unconverted, it is refused with the converter named
    with pytest.raises(ConversionError, match=r"^decoder\.layers\.0\.mega_layer\.move\.gamma: a parameter name of "
                                              r"the official Mega code; convert the checkpoint first"):
        checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "official.pt")],
                                                      arg_overrides={"data": str(lm_data)})

    converted = tmp_path / "converted.pt"
    convert = [sys.executable, ROOT / "scripts" / "convert_official_checkpoint.py", tmp_path / "official.pt", converted]
    installed = {"PYTHONPATH": str(ROOT)}  # the script imports the installed package: this checkout
    _, out = run(convert, env=installed)
    assert "(mega_lm_tiny)" in out
    code, out = run(convert, check=False, env=installed)
    assert code != 0 and "pass --force" in out

    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(converted)],
                                                                   arg_overrides={"data": str(lm_data)})
    tokens = torch.randint(4, 100, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(models[0].eval()(tokens)[0], ours(tokens)[0])
    _, out = run(["fairseq-eval-lm", lm_data, "--user-dir", USER_DIR, "--path", converted, "--gen-subset", "valid",
                  "--cpu", "--task", "mega_language_modeling", "--eval-streams", "2", "--tokens-per-sample", "32"])
    assert math.isfinite(perplexity(out)[1])


def test_docs_table_is_the_preset_table():
    from mega_fairseq.models.mega_lm import preset_table

    table = preset_table()
    assert table in (ROOT / "docs" / "language_modeling.md").read_text(), \
        f"update the table of named architectures in docs/language_modeling.md:\n{table}"


def test_torch_below_the_floor_is_a_clear_import_error(monkeypatch):
    """Importing the plugin on a torch older than setup.py's floor fails at once, naming both versions."""
    from torch.torch_version import TorchVersion

    from mega_fairseq import checkpoint_loading

    floor = re.search(r'"torch>=([0-9.]+)', (ROOT / "setup.py").read_text()).group(1)
    assert floor == checkpoint_loading.MIN_TORCH == "2.6"
    older = ("import torch; from torch.torch_version import TorchVersion; "
             "torch.__version__ = TorchVersion('2.5.1+cu124'); import mega_fairseq")
    proc = subprocess.run([sys.executable, "-c", older], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ImportError: mega_fairseq needs torch >= 2.6" in proc.stderr and "this is torch 2.5.1+cu124" in proc.stderr
    for version in ("2.6.0+cu124", "2.10.0"):
        monkeypatch.setattr(torch, "__version__", TorchVersion(version))
        checkpoint_loading.require_torch()
