"""Raw tables of the reproduction pages in words: a CSV's ``snake_case`` headers read as words.

The reproduction pages show each artefact's CSV files (``paper_vs_ours.csv``, ``table.csv``)
as tables in a collapsed block, next to their download link. The files keep their column
names (``test_error_mean``, what ``pandas.read_csv`` gives a reader); the tables on the page
show them as words (``test error mean``). Every table inside a dropdown of a
``reproduction/`` page is concerned; the table scrolls in its own box (``varshift.css``), so it
never widens the page.
"""

from __future__ import annotations

import re

from docutils import nodes

PREFIX = "reproduction/"
_SNAKE = re.compile(r"(?<=[A-Za-z0-9])_(?=[A-Za-z0-9])")


def words(header: str) -> str:
    """``test_error_mean`` -> ``test error mean`` (other text unchanged)."""
    return _SNAKE.sub(" ", header)


def _in_dropdown(node) -> bool:
    """Inside a sphinx-design dropdown (a container of ``design_component`` "dropdown" when the
    page is read)."""
    parent = node.parent
    while parent is not None:
        if parent.get("design_component") == "dropdown" or parent.get("type") == "dropdown":
            return True
        parent = parent.parent
    return False


def on_doctree_read(app, doctree) -> None:
    if not app.env.docname.startswith(PREFIX):
        return
    for thead in list(doctree.findall(nodes.thead)):
        if not _in_dropdown(thead):
            continue
        for text in list(thead.findall(nodes.Text)):
            if _SNAKE.search(str(text)) and not isinstance(text.parent, nodes.literal):
                text.parent.replace(text, nodes.Text(words(str(text))))


def setup(app):
    app.connect("doctree-read", on_doctree_read)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
