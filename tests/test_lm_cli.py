"""End to end through fairseq's real command-line tools with --user-dir mega_fairseq."""

import math
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, USER_DIR, run

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


# arch -> model config values that must come from the preset (not overridden below)
PRESETS = {
    # the base arch is registered with the model: its presets are applied when the model is built
    "mega_lm": dict(decoder_chunk_size=None, rel_pos_bias=None, normalize_before=None),
    "mega_lm_tiny": dict(decoder_chunk_size=16, normalize_before=False),
    "mega_lm_big": dict(decoder_chunk_size=-1, dropout=0.1),
    "mega_lm_adaptive_base": dict(adaptive_input=True, tie_adaptive_weights=True, dropout=0.3),
    "mega_lm_adaptive_big": dict(decoder_chunk_size=1024, rel_pos_bias="rotary", normalize_before=True,
                                 adaptive_input=True, dropout=0.3),
    "mega_lm_wiki103": dict(decoder_chunk_size=1024, rel_pos_bias="rotary", adaptive_input=True),
    "mega_lm_enwik8_base": dict(decoder_chunk_size=2048, rel_pos_bias="rotary", normalize_before=True,
                                dropout=0.1),
    "mega_lm_enwik8_large": dict(decoder_chunk_size=2048, dropout=0.2, hidden_dropout=0.1),
}


@pytest.mark.parametrize("arch", list(PRESETS))
def test_every_named_arch_trains(lm_data, tmp_path, arch):
    extra = TINY + (ADAPTIVE if "adaptive" in arch or "wiki103" in arch else [])
    _, out = train(lm_data, tmp_path, *extra, arch=arch, updates=1)
    assert "num_updates 1" in out
    cfg = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)["cfg"]["model"]
    assert cfg["decoder_layers"] == 1 and cfg["decoder_embed_dim"] == 16
    for name, value in PRESETS[arch].items():
        assert cfg[name] == value, (arch, name, cfg[name])
    if arch == "mega_lm":
        sys.path.insert(0, str(ROOT))
        from fairseq import checkpoint_utils
        import mega_fairseq  # noqa: F401
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "checkpoint_last.pt")])
        layer = models[0].decoder.layers[0].mega_layer
        assert layer.chunk_size == -1 and not layer.prenorm and type(layer.rel_pos_bias).__name__.startswith("Simple")


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
    common = ["fairseq-eval-lm", lm_data, "--user-dir", USER_DIR, "--path", checkpoint, "--gen-subset", "test",
              "--cpu", "--required-batch-size-multiple", "1", "--tokens-per-sample", "32"]
    _, streamed = run(common + ["--task", "mega_language_modeling", "--eval-streams", "2"])
    _, blocks = run(common + ["--task", "language_modeling", "--batch-size", "8"])
    loss_streamed, ppl_streamed = perplexity(streamed)
    loss_blocks, ppl_blocks = perplexity(blocks)
    assert math.isfinite(ppl_streamed) and 1 < ppl_streamed < 1e5
    # both score every test token once
    counts = [re.search(r"Evaluated ([0-9,]+) tokens", o).group(1) for o in (streamed, blocks)]
    assert counts[0] == counts[1], counts

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
    and numpy scalars; safe loading must accept them once the plugin is imported."""
    checkpoint = tmp_path / "legacy.pt"
    run([sys.executable, "-c", "import argparse, numpy as np, torch; torch.save({'args': argparse.Namespace("
         "arch='mega_lm', decoder_layers=2), 'model': {'w': torch.ones(2)}, 'extra_state': {'val_loss': "
         "np.float64(3.5), 'best': np.array(1.0, dtype=np.float32)}}, %r)" % str(checkpoint)])
    load = "torch.load(%r, weights_only=True)" % str(checkpoint)
    code, out = run([sys.executable, "-c", "import torch; " + load], check=False)
    assert code != 0 and "Weights only load failed" in out
    _, out = run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import mega_fairseq, torch; "
                  "state = %s; print(state['args'].decoder_layers, float(state['extra_state']['val_loss']))"
                  % (str(ROOT), load)])
    assert out.strip().endswith("2 3.5")


def _to_official_names(state):
    """Our state dict with the official Mega code's names and shapes (inverse of the converter)."""
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
    official["decoder.version"] = torch.tensor([3.0])
    return official


def test_official_checkpoint_converts_and_evaluates(lm_data, tmp_path):
    import argparse
    sys.path.insert(0, str(ROOT))
    from fairseq import checkpoint_utils
    import mega_fairseq  # noqa: F401

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

    converted = tmp_path / "converted.pt"
    _, out = run([sys.executable, ROOT / "scripts" / "convert_official_checkpoint.py", tmp_path / "official.pt",
                  converted])
    assert "(mega_lm_tiny)" in out
    code, out = run([sys.executable, ROOT / "scripts" / "convert_official_checkpoint.py", tmp_path / "official.pt",
                     converted], check=False)
    assert code != 0 and "pass --force" in out

    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(converted)],
                                                                   arg_overrides={"data": str(lm_data)})
    tokens = torch.randint(4, 100, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(models[0].eval()(tokens)[0], ours(tokens)[0])
    _, out = run(["fairseq-eval-lm", lm_data, "--user-dir", USER_DIR, "--path", converted, "--gen-subset", "valid",
                  "--cpu", "--task", "mega_language_modeling", "--eval-streams", "2", "--tokens-per-sample", "32"])
    assert math.isfinite(perplexity(out)[1])
