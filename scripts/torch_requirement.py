#!/usr/bin/env python
"""The torch that `make install` installs: prints a pip requirement, or nothing to keep the installed torch.

    python scripts/torch_requirement.py PIN [--explicit]

PIN is the Makefile's TORCH (torch==2.13.0, a CPU build). Without --explicit (TORCH not given
on make's command line or in the environment) an installed torch within setup.py's range is
kept, a CUDA build above all: installing the pinned CPU build over it would lose the GPU. A
missing torch, or a CPU build outside the range, gets PIN; a CUDA build outside the range is an
error (replacing it by a CPU build is not what its owner wants). With --explicit, PIN is what
the user asked for and is printed as is (empty: keep whatever is installed).
"""

import argparse
import re
import sys
from pathlib import Path
from typing import List, Optional, Tuple

SETUP = Path(__file__).resolve().parents[1] / "setup.py"
_OPERATORS = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b,
              "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


class KeepRefused(Exception):
    """The installed torch can be neither kept nor replaced without the user's word."""


def admissible_range(setup_text: str) -> str:
    """The version range of torch in setup.py's install_requires, e.g. ">=2.4,<3"."""
    match = re.search(r'"torch\s*([<>=!][^"]*)"', setup_text)
    if match is None:
        raise ValueError(f"{SETUP}: no torch requirement with a version range in install_requires")
    return match.group(1).replace(" ", "")


def release(version: str) -> Tuple[int, ...]:
    """(2, 13, 0) of "2.13.0+cu126" or "2.5.0a0+git1234": the numeric release, local label and pre-release dropped."""
    numbers = re.match(r"\d+(\.\d+)*", version)
    if numbers is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in numbers.group(0).split("."))


def in_range(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies every clause of ``spec`` (">=2.4,<3"), comparing releases padded with zeros."""
    for clause in spec.split(","):
        operator, bound = re.match(r"(>=|<=|==|!=|>|<)(.+)", clause).groups()
        have, want = release(version), release(bound)
        width = max(len(have), len(want))
        have, want = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if not _OPERATORS[operator](have, want):
            return False
    return True


def requirement(pin: str, explicit: bool, installed: Optional[str], cuda: Optional[str], spec: str) -> Tuple[str, str]:
    """(what pip installs as torch, "" to keep the installed one; a note saying why).

    ``installed`` is the installed torch's version (None: torch does not import) and ``cuda`` its
    ``torch.version.cuda`` (None: a CPU build).
    """
    if explicit:
        return pin, f"torch: TORCH={pin!r} given" + ("" if pin else ", keeping the installed torch")
    build = f"torch {installed}" + (f" (a CUDA {cuda} build)" if cuda else "")
    if installed is None:
        return pin, f"torch: not installed, installing {pin}"
    if in_range(installed, spec):
        return "", f"{build}: within setup.py's torch{spec}, kept"
    if cuda:
        raise KeepRefused(
            f"{build} is outside setup.py's torch{spec}, and installing {pin} (a CPU build) would replace it: "
            f"install a CUDA build within the range first (pip install 'torch{spec}' --index-url "
            f"https://download.pytorch.org/whl/cuXYZ), or run make install TORCH={pin} to replace it by the CPU "
            f"build anyway")
    return pin, f"{build}: outside setup.py's torch{spec}, installing {pin}"


def installed_torch() -> Tuple[Optional[str], Optional[str]]:
    """(torch.__version__, torch.version.cuda) of the torch this Python imports, or (None, None)."""
    try:
        import torch
    except ImportError:
        return None, None
    return torch.__version__, torch.version.cuda


def main(argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pin", help="the torch requirement to install when the installed one is not kept")
    parser.add_argument("--explicit", action="store_true",
                        help="the user gave PIN (make install TORCH=...): print it as is")
    args = parser.parse_args(argv)
    installed, cuda = (None, None) if args.explicit else installed_torch()
    try:
        pin, note = requirement(args.pin, args.explicit, installed, cuda, admissible_range(SETUP.read_text()))
    except KeepRefused as error:
        sys.exit(f"error: {error}")
    print(note, file=sys.stderr)
    print(pin)


if __name__ == "__main__":
    main()
