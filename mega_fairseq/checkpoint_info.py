"""What a checkpoint file holds.

    python -m mega_fairseq.checkpoint_info CHECKPOINT [--expect language_model|translation|classifier]

reads CHECKPOINT weights-only (:func:`mega_fairseq.checkpoint_loading.safe_load`) and prints which
kind of model it holds; with ``--expect``, a checkpoint of another kind, or a file that holds no
checkpoint, is an error (exit 2) naming the file, what it holds and what was expected. The
evaluation scripts run it before fairseq, so that such an error is the one thing they print.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .checkpoint_errors import (FAMILIES, TASK_FAMILIES, CheckpointError, CheckpointMismatchError, arch_family,
                                read)
from .checkpoint_loading import UnsafeCheckpointError


def _saved(state: dict, section: str) -> Dict:
    """The saved config section ("model", "task") as a dict; checkpoints of fairseq <= 0.10 hold
    one namespace of arguments instead."""
    config = state.get("cfg")
    saved = config.get(section) if isinstance(config, dict) else None
    if isinstance(saved, argparse.Namespace):  # a model without a config dataclass keeps its arguments
        saved = {"_name": getattr(saved, "_name", None) or getattr(saved, "arch", None)}
    if isinstance(saved, dict):
        return saved
    args = state.get("args")
    if args is not None:
        return {"_name": getattr(args, "arch" if section == "model" else "task", None)}
    return {}


@dataclass(frozen=True)
class Contents:
    arch: Optional[str]
    task: Optional[str]
    family: Optional[str]

    def __str__(self):
        kind = FAMILIES[self.family].description if self.family else "a model"
        return f"{kind} (--arch {self.arch}, task {self.task})"


def contents(state: dict) -> Contents:
    """What a checkpoint holds: the kind of model by its arch (by its task where the arch is not
    registered here, e.g. one of another --user-dir)."""
    arch, task = _saved(state, "model").get("_name"), _saved(state, "task").get("_name")
    return Contents(arch, task, arch_family(arch) or TASK_FAMILIES.get(task))


def check_contents(path, expected: str) -> Contents:
    """What ``path`` holds; a CheckpointMismatchError where it is a model of another kind than
    ``expected`` (one of :data:`FAMILIES`). A kind not known here is let through."""
    held = contents(read(path))
    if held.family is not None and held.family != expected:
        raise CheckpointMismatchError(str(held), FAMILIES[expected].expected, FAMILIES[held.family].hint, file=path)
    return held


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mega_fairseq.checkpoint_info", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--expect", choices=sorted(FAMILIES), help="the kind of model the caller needs")
    parser.add_argument("--prog", default="checkpoint_info", help="the name errors start with (the calling script)")
    args = parser.parse_args(argv)
    try:
        if not args.checkpoint.is_file():
            raise CheckpointError(f"no such checkpoint: {args.checkpoint}")
        held = check_contents(args.checkpoint, args.expect) if args.expect else contents(read(args.checkpoint))
    except (CheckpointError, UnsafeCheckpointError) as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{args.prog}: {args.checkpoint} holds {held}")


if __name__ == "__main__":
    main()
