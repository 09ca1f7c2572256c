"""Fail the docs build when a page shows a traceback, "File not found" or a machine path.

A page whose data is missing must say so in one plain sentence with the command that produces
it (see :func:`vsdocs.missing_data`), never with a raw error. After the HTML is written this
extension reads the visible text of every page (scripts and styles removed) and logs an error
(a failed build under ``-W``) naming the page and what it found. ``check_site.py`` runs the
same test on the text the browser shows.
"""

from __future__ import annotations

import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path

#: what a page may never show: a raw error, or a path of the machine that built it
FORBIDDEN = [
    ("a traceback", re.compile(r"Traceback")),
    ('"File not found"', re.compile(r"File not found", re.I)),
    ("a temporary path", re.compile(r"(?<![\w.])(/tmp/|/var/tmp/|/var/folders/|/private/var/)"
                                    r"|[A-Z]:\\\\Users\\\\[^\\\\]+\\\\AppData\\\\Local\\\\Temp")),
]
_TMP = tempfile.gettempdir().rstrip("/\\")
if _TMP not in ("/tmp", ""):
    FORBIDDEN.append(("a temporary path", re.compile(re.escape(_TMP + "/"))))
SKIP_DIRS = {"_static", "_sources", "_images", ".doctrees", "jupyter_execute",
             "_sphinx_design_static", "_downloads"}

__all__ = ["FORBIDDEN", "problems", "visible_text", "setup"]


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The text of an HTML page without its scripts and styles."""
    parser = _Text()
    parser.feed(html)
    return " ".join(parser.parts)


def problems(text: str) -> list[str]:
    """What ``text`` shows that no page may show, each with a little context."""
    found = []
    for what, pattern in FORBIDDEN:
        for match in pattern.finditer(text):
            start = max(0, match.start() - 40)
            context = " ".join(text[start:match.end() + 40].split())
            found.append(f"{what}: ...{context}...")
            break
    return found


def _pages(outdir: Path):
    for path in sorted(outdir.rglob("*.html")):
        if not SKIP_DIRS & set(path.relative_to(outdir).parts):
            yield path


def _on_build_finished(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    outdir = Path(app.outdir)
    for path in _pages(outdir):
        for problem in problems(visible_text(path.read_text(encoding="utf-8", errors="replace"))):
            logger.error(f"{path.relative_to(outdir)} shows {problem} (a page whose data is "
                         "missing says so in one sentence with the command that produces it)")


def setup(app):
    app.connect("build-finished", _on_build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
