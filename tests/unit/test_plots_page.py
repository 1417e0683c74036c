"""The committed `dvc plots show` page template: built from the pinned PyPI package, with the three libraries
inlined and no CDN. (`dvc plots show` itself, on the study's real plots, drawn offline in Chromium: e2e/test_pipeline.py.)"""

from __future__ import annotations

import configparser

from helpers import ROOT

from smallvision import plots_page


def test_committed_template_is_what_the_pinned_package_builds():
    committed = (ROOT / plots_page.TEMPLATE).read_text(encoding="utf8")
    assert committed == plots_page.render_template(), (
        "the committed .dvc/plots/offline.html is not what the pinned package builds; run: python -m smallvision.plots_page"
    )


def test_template_inlines_the_libraries_with_their_licence_and_loads_nothing():
    page = plots_page.render_template()
    assert "{plot_divs}" in page and "{refresh_tag}" in page
    assert "{scripts}" not in page  # where dvc_render would put its CDN <script src=...> tags
    assert "<script src" not in page and "cdn.jsdelivr" not in page
    for lib, version in [("vega", "5.33.0"), ("vega-lite", "5.23.0"), ("vega-embed", "6.29.0")]:
        assert f"/*! {lib} {version} | BSD-3-Clause" in page
    assert "Redistributions in binary form must reproduce the above copyright notice" in page


def test_dvc_config_names_the_template():
    """DVC resolves plots.html_template against .dvc/; a missing file would fail `dvc plots show` confusingly."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert (ROOT / ".dvc" / config["plots"]["html_template"]) == ROOT / plots_page.TEMPLATE
    assert (ROOT / plots_page.TEMPLATE).is_file()
