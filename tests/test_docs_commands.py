"""Every `harp` command in the README and docs parses: a flag that does not exist (docs/evaluation.md once
showed `harp evaluate --checkpoint`) fails here. Commands are parsed, not run; the README's two main commands
run in CI itself."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harp_prune.cli import COMMANDS as COMMAND_NAMES
from harp_prune.cli import build_parser, with_command

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a harp invocation: `harp ...`, `python -m harp_prune ...` or `torchrun ... -m harp_prune ...`
INVOCATION = re.compile(r"(?:^|[\s`(])(?:harp|-m harp_prune(?:\.cli)?)((?: [^`\n|]*)?)")


def _commands() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        blocks, prose, fence = [], [], None
        for line in document.read_text(encoding="utf-8").splitlines():
            if line.startswith("```") and fence is None:
                fence = []
            elif line.startswith("```"):
                blocks.append("\n".join(fence))
                fence = None
            elif fence is not None:
                fence.append(line)
            else:
                prose.append(line)
        blocks += re.findall(r"`([^`\n]+)`", "\n".join(prose))
        for block in blocks:
            joined = block.replace("\\\n", " ")
            for line in joined.splitlines():
                line = line.split(" #")[0].split(" && ")[0].split(";")[0].split(" | ")[0].strip()
                match = INVOCATION.search(line)
                if match is None or "harp-prune" in line or "harp_prune." in line.replace("harp_prune.cli", ""):
                    continue
                words = match.group(1).strip()
                if "..." in words or "<" in words or "$" in words or words in COMMAND_NAMES:
                    continue  # a placeholder or the name of a command, not a command
                found.append((f"{document.name}: {line}", words))
    return sorted(set(found))


COMMANDS = _commands()


def test_the_documents_hold_commands():
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("where", "words"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_parses(where, words):
    try:
        build_parser().parse_args(with_command(shlex.split(words)))
    except SystemExit as exit_:
        assert exit_.code == 0, f"{where} does not parse"
