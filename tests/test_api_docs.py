"""Every public name is documented, the main entry points with an example, and docs/api.md is what the code says."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import harp_prune as hp

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = ["build_config", "run", "pretrain", "prune", "finetune", "evaluate", "load_model", "export_model",
                "HarpPruner", "evaluate_robustness", "Splits", "slim_model", "validation_split"]


def _make_api():
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_api = _make_api()


@pytest.mark.parametrize("name", hp.__all__)
def test_every_public_name_has_a_docstring_of_a_sentence_or_more(name):
    doc = make_api.docstring(name)
    assert doc is not None, f"{name} has no docstring"
    summary = doc.split("\n\n")[0]
    assert len(summary.split()) >= 5, f"{name}: {summary!r} is not a sentence"


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_the_main_entry_points_have_an_example(name):
    assert name in hp.__all__
    doc = make_api.docstring(name)
    example = doc.split("Example::", 1)[1] if "Example::" in doc else ""
    assert "hp." in example or f"{name}(" in example, f"{name} has no Example:: block that calls it"


def test_a_dataclass_signature_or_a_bare_value_is_no_docstring(monkeypatch):
    monkeypatch.setattr(hp, "Bare", dataclasses.make_dataclass("Bare", [("x", int)]), raising=False)
    monkeypatch.setattr(hp, "BARE_VALUE", 3, raising=False)
    assert make_api.docstring("Bare") is None and make_api.docstring("BARE_VALUE") is None


def test_the_committed_api_page_is_what_the_script_writes():
    assert (ROOT / "docs" / "api.md").read_text(encoding="utf-8") == make_api.render(), \
        "docs/api.md is out of date; run python docs/make_api.py"


def test_the_script_checks_the_page_from_the_command_line():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "make_api.py"), "--check"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_name_left_out_of_the_sections_stops_the_script(monkeypatch):
    monkeypatch.setattr(hp, "__all__", [*hp.__all__, "an_unplaced_name"])
    with pytest.raises(SystemExit, match="an_unplaced_name"):
        make_api.render()
