"""Smoke test of the benchmark (python -m benchmarks' main, with its worker processes): tiny sizes, every
measurement present and positive (timings are not judged), the precision it runs in, and what ran
(SDPA backend, kernels) recorded beside each figure."""

import json

import pytest
import torch

from benchmarks import harness, profiling, report
from helpers.benchmark_records import check_profile

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_benchmark_writes_every_measurement(tmp_path, device):
    out = tmp_path / "bench.json"
    results = harness.main([
        "--device", device,
        "--models", "mega_chunk", "--lengths", "64", "--chunk-lengths", "128", "--layers", "1",
        "--embed-dim", "16", "--z-dim", "8", "--hidden-dim", "16", "--n-dim", "2", "--ffn-embed-dim", "16",
        "--chunk-size", "32", "--heads", "2", "--tokens-per-step", "1024", "--repeats", "1", "--timing-workers", "2",
        "--decode-contexts", "8", "40", "--decode-steps", "4", "--beam-size", "2", "--beam-batch", "3",
        "--beam-lengths", "2", "5", "--threads", "1", "--memory-jobs", "2", "--timeout", "120", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert {"machine", "sizes", "settings", "train", "flops", "matmul", "decode", "beam_search", "ratios"} <= set(results)
    assert results["settings"]["timing_workers"] == 2
    assert results["settings"]["device"] == results["machine"]["device"] == device
    assert results["settings"]["precision"] == harness.DEFAULT_PRECISION[device]
    assert ("gpu" in results["machine"]) == (device == "cuda")
    label = report.device_label(results["machine"])
    assert label == (f"GPU {torch.cuda.get_device_name()}" if device == "cuda"
                     else f"CPU {results['machine']['cpu']}, 1 thread")
    text = report.format_report(results)
    assert text.count(label) == 5  # training, FLOP, decoding, beam search and what-ran headings
    assert text.count(f"({report.precision_label(results)})") == 3  # training, decoding and beam search headings
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
    for row in results["decode"]:
        assert results["ratios"][f"decode_mega_chunk_speedup_vs_fairseq_transformer@{row['context']}"] == \
            row["fairseq_transformer_ms_per_token"] / row["mega_chunk_ms_per_token"]
    assert [(row["length"], row["beam"], row["batch"]) for row in results["beam_search"]] == [(2, 2, 3), (5, 2, 3)]
    for row in results["beam_search"]:
        assert row["mega_chunk_tokens_per_s"] > 0 and row["fairseq_transformer_tokens_per_s"] > 0
        assert results["ratios"][f"beam_search_mega_chunk_speedup_vs_fairseq_transformer@{row['length']}"] > 0
        assert f"| {row['length']} | {row['mega_chunk_tokens_per_s']:.0f} |" in text
