#!/usr/bin/env python
"""Average the parameters of fairseq checkpoints (fairseq's scripts/average_checkpoints.py, which
the installed fairseq package does not ship).

    python scripts/average_checkpoints.py --inputs runs/wmt/checkpoints --num-epoch-checkpoints 5 \\
        --output runs/wmt/checkpoints/averaged_last5_epochs.pt
    python scripts/average_checkpoints.py --inputs a.pt b.pt c.pt --output avg.pt

--num-epoch-checkpoints K takes the K highest-numbered checkpointN.pt of the folder given as
--inputs, --num-update-checkpoints K the K highest-numbered checkpoint_E_U.pt (by update U);
--checkpoint-upper-bound N ignores those numbered above N. Without either, every file given is
averaged. The `model` tensors are averaged (in float32 for half-precision ones, stored back in
their own dtype; integer buffers by floor division, as fairseq does); everything else (config,
optimizer state, training position) is kept from the newest checkpoint: the highest-numbered one,
or the first file given. Checkpoints are read with torch's weights-only unpickler (mega_fairseq
allow-lists what fairseq checkpoints hold); the output is written to a temporary file beside it
and renamed into place, and is never one of the inputs.
"""

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import torch

PROG = "average_checkpoints.py"


def allow_fairseq_checkpoints():
    """Import mega_fairseq: it allow-lists the non-tensor classes fairseq checkpoints hold for
    torch's weights-only unpickler. Imported only once the arguments are checked: it imports
    fairseq, which takes seconds."""
    import mega_fairseq  # noqa: F401


def fail(message: str):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(2)


def last_n_checkpoints(folder: Path, n: int, update_based: bool, upper_bound=None) -> list:
    """The n newest epoch (checkpointN.pt) or update (checkpoint_E_U.pt) checkpoints, newest first."""
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt" if update_based else r"checkpoint(\d+)\.pt")
    entries = []
    for name in os.listdir(folder):
        m = pattern.fullmatch(name)
        if m is not None and (upper_bound is None or int(m.group(1)) <= upper_bound):
            entries.append((int(m.group(1)), name))
    kind = "update (checkpoint_E_U.pt)" if update_based else "epoch (checkpointN.pt)"
    if len(entries) < n:
        bound = f" numbered at most {upper_bound}" if upper_bound is not None else ""
        fail(f"{folder} has {len(entries)} {kind} checkpoints{bound}, need {n}")
    return [folder / name for _, name in sorted(entries, reverse=True)[:n]]


def load(path: Path) -> dict:
    allow_fairseq_checkpoints()
    from mega_fairseq.checkpoint_loading import UnsafeCheckpointError, safe_load

    try:
        state = safe_load(path)
    except UnsafeCheckpointError as e:
        fail(str(e))
    except Exception as e:  # noqa: BLE001  a truncated or foreign file
        fail(f"cannot load {path}: {e}")
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        fail(f"{path} is not a fairseq checkpoint (no 'model' state dict)")
    return state


def average_checkpoints(paths) -> dict:
    """The first checkpoint's state with its 'model' replaced by the mean over all of them."""
    allow_fairseq_checkpoints()
    new_state, sums, keys, dtypes = None, {}, None, {}
    for path in paths:
        state = load(path)
        model = state["model"]
        if keys is None:
            new_state, keys = state, list(model)
        elif list(model) != keys:
            fail(f"{path} has different parameters from {paths[0]}: "
                 f"{sorted(set(model) ^ set(keys))[:5]}")
        for k in keys:
            p = model[k]
            if not torch.is_tensor(p):
                fail(f"{path}: model entry {k!r} is not a tensor")
            if k in sums and p.shape != sums[k].shape:
                fail(f"{path}: {k} has shape {tuple(p.shape)}, {paths[0]} has {tuple(sums[k].shape)}")
            dtypes.setdefault(k, p.dtype)
            if p.dtype in (torch.float16, torch.bfloat16):
                p = p.float()
            if k not in sums:
                sums[k] = p.clone()
            else:
                sums[k] += p
        del state, model
    averaged = {}
    for k in keys:
        v = sums[k]
        if v.is_floating_point():
            v.div_(len(paths))
        else:
            v //= len(paths)
        averaged[k] = v.to(dtypes[k])
    new_state["model"] = averaged
    return new_state


def save_atomic(state: dict, output: Path):
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", nargs="+", required=True,
                        help="checkpoint files, or one folder with --num-epoch/update-checkpoints")
    parser.add_argument("--output", required=True, help="the averaged checkpoint")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--num-epoch-checkpoints", type=int, help="average the last K checkpointN.pt of the folder")
    group.add_argument("--num-update-checkpoints", type=int, help="average the last K checkpoint_E_U.pt of the folder")
    parser.add_argument("--checkpoint-upper-bound", type=int,
                        help="with --num-*-checkpoints: ignore checkpoints numbered above this epoch or update")
    args = parser.parse_args(argv)

    count = args.num_epoch_checkpoints or args.num_update_checkpoints
    if count is not None:
        if count < 1:
            fail("--num-epoch-checkpoints/--num-update-checkpoints must be at least 1")
        if len(args.inputs) != 1 or not Path(args.inputs[0]).is_dir():
            fail(f"--num-*-checkpoints needs one folder as --inputs, got: {' '.join(args.inputs)}")
        paths = last_n_checkpoints(Path(args.inputs[0]), count, args.num_update_checkpoints is not None,
                                   args.checkpoint_upper_bound)
    else:
        if args.checkpoint_upper_bound is not None:
            fail("--checkpoint-upper-bound needs --num-epoch-checkpoints or --num-update-checkpoints")
        paths = [Path(p) for p in args.inputs]
        for p in paths:
            if not p.is_file():
                fail(f"no such checkpoint: {p}" + (" (a folder needs --num-epoch-checkpoints or "
                                                    "--num-update-checkpoints)" if p.is_dir() else ""))
    output = Path(args.output)
    for p in paths:
        if os.path.abspath(p) == os.path.abspath(output) or (output.exists() and os.path.samefile(p, output)):
            fail(f"--output {output} is one of the inputs; choose another file")

    print(f"{PROG}: averaging {len(paths)} checkpoints: {', '.join(str(p) for p in paths)}", flush=True)
    save_atomic(average_checkpoints(paths), output)
    print(f"{PROG}: wrote {output}")


if __name__ == "__main__":
    main()
