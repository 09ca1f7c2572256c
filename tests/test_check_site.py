"""The browser check of the site (``docs/_ext/check_site.py``) finds what it says it finds.

Tiny pages, each with one defect, are served and measured in headless Chromium at both widths;
skipped where Playwright or Chromium is missing (``nox -s docs-check`` runs this file first).
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _png(size=64):
    """A grey ``size`` x ``size`` PNG (an image large enough to count as a figure)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\x80" * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PAGE = """<!doctype html><html><head><meta name="viewport" content="width=device-width">
<style>body {{ margin: 0; font: 16px sans-serif; }} article {{ padding: 0 16px; }}
.scroll {{ overflow-x: auto; }}</style></head>
<body><main><article class="bd-article">{body}</article></main></body></html>"""


def _problems(tmp_path, pages, monkeypatch):
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("nbformat")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    import check_site

    (tmp_path / "img.png").write_bytes(_png())
    (tmp_path / "favicon.ico").write_bytes(_png(16))
    for name, body in pages.items():
        (tmp_path / name).write_text(PAGE.format(body=body), encoding="utf-8")
    found = {}
    monkeypatch.setattr(check_site, "site_text_problems", lambda site: [])

    def record(rel, problems):
        found[rel] = problems

    server, base = check_site.serve(tmp_path)
    links = check_site.LinkChecker()
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=check_site.CHROMIUM_ARGS)
            contexts = {label: browser.new_context(viewport={"width": w, "height": h})
                        for label, (w, h) in check_site.WIDTHS.items()}
            for rel in pages:
                record(rel, check_site.check_page(contexts, base, rel, links, None))
            browser.close()
    finally:
        server.shutdown()
    return found


def test_the_check_names_what_is_too_wide_unnumbered_or_raw(tmp_path, monkeypatch):
    long = "varshift.theory." + "keras_expected_moving_variance" * 6 + "()"
    found = _problems(tmp_path, {
        "clean.html": "<p>Fine text.</p><div class='scroll'><table><tr><td>"
                      + "wide " * 200 + "</td></tr></table></div>"
                      "<figure><img src='img.png'><figcaption>Figure A Fine.</figcaption></figure>",
        "wide.html": f"<p>A name: <code>{long}</code></p>",
        "wide_only_on_a_phone.html": "<div style='width: 600px'>a fixed box</div>",
        "raw.html": "<p>Raw TeX: $\\rho = 0.3$ was left here.</p>",
        "figure.html": "<p><img src='img.png'></p>"
                       "<figure><img src='img.png'><figcaption>No number.</figcaption></figure>",
    }, monkeypatch)
    assert found["clean.html"] == []
    wide = " ".join(found["wide.html"])
    assert "1280 px: page" in wide and "390 px: page" in wide and "code" in wide
    phone = " ".join(found["wide_only_on_a_phone.html"])
    assert "390 px: page" in phone and "1280 px" not in phone and "a fixed box" in phone
    assert any("raw TeX" in p and "\\rho = 0.3" in p for p in found["raw.html"])
    figures = [p for p in found["figure.html"] if p.startswith("figure:")]
    assert len(figures) == 2
    assert "is not a numbered, captioned figure" in figures[0]
    assert "has a caption without a number" in figures[1]
