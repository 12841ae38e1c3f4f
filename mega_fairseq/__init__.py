"""Mega (Moving Average Equipped Gated Attention) for fairseq: ``--user-dir mega_fairseq``."""

from . import checkpoint_loading
from . import checkpoint_saving
from . import criterions  # noqa: F401
from . import models  # noqa: F401
from . import tasks  # noqa: F401
from . import unk_replacement

checkpoint_loading.allow_fairseq_checkpoints()
checkpoint_loading.refuse_unsafe_checkpoints()
checkpoint_saving.write_checkpoints_atomically()
unk_replacement.make_replace_unk_work()
