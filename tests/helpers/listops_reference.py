"""ListOps as the tests check it, written independently of mega_fairseq.data.listops: an evaluator
of the flat tokens (a stack), and a reader of the release's TSV files."""

from pathlib import Path
from typing import List

import numpy as np

SPLIT_FILES = ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")


def reference_value(tokens: List[str]) -> int:
    """Evaluate flat ListOps tokens with an explicit stack (independent of the script)."""
    stack: list = []
    for token in tokens:
        if token.startswith("["):
            stack.append([token[1:]])
        elif token == "]":
            op, *args = stack.pop()
            ordered = sorted(args)
            half = len(ordered) // 2
            value = {"MAX": max(args), "MIN": min(args), "SM": sum(args) % 10,
                     "MED": int(np.median(ordered))}[op]
            if op == "MED":
                expected = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) // 2
                assert value == expected
            if not stack:
                return value
            stack[-1].append(value)
        else:
            assert token.isdigit() and len(token) == 1, token
            stack[-1].append(int(token))
    raise AssertionError(f"unbalanced expression: {' '.join(tokens)}")


def read_tsv(path: Path):
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "file must end with a newline"
    assert lines[0] == "Source\tTarget"
    rows = [line.split("\t") for line in lines[1:-1]]
    assert all(len(row) == 2 for row in rows)
    return rows


def flat(source: str) -> List[str]:
    return [token for token in source.split() if token not in "()"]
