#!/usr/bin/env python
"""Convert a checkpoint of the official Mega code (facebookresearch/mega) to this plugin.

Renames the parameters (see mega_fairseq/checkpoint_conversion.py), keeps the training
arguments (fairseq turns them into a config when loading) and drops the optimizer state,
which refers to the old parameter order. The result loads with ``--user-dir mega_fairseq``:

    python scripts/convert_official_checkpoint.py wt103/model.pt wt103/converted.pt
    CHUNK=2048 SEGMENT=4096 STREAMS=10 scripts/eval_lm.sh wt103/converted.pt data/wikitext-103/bin

To fine-tune from it, pass ``--restore-file converted.pt --reset-optimizer``.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mega_fairseq  # noqa: E402,F401  (allow-lists the checkpoint's argparse.Namespace for safe loading)
from mega_fairseq.checkpoint_conversion import convert_official_state_dict  # noqa: E402
from mega_fairseq.checkpoint_loading import UnsafeCheckpointError, safe_load  # noqa: E402


def convert(source: Path, target: Path) -> dict:
    state = safe_load(source)
    if "model" not in state:
        raise SystemExit(f"{source}: no 'model' entry; is this a fairseq checkpoint?")
    args = state.get("args")
    if args is None:
        raise SystemExit(f"{source}: no training arguments ('args'); official Mega checkpoints have them")
    converted = {
        "args": args,
        "model": convert_official_state_dict(state["model"]),
        "optimizer_history": [{k: v for k, v in entry.items() if k != "optimizer"}
                              for entry in state.get("optimizer_history", [])],
        "extra_state": {"converted_from": str(source)},
        "last_optimizer_state": None,
    }
    torch.save(converted, target)
    return converted


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="official checkpoint (e.g. model.pt from the released zips)")
    parser.add_argument("target", type=Path, help="where to write the converted checkpoint")
    parser.add_argument("--force", action="store_true", help="overwrite an existing target")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"no such checkpoint: {args.source}")
    if args.target.exists() and not args.force:
        parser.error(f"{args.target} exists; pass --force to overwrite it")
    try:
        converted = convert(args.source, args.target)
    except UnsafeCheckpointError as error:
        sys.exit(f"convert_official_checkpoint.py: error: {error}")
    print(f"converted {len(converted['model'])} tensors ({converted['args'].arch}) -> {args.target}")


if __name__ == "__main__":
    main()
