"""Build a small English corpus from the docstrings of Python's own standard library.

No download: the text ships with every Python installation. Paragraphs are lowercased,
split into words and punctuation, and assigned to train/valid/test by a hash of their
text, so the split is deterministic on any machine with the same Python version.

    python -m demo.lm_corpus --out data/demo --max-train-words 400000
"""

import argparse
import ast
import hashlib
import re
import sys
import sysconfig
from pathlib import Path

TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[.,;:!?()\"'-]")


def docstrings(stdlib: Path):
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        if any(part in {"test", "tests", "idlelib", "site-packages", "lib2to3"} for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    yield doc


def paragraphs(text: str):
    for block in re.split(r"\n\s*\n", text):
        if ">>>" in block or block.lstrip().startswith(("-", "*", ":")):
            continue  # examples and lists are code-like, not prose
        words = TOKEN.findall(block.lower())
        if len(words) >= 8:
            yield " ".join(words)


def split_of(paragraph: str) -> str:
    bucket = int(hashlib.md5(paragraph.encode()).hexdigest(), 16) % 20
    return "valid" if bucket == 0 else "test" if bucket == 1 else "train"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder for {train,valid,test}.txt")
    parser.add_argument("--max-train-words", type=int, default=400_000, help="stop adding training text here")
    args = parser.parse_args(argv)

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    seen, splits = set(), {"train": [], "valid": [], "test": []}
    counts = dict.fromkeys(splits, 0)
    for doc in docstrings(stdlib):
        for paragraph in paragraphs(doc):
            if paragraph in seen:
                continue
            seen.add(paragraph)
            split = split_of(paragraph)
            if split == "train" and counts["train"] >= args.max_train_words:
                continue
            splits[split].append(paragraph)
            counts[split] += paragraph.count(" ") + 1
    if counts["train"] == 0:
        sys.exit(f"no docstrings found under {stdlib}")
    args.out.mkdir(parents=True, exist_ok=True)
    for split, lines in splits.items():
        (args.out / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{split}: {len(lines)} paragraphs, {counts[split]} words -> {args.out / (split + '.txt')}")


if __name__ == "__main__":
    main()
