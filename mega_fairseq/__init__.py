"""Mega (Moving Average Equipped Gated Attention) for fairseq: ``--user-dir mega_fairseq``."""

from . import checkpoint_loading

checkpoint_loading.require_torch()  # a clear error before any module meets an older torch

from . import checkpoint_errors  # noqa: E402
from . import checkpoint_saving  # noqa: E402
from . import criterions  # noqa: E402,F401
from . import models  # noqa: E402,F401
from . import tasks  # noqa: E402,F401
from . import unk_replacement  # noqa: E402

checkpoint_loading.allow_fairseq_checkpoints()
checkpoint_loading.refuse_unsafe_checkpoints()
checkpoint_loading.load_broadcasts_between_ranks()
checkpoint_errors.name_checkpoints_in_errors()
checkpoint_saving.write_checkpoints_atomically()
unk_replacement.make_replace_unk_work()
