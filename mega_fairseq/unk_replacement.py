"""``--replace-unk`` as fairseq documents it: each ``<unk>`` of a hypothesis is replaced by the
source word aligned with it (looked up in the alignment dictionary, if one is given).

fairseq 0.12 fails at two places, for every model:

- ``utils.replace_unk`` reads ``alignment[i]`` as the source word of target word i, but the
  alignments of ``--print-alignment hard`` are (source word, target word) pairs
  (``utils.extract_hard_alignment``): a TypeError;
- the bare flag ``--replace-unk`` (no dictionary) gives the string ``"@@ "`` (the flag's
  ``argparse_const``), which ``utils.load_align_dict`` opens as a file.

The plugin wraps both; anything else is passed on as it is.
"""

from typing import Dict, List, Tuple

BARE_FLAG = "@@ "  # the value of --replace-unk given without a dictionary


def target_to_source(pairs: List[Tuple[int, int]]) -> Dict[int, int]:
    """(source word, target word) pairs -> {target word: source word} (fairseq's hard alignment
    gives one pair per target word)."""
    return {target: source for source, target in pairs}


def _is_pair_list(alignment) -> bool:
    return isinstance(alignment, list) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in alignment)


def make_replace_unk_work():
    """Wraps ``fairseq.utils.replace_unk`` and ``load_align_dict`` (see the module docstring);
    idempotent."""
    from fairseq import utils

    replace_unk, load_align_dict = utils.replace_unk, utils.load_align_dict
    if getattr(replace_unk, "reads_alignment_pairs", False):
        return

    def replace_unk_by_pairs(hypo_str, src_str, alignment, align_dict, unk):
        if _is_pair_list(alignment):
            alignment = target_to_source(alignment)
        return replace_unk(hypo_str, src_str, alignment, align_dict, unk)

    def load_align_dict_of_flag(value):
        return load_align_dict("" if value == BARE_FLAG else value)

    replace_unk_by_pairs.reads_alignment_pairs = True
    replace_unk_by_pairs.__doc__ = replace_unk.__doc__
    load_align_dict_of_flag.__doc__ = load_align_dict.__doc__
    utils.replace_unk = replace_unk_by_pairs
    utils.load_align_dict = load_align_dict_of_flag
