"""The entry points import the installed package: no Python file of the product (scripts/, the
package, the demos, the benchmarks) edits ``sys.path``, and the data modules that the prepare
scripts run (``python -m mega_fairseq.data.NAME``) import no model or task registration. Both
read the source (``ast``), so they cost nothing."""

import ast
from pathlib import Path

from helpers import ROOT

PRODUCT = ("scripts", "mega_fairseq", "demo", "benchmarks")
LIST_EDITS = {"insert", "append", "extend", "remove", "pop", "clear", "__setitem__", "__iadd__"}
REGISTRATION = ("mega_fairseq.models", "mega_fairseq.tasks")


def python_files(*folders):
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def dotted(node) -> str:
    """``a.b.c`` of a Name/Attribute chain; '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = dotted(node.value)
        return f"{owner}.{node.attr}" if owner else ""
    return ""


def path_edits(tree: ast.AST):
    """Line numbers where the module changes sys.path (a call on it, an assignment to it or to an
    item of it, ``from sys import path``) or adds a site folder."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = dotted(node.func)
            if name == "site.addsitedir" or (name.startswith("sys.path.") and name.split(".")[-1] in LIST_EDITS):
                yield node.lineno
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if dotted(target.value if isinstance(target, ast.Subscript) else target) == "sys.path":
                    yield node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
            yield node.lineno


def imported_modules(path: Path, tree: ast.AST):
    """The absolute names of the modules a module of the package imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def test_the_checker_finds_each_kind_of_edit():
    source = ("import sys, site\nsys.path.insert(0, 'x')\nsys.path.append('x')\nsys.path = ['x']\n"
              "sys.path[0] = 'x'\nsys.path += ['x']\nsite.addsitedir('x')\nfrom sys import path\n")
    assert sorted(path_edits(ast.parse(source))) == [2, 3, 4, 5, 6, 7, 8]
    assert list(path_edits(ast.parse("import sys\nprint(sys.path)\nfolders = list(sys.path)\n"))) == []


def test_no_entry_point_edits_sys_path():
    files = python_files(*PRODUCT)
    assert len(files) > 50
    edits = {str(path.relative_to(ROOT)): sorted(path_edits(ast.parse(path.read_text(encoding="utf-8"), str(path))))
             for path in files}
    edits = {path: lines for path, lines in edits.items() if lines}
    assert not edits, f"these edit sys.path (file: lines); import the installed package instead: {edits}"


def test_data_modules_import_no_registration():
    modules = python_files("mega_fairseq/data")
    assert {path.stem for path in modules} >= {"classification", "input_types", "lra", "listops", "pathfinder", "mt",
                                                "speech_commands", "enwik8", "progress"}
    for path in modules:
        imported = set(imported_modules(path, ast.parse(path.read_text(encoding="utf-8"))))
        registering = sorted(name for name in imported if name.startswith(REGISTRATION) or name == "mega_fairseq")
        assert not registering, f"{path.relative_to(ROOT)} imports {registering}"
