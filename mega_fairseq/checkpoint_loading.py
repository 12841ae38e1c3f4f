"""Safe ``torch.load`` for fairseq checkpoints.

torch.load unpickles weights only by default and refuses other objects. Checkpoints from
fairseq <= 0.10 (the official Mega checkpoints among them) also hold an
``argparse.Namespace`` of arguments and numpy scalars and arrays (e.g. the best validation loss).
Rather than turning safe loading off, allow-list exactly those classes.

Every path that reads a checkpoint through fairseq (``--restore-file``,
``--finetune-from-model``, fairseq-generate, -interactive, -eval-lm, -validate and the scripts
built on them) goes through ``checkpoint_utils.load_checkpoint_to_cpu``; the plugin wraps it so
that a refused checkpoint (one holding, say, a pickled call to ``os.system``) is an error naming
the file (:class:`UnsafeCheckpointError`) instead of a bare unpickling traceback.
"""

import argparse
import pickle

import numpy as np
import torch


def fairseq_checkpoint_globals():
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        from numpy._core.multiarray import _reconstruct, scalar
    else:
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return [argparse.Namespace, scalar, _reconstruct, np.ndarray, np.dtype, *dtypes]


MIN_TORCH = "2.4"  # torch.serialization.add_safe_globals


def allow_fairseq_checkpoints():
    if not hasattr(torch.serialization, "add_safe_globals"):
        raise ImportError(f"mega_fairseq needs torch >= {MIN_TORCH} (safe checkpoint loading with "
                          f"torch.serialization.add_safe_globals); this is torch {torch.__version__}")
    torch.serialization.add_safe_globals(fairseq_checkpoint_globals())


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that holds objects other than weights and the classes allowed above."""


def _refusal(path, error: Exception) -> UnsafeCheckpointError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch's message: a paragraph on weights_only, then the refused global ("... GLOBAL posix.system ...")
    reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                  lines[0] if lines else type(error).__name__)
    return UnsafeCheckpointError(
        f"{path}: refusing to load this checkpoint: it holds objects other than tensors and the classes fairseq "
        f"checkpoints need, and unpickling them could run code ({reason}). Load only checkpoints you trust; "
        f"this one was not written by fairseq or this plugin as it is.")


def safe_load(path):
    """``torch.load`` in weights-only mode; a refused checkpoint is an error naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _refusal(path, error) from None


def refuse_unsafe_checkpoints():
    """Wraps fairseq's checkpoint reader (see the module docstring)."""
    from fairseq import checkpoint_utils

    original = checkpoint_utils.load_checkpoint_to_cpu
    if getattr(original, "refuses_unsafe_checkpoints", False):
        return

    def load_checkpoint_to_cpu(path, arg_overrides=None, load_on_all_ranks=False):
        try:
            return original(path, arg_overrides, load_on_all_ranks)
        except UnsafeCheckpointError:
            raise
        except pickle.UnpicklingError as error:
            raise _refusal(path, error) from None

    load_checkpoint_to_cpu.refuses_unsafe_checkpoints = True
    load_checkpoint_to_cpu.__doc__ = original.__doc__
    checkpoint_utils.load_checkpoint_to_cpu = load_checkpoint_to_cpu
