"""Smoke tests of the benchmarks (python -m benchmarks' main and python -m benchmarks paper, with their
worker processes): tiny sizes, every measurement present and positive (timings are not judged), the
precision it runs in, and what ran (SDPA backend, kernels) recorded beside each figure."""

import json

import pytest
import torch

from benchmarks import harness, paper, profiling, report
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
        "--beam-lengths", "2", "5", "--translation-beam-lengths", "3", "--source-length", "4", "--threads", "1",
        "--memory-jobs", "2", "--timeout", "120", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    expected = {"machine", "sizes", "settings", "train", "flops", "matmul", "decode", "beam_search",
                "translation_beam_search", "ratios"}
    assert expected <= set(results)
    assert results["settings"]["timing_workers"] == 2
    assert results["settings"]["device"] == results["machine"]["device"] == device
    assert results["settings"]["precision"] == harness.DEFAULT_PRECISION[device]
    assert ("gpu" in results["machine"]) == (device == "cuda")
    label = report.device_label(results["machine"])
    assert label == (f"GPU {torch.cuda.get_device_name()}" if device == "cuda"
                     else f"CPU {results['machine']['cpu']}, 1 thread")
    text = report.format_report(results)
    assert text.count(label) == 6  # training, FLOP, decoding, beam search, translation and what-ran headings
    assert text.count(f"({report.precision_label(results)})") == 4  # training, decoding and the beam searches
    assert [(row["model"], row["length"]) for row in results["train"]] == [("mega_chunk", 64), ("mega_chunk", 128)]
    for row in results["train"]:
        assert row["ema_path"] == "fft"  # both lengths are short of CHUNK_MIN_LENGTH
        assert row["batch"] * row["length"] == row["tokens"]
        assert row["ms_per_1k_tokens"] > 0 and row["step_s"] > 0 and row["peak_mb"] > 0
        check_profile(row, device)
        assert f"| train mega_chunk L={row['length']} | {row['sdpa_backend']} | `" in text
        if device == "cpu":  # softmax attention without dropout: Mega's blocked kernel, no SDPA
            assert row["sdpa_backend"] == "none (blocked CPU kernel)"
    assert all(row["gflops"] > 0 and row["total_gflop"] > 0 and row["ema_path"] == "fft" for row in results["flops"])
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
    [row] = results["translation_beam_search"]
    assert (row["length"], row["source_length"], row["beam"], row["batch"]) == (3, 4, 2, 3)
    assert row["mega_tokens_per_s"] > 0 and row["fairseq_transformer_tokens_per_s"] > 0
    assert results["ratios"]["translation_beam_search_mega_speedup_vs_fairseq_transformer@3"] == \
        row["mega_tokens_per_s"] / row["fairseq_transformer_tokens_per_s"]
    assert f"| 3 | {row['mega_tokens_per_s']:.0f} |" in text


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
