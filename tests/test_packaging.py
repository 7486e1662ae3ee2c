"""What the wheel must hold is declared in pyproject.toml (checked without building; .ci/run builds and runs one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import harp_prune

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "harp_prune"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _non_python_files() -> set[Path]:
    return {path for path in PACKAGE.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")}


def test_package_data_declares_every_shipped_file():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["harp_prune"]
    matched_by = {pattern: set(PACKAGE.glob(pattern)) for pattern in patterns}
    assert all(matched_by.values()), f"patterns matching nothing: {[p for p, m in matched_by.items() if not m]}"
    assert set().union(*matched_by.values()) == _non_python_files()


def test_the_files_the_wheel_must_hold_exist():
    shipped = {path.relative_to(PACKAGE).as_posix() for path in _non_python_files()}
    assert {"py.typed", "data/embedded/fashion_mnist_small.npz", "data/embedded/LICENSE-fashion-mnist.txt",
            "presets/compare-small.yaml", "presets/paper-cifar10-vgg16.yaml"} <= shipped


def test_the_version_is_written_once():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "harp_prune.version.__version__"}
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert "version" not in citation  # a second copy would drift


def test_license_and_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert set(project["license-files"]) == {"LICENSE", "src/harp_prune/data/embedded/LICENSE-fashion-mnist.txt"}
    assert project["authors"] and project["urls"] and "Typing :: Typed" in project["classifiers"]


def test_the_all_extra_holds_every_other_extra():
    extras = PYPROJECT["project"]["optional-dependencies"]
    (everything,) = extras["all"]
    bundled = set(everything.removeprefix("harp-prune[").removesuffix("]").split(","))
    assert bundled == set(extras) - {"all", "test"}
    assert any(requirement.startswith("scipy") for requirement in extras["svhn"])


def test_python_dash_m_harp_prune_is_the_harp_command():
    done = subprocess.run([sys.executable, "-m", "harp_prune", "--version"], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert done.stdout == f"harp-prune {harp_prune.__version__}\n"
