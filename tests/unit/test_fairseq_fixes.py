"""What the plugin changes in fairseq, and when (CPU): loading the plugin applies
mega_fairseq/fairseq_fixes.py once, and each fix says why and names its tests. In processes of their
own (the layers without fairseq, MEGA_FAIRSEQ_NO_FIXES=1): tests/cli/test_fairseq_fixes_cli.py."""

import pytest

from helpers import ROOT
from helpers.tiny import crafted_checkpoint


@pytest.fixture
def crafted(tmp_path):
    return crafted_checkpoint(tmp_path)


def test_loaded_plugin_refuses_the_crafted_checkpoint(crafted, monkeypatch):
    """The crafted checkpoint read with the fixes on (this process has loaded the plugin): refused,
    nothing runs."""
    import mega_fairseq.models  # noqa: F401
    from fairseq import checkpoint_utils

    from mega_fairseq.checkpoint_loading import UnsafeCheckpointError

    path, marker = crafted
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(UnsafeCheckpointError, match="refusing to load this checkpoint"):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert not marker.exists()


def test_fixes_apply_once():
    """Loading the plugin and calling apply() again wraps each fairseq function once."""
    import mega_fairseq.models  # noqa: F401
    import mega_fairseq.tasks  # noqa: F401
    from fairseq import checkpoint_utils, utils

    from mega_fairseq import fairseq_fixes

    fairseq_fixes.apply()
    for function in (checkpoint_utils.load_checkpoint_to_cpu, checkpoint_utils.torch_persistent_save,
                     utils.replace_unk, utils.load_align_dict):
        assert function.__wrapped__.__module__.startswith("fairseq."), function
        assert not hasattr(function.__wrapped__, "__wrapped__"), function


def test_each_fix_says_why_and_names_tests_that_exist():
    """Every fix apply() applies has a docstring saying what fairseq does wrong and what the plugin
    does instead, and names tests that exist."""
    import inspect
    import re

    from mega_fairseq import fairseq_fixes

    applied = re.findall(r"^    (\w+)\(\)$", inspect.getsource(fairseq_fixes.apply), flags=re.M)
    listed = [name for name in re.findall(r":func:`(\w+)`", fairseq_fixes.__doc__) if name != "apply"]
    assert applied == listed and len(applied) >= 6, (applied, listed)
    for name in applied:
        doc = " ".join(getattr(fairseq_fixes, name).__doc__.split())
        assert doc.startswith("Wrong:") and " Instead: " in doc, name
        tests = re.findall(r"(tests/[\w/]+\.py)::(\w+)", doc)
        assert tests, name
        for path, test in tests:
            assert f"def {test}(" in (ROOT / path).read_text(), (name, path, test)
