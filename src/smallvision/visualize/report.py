"""reports/index.html: one self-contained page (every image embedded as base64), the comparison first.

Documented check that the page renders in a real browser (Debian's Chromium, headless):

    apt-get update && apt-get install -y chromium
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir=$(mktemp -d) --screenshot=/tmp/report.png --window-size=1280,4000 \
        file://$PWD/reports/index.html

then look at /tmp/report.png.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1em 1.5em 3em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1em; } figure { margin: 1em 0 2em; } figcaption { color: #555; font-size: 0.95em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; } th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff7e0; border-left: 4px solid #e0b000; padding: 0.4em 0.8em; margin: 0.6em 0; }
footer { color: #777; font-size: 0.9em; margin-top: 3em; }
"""


@dataclass
class FigureEntry:
    path: Path
    caption: str


@dataclass
class Section:
    """One part of the page: an anchor id, a heading, an introduction, figures, notes and optional raw HTML."""

    id: str
    title: str
    intro: str = ""
    figures: list[FigureEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    html: str = ""


def table_html(columns: list[str], rows: list[list[str]], numeric: frozenset[int] = frozenset()) -> str:
    """An HTML table of already formatted cells (escaped here)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i in numeric else ''}>{html.escape(str(cell))}</td>" for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).stem)}">'


def render(sections: list[Section], title: str, subtitle: str = "", footer: str = "") -> str:
    """The page: title, a table of contents, then each section in order."""
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        (
            f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{_STYLE}</style></head><body>"
        ),
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(subtitle)}</p>" if subtitle else "",
        f"<nav>{nav}</nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>')
        if s.intro:
            parts.append(f"<p>{html.escape(s.intro)}</p>")
        parts.extend(f'<p class="note">{html.escape(n)}</p>' for n in s.notes)
        parts.append(s.html)
        for fig in s.figures:
            parts.append(f"<figure>{_image(fig.path)}<figcaption>{html.escape(fig.caption)}</figcaption></figure>")
        parts.append("</section>")
    if footer:
        parts.append(f"<footer>{html.escape(footer)}</footer>")
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def write_index(path: Path, sections: list[Section], title: str, subtitle: str = "", footer: str = "") -> Path:
    """Write the page through a temporary file, so an interrupted run never leaves a page that looks complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(render(sections, title, subtitle, footer), encoding="utf-8")
    partial.replace(path)
    return path
