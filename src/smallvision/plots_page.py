"""The page template `dvc plots show` fills (.dvc/plots/offline.html), with Vega, Vega-Lite and Vega-Embed inlined,
so the plots draw with no network.

DVC's default page loads the three libraries from a CDN: offline (this project's world) it is blank. dvc_render
puts its CDN <script> tags where a template says `{scripts}`; this template leaves `{scripts}` out and carries
the libraries itself, from the pinned PyPI package django-js-lib-vega-embed (a dev dependency, no Django needed):
npm's own vega.min.js, vega-lite.min.js and vega-embed.min.js less their sourceMappingURL line, checked here by
sha256. BSD-3-Clause (University of Washington Interactive Data Lab): the page carries the notice.

The generated file is committed (.dvc/config names it), not generated at install time: pip runs no install hooks,
and DVC reads a missing template as template text and fails with "HTML template has to contain '{plot_divs}'",
so a file made by a command could be missing in any fresh clone, `dvc exp run --temp` workspace or CI checkout.
tests/unit/test_plots_page.py fails when the committed file differs from what this module builds from the pinned
package. After changing the pin:  python -m smallvision.plots_page
"""

from __future__ import annotations

import hashlib
import sys
from importlib import metadata, resources
from pathlib import Path

from smallvision.entrypoints import friendly_errors
from smallvision.errors import DataError

DIST, PIN = "django-js-lib-vega-embed", "6.29.0.3"
TEMPLATE = Path(".dvc") / "plots" / "offline.html"  # .dvc/config: [plots] html_template = plots/offline.html
# file in js_lib_vega_embed/static/js_lib_vega_embed -> (library, version, sha256, copyright line of its npm LICENSE).
# Each sha256 is that of npm's build/<lib>.min.js of that version less its last line,
# "//# sourceMappingURL=<lib>.min.js.map" (compared byte for byte with `npm pack`).
LIBS = {
    "vega5.js": (
        "vega",
        "5.33.0",
        "6a6c1e9978bd78435dfbb51344d1d536319262e70f2c569ca9764ce5acc203da",
        "Copyright (c) 2015-2023, University of Washington Interactive Data Lab",
    ),
    "vega-lite5.js": (
        "vega-lite",
        "5.23.0",
        "594f554cecafe6b992d51b7c00f4c0e5fc5f92114c7e1a641d2cf150f21cc60d",
        "Copyright (c) 2015, University of Washington Interactive Data Lab.",
    ),
    "vega-embed6.js": (
        "vega-embed",
        "6.29.0",
        "dbd49aff8999dfb12983cbcefeefb355ae72af68d7556ddcec12193a0eb46450",
        "Copyright (c) 2015, University of Washington Interactive Data Lab",
    ),
}
# dvc_render.html.HTML fills these with str.replace; {scripts} (the CDN tags) is deliberately absent from the page
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
<!--
{notice}
-->
{inline_scripts}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""

_FIX = f"install the pinned version: pip install '{DIST}=={PIN}' (it is in the dev extra)"


def _licence_text() -> str:
    """The BSD-3-Clause text shipped in the wheel, less its copyright line (the page lists one per library)."""
    (licence,) = [f for f in metadata.files(DIST) or [] if f.name == "LICENSE"]
    return licence.read_text(encoding="utf8").split("\n", 1)[1].strip()


def render_template() -> str:
    """The template's text, built from the installed pinned package."""
    try:
        installed = metadata.version(DIST)
    except metadata.PackageNotFoundError:
        raise DataError(f"{DIST} is not installed; {_FIX}") from None
    static = resources.files("js_lib_vega_embed") / "static" / "js_lib_vega_embed"
    scripts, notices = [], []
    for name, (lib, version, sha256, copyright_line) in LIBS.items():
        raw = (static / name).read_bytes()
        if hashlib.sha256(raw).hexdigest() != sha256:
            raise DataError(f"{name} of {DIST} {installed} is not the pinned {lib} {version}; {_FIX}")
        js = raw.decode("utf8")
        for bad in (*PLACEHOLDERS, "</script", "<!--"):  # would end the <script> early or be filled in by DVC
            if bad.lower() in js.lower():
                raise DataError(f"{name} of {DIST} {installed} contains {bad!r} and cannot be inlined; {_FIX}")
        scripts.append(f"<script>/*! {lib} {version} | BSD-3-Clause | {copyright_line} */\n{js}\n</script>")
        notices.append(f"{lib} {version}: {copyright_line}")
    notice = (
        f"Vega, Vega-Lite and Vega-Embed, inlined from the PyPI package {DIST}=={installed}.\n"
        + "\n".join(notices)
        + "\n\n"
        + _licence_text()
    ).replace("--", "- -")  # nothing may close the HTML comment early
    return PAGE.replace("{notice}", notice).replace("{inline_scripts}", "\n".join(scripts))


def write_template(dest: Path = TEMPLATE) -> Path:
    """Write the template to `dest` (only when its text changes)."""
    dest, page = Path(dest), render_template()
    if not dest.is_file() or dest.read_text(encoding="utf8") != page:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(page, encoding="utf8")
    return dest


@friendly_errors
def main(argv: list[str]) -> None:
    print(write_template(Path(argv[0]) if argv else TEMPLATE))


if __name__ == "__main__":
    main(sys.argv[1:])
