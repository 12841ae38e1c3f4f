"""docs/architecture.md against the code: every module path it names exists, every module of the package is
in its picture, and each block of the picture imports, from the package, only itself and the blocks below it
(the glue packages' ``__init__`` importing ``registration.py`` excepted, as the page says). Static: the page's
text and the package's source (``ast``), nothing imported or run."""

import ast
import re
from pathlib import Path

from helpers import ROOT

PAGE = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "mega_fairseq"
MODULE = re.compile(r"(?<![\w/.*-])[\w/*]*\w\.py\b")  # a file name or path ending in .py
REGISTRATION = PACKAGE / "registration.py"


def picture_and_prose():
    """The page's first fenced block (the picture of the layers) and the rest of its text."""
    text = PAGE.read_text()
    match = re.search(r"^```\n(.*?)^```$", text, re.S | re.M)
    return match.group(1), text[:match.start()] + text[match.end():]


def picture_blocks():
    """The picture's blocks, top to bottom, as (folder, names): a block starts with a line whose first word is a
    folder (``mega_fairseq/models/``); its names are the .py names on its lines."""
    blocks = []
    for line in picture_and_prose()[0].splitlines():
        if line and not line[0].isspace():
            blocks.append((ROOT / line.split()[0], []))
        blocks[-1][1].extend(MODULE.findall(line))
    return blocks


def existing(name: str, *bases: Path):
    """The files a name or glob matches under the first base that has any; [] when none does."""
    for base in bases:
        found = sorted(base.glob(name))
        if found:
            return found
    return []


def module_blocks():
    """{module path: index of the block that names it first}, for the bare names of the picture."""
    where = {}
    for index, (folder, names) in enumerate(picture_blocks()):
        for name in names:
            if "/" not in name:
                where.setdefault(folder / name, index)
    return where


def package_modules():
    return sorted(path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")


def module_path(dotted: str):
    """The file of a dotted module name of the package (a package is its __init__.py), or None."""
    base = ROOT / dotted.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path):
    """The modules of this repository a file imports anywhere in it (function-level imports too), as paths."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1]  # the package a relative import starts from (a package's __init__ is in it)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(module_path(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(module_path(f"{module}.{alias.name}") or module_path(module))
    return found - {None}


def test_every_module_the_page_names_exists():
    picture, prose = picture_and_prose()
    missing = []
    for folder, names in picture_blocks():
        for name in names:
            if not (existing(name, ROOT) if "/" in name else existing(name, folder)):
                missing.append(f"{name} (in {folder.relative_to(ROOT)})")
    for name in MODULE.findall(prose):
        bases = (ROOT, PACKAGE) if "/" in name else (ROOT,)
        if not existing(name if "/" in name else f"**/{name}", *bases):
            missing.append(name)
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_module_of_the_package_is_in_the_picture():
    named = set(module_blocks())
    missing = [str(path.relative_to(ROOT)) for path in package_modules() if path not in named]
    assert not missing, f"add to the picture of docs/architecture.md: {missing}"


def test_each_block_imports_only_from_itself_and_below():
    where = module_blocks()
    folders = [folder for folder, _ in picture_blocks()]

    def block(path: Path):  # a package's __init__ belongs to the first block of its folder
        return where.get(path, folders.index(path.parent) if path.parent in folders else None)

    upward = []
    for path in [*package_modules(), *PACKAGE.rglob("__init__.py")]:
        for target in imported_modules(path):
            allowed = path.name == "__init__.py" and target == REGISTRATION
            if block(target) is not None and block(target) < block(path) and not allowed:
                upward.append(f"{path.relative_to(ROOT)} imports {target.relative_to(ROOT)}")
    assert not upward, f"imports that go up the picture of docs/architecture.md: {upward}"
