"""Safe ``torch.load`` of fairseq checkpoints: the helpers (no fairseq import). How fairseq's own
readers are made to use them is in :mod:`mega_fairseq.fairseq_fixes`.

Every load here passes ``weights_only=True`` explicitly: torch's own default is weights-only only
from torch 2.6 on, and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns that default off (an explicit
``weights_only=True`` overrides it; torch/serialization.py, ``load``). The weights-only unpickler
refuses every object but tensors and allow-listed classes. Checkpoints from fairseq <= 0.10 (the
official Mega checkpoints among them) also hold an ``argparse.Namespace`` of arguments and numpy
scalars and arrays (e.g. the best validation loss): rather than turning safe loading off,
allow-list exactly those classes (:func:`fairseq_checkpoint_globals`). A refused checkpoint (one
holding, say, a pickled call to ``os.system``) is an error naming the file
(:class:`UnsafeCheckpointError`) instead of a bare unpickling traceback.
"""

import argparse
import pickle
import types

import numpy as np
import torch


def fairseq_checkpoint_globals():
    """The classes besides tensors that fairseq checkpoints pickle (argparse arguments, numpy values)."""
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        from numpy._core.multiarray import _reconstruct, scalar
    else:
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return [argparse.Namespace, scalar, _reconstruct, np.ndarray, np.dtype, *dtypes]


# torch 2.6: weights-only loading by default (also for loads outside fairseq's checkpoint module),
# torch.serialization.add_safe_globals and safe_globals; the oldest torch the tests have run on
MIN_TORCH = "2.6"


def require_torch():
    """Refuses to run on a torch older than ``MIN_TORCH`` (setup.py's floor)."""
    if torch.__version__ < MIN_TORCH:  # TorchVersion compares as a version, "2.10" > "2.6"
        raise ImportError(f"mega_fairseq needs torch >= {MIN_TORCH} (weights-only checkpoint loading); this is "
                          f"torch {torch.__version__}: upgrade torch (pip install 'torch>={MIN_TORCH}')")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that holds objects other than weights and the classes allowed above."""


def refusal(path, error: Exception) -> UnsafeCheckpointError:
    """The error naming ``path`` for torch's refusal ``error`` of a weights-only load."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch's message: a paragraph on weights_only, then the refused global ("... GLOBAL posix.system ...")
    reason = next((line for line in lines if "GLOBAL" in line or "Unsupported" in line),
                  lines[0] if lines else type(error).__name__)
    return UnsafeCheckpointError(
        f"{path}: refusing to load this checkpoint: it holds objects other than tensors and the classes fairseq "
        f"checkpoints need, and unpickling them could run code ({reason}). Load only checkpoints you trust; "
        f"this one was not written by fairseq or this plugin as it is.")


def weights_only_load(f, map_location=None, **kwargs):
    """``torch.load(..., weights_only=True)`` with fairseq's classes allowed for this load only."""
    # the context removes on exit every class it was given, also one allowed before it: give it only the others
    allowed = torch.serialization.get_safe_globals()
    with torch.serialization.safe_globals([cls for cls in fairseq_checkpoint_globals() if cls not in allowed]):
        return torch.load(f, map_location=map_location, **{**kwargs, "weights_only": True})


def safe_load(path):
    """A checkpoint file loaded weights-only onto the CPU; a refused checkpoint is an error naming the file."""
    try:
        return weights_only_load(path, map_location="cpu")
    except pickle.UnpicklingError as error:
        raise refusal(path, error) from None


class TorchLoadingAs(types.ModuleType):
    """torch as one fairseq module sees it (set as that module's name ``torch``): torch itself,
    except that ``load`` always passes ``weights_only``, whatever the caller and the environment
    say (weights-only loads allow fairseq's classes)."""

    def __init__(self, weights_only: bool):
        super().__init__("torch")
        self._weights_only = weights_only

    def __getattr__(self, name):
        return getattr(torch, name)

    def load(self, f, map_location=None, **kwargs):
        if self._weights_only:
            return weights_only_load(f, map_location, **kwargs)
        return torch.load(f, map_location=map_location, **{**kwargs, "weights_only": False})
