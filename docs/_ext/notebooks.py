"""Every executed page as a Jupyter notebook to download, generated from its MyST source.

For each page written as a MyST notebook (``file_format: mystnb``) with code cells, the HTML
builder writes ``_sources/<page>.ipynb`` (the theme's download menu then offers ".ipynb"):
the page's cells converted by MyST-NB's own reader, preceded by

1. a Markdown cell: which page and version it comes from, and that it runs as downloaded after
   ``pip install varshift``;
2. a code cell installing ``varshift`` (and the page's plotting libraries) where missing;
3. one ``%%writefile`` cell per helper module of ``docs/_ext`` that the page imports
   (``vsdocs``, ``shown_results``, ``interactive``), so that the notebook is self-contained.

Nothing is stored in the repository: the notebooks are built with the site. Launch buttons
(Binder, Colab) are configured in ``conf.py`` only when ``pyproject.toml`` names a repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

EXT = Path(__file__).resolve().parent
#: helper module -> the modules it needs (written into the notebook in this order)
HELPERS = {"vsdocs": ("shown_results", "vsdocs"), "interactive": ("interactive",)}
#: import name -> pip requirement installed by the first cell when missing
REQUIREMENTS = {"varshift": "varshift[reproduce]", "matplotlib": "matplotlib",
                "pandas": "pandas", "IPython": "ipython", "plotly": "plotly"}

INSTALL = """\
# This notebook runs as downloaded after `pip install varshift`; this cell installs varshift
# and the plotting libraries of the page where they are missing.
import importlib.util
import subprocess
import sys

REQUIREMENTS = {requirements!r}
missing = [req for name, req in REQUIREMENTS.items() if importlib.util.find_spec(name) is None]
if missing:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
"""


def is_executed(source: str) -> bool:
    """A MyST notebook page with at least one code cell."""
    return "file_format: mystnb" in source and "```{code-cell}" in source


def helpers_of(code: str) -> list[str]:
    """The ``docs/_ext`` modules a page's code imports, with their own dependencies."""
    found = []
    for name, needs in HELPERS.items():
        if re.search(rf"^\s*(from|import)\s+{name}\b", code, flags=re.M):
            found += [n for n in needs if n not in found]
    return found


def page_notebook(source: str, docname: str, version: str) -> nbformat.NotebookNode:
    """The downloadable notebook of one page (validated)."""
    from myst_nb.core.read import read_myst_markdown_notebook

    nb = read_myst_markdown_notebook(source.replace("RESULTS_FINGERPRINT", "(site build)"))
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    helpers = helpers_of(code)
    wanted = {"varshift"} | {k for k in REQUIREMENTS if re.search(rf"\b{k}\b", code)}
    if "vsdocs" in helpers:
        wanted |= {"matplotlib", "pandas", "IPython"}
    if "interactive" in helpers:
        wanted |= {"plotly", "IPython"}
    requirements = {k: v for k, v in REQUIREMENTS.items() if k in wanted}
    intro = [
        nbformat.v4.new_markdown_cell(
            f"*Notebook of the page `docs/{docname}.md` of varshift {version}, generated when the "
            "documentation was built.* It runs as downloaded after `pip install varshift`: the "
            "next cell installs what is missing, the cells after it write the small helper "
            "modules of the documentation next to the notebook."),
        nbformat.v4.new_code_cell(INSTALL.format(requirements=requirements)),
    ]
    for name in helpers:
        text = (EXT / f"{name}.py").read_text(encoding="utf-8")
        intro.append(nbformat.v4.new_code_cell(f"%%writefile {name}.py\n{text}"))
    nb.cells = intro + nb.cells
    nb.metadata = {"kernelspec": nb.metadata.get("kernelspec", {"name": "python3",
                                                                 "display_name": "Python 3"}),
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    return nb


def _on_page(app, pagename, templatename, context, doctree):
    if app.builder.format != "html" or doctree is None or pagename not in app.env.found_docs:
        return
    path = Path(app.env.doc2path(pagename))
    if path.suffix != ".md":
        return
    source = path.read_text(encoding="utf-8")
    if not is_executed(source):
        return
    out = Path(app.outdir) / "_sources" / f"{pagename}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(page_notebook(source, pagename, app.config.release), str(out))
    context["ipynb_source"] = f"{pagename}.ipynb"  # the theme's download menu links it


def setup(app):
    app.connect("html-page-context", _on_page)  # before the theme's header buttons (501)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
