"""`make gpu-check CPU=1`: the GPU machine check's dry run on CPU runs end to end, writes every
section into its log, and each check in it passes or says why it was skipped (half precision) or
is unsupported (fairseq 0.12's --bf16 is its TPU mode)."""

import re
import subprocess
import sys

import pytest
import torch

from benchmarks import gpu_check
from helpers import ROOT
from helpers.fairseq_jobs import run

SECTIONS = ["machine", "CUDA tests (pytest -m cuda)", "SDPA backend of each preset's attention",
            "accuracy against float64", "training: 5 updates of fairseq-train", "decoding: fairseq-generate",
            "benchmark: python -m benchmarks --quick", "the paper's efficiency table", "summary"]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    log = tmp_path_factory.mktemp("gpu_check") / "gpu_check.log"
    code, output = run([sys.executable, "-m", "benchmarks.gpu_check", "--cpu", "--log", log], cwd=ROOT, check=False,
                       timeout=900)
    return code, output, log.read_text()


def results(text: str) -> dict:
    """{check name: (status, detail)} from the log's result lines."""
    return {name: (status, detail) for status, name, detail in re.findall(r"^\[(\w+)\] ([^:\n]+): (.*)$", text, re.M)}


def test_dry_run_passes_with_every_section(dry_run):
    code, output, text = dry_run
    assert code == 0, output[-4000:]
    positions = [text.find(f"## {section}") for section in SECTIONS]
    assert all(position >= 0 for position in positions) and positions == sorted(positions), positions
    assert re.search(r"^gpu-check: \d+ ok, 0 failed, [67] skipped, [03] unsupported in \d+ s; log ", text, re.M)
    assert all(status in ("ok", "skipped", "unsupported") for status, _ in results(text).values())


def test_cuda_tests_are_collected_by_their_marker(dry_run):
    status, detail = results(dry_run[2])["CUDA tests"]
    count = int(re.fullmatch(r"(\d+) collected, not run \(no GPU\)", detail).group(1))
    assert status == "ok" and count >= 97  # tests/unit/test_precision.py's 96 and the benchmark on CUDA


def test_backends_of_the_tiny_presets(dry_run):
    text = dry_run[2]
    rows = re.findall(r"^\| (self|cross) .*\|$", text, re.M)
    assert len(rows) >= 4
    # softmax self-attention without dropout runs Mega's blocked kernel on CPU, in training and evaluation
    assert re.search(r"^\| self causal, L=16 \(chunk 16\).* \| mega_lm_tiny decoder \| "
                     r"none \(blocked CPU kernel\) / none \(blocked CPU kernel\) \|", text, re.M)
    assert re.search(r"^\| cross causal, .* \| mega_mt_tiny decoder \| \w+", text, re.M)


def test_accuracy_within_limits(dry_run):
    found = results(dry_run[2])
    for name in [f"attend {p} {m}" for p in ("fp32", "bf16") for m in ("none", "padded", "causal")] + \
            [f"block {p} {k}" for p in ("fp32", "bf16") for k in ("bidirectional, padded", "causal")]:
        assert found[name][0] == "ok", (name, found.get(name))


def test_training_decoding_and_benchmark(dry_run):
    found = results(dry_run[2])
    for family in ("lm", "mt", "lra_batchnorm"):
        status, detail = found[f"train {family} fp32"]
        assert status == "ok" and re.match(r"train loss [0-9.]+, valid loss [0-9.]+, wps", detail), detail
        for precision in ("fp16", "amp"):
            assert found[f"train {family} {precision}"] == ("skipped", found[f"train lm {precision}"][1])
            assert "needs CUDA" in found[f"train {family} {precision}"][1]
        status, detail = found[f"train {family} bf16"]
        assert status == "ok" or (status == "unsupported" and "--tpu" in detail), (status, detail)
    status, detail = found["generate mt fp32"]
    assert status == "ok" and re.match(r"20 sentences, BLEU [0-9.]+", detail), detail
    status, detail = found["benchmark"]
    assert status == "ok" and detail.startswith("bf16: mega_chunk L=64 ") and "(none (blocked CPU kernel))" in detail
    assert found["paper table"][0] in ("ok", "skipped")


def test_make_target_passes_the_dry_run_flag(tmp_path):
    """`make -n` prints the recipes (install's included) and runs none."""
    def recipe(*arguments):
        proc = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "gpu-check",
                               f"GPU_CHECK_LOG={tmp_path / 'x.log'}", *arguments],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip().splitlines()[-1]

    assert recipe("CPU=1").endswith(f"-m benchmarks.gpu_check --log {tmp_path / 'x.log'} --cpu")
    assert recipe().endswith(f"-m benchmarks.gpu_check --log {tmp_path / 'x.log'}")
    assert recipe("CPU=0").endswith("x.log")


def test_without_cuda_the_check_asks_for_a_cuda_torch_or_the_dry_run(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu_check.parse_args([])
    assert "install a CUDA build of torch, or run the CPU dry run with --cpu" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # parsing alone touches no GPU
    args = gpu_check.parse_args(["--log", "a/b.log"])
    assert (args.cpu, args.updates, str(args.work)) == (False, 20, "a/b.log.work")
