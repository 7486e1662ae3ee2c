"""HTML building blocks of a report page: sections, tables, embedded figures, notes; one style sheet, no scripts."""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from harp_prune.version import __version__

NUMBER = re.compile(r"[-+]?[\d,.]+( ?[±/] ?[\d,.]+)?")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.2em 2em 3em; color: #1d2430; line-height: 1.45; }
h1 { font-size: 1.55em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 2.2em; border-bottom: 1px solid #d7dce3; padding-bottom: 0.2em; }
p.lead { color: #4a5565; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #d7dce3; padding: 0.28em 0.7em; text-align: left; }
th { background: #f1f4f8; } td.number { text-align: right; }
.wide { overflow-x: auto; }
img { max-width: 100%; border: 1px solid #eef0f3; }
.note { color: #4a5565; font-size: 0.92em; }
.flag { background: #fff4e0; border-left: 4px solid #e69500; padding: 0.4em 0.8em; margin: 0.4em 0; }
.ok { background: #eaf7ec; border-left: 4px solid #2f9e44; padding: 0.4em 0.8em; margin: 0.4em 0; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
footer { margin-top: 3em; color: #7a8494; font-size: 0.85em; }
"""


def percent(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table of plain values (escaped)."""
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(_cell(str(cell)) for cell in row) + "</tr>" for row in rows)
    # wide grids (a comparison's methods as columns) scroll inside the page rather than past its edge
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cell(text: str) -> str:
    """Figures (12.5, 1,626 / 162,552, 0.45 ± 0.02) right-aligned, words left-aligned."""
    numeric = NUMBER.fullmatch(text) is not None
    return f'<td class="number">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def figure(png: bytes, alt: str) -> str:
    """A PNG embedded in the page, so the page is one file that can be mailed or archived."""
    return f'<p><img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'


def paragraph(text: str, css_class: str = "note") -> str:
    return f'<p class="{css_class}">{escape(text)}</p>'


def flags(messages: Sequence[str], all_clear: str) -> str:
    """Warnings each in an orange box, or one green line saying nothing was flagged."""
    if not messages:
        return f'<div class="ok">{escape(all_clear)}</div>'
    return "".join(f'<div class="flag">{escape(message)}</div>' for message in messages)


def details(summary: str, text: str) -> str:
    return f"<details><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"


@dataclass
class Page:
    """A report page: a title, a lead line, and sections of ready HTML, in order."""

    title: str
    lead: str
    sections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, heading: str, *parts: str) -> None:
        self.sections.append((heading, "".join(parts)))

    def html(self) -> str:
        written = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        body = "".join(f"<section><h2>{escape(heading)}</h2>{content}</section>" for heading, content in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(self.title)}</title>'
                f"<style>{STYLE}</style></head><body><h1>{escape(self.title)}</h1>"
                f'<p class="lead">{escape(self.lead)}</p>{body}'
                f"<footer>written by harp-prune {escape(__version__)} on {escape(written)}</footer></body></html>\n")
