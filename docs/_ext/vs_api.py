"""``varshift-automodules``: one autodoc section per public varshift module that exists.

Modules of the package land at different times (diagnostics, nets, data, train come from
separate pieces of work). The API page lists all public module names; this directive emits an
``automodule`` with all members for each one that can be imported, so a new name appears on the
page as soon as its module exists, and lists the ones that do not exist (yet) in a note instead
of failing the build.
"""

from __future__ import annotations

import importlib
import importlib.util

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["AutoModules", "setup"]


def _importable(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return False
    if spec is None or spec.origin in (None, "namespace"):  # a bare folder (e.g. data files)
        return False
    importlib.import_module(name)  # a module that exists but fails to import fails the build
    return True


class AutoModules(SphinxDirective):
    """Each content line: ``module.name  Title shown as the section heading``."""

    has_content = True

    def run(self):
        lines, missing = [], []
        for raw in self.content:
            if not raw.strip():
                continue
            name, _, title = raw.strip().partition(" ")
            title = title.strip() or name
            if not _importable(name):
                missing.append(name)
                continue
            lines += [title, "-" * max(len(title), 3), "",
                      f".. automodule:: {name}", "   :members:", "   :show-inheritance:", ""]
        if missing:
            lines += [".. note::", "",
                      "   Not (yet) part of this build: "
                      + ", ".join(f"``{m}``" for m in missing) + ".", ""]
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source="varshift-automodules"),
                                 container)
        return container.children


def setup(app):
    app.add_directive("varshift-automodules", AutoModules)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
