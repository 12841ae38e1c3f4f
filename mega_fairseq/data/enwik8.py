"""Split enwik8 into train/valid/test and write it as byte tokens for fairseq-preprocess.

The standard split (Transformer-XL's prep_enwik8.py, used by the Mega paper): the last
5,000,000 bytes are the test set, the 5,000,000 before them the validation set, and the
rest (the first 90,000,000 bytes of enwik8) the training set. Each byte is written as its
decimal value followed by a space, except newline (byte 10), which ends the line; fairseq
turns each line end back into one end-of-sentence symbol, so one token is one byte and
fairseq-eval-lm's base-2 loss is bits per character.

    python -m mega_fairseq.data.enwik8 --input enwik8.zip --out data/enwik8/text
"""

import argparse
import sys
import zipfile
from pathlib import Path

from .progress import progress

PROG = "python -m mega_fairseq.data.enwik8"
STANDARD_SIZE = 100_000_000
HELD_OUT_BYTES = 5_000_000
NEWLINE = ord("\n")
# one string per byte value; translating a block of bytes is a join over this table
TOKENS = [f"{b} " if b != NEWLINE else "\n" for b in range(256)]
BLOCK = 1 << 20


def read_enwik8(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "enwik8" not in names:
                raise SystemExit(f"{path} is a zip without an 'enwik8' member (it has: {', '.join(names[:5])})")
            return archive.read("enwik8")
    return path.read_bytes()


def split(data: bytes, valid_bytes: int, test_bytes: int) -> dict:
    if valid_bytes <= 0 or test_bytes <= 0:
        raise SystemExit("--valid-bytes and --test-bytes must be positive")
    if len(data) <= valid_bytes + test_bytes:
        raise SystemExit(f"the input has {len(data):,} bytes, not more than --valid-bytes + --test-bytes "
                         f"({valid_bytes + test_bytes:,}): nothing would be left to train on")
    end_train = len(data) - valid_bytes - test_bytes
    return {"train": data[:end_train], "valid": data[end_train:len(data) - test_bytes],
            "test": data[len(data) - test_bytes:]}


def write_tokens(part: bytes, path: Path) -> None:
    with path.open("w", encoding="ascii") as out:
        bar = progress(total=len(part), desc=path.name, unit="B", unit_scale=True)
        for start in range(0, len(part), BLOCK):
            out.write("".join(TOKENS[b] for b in part[start:start + BLOCK]))
            bar.update(len(part[start:start + BLOCK]))
        bar.close()
        if part and part[-1] != NEWLINE:
            out.write("\n")


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, required=True, help="enwik8, or enwik8.zip")
    parser.add_argument("--out", type=Path, required=True, help="output folder for {train,valid,test}.txt")
    parser.add_argument("--valid-bytes", type=int, default=HELD_OUT_BYTES,
                        help="size of the validation set, taken before the test set (default: %(default)s)")
    parser.add_argument("--test-bytes", type=int, default=HELD_OUT_BYTES,
                        help="size of the test set, the end of the file (default: %(default)s)")
    args = parser.parse_args(argv)

    if not args.input.is_file():
        raise SystemExit(f"no such file: {args.input}")
    data = read_enwik8(args.input)
    standard = (len(data), args.valid_bytes, args.test_bytes) == (STANDARD_SIZE, HELD_OUT_BYTES, HELD_OUT_BYTES)
    if not standard:
        print(f"note: {len(data):,} bytes with {args.valid_bytes:,} valid and {args.test_bytes:,} test bytes is "
              f"not the standard enwik8 split ({STANDARD_SIZE:,} = 90M + 5M + 5M)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, part in split(data, args.valid_bytes, args.test_bytes).items():
        path = args.out / f"{name}.txt"
        write_tokens(part, path)
        print(f"{name}: {len(part):,} bytes -> {path}")


if __name__ == "__main__":
    main()
