#!/usr/bin/env python
"""Plot training and validation curves of several fairseq runs on one figure, from TensorBoard logs.

    python scripts/plot_curves.py data/demo/tensorboard/mega_lm data/demo/tensorboard/transformer_lm \\
        --out figures/demo_curves --tags train_inner/loss,valid/loss,valid/ppl

Each LOGDIR is one run's ``--tensorboard-logdir``: fairseq writes a subfolder per log
(``train_inner``: every --log-interval updates; ``train``: the epoch average; ``valid``: each
validation) with scalars such as loss, ppl, accuracy, lr. A tag is FOLDER/SCALAR; each gets one
panel, with loss against the number of updates, one line per run labelled by its folder. Event
files are read with TensorBoard's own reader (EventAccumulator); a folder without event files or
without a requested tag is an error naming it. --log-y draws the values on a logarithmic axis, where
curves that end close together (losses near their floor) stay apart. Writes PREFIX.png and PREFIX.svg
(--formats).
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from mega_fairseq.plotting import FORMATS, parse_formats, pyplot, save_figure

PROG = "plot_curves.py"
EVENTS = "events.out.tfevents.*"


class CurveError(Exception):
    """A run folder without event files or without a requested tag."""


def parse_list(text: str) -> List[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_tags(text: str) -> List[Tuple[str, str]]:
    tags = []
    for tag in parse_list(text):
        folder, _, scalar = tag.rpartition("/")
        if not folder or not scalar:
            raise argparse.ArgumentTypeError(f"a tag is FOLDER/SCALAR (e.g. valid/loss); got {tag!r}")
        tags.append((folder, scalar))
    if not tags:
        raise argparse.ArgumentTypeError("no tags given")
    return tags


def run_labels(logdirs: List[Path]) -> List[str]:
    """The run folders' names; parents are added until they differ (runs/a/tb, runs/b/tb -> a/tb, b/tb)."""
    parts = [logdir.resolve().parts for logdir in logdirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(logdir) for logdir in logdirs]


def read_scalars(logdir: Path, tags: List[Tuple[str, str]]) -> Dict[str, Tuple[List[int], List[float]]]:
    """{FOLDER/SCALAR: (steps, values)} of one run."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    if not logdir.is_dir():
        raise CurveError(f"{logdir}: no such folder")
    if not any(logdir.rglob(EVENTS)):
        raise CurveError(f"{logdir}: no TensorBoard event files ({EVENTS}) in this folder; "
                         f"pass the folder fairseq's --tensorboard-logdir named")
    curves = {}
    for folder in dict.fromkeys(folder for folder, _ in tags):
        path = logdir / folder
        if not (path.is_dir() and any(path.glob(EVENTS))):
            found = sorted({str(p.parent.relative_to(logdir)) for p in logdir.rglob(EVENTS)})
            raise CurveError(f"{path}: no event files (folders with event files in {logdir}: {', '.join(found)})")
        accumulator = EventAccumulator(str(path), size_guidance={SCALARS: 0})  # 0: keep every point
        accumulator.Reload()
        available = accumulator.Tags()[SCALARS]
        for scalar in (s for f, s in tags if f == folder):
            if scalar not in available:
                raise CurveError(f"{path}: no scalar {scalar!r} (it has: {', '.join(sorted(available)) or 'none'})")
            events = accumulator.Scalars(scalar)
            curves[f"{folder}/{scalar}"] = ([e.step for e in events], [e.value for e in events])
    return curves


def plot(runs: Dict[str, Dict[str, Tuple[List[int], List[float]]]], tags: List[Tuple[str, str]], prefix: Path,
         formats: List[str], log_y: bool = False) -> List[Path]:
    plt = pyplot()
    names = [f"{folder}/{scalar}" for folder, scalar in tags]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names):
        for label, curves in runs.items():
            steps, values = curves[name]
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("updates")
        ax.set_ylabel(name.rpartition("/")[2])
        ax.set_yscale("log" if log_y else "linear")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return save_figure(fig, prefix, formats)


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdirs", nargs="+", type=Path, metavar="LOGDIR",
                        help="one run's --tensorboard-logdir (holding train/, valid/, train_inner/)")
    parser.add_argument("--out", type=Path, default=Path("curves"),
                        help="output prefix: writes PREFIX.png, PREFIX.svg and nothing else (default: curves)")
    parser.add_argument("--tags", type=parse_tags, default=parse_tags("train/loss,valid/loss"),
                        help="comma-separated FOLDER/SCALAR (default: train/loss,valid/loss; train_inner/loss is "
                             "the loss every --log-interval updates, valid/accuracy for classifiers)")
    parser.add_argument("--formats", type=parse_formats, default=list(FORMATS), help="comma-separated: png,svg")
    parser.add_argument("--log-y", action="store_true", help="a logarithmic y axis (every value must be positive)")
    args = parser.parse_args(argv)
    missing = [str(logdir) for logdir in args.logdirs if not logdir.is_dir()]
    if missing:
        parser.error(f"no such folder: {', '.join(missing)}")

    try:
        runs = {label: read_scalars(logdir, args.tags) for label, logdir in zip(run_labels(args.logdirs), args.logdirs)}
    except CurveError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.log_y:
        for label, curves in runs.items():
            for name, (_, values) in curves.items():
                if any(value <= 0 for value in values):
                    print(f"{PROG}: error: --log-y: {label} {name} has values <= 0 (min {min(values):.4g})",
                          file=sys.stderr)
                    sys.exit(2)
    for label, curves in runs.items():
        print(f"{label}: " + ", ".join(f"{name} {len(steps)} points, last {values[-1]:.4g} at update {steps[-1]}"
                                       for name, (steps, values) in curves.items() if steps))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for target in plot(runs, args.tags, args.out, args.formats, args.log_y):
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
