"""What the plotting scripts (scripts/plot_ema.py, scripts/plot_curves.py) share: the output
formats, matplotlib without a display, and saving."""

import argparse
import logging
from pathlib import Path
from typing import List

FORMATS = ("png", "svg")


def parse_formats(text: str) -> List[str]:
    """--formats: a comma-separated list of FORMATS."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        raise argparse.ArgumentTypeError(f"formats are a comma-separated list of {', '.join(FORMATS)}; got {text!r}")
    return list(dict.fromkeys(formats))


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # importing fairseq turns on DEBUG logging
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, prefix: Path, formats: List[str]) -> List[Path]:
    """Writes PREFIX.<format> for each format, closes the figure; returns the files."""
    written = []
    for fmt in formats:
        target = prefix.with_name(f"{prefix.name}.{fmt}")
        fig.savefig(target, format=fmt, dpi=120)
        written.append(target)
    pyplot().close(fig)
    return written
