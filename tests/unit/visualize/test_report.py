"""The report page: one self-contained HTML file, a table of contents, each section's text escaped and its figures
embedded (the page in a real browser: tests/e2e/test_report_render.py)."""

from __future__ import annotations

import base64
import re

from smallvision.visualize.report import FigureEntry, Section, render, table_html, write_index

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))  # the page embeds the bytes as they are


def test_the_page_lists_every_section_escapes_its_text_and_embeds_its_figures(tmp_path):
    (tmp_path / "curves.png").write_bytes(PNG)
    sections = [
        Section("comparison", "Comparison", html=table_html(["technique", "test accuracy"], [["a<b", "71.0 %"]], {1})),
        Section(
            "curves",
            "Training <curves>",
            intro="loss & accuracy",
            figures=[FigureEntry(tmp_path / "curves.png", "baseline: 30 epochs")],
            notes=["augment has no curve"],
        ),
    ]
    page = render(sections, "Cats & dogs", subtitle="seed 0", footer="made by smallvision")
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</body></html>\n")
    assert '<nav><a href="#comparison">Comparison</a> <a href="#curves">Training &lt;curves&gt;</a></nav>' in page
    assert "<title>Cats &amp; dogs</title>" in page and "<p>loss &amp; accuracy</p>" in page
    assert '<p class="note">augment has no curve</p>' in page and "<footer>made by smallvision</footer>" in page
    assert "<td>a&lt;b</td><td class=num>71.0 %</td>" in page
    (data,) = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="curves">', page)
    assert base64.b64decode(data) == PNG and "<figcaption>baseline: 30 epochs</figcaption>" in page
    assert page.index('id="comparison"') < page.index('id="curves"')  # in the order given


def test_the_page_is_written_whole(tmp_path):
    path = write_index(tmp_path / "reports" / "index.html", [Section("s", "S")], "Study")
    assert path.read_text(encoding="utf-8") == render([Section("s", "S")], "Study")
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]  # no partial file left
