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


def test_raw_words_on_sentencepiece_data_name_the_flags(caplog):
    """fairseq-interactive's encoding of raw words on a sentencepiece dictionary (every word <unk>)
    logs a warning naming --bpe sentencepiece and --sentencepiece-model; the pieces themselves, or
    raw words on a dictionary of words, log nothing."""
    import mega_fairseq.models  # noqa: F401
    from fairseq.data import Dictionary
    from fairseq.tasks.translation import TranslationTask

    pieces = Dictionary()
    for symbol in ("\u2581the", "\u2581cat", "\u2581sle", "eps", "\u2581."):
        pieces.add_symbol(symbol)
    words = Dictionary()
    for symbol in ("the", "cat", "sleeps", "."):
        words.add_symbol(symbol)

    def encode(dictionary, line):
        task = TranslationTask.__new__(TranslationTask)
        task.src_dict = dictionary
        caplog.clear()
        with caplog.at_level("WARNING", logger="mega_fairseq.fairseq_fixes"):
            task.get_interactive_tokens_and_lengths([line], lambda text: text)
        return caplog.text

    warning = encode(pieces, "the cat sleeps .")
    assert "4 of the input's 4 tokens are <unk>" in warning
    assert "--bpe sentencepiece --sentencepiece-model" in warning
    assert encode(pieces, "\u2581the \u2581cat \u2581sle eps \u2581.") == ""
    assert encode(words, "the cat sleeps .") == ""
    assert encode(words, "a dog barks !") == ""  # unknown words, but no sentencepiece dictionary
