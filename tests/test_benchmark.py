"""Smoke test of the benchmark: tiny sizes, every measurement present and positive (timings are not judged),
the precision it runs in, and what ran (SDPA backend, kernels) recorded beside each figure."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.autograd import DeviceType

from benchmarks import cases, fused_attention, harness, paper, profiling, report

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def check_profile(record: dict, device: str):
    """A record of what ran: a known SDPA backend and the busiest kernels with their shares."""
    assert set(record["sdpa_backend"].split("+")) <= set(profiling.SDPA_OPERATORS.values()) or \
        record["sdpa_backend"].startswith(profiling.NO_SDPA), record
    assert record["kernels"] and sum(share for _, share in record["kernels"]) <= 1 + 1e-9
    if device == "cpu":
        assert all(name.startswith("aten::") for name, _ in record["kernels"]), record


@pytest.mark.parametrize("device", DEVICES)
def test_benchmark_writes_every_measurement(tmp_path, device):
    out = tmp_path / "bench.json"
    results = harness.main([
        "--device", device,
        "--models", "mega_chunk", "--lengths", "64", "--chunk-lengths", "128", "--layers", "1",
        "--embed-dim", "16", "--zdim", "8", "--hdim", "16", "--ndim", "2", "--ffn-dim", "16", "--chunk-size", "32",
        "--heads", "2", "--tokens-per-step", "1024", "--repeats", "1", "--timing-workers", "2",
        "--decode-contexts", "8", "40",
        "--decode-steps", "4", "--threads", "1", "--memory-jobs", "2", "--timeout", "120", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert {"machine", "sizes", "settings", "train", "flops", "matmul", "decode", "ratios"} <= set(results)
    assert results["settings"]["timing_workers"] == 2
    assert results["settings"]["device"] == results["machine"]["device"] == device
    assert results["settings"]["precision"] == harness.DEFAULT_PRECISION[device]
    assert ("gpu" in results["machine"]) == (device == "cuda")
    label = report.device_label(results["machine"])
    assert label == (f"GPU {torch.cuda.get_device_name()}" if device == "cuda"
                     else f"CPU {results['machine']['cpu']}, 1 thread")
    text = report.format_report(results)
    assert text.count(label) == 4  # training, FLOP, decoding and what-ran headings
    assert text.count(f"({report.precision_label(results)})") == 2  # training and decoding headings
    assert [(row["model"], row["length"]) for row in results["train"]] == [("mega_chunk", 64), ("mega_chunk", 128)]
    for row in results["train"]:
        assert row["batch"] * row["length"] == row["tokens"]
        assert row["ms_per_1k_tokens"] > 0 and row["step_s"] > 0 and row["peak_mb"] > 0
        check_profile(row, device)
        assert f"| train mega_chunk L={row['length']} | {row['sdpa_backend']} | `" in text
        if device == "cpu":  # softmax attention without dropout: Mega's blocked kernel, no SDPA
            assert row["sdpa_backend"] == "none (blocked CPU kernel)"
    assert all(row["gflops"] > 0 and row["total_gflop"] > 0 for row in results["flops"])
    for row in results["matmul"]:
        assert row["gflops"] > 0
        check_profile(dict(row, sdpa_backend=profiling.NO_SDPA), device)
    assert [row["context"] for row in results["decode"]] == [8, 40]
    for row in results["decode"]:
        assert row["mega_chunk_ms_per_token"] > 0 and row["fairseq_transformer_ms_per_token"] > 0
        assert set(row["profiles"]) == {"mega_chunk", "fairseq_transformer"}
        for record in row["profiles"].values():
            check_profile(record, device)
    assert results["ratios"]["mega_chunk_time_per_token@128_vs@64"] > 0
    memory = {row["length"]: row["peak_mb"] / row["tokens"] for row in results["train"]}
    assert results["ratios"]["mega_chunk_memory_per_token@128_vs@64"] == memory[128] / memory[64]
    assert results["ratios"]["decode_mega_chunk@40_vs@8"] > 0


def test_flop_count_of_a_chunked_step():
    sizes = dict(layers=1, embed_dim=4, zdim=2, hdim=8, ffn_dim=6, chunk_size=16)
    counts = cases.mega_training_flops(sizes, batch=3, length=32, chunk=16)
    tokens = 3 * 32
    assert counts["projections"] == 3 * 2 * tokens * (4 * 8 + 4 * (2 + 8 + 8) + 8 * 4 + 2 * 4 * 6)
    assert counts["attention"] == 3 * 2 * tokens * 16 * (2 + 8)
    assert counts["total"] == counts["projections"] + counts["attention"] + counts["fft"] > 0


def test_sizes_from_a_named_arch_with_explicit_flags_winning():
    args = harness.parse_args(["--arch", "mega_lm_enwik8_base", "--layers", "1"])
    assert (args.layers, args.embed_dim, args.zdim, args.hdim, args.ndim, args.ffn_dim) == (1, 512, 128, 1024, 16, 1024)
    assert (args.chunk_size, args.rel_pos_bias, args.norm_type, args.heads) == (2048, "rotary", "layernorm", 8)
    assert harness.parse_args([]).chunk_size == 128  # the default table's sizes
    assert harness.parse_args(["--arch", "mega_lm"]).chunk_size == 128  # full attention: chunk flag's default


def test_device_choice(monkeypatch, capsys):
    args = harness.parse_args([])
    assert args.device == ("cuda" if torch.cuda.is_available() else "cpu")  # auto
    assert args.tokens_per_step == harness.DEFAULT_TOKENS_PER_STEP[args.device]
    assert harness.parse_args(["--device", "cpu"]).device == "cpu"
    assert harness.parse_args(["--device", "cpu", "--tokens-per-step", "512"]).tokens_per_step == 512

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, like this one
    args = harness.parse_args(["--device", "auto"])
    assert (args.device, args.tokens_per_step, args.precision) == ("cpu", 8192, "fp32")
    assert harness.parse_args(["--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit) as error:
        harness.parse_args(["--device", "cuda"])
    assert error.value.code == 2  # argparse's usage error, before any worker starts
    assert "--device cuda: torch.cuda.is_available() is False" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        harness.parse_args(["--precision", "fp16"])
    assert "--precision fp16 needs --device cuda" in capsys.readouterr().err

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # parsing alone touches no GPU
    args = harness.parse_args([])
    assert (args.device, args.tokens_per_step, args.precision) == ("cuda", 32768, "bf16")  # what GPUs train in
    assert harness.parse_args(["--device", "cuda"]).device == "cuda"
    assert harness.parse_args(["--precision", "fp16"]).precision == "fp16"
    assert harness.parse_args(["--precision", "fp32"]).precision == "fp32"
    assert harness.parse_args(["--device", "cpu"]).precision == "fp32"


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_training_step_runs_in_the_precision(precision, dtype):
    """The forward pass under autocast (CPU here: bfloat16), the backward pass reaching the float32 weights."""
    model = nn.Linear(4, 4)
    seen = []
    model.register_forward_hook(lambda module, inputs, out: seen.append(out.dtype))
    harness.train_step(model, torch.randn(2, 4), precision)
    assert seen == [dtype] and model.weight.grad.dtype == torch.float32
    assert harness.matmul_rate([8, 4, 4], repeats=1, precision=precision)["gflops"] > 0


def test_sdpa_backend_names():
    assert profiling.sdpa_backend(["aten::linear", "aten::_scaled_dot_product_efficient_attention"]) == "efficient"
    assert profiling.sdpa_backend(["aten::_scaled_dot_product_flash_attention",
                                   "aten::_scaled_dot_product_attention_math"]) == "flash+math"
    assert profiling.sdpa_backend(["aten::_scaled_dot_product_flash_attention_for_cpu"]) == "flash_cpu"
    assert profiling.sdpa_backend(["aten::_scaled_dot_product_cudnn_attention"]) == "cudnn"
    assert profiling.sdpa_backend(["aten::bmm"]) == "none"
    assert profiling.sdpa_backend(["_SoftmaxAttentionBlocks", "aten::bmm"]) == "none (blocked CPU kernel)"


def test_busiest_kernels_on_cuda_are_device_kernels_by_device_time():
    """The CUDA branch, on recorded events: kernels (device events) by their own GPU time, not the CPU
    operators that launched them."""
    def event(key, device_type, device_time=0.0, cpu_time=0.0):
        return SimpleNamespace(key=key, device_type=device_type, self_device_time_total=device_time,
                               self_cpu_time_total=cpu_time)

    events = [event("aten::mm", DeviceType.CPU, cpu_time=50.0),
              event("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", DeviceType.CUDA, device_time=30.0),
              event("fmha_cutlassF_bf16_aligned_64x64_rf_sm80", DeviceType.CUDA, device_time=60.0),
              event("Memset (Device)", DeviceType.CUDA, device_time=10.0)]
    assert profiling.busiest(events, "cuda", top=2) == [["fmha_cutlassF_bf16_aligned_64x64_rf_sm80", 0.6],
                                                         ["sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n", 0.3]]
    assert profiling.busiest(events, "cpu") == [["aten::mm", 1.0]]


def test_profile_records_the_sdpa_backend_on_cpu():
    q = torch.randn(1, 2, 8, 16, requires_grad=True)
    record = profiling.profile(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward(),
                               "cpu")
    assert record["sdpa_backend"] in ("flash_cpu", "math")  # torch's choice; both are CPU backends
    check_profile(record, "cpu")
    assert profiling.sdpa_backend_of(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) in (
        "flash_cpu", "math")


def test_report_names_the_device():
    cpu = {"device": "cpu", "cpu": "Some CPU", "threads": 2}
    assert report.device_label(cpu) == "CPU Some CPU, 2 threads"
    assert report.device_label({"cpu": "Some CPU", "threads": 2}) == "CPU Some CPU, 2 threads"  # older JSON
    assert report.device_label(dict(cpu, device="cuda", gpu="NVIDIA H200")) == "GPU NVIDIA H200"


def test_report_names_the_precision():
    gpu = {"device": "cuda", "gpu": "NVIDIA H200", "tf32_matmul": False}
    assert report.precision_label({"machine": gpu, "settings": {"precision": "bf16"}}) == "bfloat16 autocast"
    assert report.precision_label({"machine": gpu, "settings": {"precision": "fp32"}}) == "float32, TF32 off"
    assert report.precision_label({"machine": {"device": "cpu"}, "settings": {}}) == "float32"  # older JSON


def test_unknown_arch_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        harness.parse_args(["--arch", "transformer_lm"])
    assert "not a registered Mega architecture" in capsys.readouterr().err


def test_fused_attention_comparison_counts_the_explicit_mask():
    """The fused-vs-explicit table on tiny shapes, untimed (memory is counted, so it can be
    judged): the explicit path keeps its B x 1 x L x L mask (and the where's B x 1 x 1 x L
    condition); the fused path keeps the L x L bias and one 8-column feature of q and k instead."""
    shapes = [fused_attention.Shape("full", 8, 64, -1, False, "right"),
              fused_attention.Shape("decoder", 2, 64, 16, True, "right")]
    rows = fused_attention.compare(shapes, "cpu", max_timed_scores=0)
    assert [(row["name"], row["path"]) for row in rows] == [(shape.name, path) for shape in shapes
                                                           for path in fused_attention.PATHS]
    explicit, fused = rows[0], rows[1]
    mask, condition, bias, feature = 8 * 64 * 64 * 4, 8 * 64, 64 * 64 * 4, 2 * 8 * 64 * 8 * 4
    assert (explicit["kept_mb"] - fused["kept_mb"]) * 2 ** 20 == mask + condition - bias - feature
    assert (explicit["mask"], fused["mask"], rows[3]["mask"]) == ("explicit", "bias + feature", "bias")
    assert "ms" not in explicit
    table = fused_attention.format_table(rows)
    assert table.count("\n| full |") == 1 and f"{explicit['kept_mb']:.1f} / {fused['kept_mb']:.1f}" in table


@pytest.mark.parametrize("device", DEVICES)
def test_paper_table_trains_the_three_text_presets_through_fairseq(tmp_path, device, capsys):
    """``python -m benchmarks paper`` with tiny settings (256-byte inputs, 1 + 2 steps): the three LRA Text
    presets train through fairseq's trainer in worker processes, and the table sets each ratio to the
    Transformer beside the paper's."""
    out = tmp_path / "paper.json"
    results = paper.main(["--device", device, "--length", "256", "--batch-size", "2", "--warmup-steps", "1",
                          "--steps", "2", "--threads", "1", "--timeout", "300", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["settings"]["device"] == results["machine"]["device"] == device
    rows = results["rows"]
    assert [row["arch"] for row in rows] == list(paper.ARCHS)
    for row in rows:
        assert row["updates"] == 3 and (row["batch_size"], row["length"]) == (2, 256)
        assert row["steps_per_s"] > 0 and row["cpu_s_per_step"] > 0 and row["peak_mb"] > 0 and row["parameters"] > 0
        assert row["loss"] > 0 and row["loss"] < float("inf")
    transformer = rows[-1]
    table = capsys.readouterr().out.split("### ", 1)[1]
    assert table.startswith(f"LRA Text, 256 bytes, batch 2: training through fairseq's Trainer "
                            f"({report.device_label(results['machine'])}; ")
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[0] == "| model | steps/s | peak MB | speed vs Transformer (paper) | memory vs Transformer (paper) |"
    assert [line.split(" | ")[0] for line in lines[1:]] == [f"| {arch}" for arch in paper.ARCHS]
    for line, row in zip(lines[1:], rows):
        speed = row["steps_per_s"] / transformer["steps_per_s"]
        memory = row["peak_mb"] / transformer["peak_mb"]
        assert results["ratios"][row["arch"]] == {"speed": speed, "memory": memory}
        cells = line.strip("| ").split(" | ")
        assert len(cells) == 5 and float(cells[1]) > 0 and float(cells[2]) >= 0
        expected = [f"{speed:.2f}x", f"{memory:.2f}x"]
        if row["arch"] in paper.PAPER:
            expected = [f"{value} ({claim}x)" for value, claim in zip(expected, paper.PAPER[row["arch"]])]
        assert cells[3:] == expected
    assert "(2.9x)" in lines[1] and "(0.31x)" in lines[1] and "(5.5x)" in lines[2] and "(0.13x)" in lines[2]
    assert ("ru_maxrss" in table) == (device == "cpu") and ("max_memory_allocated" in table) == (device == "cuda")


def test_paper_table_settings(monkeypatch, capsys):
    """A few hundred steps by default, a few with --quick; the Text recipe's batch on GPUs, fairseq's --amp there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = paper.parse_args([])
    assert (args.device, args.steps, args.warmup_steps, args.batch_size, args.length, args.precision) == (
        "cpu", 200, 5, 2, 4000, "fp32")
    args = paper.parse_args(["--quick", "--batch-size", "3"])
    assert (args.steps, args.warmup_steps, args.batch_size) == (5, 1, 3)
    with pytest.raises(SystemExit):
        paper.parse_args(["--precision", "amp"])
    assert "--precision amp needs --device cuda" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        paper.parse_args(["--steps", "0"])
    assert "--steps must be at least 1" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # parsing alone touches no GPU
    args = paper.parse_args([])
    assert (args.device, args.batch_size, args.precision) == ("cuda", 25, "amp")
    assert paper.fairseq_flags(dict(vars(args), data="DATA", arch=paper.BASELINE))[-1] == "--amp"
    assert "--cpu" in paper.fairseq_flags(dict(vars(paper.parse_args(["--device", "cpu"])), data="D", arch="x"))
