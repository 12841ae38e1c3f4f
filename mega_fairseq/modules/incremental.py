"""Incremental decoding without fairseq: the state kept in a fairseq-compatible nested dict, and
what the small calls of a decoding step share."""

import contextlib
import uuid
from typing import Dict, Optional, Tuple, Union

import torch
from torch import Tensor

# tensors with the batch first, Python numbers (counts shared by the whole batch), or tuples of
# tensors shared by the whole batch (reordering leaves both alone)
IncrementalState = Dict[str, Dict[str, Optional[Union[Tensor, int, Tuple[Tensor, ...]]]]]


class IncrementalStateMixin:
    """Gives each module instance its own slot in a shared ``incremental_state`` dict.

    Slots are keyed by a per-instance id, like fairseq's ``FairseqIncrementalState``, so
    the same dict can be threaded through a whole decoder. ``reorder_incremental_state``
    is found and called by fairseq's beam search on every submodule.
    """

    def _state_key(self) -> str:
        if not hasattr(self, "_incremental_state_id"):
            self._incremental_state_id = str(uuid.uuid4())
        return self._incremental_state_id

    def get_incremental_state(self, incremental_state: IncrementalState) -> Dict[str, Optional[Tensor]]:
        return dict(incremental_state.get(self._state_key(), {}))

    def set_incremental_state(self, incremental_state: IncrementalState, value: Dict[str, Optional[Tensor]]):
        incremental_state[self._state_key()] = value

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor):
        saved = incremental_state.get(self._state_key())
        if saved:
            incremental_state[self._state_key()] = {
                k: (v.index_select(0, new_order) if isinstance(v, Tensor) and v.dim() > 0 else v)
                for k, v in saved.items()
            }
        return incremental_state


def without_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast turned off on ``device_type``; where it is off already, an empty context (creating
    ``torch.autocast`` costs more than a decoding step's small ops)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def to_dtype(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t.to(dtype)``, without the call where ``t`` has that dtype already (``Tensor.to`` goes through
    torch's dispatcher even when it returns ``t``)."""
    return t if t.dtype == dtype else t.to(dtype)
