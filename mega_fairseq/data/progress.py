"""Progress bars for long data preparation."""

import sys


def progress(iterable=None, **kwargs):
    """A tqdm bar on stderr, written also when stderr is a log file (there at most every 10 s, so a long run is
    never silent for minutes)."""
    from tqdm import tqdm

    return tqdm(iterable, file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 10, **kwargs)
