"""scripts/torch_requirement.py, which `make install` asks for the torch to install: an installed torch
within setup.py's range (a CUDA build above all) is kept instead of installing the pinned CPU build
over it; `TORCH=` on make's command line still decides. The Makefile's recipe itself:
tests/cli/test_make_install.py."""

import pytest

from helpers import script

torch_requirement = script("torch_requirement")
SPEC = torch_requirement.admissible_range(torch_requirement.SETUP.read_text())
PIN = "torch==2.13.0"


@pytest.mark.parametrize("installed,cuda,expected", [
    ("2.13.0+cu126", "12.6", ""),  # a CUDA build in range: kept
    ("2.6.0+cu124", "12.4", ""),
    ("2.13.0+cpu", None, ""),  # the pin itself, or another CPU build in range: kept as well
    ("2.6.0", None, ""),
    (None, None, PIN),  # no torch
    ("2.1.2+cpu", None, PIN),  # a CPU build out of range: replaced by the pin
    ("3.0.0", None, PIN),
])
def test_requirement(installed, cuda, expected):
    assert SPEC == ">=2.6,<3"
    assert torch_requirement.requirement(PIN, False, installed, cuda, SPEC)[0] == expected


def test_a_cuda_build_out_of_range_is_not_replaced_silently():
    with pytest.raises(torch_requirement.KeepRefused, match=r"torch 2\.1\.0\+cu118 \(a CUDA 11\.8 build\) is outside"):
        torch_requirement.requirement(PIN, False, "2.1.0+cu118", "11.8", SPEC)
    with pytest.raises(torch_requirement.KeepRefused, match=r"torch 2\.4\.1\+cu121 .* is outside"):
        torch_requirement.requirement(PIN, False, "2.4.1+cu121", "12.1", SPEC)  # below the plugin's floor


def test_an_explicit_torch_is_installed_as_given():
    assert torch_requirement.requirement(PIN, True, "2.13.0+cu126", "12.6", SPEC)[0] == PIN
    assert torch_requirement.requirement("", True, None, None, SPEC)[0] == ""  # TORCH= keeps any torch


def test_versions():
    assert torch_requirement.in_range("2.4", ">=2.4,<3") and torch_requirement.in_range("2.5.0a0+git12", ">=2.4,<3")
    assert not torch_requirement.in_range("2.3.1", ">=2.4,<3") and not torch_requirement.in_range("3.0", ">=2.4,<3")
    assert torch_requirement.in_range("2.13.0+cu126", "==2.13")
