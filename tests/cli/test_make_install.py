"""`make install` keeps an installed torch within setup.py's range (a CUDA build above all) instead of
installing the pinned CPU build over it; `TORCH=` on make's command line still decides. The Makefile's
recipe runs for real here with a stand-in Python whose pip only records what it is asked to install
and whose torch is a fake CUDA (or missing) build: nothing is installed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

PIN = "torch==2.13.0"


def fake_python(tmp_path: Path, torch_version):
    """A Python whose ``-m pip`` appends its arguments to pip.log, and whose torch is a fake build
    (version, cuda), or fails to import when ``torch_version`` is None."""
    package = tmp_path / "site" / "torch"
    package.mkdir(parents=True)
    if torch_version is None:
        (package / "__init__.py").write_text("raise ImportError('no torch here')\n")
    else:
        version, cuda = torch_version
        (package / "__init__.py").write_text(f"__version__ = {version!r}\nfrom . import version\n")
        (package / "version.py").write_text(f"cuda = {cuda!r}\n")
    python = tmp_path / "python"
    python.write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then shift 2; echo "$*" >> {tmp_path / 'pip.log'}; exit 0; fi
PYTHONPATH={package.parent} exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    return python


def make_install(tmp_path: Path, torch_version, *arguments):
    """Runs the Makefile's install recipe (the stamp target) with the fake Python; (exit code, output,
    the pip commands it ran)."""
    python = fake_python(tmp_path, torch_version)
    tools = tmp_path / "bin"  # espeak-ng "installed": the recipe must not reach for apt-get
    tools.mkdir()
    (tools / "espeak-ng").write_text("#!/bin/sh\n")
    (tools / "espeak-ng").chmod(0o755)
    stamp = tmp_path / "stamp"
    env = {key: value for key, value in os.environ.items()
           if key not in ("TORCH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = f"{tools}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["make", "-B", "-C", str(ROOT), f"PYTHON={python}", f"STAMP={stamp}", str(stamp),
                           *arguments], capture_output=True, text=True, timeout=120, env=env)
    log = tmp_path / "pip.log"
    return proc.returncode, proc.stdout + proc.stderr, log.read_text().splitlines() if log.exists() else []


def test_make_install_keeps_a_cuda_torch(tmp_path):
    code, output, pip = make_install(tmp_path, ("2.13.0+cu126", "12.6"))
    assert code == 0, output
    assert pip[0] == 'install numpy<2 cython setuptools wheel', pip  # no torch
    assert "torch 2.13.0+cu126 (a CUDA 12.6 build): within setup.py's torch>=2.6,<3, kept" in output
    assert any("fairseq-fixed" in command for command in pip) and pip[-1].startswith("install --no-build-isolation")
    assert (tmp_path / "stamp").exists()


@pytest.mark.parametrize("torch_version,arguments,first", [
    (("2.13.0+cu126", "12.6"), [f"TORCH={PIN}"], f"install {PIN} numpy<2 cython setuptools wheel"),
    (("2.13.0+cu126", "12.6"), ["TORCH="], "install numpy<2 cython setuptools wheel"),
    (None, [], f"install {PIN} numpy<2 cython setuptools wheel"),
], ids=["explicit-pin-over-cuda", "empty-keeps", "no-torch"])
def test_make_install_installs_what_is_asked_or_missing(tmp_path, torch_version, arguments, first):
    code, output, pip = make_install(tmp_path, torch_version, *arguments)
    assert code == 0 and pip[0] == first, (output, pip)


def test_make_install_stops_before_replacing_an_old_cuda_torch(tmp_path):
    code, output, pip = make_install(tmp_path, ("2.1.0+cu118", "11.8"))
    assert code != 0 and pip == [], (output, pip)
    assert "error: torch 2.1.0+cu118 (a CUDA 11.8 build) is outside setup.py's torch>=2.6,<3" in output
    assert not (tmp_path / "stamp").exists()
