"""The benchmark's report: ratios between measurements, the markdown tables and the plot."""

import logging
from typing import Dict, List, Optional

from .cases import ALL_MODELS, CHUNKED_MEGA_MODELS, mega_training_flops


def by_key(rows: List[dict]) -> Dict[tuple, dict]:
    return {(row["model"], row["length"]): row for row in rows}


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a and b else None


def compute_ratios(train: Dict[tuple, dict], decode: List[dict], lengths: List[int],
                   beam_search: Optional[List[dict]] = None,
                   translation_beam_search: Optional[List[dict]] = None) -> Dict[str, Optional[float]]:
    """Speed-ups (other model's time / Mega's time), memory fractions and length scaling."""

    def time_of(model, length):
        return train.get((model, length), {}).get("ms_per_1k_tokens")

    def memory_of(model, length):
        return train.get((model, length), {}).get("peak_mb")

    def memory_per_token(model, length):
        memory, tokens = memory_of(model, length), train.get((model, length), {}).get("tokens")
        return memory / tokens if memory is not None and tokens else None

    ratios = {}
    for length in lengths:
        ratios[f"mega_chunk_speedup_vs_hf_mega_chunk@{length}"] = ratio(time_of("hf_mega_chunk", length),
                                                                        time_of("mega_chunk", length))
        ratios[f"mega_speedup_vs_hf_mega@{length}"] = ratio(time_of("hf_mega", length), time_of("mega", length))
        ratios[f"mega_chunk_speedup_vs_torch_transformer@{length}"] = ratio(time_of("torch_transformer", length),
                                                                            time_of("mega_chunk", length))
        ratios[f"mega_time_vs_torch_transformer@{length}"] = ratio(time_of("mega", length),
                                                                   time_of("torch_transformer", length))
        ratios[f"mega_chunk_memory_vs_hf_mega_chunk@{length}"] = ratio(memory_of("mega_chunk", length),
                                                                       memory_of("hf_mega_chunk", length))
    base = min(lengths)
    for model in ALL_MODELS:
        for length in sorted({key[1] for key in train if key[0] == model}):
            if length != base:
                ratios[f"{model}_time_per_token@{length}_vs@{base}"] = ratio(time_of(model, length),
                                                                            time_of(model, base))
                ratios[f"{model}_memory_per_token@{length}_vs@{base}"] = ratio(memory_per_token(model, length),
                                                                              memory_per_token(model, base))
    for row in decode:
        ratios[f"decode_mega_chunk_speedup_vs_fairseq_transformer@{row['context']}"] = ratio(
            row["fairseq_transformer_ms_per_token"], row["mega_chunk_ms_per_token"])
    if len(decode) > 1:
        first, last = decode[0], decode[-1]
        for key in ("mega_chunk_ms_per_token", "fairseq_transformer_ms_per_token"):
            ratios[f"decode_{key.replace('_ms_per_token', '')}@{last['context']}_vs@{first['context']}"] = ratio(
                last[key], first[key])
    for row in beam_search or []:
        ratios[f"beam_search_mega_chunk_speedup_vs_fairseq_transformer@{row['length']}"] = ratio(
            row["mega_chunk_tokens_per_s"], row["fairseq_transformer_tokens_per_s"])
    for row in translation_beam_search or []:
        ratios[f"translation_beam_search_mega_speedup_vs_fairseq_transformer@{row['length']}"] = ratio(
            row["mega_tokens_per_s"], row["fairseq_transformer_tokens_per_s"])
    return ratios


def device_label(machine: dict) -> str:
    """Where the models ran, for headings and titles: the GPU's name on CUDA, else the CPU model
    and thread count (results written before the device was recorded ran on CPU)."""
    if machine.get("device") == "cuda":
        return f"GPU {machine.get('gpu', 'unknown')}"
    threads = machine.get("threads")
    return f"CPU {machine.get('cpu') or 'unknown'}, {threads} thread{'' if threads == 1 else 's'}"


PRECISION_LABELS = {"fp32": "float32", "bf16": "bfloat16 autocast", "fp16": "float16 autocast"}
# kernels named in the report's table (all of them are in the JSON), and their names' length
REPORTED_KERNELS = 3
KERNEL_NAME_CHARS = 70


def precision_label(results: dict) -> str:
    """What the models computed in; on CUDA float32 also says whether matmuls used TF32
    (results written before the precision was recorded ran in float32)."""
    precision = results.get("settings", {}).get("precision", "fp32")
    machine = results.get("machine", {})
    label = PRECISION_LABELS[precision]
    if precision == "fp32" and machine.get("device") == "cuda":
        label += f", TF32 {'on' if machine.get('tf32_matmul') else 'off'}"
    return label


def _fmt(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _kernels(kernels: List[list]) -> str:
    """'name share%, ...' of the busiest kernels, long (templated) names shortened."""
    def short(name: str) -> str:
        return name if len(name) <= KERNEL_NAME_CHARS else name[:KERNEL_NAME_CHARS - 3] + "..."

    return ", ".join(f"`{short(name)}` {100 * share:.0f}%" for name, share in kernels[:REPORTED_KERNELS])


def what_ran(results: dict, device: str) -> List[str]:
    """The table of what ran for each figure: SDPA backend and busiest kernels (results written
    before they were recorded have none: no table)."""
    rows = [(f"train {row['model']} L={row['length']}", row) for row in results["train"] if "kernels" in row]
    rows += [(f"matmul {' x '.join(map(str, row['shape']))}", dict(row, sdpa_backend="-"))
             for row in results.get("matmul", []) if "kernels" in row]
    rows += [(f"decode {model} context {row['context']}", profile) for row in results.get("decode", [])
             for model, profile in row.get("profiles", {}).items()]
    if not rows:
        return []
    time = "CUDA kernels, share of GPU time" if results["machine"].get("device") == "cuda" else \
        "aten operators, share of CPU time"
    lines = ["", f"## What ran on {device}: SDPA backend and busiest kernels ({time}) of one profiled step", "",
             "| measurement | SDPA backend | busiest kernels |", "|---|---|---|"]
    lines += [f"| {label} | {row['sdpa_backend']} | {_kernels(row['kernels'])} |" for label, row in rows]
    return lines


def format_report(results: dict) -> str:
    train = by_key(results["train"])
    models = [m for m in ALL_MODELS if any(key[0] == m for key in train)]
    lengths = sorted({key[1] for key in train})
    machine = results.get("machine", {})
    device = device_label(machine)
    memory = "CUDA allocator" if machine.get("device") == "cuda" else "resident set"
    lines = [f"## Training on {device} ({precision_label(results)}): forward + backward, ms per 1K tokens "
             f"(peak MB of one step, {memory})", "",
             "| L | B | " + " | ".join(models) + " |", "|---" * (len(models) + 2) + "|"]
    for length in lengths:
        cells = []
        for model in models:
            row = train.get((model, length))
            cells.append("-" if row is None else f"{_fmt(row['ms_per_1k_tokens'])} ({_fmt(row.get('peak_mb'), 0)})")
        batch = next(row["batch"] for key, row in train.items() if key[1] == length)
        lines.append(f"| {length} | {batch} | " + " | ".join(cells) + " |")
    if results.get("flops"):
        lines += ["", f"## Mega-chunk training step on {device}: counted FLOPs and achieved rate", "",
                  "| L | model | EMA path | GFLOP per step (proj / attn / ema) | GFLOP/s | fraction of matmul rate |",
                  "|---|---|---|---|---|---|"]
        reference = results["matmul"][0]["gflops"] if results.get("matmul") else None
        for row in sorted(results["flops"], key=lambda row: row["length"]):
            lines.append(f"| {row['length']} | {row.get('model', 'mega_chunk')} | {row['ema_path']} | "
                         f"{_fmt(row['total_gflop'])} "
                         f"({_fmt(row['projections_gflop'])} / {_fmt(row['attention_gflop'])} / "
                         f"{_fmt(row['ema_gflop'])}) | {_fmt(row['gflops'])} | "
                         f"{_fmt(ratio(row['gflops'], reference), 2)} |")
        for mm in results.get("matmul", []):
            lines.append(f"\nplain torch.matmul {' x '.join(map(str, mm['shape']))}: {_fmt(mm['gflops'])} GFLOP/s")
    if results.get("decode"):
        lines += ["", f"## Decoding on {device} ({precision_label(results)}): ms per token after a context of L "
                      "tokens (batch 1)", "",
                  "| context | Mega-chunk (incremental) | fairseq transformer_lm (kv cache) "
                  "| transformer / Mega-chunk |",
                  "|---|---|---|---|"]
        for row in results["decode"]:
            mega, transformer = row["mega_chunk_ms_per_token"], row["fairseq_transformer_ms_per_token"]
            lines.append(f"| {row['context']} | {_fmt(mega, 2)} | {_fmt(transformer, 2)} | "
                         f"{_fmt(ratio(transformer, mega), 2)} |")
    if results.get("beam_search"):
        first = results["beam_search"][0]
        lines += ["", f"## Beam search on {device} ({precision_label(results)}): fairseq's SequenceGenerator, beam "
                      f"{first['beam']}, {first['batch']} sequences of L tokens decoded at once, tokens per second", "",
                  "| L | Mega-chunk | fairseq transformer_lm | Mega-chunk / transformer |", "|---|---|---|---|"]
        lines += _rate_rows(results["beam_search"], "mega_chunk")
    if results.get("translation_beam_search"):
        first = results["translation_beam_search"][0]
        lines += ["", f"## Translation beam search on {device} ({precision_label(results)}): fairseq's "
                      f"SequenceGenerator, beam {first['beam']}, {first['batch']} sentences of "
                      f"{first['source_length']} source tokens, L target tokens each, tokens per second", "",
                  "| L | Mega (full attention) | fairseq transformer | Mega / transformer |", "|---|---|---|---|"]
        lines += _rate_rows(results["translation_beam_search"], "mega")
    lines += what_ran(results, device)
    lines += ["", "## Ratios", ""]
    lines += [f"- {key}: {_fmt(value, 2)}" for key, value in results["ratios"].items() if value is not None]
    return "\n".join(lines)


def _rate_rows(rows: List[dict], mega: str) -> List[str]:
    """The table rows of a beam search: length, Mega's (model ``mega``) and the transformer's tokens per second,
    their ratio."""
    lines = []
    for row in rows:
        rate, transformer = row[f"{mega}_tokens_per_s"], row["fairseq_transformer_tokens_per_s"]
        lines.append(f"| {row['length']} | {_fmt(rate, 0)} | {_fmt(transformer, 0)} | "
                     f"{_fmt(ratio(rate, transformer), 2)} |")
    return lines


def plot(results: dict, path: str) -> bool:
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq sets the root logger to DEBUG
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot drawn (pip install matplotlib)")
        return False
    train = by_key(results["train"])
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in ALL_MODELS:
        rows = sorted((row for key, row in train.items() if key[0] == model), key=lambda row: row["length"])
        if not rows:
            continue
        lengths = [row["length"] for row in rows]
        time_axis.plot(lengths, [row["ms_per_1k_tokens"] for row in rows], marker="o", label=model)
        memory = [(row["length"], row["peak_mb"]) for row in rows if row.get("peak_mb")]
        if memory:
            memory_axis.plot(*zip(*memory), marker="o", label=model)
    for axis, label in ((time_axis, "forward+backward ms per 1K tokens"), (memory_axis, "peak MB of one step")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length L")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    time_axis.legend(fontsize=8)
    figure.suptitle(f"{device_label(results['machine'])}, {precision_label(results)}, "
                    f"{results['settings']['tokens_per_step']} tokens per step")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def flops_rows(results: dict, sizes: dict) -> List[dict]:
    rows = []
    for row in results["train"]:
        if row["model"] not in CHUNKED_MEGA_MODELS:
            continue
        path = row.get("ema_path") or "fft"  # results written before the EMA had paths ran the FFT
        counts = mega_training_flops(sizes, row["batch"], row["length"], sizes["chunk_size"], path)
        rows.append({"model": row["model"], "length": row["length"], "ema_path": path,
                     "gflops": counts["total"] / row["step_s"] / 1e9,
                     **{f"{kind}_gflop": value / 1e9 for kind, value in counts.items()}})
    return rows


