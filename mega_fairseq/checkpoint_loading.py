"""Safe ``torch.load`` for fairseq checkpoints.

torch.load unpickles weights only by default and refuses other objects. Checkpoints from
fairseq <= 0.10 (the official Mega checkpoints among them) also hold an
``argparse.Namespace`` of arguments and numpy scalars and arrays (e.g. the best validation loss).
Rather than turning safe loading off, allow-list exactly those classes.
"""

import argparse

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
