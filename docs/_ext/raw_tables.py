"""Tables of the reproduction pages in words: a CSV's ``snake_case`` headers read as words.

The reproduction pages show each artefact's tables (the target's summary, and its CSV files
``paper_vs_ours.csv`` and ``table.csv`` in a collapsed block, next to their download link).
The files keep their column names (``test_error_mean``, what ``pandas.read_csv`` gives a
reader); the tables on the page show them as words (``test error mean``). Every table header
of a ``reproduction/`` page is concerned, except code; a table scrolls in its own box
(``varshift.css``), so it never widens the page.
"""

from __future__ import annotations

import re

from docutils import nodes

PREFIX = "reproduction/"
_SNAKE = re.compile(r"(?<=[A-Za-z0-9])_(?=[A-Za-z0-9])")


def words(header: str) -> str:
    """``test_error_mean`` -> ``test error mean`` (other text unchanged)."""
    return _SNAKE.sub(" ", header)


def on_doctree_read(app, doctree) -> None:
    if not app.env.docname.startswith(PREFIX):
        return
    for thead in list(doctree.findall(nodes.thead)):
        for text in list(thead.findall(nodes.Text)):
            if _SNAKE.search(str(text)) and not isinstance(text.parent, nodes.literal):
                text.parent.replace(text, nodes.Text(words(str(text))))


def setup(app):
    app.connect("doctree-read", on_doctree_read)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
