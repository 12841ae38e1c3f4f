#!/usr/bin/env python
"""Plot what range of context each Mega layer's EMA smooths over, from a checkpoint.

    python scripts/plot_ema.py runs/lm/checkpoints/checkpoint_best.pt --out figures/lm_ema

Works for every model family (LM decoder, translation encoder and decoder, classifier encoder):
every EMA in the checkpoint (the parameters alpha, delta, beta, eta, omega of a module named
``...move``) is rebuilt as a ``MultiDimensionalDampedEMA`` and measured through its own methods.
A bidirectional EMA (encoders) is shown as two directions, forward (left-to-right) and backward.
Per layer and direction:

- decay: q = 1 - alpha * delta of each (channel, expansion dim j) as its time constant
  tau = -1 / ln q (q^t = exp(-t / tau); about 1 / (1 - q) for q near 1), sorted;
- window: the number of kernel taps that carry a channel's kernel K[t] = sum_j eta_j alpha_j
  beta_j q_j^t / sqrt(N): the smallest W with |K[t]| < THRESHOLD * max |K| for every t >= W.
  One exponential w q^t has W = floor(ln THRESHOLD / ln q) + 1 (q = 0.9, 1%: 44 steps). Kernels are
  computed up to --max-length taps (or the model's EMA truncation, if shorter); a window that
  reaches --max-length is printed as ">=" that length.

Writes PREFIX.png and PREFIX.svg (--formats) and prints a table per layer and direction: median
decay q, median and maximum window over the channels. The checkpoint is read with torch's
weights-only unpickler (mega_fairseq allow-lists what fairseq checkpoints hold).
"""

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import torch

from mega_fairseq.plotting import FORMATS, parse_formats, pyplot, save_figure

PROG = "plot_ema.py"
EMA_PARAMS = ("alpha", "delta", "beta", "eta", "omega")
Q_TICKS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998,
           0.9999, 0.99999, 0.999999]
CHANNEL_BLOCK = 256  # channels per kernel computation: memory is CHANNEL_BLOCK x max_length floats


class Direction(NamedTuple):
    layer: str  # e.g. "decoder.layers.0"
    direction: str  # "forward" or "backward"
    log_q: torch.Tensor  # D x N, log of the decay
    windows: torch.Tensor  # D, taps per channel
    clipped: torch.Tensor  # D, True where the window reached the computed length


def fail(message: str):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def load_checkpoint(path: Path) -> dict:
    """Weights-only load; mega_fairseq is imported here (it imports fairseq, which takes seconds)."""
    import mega_fairseq  # noqa: F401  (allow-lists argparse.Namespace and numpy scalars)
    from mega_fairseq.checkpoint_loading import UnsafeCheckpointError, safe_load

    try:
        return safe_load(path)
    except UnsafeCheckpointError as error:
        fail(str(error))


def find_emas(state_dict: Dict[str, torch.Tensor], path: Path) -> Dict[str, Dict[str, torch.Tensor]]:
    """{module prefix: {parameter: tensor}} for every EMA, in state-dict (layer) order."""
    emas = {}
    for name in state_dict:
        prefix, _, leaf = name.rpartition(".")
        if leaf == "alpha" and all(f"{prefix}.{p}" in state_dict for p in EMA_PARAMS):
            emas[prefix] = {p: state_dict[f"{prefix}.{p}"].float() for p in EMA_PARAMS}
    if not emas:
        if any(name.endswith(".move.gamma") for name in state_dict):
            fail(f"{path}: parameter names of the official Mega code; convert it first with "
                 f"scripts/convert_official_checkpoint.py")
        fail(f"{path}: no EMA parameters (a module with {', '.join(EMA_PARAMS)}); is it a Mega checkpoint?")
    return emas


def layer_name(prefix: str) -> str:
    """decoder.stack.layers.0.mega_layer.move -> decoder.layers.0"""
    return re.sub(r"\.(stack|mega_layer|move)(?=\.|$)", "", prefix)


def model_config(checkpoint: dict) -> dict:
    """The model's settings: fairseq >= 0.10 stores cfg["model"] (a dict, or a Namespace for argparse-era
    models); older checkpoints store args."""
    model = (checkpoint.get("cfg") or {}).get("model") or checkpoint.get("args")
    return model if isinstance(model, dict) else vars(model) if model is not None else {}


def truncation_of(model: dict) -> Optional[int]:
    """The EMA kernel taps the model keeps (None: all), by the layer config's rule."""
    from mega_fairseq.modules import MegaLayerConfig

    return MegaLayerConfig(truncation_length=int(model.get("truncation_length") or 0)).truncation


def ema_module(params: Dict[str, torch.Tensor], rows: slice, truncation: Optional[int]):
    """A one-directional MultiDimensionalDampedEMA holding the given rows of alpha, delta, beta, eta."""
    from mega_fairseq.modules.ema import MultiDimensionalDampedEMA

    tensors = {p: params[p][rows] for p in ("alpha", "delta", "beta", "eta")}
    channels, ndim = tensors["alpha"].shape
    module = MultiDimensionalDampedEMA(channels, ndim=ndim, truncation=truncation)
    module.load_state_dict({**tensors, "omega": torch.zeros(channels)})
    return module


def kernel_windows(module, length: int, threshold: float) -> torch.Tensor:
    """Per channel: the smallest W with |K[t]| < threshold * max |K| for all t >= W (0 for a zero kernel)."""
    with torch.no_grad():
        magnitude = module.kernel(length).abs()  # D x L'
    peak = magnitude.max(dim=-1, keepdim=True).values  # D x 1
    taps = torch.arange(1, magnitude.size(-1) + 1)
    windows = ((magnitude >= threshold * peak) * taps).max(dim=-1).values  # D
    return windows.masked_fill(peak.squeeze(-1) == 0, 0)


def measure(prefix: str, params: Dict[str, torch.Tensor], max_length: int, threshold: float,
            truncation: Optional[int]) -> List[Direction]:
    rows, ndim = params["alpha"].shape
    dim = params["omega"].numel()
    if rows not in (dim, 2 * dim) or any(params[p].shape != (rows, ndim) for p in ("delta", "beta", "eta")):
        fail(f"{prefix}: EMA parameters of inconsistent shapes "
             f"({', '.join(f'{p} {tuple(params[p].shape)}' for p in EMA_PARAMS)})")
    # a bidirectional EMA keeps the forward kernel's rows first, then the backward one's (MultiDimensionalDampedEMA)
    names = ["forward", "backward"] if rows == 2 * dim else ["forward"]
    length = max_length if truncation is None else min(max_length, truncation)
    directions = []
    for index, direction in enumerate(names):
        log_q, windows = [], []
        for start in range(index * dim, (index + 1) * dim, CHANNEL_BLOCK):
            module = ema_module(params, slice(start, min(start + CHANNEL_BLOCK, (index + 1) * dim)), truncation)
            with torch.no_grad():
                log_q.append(module.coefficients().log_q)
            windows.append(kernel_windows(module, length, threshold))
        windows = torch.cat(windows)
        clipped = (windows >= max_length) if length == max_length else torch.zeros_like(windows, dtype=torch.bool)
        directions.append(Direction(layer_name(prefix), direction, torch.cat(log_q), windows, clipped))
    return directions


def window_text(windows: torch.Tensor, clipped: torch.Tensor, pick) -> str:
    value = pick(windows.double())
    reached = bool(clipped.any()) and value >= windows.max()
    return f"{'>=' if reached else ''}{value:g}"


def table(directions: List[Direction]) -> str:
    width = max(len("layer"), *(len(d.layer) for d in directions))
    lines = [f"{'layer':<{width}}  direction  median q  median window  max window"]
    for d in directions:
        median_q = torch.exp(d.log_q.double()).quantile(0.5).item()
        median = window_text(d.windows, d.clipped, lambda w: w.quantile(0.5).item())
        largest = window_text(d.windows, d.clipped, lambda w: w.max().item())
        lines.append(f"{d.layer:<{width}}  {d.direction:<9}  {median_q:8.4f}  {median:>13}  {largest:>10}")
    return "\n".join(lines)


def plot(directions: List[Direction], title: str, threshold: float, prefix: Path, formats):
    plt = pyplot()
    import numpy as np
    from matplotlib import ticker

    stacks = list(dict.fromkeys(d.layer.split(".")[0] for d in directions))  # encoder, decoder, ...
    fig, axes = plt.subplots(len(stacks), 2, figsize=(13, 4.2 * len(stacks)), squeeze=False,
                             layout="constrained")
    for row, stack in enumerate(stacks):
        members = [d for d in directions if d.layer.split(".")[0] == stack]
        layers = list(dict.fromkeys(d.layer for d in members))
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(layers)))
        tau_ax, window_ax = axes[row]
        for d in members:
            color = colors[layers.index(d.layer)]
            style = "-" if d.direction == "forward" else "--"
            label = d.layer if d.direction == "forward" else f"{d.layer} (backward)"
            tau = np.sort((-1.0 / d.log_q.double()).flatten().numpy())
            tau_ax.plot(np.linspace(0, 1, tau.size), tau, style, color=color, label=label)
            windows = np.sort(d.windows.numpy())
            window_ax.plot(np.linspace(0, 1, windows.size), np.maximum(windows, 1), style, color=color, label=label)
        tau_ax.set_xlabel("fraction of (channel, j) dimensions, sorted")
        tau_ax.set_ylabel("time constant -1/ln q (steps)")
        tau_ax.set_title(f"{stack}: decay q = 1 - alpha*delta per EMA dimension")
        window_ax.set_xlabel("fraction of channels, sorted")
        window_ax.set_ylabel(f"window (steps to {100 * threshold:g}% of peak)")
        window_ax.set_title(f"{stack}: context each channel's EMA kernel covers")
        window_ax.legend(fontsize="small", ncol=2 if len(members) > 8 else 1)
        for ax in (tau_ax, window_ax):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ticker.LogFormatter())
            ax.yaxis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
            ax.grid(True, which="both", alpha=0.3)
        q_axis = tau_ax.secondary_yaxis("right", functions=(lambda t: np.exp(-1.0 / np.maximum(t, 1e-9)),
                                                            lambda q: -1.0 / np.log(np.clip(q, 1e-12, 1 - 1e-12))))
        q_axis.yaxis.set_major_locator(ticker.FixedLocator(Q_TICKS))
        q_axis.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        q_axis.yaxis.set_minor_locator(ticker.NullLocator())
        q_axis.set_ylabel("q")
    fig.suptitle(title)
    return save_figure(fig, prefix, formats)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a mega_fairseq checkpoint (LM, translation or classifier)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output prefix: writes PREFIX.png, PREFIX.svg and nothing else "
                             "(default: the checkpoint's path without .pt, plus _ema)")
    parser.add_argument("--formats", type=parse_formats, default=list(FORMATS), help="comma-separated: png,svg")
    parser.add_argument("--max-length", type=int, default=65536,
                        help="kernel taps computed per channel; longer windows print as >= this (default 65536)")
    parser.add_argument("--threshold", type=float, default=0.01,
                        help="the window ends where |K| stays below this fraction of its peak (default 0.01)")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"no such checkpoint: {args.checkpoint}")
    if args.max_length < 1:
        parser.error("--max-length must be positive")
    if not 0 < args.threshold < 1:
        parser.error("--threshold must be between 0 and 1")
    prefix = args.out if args.out is not None else args.checkpoint.with_name(f"{args.checkpoint.stem}_ema")

    checkpoint = load_checkpoint(args.checkpoint)
    state_dict = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        fail(f"{args.checkpoint}: not a fairseq checkpoint (no 'model' state dict)")
    model = model_config(checkpoint)
    truncation = truncation_of(model)
    directions = []
    for module_prefix, params in find_emas(state_dict, args.checkpoint).items():
        directions.extend(measure(module_prefix, params, args.max_length, args.threshold, truncation))

    print(table(directions))
    if truncation is not None:
        print(f"EMA truncation: {truncation} taps (no window is longer)")
    arch = model.get("_name") or model.get("arch")
    title = f"{args.checkpoint}" + (f" ({arch})" if arch else "")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for target in plot(directions, title, args.threshold, prefix, args.formats):
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
