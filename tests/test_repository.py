"""The repository explains itself: nothing in it points at documents outside it.

Code comments, docs, configs and benchmarks cite files of this repository only (docs/method.md by section
name, e.g. "docs/method.md, 'The STE'"), so whoever picks the project up from its repository can follow
every reference.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCANNED = ("src", "tests", "docs", "README.md", "configs", "benchmarks")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml", ".txt", ".cfg"}

# Documents that lived next to the repository while it was written and are not part of it. The patterns
# are regular expressions, so this file does not match its own source.
OUTSIDE_DOCUMENTS = [
    re.compile(p) for p in (
        r"\.\./shared\b", r"\bshared/spec\b", r"\bmethod\.md\s*(§|section\b)", r"\bofficial-code\.md\b",
        r"\bplatform\.md\b", r"\breference-results\.md\b", r"\bpeers\.md\b",
    )
]
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
METHOD_CITATION = re.compile(r"docs/method\.md, '([^']+)'")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = REPO / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [f for f in candidates if f.is_file() and f.suffix in TEXT_SUFFIXES and "__pycache__" not in f.parts]
    return files


def headings(markdown: Path) -> list[str]:
    return HEADING.findall(markdown.read_text(encoding="utf-8"))


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def broken_link(source: Path, target: str) -> str | None:
    """Why the relative link ``target`` in ``source`` does not lead to a file of this repository, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto:, ...
        return None
    path_part, _, fragment = target.partition("#")
    resolved = (source.parent / path_part).resolve() if path_part else source
    if not resolved.is_relative_to(REPO):
        return f"link '{target}' leaves the repository"
    if not resolved.exists():
        return f"link '{target}' points at a path that does not exist"
    if fragment and resolved.suffix == ".md" and fragment not in {anchor(h) for h in headings(resolved)}:
        return f"link '{target}' names no heading of {resolved.relative_to(REPO)}"
    return None


def test_scan_covers_the_repository():
    files = {f.relative_to(REPO).as_posix() for f in scanned_files()}
    assert {"README.md", "docs/method.md", "src/harp_prune/pruning/masked.py", "tests/test_repository.py"} <= files


def test_nothing_refers_to_documents_outside_the_repository():
    found = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8")
        for pattern in OUTSIDE_DOCUMENTS:
            found += [f"{path.relative_to(REPO)}:{line_of(text, m.start())}: '{m.group(0)}'"
                      for m in pattern.finditer(text)]
    assert not found, "references to documents outside the repository:\n" + "\n".join(found)


def test_markdown_links_lead_to_files_of_the_repository():
    found = []
    for path in scanned_files():
        if path.suffix != ".md":
            continue
        text = path.read_text(encoding="utf-8")
        for match in MARKDOWN_LINK.finditer(text):
            problem = broken_link(path, match.group(1))
            if problem:
                found.append(f"{path.relative_to(REPO)}:{line_of(text, match.start())}: {problem}")
    assert not found, "broken links:\n" + "\n".join(found)


def test_citations_of_docs_method_name_its_sections():
    sections = set(headings(REPO / "docs" / "method.md"))
    found = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(REPO)}:{line_of(text, m.start())}: no section '{m.group(1)}'"
                  for m in METHOD_CITATION.finditer(text) if m.group(1) not in sections]
    assert not found, f"docs/method.md has the sections {sorted(sections)}; unknown ones cited:\n" + "\n".join(found)


# The examples are joined from pieces so that this file passes its own scan.
@pytest.mark.parametrize(("text", "expected"), [
    ("see " + "/".join(["..", "shared", "spec", "method.md"]), 2),  # both the folder and the spec path
    ("as in method.md " + "§3.3", 1),
    ("official-code" + ".md bug 4", 1),
    ("docs/method.md, 'The STE'", 0),
])
def test_outside_patterns_match_what_they_are_meant_to(text, expected):
    assert sum(len(p.findall(text)) for p in OUTSIDE_DOCUMENTS) == expected


def test_broken_links_are_recognised(tmp_path):
    readme = REPO / "README.md"
    assert broken_link(readme, "docs/method.md#the-ste") is None
    assert broken_link(readme, "https://example.org/x.md") is None
    assert broken_link(readme, "docs/missing.md") == "link 'docs/missing.md' points at a path that does not exist"
    assert broken_link(readme, "../outside.md") == "link '../outside.md' leaves the repository"
    assert broken_link(readme, "docs/method.md#no-such-heading") == \
        "link 'docs/method.md#no-such-heading' names no heading of docs/method.md"
