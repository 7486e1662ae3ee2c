"""The package's layers import only downwards: a leaf never reaches up to what wires it together.

Every ``harp_prune`` import in every module (also those inside functions) is checked against the layer
table below; two packages of one layer may not import each other either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "harp_prune"

# lower numbers are lower layers; a module may import its own package and anything in a lower layer
LAYERS = {
    "errors": 0, "files": 0, "registry": 0, "records": 0, "progress": 0, "version": 0, "presets": 0, "threads": 0,
    "distributed": 1,
    "data": 2, "models": 2, "attacks": 2,
    "pruning": 3,
    "training": 4,
    "evaluation": 5, "export": 5,
    "config": 6, "results": 6, "report": 6,
    "pipeline": 7,
    "compare": 8,
    "cli": 9, "__main__": 10,
}


def _unit(module: str) -> str:
    """harp_prune.pruning.harp -> pruning; harp_prune -> the package root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__root__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harp_prune"):
            if node.module == "harp_prune":  # from harp_prune import distributed: the submodules named
                found += [(node.lineno, f"harp_prune.{a.name}" if a.name in LAYERS else "harp_prune")
                          for a in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("harp_prune")]
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE)
        if relative.name == "__init__.py" and relative.parent == Path("."):
            continue  # the package root re-exports the flat API from every layer
        unit = relative.parts[0].removesuffix(".py")
        own = LAYERS[unit]
        for line, module in _imports(path):
            target = _unit(module)
            if target == "__root__":
                bad.append(f"{relative}:{line} imports the package root ({module})")
            elif target != unit and (LAYERS[target] > own or (LAYERS[target] == own and own > 0)):
                bad.append(f"{relative}:{line} ({unit}, layer {own}) imports {module} (layer {LAYERS[target]})")
    return bad


def test_every_module_has_a_layer():
    units = {p.relative_to(SOURCE).parts[0].removesuffix(".py") for p in SOURCE.rglob("*.py")}
    assert units - {"__init__"} <= set(LAYERS)


def test_imports_go_downwards_only():
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a leaf importing the pipeline is reported."""
    fake = tmp_path / "harp_prune"
    (fake / "pruning").mkdir(parents=True)
    (fake / "pruning" / "bad.py").write_text("def f():\n    from harp_prune.pipeline import run\n")
    monkeypatch.setattr(__import__(__name__), "SOURCE", fake)
    with pytest.raises(AssertionError):
        test_imports_go_downwards_only()
