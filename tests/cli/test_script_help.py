"""Every command a script's help shows is accepted: the lines of each scripts/*.sh --help (and of
each scripts/*.py docstring, its --help text) that start with a command, placeholders (TASK,
OUT_DIR, ...) filled in with inputs of the right kind, run with DRY_RUN=1 (the scripts' argument
and input checks, nothing trained, downloaded or evaluated); python -m mega_fairseq.options runs;
other Python commands name an existing script and only flags it declares."""

import ast
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT
from mega_fairseq import options
from mega_fairseq.data.classification import LRA_TASKS

SCRIPTS = ROOT / "scripts"
SHELL_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("*.sh") if p.name != "common.sh")
PYTHON_SCRIPTS = sorted(p.name for p in SCRIPTS.glob("*.py"))
# what each positional argument of a script must be for its checks to pass (see materialise)
INPUTS = {
    "train.sh": ["name", "data_bin", "new"],
    "eval_cls.sh": ["file", "dir"],
    "eval_lm.sh": ["file", "data_bin"],
    "eval_bleu.sh": ["file", "translation_data"],
    "prepare_lra.sh": ["name", "dir", "new"],
    "prepare_sc.sh": ["dir", "new"],
    "prepare_enwik8.sh": ["new", "file"],
    "prepare_wikitext103.sh": ["new", "dir"],
    "prepare_wmt16_en_de.sh": ["new", "parallel_text"],
}
PLACEHOLDERS = {"TASK": "listops", "RECIPE": "lm/demo"}  # others become paths named after them
STARTS = re.compile(r"(python3?|scripts/\S+|fairseq-\S+|make)$")


def shell_help(name: str) -> str:
    proc = subprocess.run(["bash", SCRIPTS / name, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip(), f"{name} --help: {proc.stderr}"
    return proc.stdout


def python_help(name: str) -> str:
    """The docstring (its --help text), read without running the script."""
    return ast.get_docstring(ast.parse((SCRIPTS / name).read_text())) or ""


def commands(text: str):
    """The lines of a help text that start with a command (after VAR=value assignments), with
    continuation lines joined, comments and optional [...] parts dropped. A line of prose that
    starts with a command's name has a word ending a clause (``output,``, ``CPUs)``)."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        line = re.split(r"\s+#", line)[0].strip()
        try:
            words = shlex.split(re.sub(r"\[[^\]]*\]", "", line))
        except ValueError:
            continue  # prose with an apostrophe
        program = next((w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)), "")
        prose = any(re.fullmatch(r".+[.,;:)]|\(.*", word) for word in words)
        if STARTS.fullmatch(program) and not prose:
            found.append(words)
    return found


def examples():
    for name in SHELL_SCRIPTS:
        for words in commands(shell_help(name)):
            yield pytest.param(name, words, id=f"{name}: {' '.join(words)}")
    for name in PYTHON_SCRIPTS:
        for words in commands(python_help(name)):
            yield pytest.param(name, words, id=f"{name}: {' '.join(words)}")


def fill(word: str) -> str:
    return re.sub(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9_]*[A-Z0-9](?![a-z0-9])",
                  lambda m: PLACEHOLDERS.get(m.group(0), m.group(0).lower()), word)


def materialise(kind: str, path: Path):
    """Inputs that pass a script's checks (their contents are never read with DRY_RUN=1)."""
    files = {"file": [""], "data_bin": ["dict.txt", "test.idx"], "dir": [],
             "translation_data": ["bin/dict.en.txt", "bin/dict.de.txt", "bin/test.en-de.en.idx", "spm.model"],
             "parallel_text": [f"{split}.{lang}" for split in ("train", "valid", "test") for lang in ("en", "de")]}
    if kind == "new":
        assert not path.exists(), f"{path} is an output and exists already"
    elif kind == "file":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind in files:
        for name in files[kind]:
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text("ein Satz\n" if kind == "parallel_text" else "")
        path.mkdir(parents=True, exist_ok=True)


def test_every_script_has_a_help_with_commands():
    for name in SHELL_SCRIPTS:
        assert commands(shell_help(name)), f"{name} --help shows no command"


def test_every_mention_of_train_sh_names_a_recipe_it_accepts():
    """Inline mentions too: prepare_lra.sh's help once said "or scripts/train.sh
    configs/lra/TASK.yaml OUT_DIR SAVE_DIR", which train.sh rejects; TASK stands for every LRA task."""
    texts = {name: shell_help(name) for name in SHELL_SCRIPTS}
    texts.update({name: python_help(name) for name in PYTHON_SCRIPTS})
    mentions = [(name, found.group(1)) for name, text in texts.items()
                for found in re.finditer(r"scripts/train\.sh\s+([^\s,;)]+)", text)]
    assert len(mentions) >= 3
    for name, recipe in mentions:
        for task in (LRA_TASKS if "TASK" in recipe else [""]):
            resolved = recipe.replace("TASK", task)
            assert resolved == "RECIPE" or (ROOT / "configs" / f"{resolved}.yaml").is_file(), \
                f"{name} shows scripts/train.sh {recipe}"


@pytest.mark.parametrize("script,words", list(examples()))
def test_a_command_shown_in_a_help_is_accepted(script, words, tmp_path, capsys):
    env = {}
    while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    words = [fill(word) for word in words]
    if words[0].startswith("scripts/") and words[0].endswith(".sh"):
        target = Path(words[0]).name
        positional = [w for w in words[1:] if not w.startswith("-")]
        for kind, word in zip(INPUTS[target], positional):
            materialise(kind, tmp_path / word)
        proc = subprocess.run(["bash", ROOT / words[0], *words[1:]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, **env, "DRY_RUN": "1", "CPU": "1", "WORKERS": "1"})
        assert proc.returncode == 0, f"{script} shows {' '.join(words)}:\n{proc.stdout}{proc.stderr}"
    elif words[:3] == ["python", "-m", "mega_fairseq.options"]:
        options.main(words[3:])
        assert "option" in capsys.readouterr().out
    elif words[0] in ("python", "python3") and words[1].startswith("scripts/"):
        source = (ROOT / words[1]).read_text()
        declared = set(re.findall(r"[\"'](--[a-z0-9-]+)[\"']", source))
        assert {w for w in words[2:] if w.startswith("--")} <= declared, f"{script} shows {' '.join(words)}"
    elif words[0] != "make":
        pytest.fail(f"{script} shows {' '.join(words)}, which this test cannot check: show a script's command")
