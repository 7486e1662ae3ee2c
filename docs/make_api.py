"""Write docs/api.md, the reference of ``harp_prune.__all__``, from the signatures and docstrings themselves.

``python docs/make_api.py`` rewrites the page; ``python docs/make_api.py --check`` exits 1 if it is out of date
(tests/test_api_docs.py runs the same comparison). A name that is not a function or class (a registry, the
version string) is documented by the string literal that follows its assignment in the source, as Sphinx reads
attribute docstrings.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import re
import sys
from pathlib import Path
from typing import Any

import harp_prune

PAGE = Path(__file__).resolve().parent / "api.md"
SOURCE = Path(harp_prune.__file__).resolve().parent
# the page's sections in reading order; every public name must be in one, so a new export cannot go unlisted
SECTIONS = {
    "Configuration and the pipeline": ["build_config", "read_yaml", "RunConfig", "run", "prepare", "pretrain", "prune",
                                       "finetune", "evaluate", "load_model"],
    "Robustness evaluation": ["evaluate_robustness"],
    "Pruning your own model": ["HarpPruner", "Pruner", "PRUNERS", "build_pruner", "Prunable", "WeightMask",
                               "wrap_model", "unwrap_model", "masked_layers", "sparsity_report"],
    "Data": ["Splits", "tensor_dataset", "validation_split", "load_dataset", "make_splits"],
    "Models": ["build_model"],
    "Export": ["export_model", "export_checkpoint", "slim_model", "load_slim", "save_sparse", "load_sparse",
               "export_onnx"],
    "Attacks": ["Attack", "FGSM", "PGD"],
    "Errors and version": ["HarpError", "__version__"],
}


def attribute_doc(name: str) -> str | None:
    """The string literal right after the module-level assignment of ``name`` in the package's source."""
    for path in sorted(SOURCE.rglob("*.py")):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for statement, following in itertools.pairwise(body):
            targets = statement.targets if isinstance(statement, ast.Assign) else \
                [statement.target] if isinstance(statement, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and \
                    isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant) and \
                    isinstance(following.value.value, str):
                return inspect.cleandoc(following.value.value)
    return None


def docstring(name: str) -> str | None:
    """The documentation of public name ``name``: its own docstring (functions, classes; not the signature a
    dataclass writes for itself), else its attribute docstring."""
    obj = getattr(harp_prune, name)
    if inspect.isfunction(obj) or inspect.isclass(obj):
        doc = inspect.getdoc(obj)
        if doc and not doc.startswith(f"{obj.__name__}("):
            return doc
        return None
    return attribute_doc(name)


def _annotation(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def signature(obj: Any) -> str:
    """``(a: int, b: str = 'x') -> T`` with the annotations as written in the source."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    parts, keyword_only_marked = [], False
    for parameter in sig.parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and not keyword_only_marked:
            parts.append("*")
            keyword_only_marked = True
        text = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "") + parameter.name
        if parameter.kind is parameter.VAR_POSITIONAL:
            keyword_only_marked = True
        if parameter.annotation is not parameter.empty:
            text += f": {_annotation(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            default = parameter.default  # a function default by name: its repr holds a memory address
            text += f" = {default.__name__ if inspect.isroutine(default) else repr(default)}"
        parts.append(text)
    returns = "" if sig.return_annotation is sig.empty or inspect.isclass(obj) else \
        f" -> {_annotation(sig.return_annotation)}"
    return f"({', '.join(parts)}){returns}"


def markdown(doc: str) -> str:
    """reST-flavoured docstring -> markdown: ``::`` literal blocks fenced as Python, field lists as bullets."""
    lines, out, index = doc.splitlines(), [], 0
    while index < len(lines):
        line = lines[index]
        field = re.match(r":(param|returns?|raises)\s*([^:]*):\s*(.*)", line)
        if field:
            kind, argument, text = field.groups()
            label = f"`{argument.strip()}`" if kind == "param" else kind.rstrip("s").capitalize() + "s"
            out.append(f"- {label}: {text}")
        elif line.rstrip().endswith("::"):
            out += [line.rstrip()[:-1].rstrip() or "Example:", "", "```python"]
            index += 1
            block = []
            while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
                block.append(lines[index])
                index += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
            out += [b[indent:] for b in block] + ["```", ""]
            continue
        elif out and out[-1].startswith("- ") and line.startswith(" ") and line.strip():
            out[-1] += " " + line.strip()  # a field's continuation line
        else:
            out.append(line)
        index += 1
    return "\n".join(out).strip()


def _methods(cls: type) -> list[str]:
    """Public methods and properties the package defines on ``cls`` (or its package base classes), one line each."""
    rows = []
    for name, member in sorted(vars_of(cls).items()):
        function = member.fget if isinstance(member, property) else member
        if name.startswith("_") or not callable(function) or not inspect.getdoc(function):
            continue
        summary = inspect.getdoc(function).split("\n\n")[0].replace("\n", " ")
        shown = name if isinstance(member, property) else f"{name}{signature(getattr(cls, name))}"
        rows.append(f"- `{shown}`: {summary}")
    return rows


def vars_of(cls: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("harp_prune"):
            members.update({k: v for k, v in vars(klass).items() if inspect.isfunction(v) or isinstance(v, property)})
    return members


def entry(name: str) -> str:
    obj = getattr(harp_prune, name)
    if inspect.isfunction(obj) or inspect.isclass(obj):
        kind = "class" if inspect.isclass(obj) else "function"
        parts = [f"### {name}", "", f"*{kind}*", "", "```python", f"{name}{signature(obj)}", "```"]
    else:
        parts = [f"### {name}", "", f"*{type(obj).__name__}*"]
    parts += ["", markdown(docstring(name) or "")]
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        methods = _methods(obj)
        if methods:
            parts += ["", "Methods:", "", *methods]
    return "\n".join(parts)


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation but ``_`` and ``-`` dropped."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def render() -> str:
    listed = [name for names in SECTIONS.values() for name in names]
    unplaced = sorted(set(harp_prune.__all__) - set(listed))
    stale = sorted(set(listed) - set(harp_prune.__all__))
    if unplaced or stale:
        raise SystemExit(f"docs/make_api.py: put {unplaced} into SECTIONS, and drop {stale} from it")
    page = ["# Python API reference", "",
            "Every name `import harp_prune as hp` exports, with its signature and docstring. Generated by "
            "`python docs/make_api.py` from the code; do not edit by hand (`tests/test_api_docs.py` fails when it "
            "is out of date). The README's [Python API](../README.md#python-api) section shows them together; "
            "[examples/](../examples) has runnable scripts.", ""]
    for section, names in SECTIONS.items():
        page.append(f"- {section}: " + ", ".join(f"[`{n}`](#{anchor(n)})" for n in names))
    for section, names in SECTIONS.items():
        page += ["", f"## {section}"]
        for name in names:
            page += ["", entry(name)]
    return "\n".join(page) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print("docs/api.md is out of date; run python docs/make_api.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
