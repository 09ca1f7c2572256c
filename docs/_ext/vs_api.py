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
import inspect
import pprint

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

__all__ = ["AutoModules", "Contracts", "setup"]


def _importable(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:
        return False
    if spec is None or spec.origin in (None, "namespace"):  # a bare folder (e.g. data files)
        return False
    importlib.import_module(name)  # a module that exists but fails to import fails the build
    return True


def _data_entry(module: str, name: str, value) -> list[str]:
    """A ``py:data`` description of a public constant, with its value (these constants have
    no docstring of their own; autodata would show the docstring of their type)."""
    text = pprint.pformat(value, width=88, sort_dicts=False)
    lines = [f".. py:data:: {name}"]  # automodule has set the current module
    if "\n" not in text and len(text) <= 80:
        return [*lines, f"   :value: {text}", "", f"   Public constant of :mod:`{module}`.", ""]
    body = text.splitlines()
    if len(body) > 40:
        body = [*body[:40], "..."]
    return [*lines, "", f"   Public constant of :mod:`{module}`; its value:", "",
            "   .. code-block:: python", "", *(f"      {line}" for line in body), ""]


class AutoModules(SphinxDirective):
    """Each content line: ``module.name  Title shown as the section heading`` (MyST pages)."""

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
            # autodoc emits reStructuredText, so it runs inside an eval-rst block. Public
            # constants (in __all__, not functions/classes) get autodata entries of their own.
            module = importlib.import_module(name)
            data = [n for n in getattr(module, "__all__", [])
                    if hasattr(module, n) and not callable(getattr(module, n))
                    and not inspect.ismodule(getattr(module, n))]
            lines += [f"## {title}", "", "```{eval-rst}", f".. automodule:: {name}",
                      "   :members:", "   :undoc-members:", "   :show-inheritance:"]
            if data:
                lines.append(f"   :exclude-members: {', '.join(data)}")
            lines.append("")
            for n in data:
                lines += _data_entry(name, n, getattr(module, n))
            lines += ["```", ""]
        if missing:
            lines += ["```{note}", "Not (yet) part of this build: "
                      + ", ".join(f"`{m}`" for m in missing) + ".", "```", ""]
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source="varshift-automodules"),
                                 container)
        return container.children


class Contracts(SphinxDirective):
    """``varshift-contracts``: the table of every declared argument, generated from the
    declarations (:func:`varshift.contracts.contract_table`)."""

    has_content = False

    def run(self):
        from varshift.contracts import contract_table

        container = nodes.container()
        nested_parse_with_titles(
            self.state, StringList(contract_table().splitlines(), source="varshift-contracts"),
            container)
        return container.children


def setup(app):
    app.add_directive("varshift-automodules", AutoModules)
    app.add_directive("varshift-contracts", Contracts)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
