"""The benchmark's parts in this process: FLOP counts, names and sizes, the device and precision chosen,
what ran (SDPA backend, kernels) and the report's headings. The whole benchmark with its worker
processes: tests/cli/test_benchmark_cli.py."""

import dataclasses
import inspect
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.autograd import DeviceType

from benchmarks import cases, fused_attention, harness, profiling, report
from helpers.benchmark_records import check_profile
from mega_fairseq import models, modules
from mega_fairseq.modules import MegaLayerConfig


def test_flop_count_of_a_chunked_step():
    sizes = dict(layers=1, embed_dim=4, z_dim=2, hidden_dim=8, ffn_embed_dim=6, chunk_size=16)
    counts = cases.mega_training_flops(sizes, batch=3, length=32, chunk=16)
    tokens = 3 * 32
    assert counts["projections"] == 3 * 2 * tokens * (4 * 8 + 4 * (2 + 8 + 8) + 8 * 4 + 2 * 4 * 6)
    assert counts["attention"] == 3 * 2 * tokens * 16 * (2 + 8)
    assert counts["total"] == counts["projections"] + counts["attention"] + counts["fft"] > 0


def test_the_benchmark_speaks_the_librarys_names():
    """Sizes and their flags are MegaLayerConfig's option names (--z-dim, not --zdim), and no model
    of the benchmark shadows a class of the library."""
    given = dict(layers=1, embed_dim=8, z_dim=4, hidden_dim=12, n_dim=2, ffn_embed_dim=10, chunk_size=8,
                 normalization_type="rmsnorm", rel_pos_bias="rotary")
    assert given.keys() == cases.DEFAULT_SIZES.keys() and given.keys() <= {f.name for f in
                                                                          dataclasses.fields(MegaLayerConfig)}
    args = harness.parse_args([part for name, value in given.items() for part in (f"--{name.replace('_', '-')}",
                                                                                  str(value))])
    assert harness.model_sizes(args) == dict(given, heads=1)
    library = set(modules.__all__) | {name for module in vars(models).values() if inspect.ismodule(module)
                                      for name, value in vars(module).items() if inspect.isclass(value)}
    benchmark = {name for name, value in vars(cases).items() if inspect.isclass(value)
                 and value.__module__ == cases.__name__}
    assert benchmark and not benchmark & library, benchmark & library


def test_sizes_from_a_named_arch_with_explicit_flags_winning():
    args = harness.parse_args(["--arch", "mega_lm_enwik8_base", "--layers", "1"])
    assert (args.layers, args.embed_dim, args.z_dim, args.hidden_dim, args.n_dim, args.ffn_embed_dim) == \
        (1, 512, 128, 1024, 16, 1024)
    assert (args.chunk_size, args.rel_pos_bias, args.normalization_type, args.heads) == (2048, "rotary", "layernorm", 8)
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
