"""Generate the ListOps task (Nangia & Bowman 2018, as used by Long Range Arena) as TSV files.

A ListOps example is a random tree of list operators over the digits 0-9:

    MAX  largest argument          MIN  smallest argument
    MED  median, int(np.median(args)): with an even count, the mean of the two middle
         values truncated toward zero
    SM   sum of the arguments modulo 10

and its label is the tree's value. Trees are drawn as in the LRA generator: below --max-depth a
node is an operator with probability --operator-probability (0.25), otherwise a digit; an
operator takes 2..--max-args arguments (uniform), each a subtree one level deeper. The root is
always an operator, and only trees whose flat form has between --min-length and --max-length
tokens are kept (rejection sampling; a draw stops as soon as it grows past --max-length, so the
long trees that the defaults often produce cost little). With the defaults about a third of the
operator-rooted draws land in 500-2000 tokens, and one example takes 1-2 ms on one CPU core:
the full 100,000 examples take about three minutes. A window the generator rarely reaches (a
small --max-depth with a large --min-length, say) is reported as an error rather than looping.

Output, in the layout of the LRA release (one file per split, each written to a temporary name
and renamed, so an interrupted run never leaves a partial file under the final name):

    OUT_DIR/basic_train.tsv, basic_val.tsv, basic_test.tsv
    Source<TAB>Target                                   header
    ( ( ( [MAX 2 ) 9 ) ] )<TAB>9                        one example per line

The source is the release's binarised form: an operator with arguments a1..ak is the pair
("[OP", a1), paired with each later argument in turn, then with "]"; a pair is written
"( X Y )". Dropping the "(" and ")" tokens leaves the flat form "[MAX 2 9 ]".

    python -m mega_fairseq.data.listops data/listops --train 96000 --valid 2000 --test 2000
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from .progress import progress

PROG = "python -m mega_fairseq.data.listops"
OPERATORS = ("MAX", "MIN", "MED", "SM")
SPLITS = (("train", "basic_train.tsv"), ("valid", "basic_val.tsv"), ("test", "basic_test.tsv"))
HEADER = "Source\tTarget"
# consecutive rejected draws after which the length window is declared out of reach
MAX_REJECTIONS = 500_000

Tree = Union[int, Tuple[str, list]]  # a digit, or (operator, [argument trees])


class TooLong(Exception):
    """Raised inside a draw as soon as the tree has more tokens than allowed."""


def generate_tree(rng: random.Random, depth: int, max_depth: int, max_args: int,
                  operator_probability: float = 0.25, budget: Optional[List[int]] = None) -> Tree:
    """Draw a random tree rooted at `depth`.

    `budget`, when given, is a one-element list holding the number of tokens still allowed; it is
    decremented as tokens are produced, and TooLong is raised as soon as it goes negative."""
    budget = [sys.maxsize] if budget is None else budget
    if depth < max_depth and rng.random() < operator_probability:
        return _operator_node(rng, depth, max_depth, max_args, operator_probability, budget)
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLong
    return int(rng.random() * 10)  # uniform 0-9 (faster than randrange, which would dominate here)


def _operator_node(rng: random.Random, depth: int, max_depth: int, max_args: int,
                   operator_probability: float, budget: List[int]) -> Tree:
    """An operator node and its subtrees. Digit arguments are drawn inline rather than through
    generate_tree (same distribution, same random stream): they are most nodes, and function
    calls are most of the cost of a draw."""
    draw = rng.random
    op = OPERATORS[int(draw() * len(OPERATORS))]
    count = 2 + int(draw() * (max_args - 1))  # uniform 2..max_args
    budget[0] -= 2  # "[OP" and "]"
    args: list = []
    deeper = depth + 1 < max_depth
    for _ in range(count):
        if deeper and draw() < operator_probability:
            args.append(_operator_node(rng, depth + 1, max_depth, max_args, operator_probability, budget))
        else:
            budget[0] -= 1
            args.append(int(draw() * 10))
        if budget[0] < 0:
            raise TooLong
    if budget[0] < 0:
        raise TooLong
    return (op, args)


def evaluate(tree: Tree) -> int:
    """The value of a tree, a digit 0-9."""
    if isinstance(tree, int):
        return tree
    op, args = tree
    values = [evaluate(arg) for arg in args]
    if op == "MAX":
        return max(values)
    if op == "MIN":
        return min(values)
    if op == "SM":
        return sum(values) % 10
    if op == "MED":
        return _median(values)
    raise ValueError(f"unknown operator {op!r}")


def _median(values: Sequence[int]) -> int:
    """int(np.median(values)) for non-negative integers, without numpy."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) // 2


def flat_tokens(tree: Tree) -> List[str]:
    """The flat token form, e.g. ['[MAX', '2', '9', ']']."""
    if isinstance(tree, int):
        return [str(tree)]
    op, args = tree
    tokens = ["[" + op]
    for arg in args:
        tokens.extend(flat_tokens(arg))
    tokens.append("]")
    return tokens


def _release_tokens(tree: Tree, out: List[str]) -> None:
    if isinstance(tree, int):
        out.append(str(tree))
        return
    op, args = tree
    out.extend(["("] * (len(args) + 1))  # one pair per argument, one for the closing "]"
    out.append("[" + op)
    for arg in args:
        _release_tokens(arg, out)
        out.append(")")
    out.extend(["]", ")"])


def to_release_string(tree: Tree) -> str:
    """The binarised parenthesised form of the LRA release, e.g. '( ( ( [MAX 2 ) 9 ) ] )'."""
    tokens: List[str] = []
    _release_tokens(tree, tokens)
    return " ".join(tokens)


def max_tokens(max_depth: int, max_args: int) -> int:
    """The length of the largest tree the generator can draw (a full tree of maximal arity)."""
    length = 1
    for _ in range(max_depth):
        length = 2 + max_args * length
    return length


def sample_example(rng: random.Random, min_length: int, max_length: int, max_depth: int, max_args: int,
                   operator_probability: float = 0.25) -> Tree:
    """Draw trees until one has an operator root and a flat length within [min_length, max_length]."""
    for _ in range(MAX_REJECTIONS):
        if max_depth < 1 or rng.random() >= operator_probability:
            continue  # the root came out a digit: draw again
        budget = [max_length]
        try:
            tree = _operator_node(rng, 0, max_depth, max_args, operator_probability, budget)
        except TooLong:
            continue
        if max_length - budget[0] >= min_length:
            return tree
    raise RuntimeError(f"no tree with {min_length}-{max_length} tokens in {MAX_REJECTIONS} draws "
                       f"(max depth {max_depth}, max args {max_args}, operator probability "
                       f"{operator_probability}); widen the length window or change --operator-probability")


def write_split(path: Path, rng: random.Random, count: int, args: argparse.Namespace) -> List[int]:
    """Write `count` examples to `path` (atomically); return their flat lengths."""
    lengths = []
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            out.write(HEADER + "\n")
            for _ in progress(range(count), desc=path.name, unit="example"):
                tree = sample_example(rng, args.min_length, args.max_length, args.max_depth, args.max_args,
                                      args.operator_probability)
                source = to_release_string(tree)
                lengths.append(len(source.split()) - source.count("(") - source.count(")"))
                out.write(f"{source}\t{evaluate(tree)}\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return lengths


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder for the three TSV files (created)")
    parser.add_argument("--train", type=int, default=96_000, help="training examples (default 96000)")
    parser.add_argument("--valid", type=int, default=2_000, help="validation examples (default 2000)")
    parser.add_argument("--test", type=int, default=2_000, help="test examples (default 2000)")
    parser.add_argument("--min-length", type=int, default=500, help="fewest flat tokens per example (default 500)")
    parser.add_argument("--max-length", type=int, default=2000, help="most flat tokens per example (default 2000)")
    parser.add_argument("--max-depth", type=int, default=10, help="deepest operator nesting (default 10)")
    parser.add_argument("--max-args", type=int, default=10, help="most arguments per operator, >= 2 (default 10)")
    parser.add_argument("--operator-probability", type=float, default=0.25,
                        help="chance that a node above --max-depth is an operator (default 0.25, as in LRA)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; each split uses seed + its index")
    args = parser.parse_args(argv)
    for name in ("train", "valid", "test"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.max_depth < 1:
        parser.error(f"--max-depth must be >= 1, got {args.max_depth}")
    if args.max_args < 2:
        parser.error(f"--max-args must be >= 2, got {args.max_args}")
    if not 0.0 < args.operator_probability <= 1.0:
        parser.error(f"--operator-probability must be in (0, 1], got {args.operator_probability}")
    if args.max_length < 4:
        parser.error(f"--max-length must be >= 4 (the shortest tree, e.g. [MAX 1 2 ], has 4 tokens), "
                     f"got {args.max_length}")
    if args.min_length > args.max_length:
        parser.error(f"--min-length {args.min_length} is larger than --max-length {args.max_length}")
    largest = max_tokens(args.max_depth, args.max_args)
    if args.min_length > largest:
        parser.error(f"--min-length {args.min_length} is unreachable: with --max-depth {args.max_depth} and "
                     f"--max-args {args.max_args} a tree has at most {largest} tokens")
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for index, (split, name) in enumerate(SPLITS):
        start = time.perf_counter()
        rng = random.Random(args.seed + index)
        try:
            lengths = write_split(args.out_dir / name, rng, getattr(args, split), args)
        except RuntimeError as err:
            sys.exit(f"{PROG}: error: {err}")
        mean = sum(lengths) / len(lengths) if lengths else 0.0
        print(f"{split}: {len(lengths)} examples, mean length {mean:.0f} tokens -> {args.out_dir / name} "
              f"({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
