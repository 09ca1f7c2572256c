"""Every executed page as a Jupyter notebook to download, generated from its MyST source.

For each page written as a MyST notebook (``file_format: mystnb``) with code cells, the HTML
builder writes ``_sources/<page>.ipynb`` (the theme's download menu then offers ".ipynb"):
the page's cells converted by MyST-NB's own reader, with

- the cells tagged ``site-only`` left out: they set up the site itself (its helper modules
  ``vsdocs``, ``paper_facts``, ``interactive``, glued numbers), which a reader does not have;
- the numbers the page glues into its text (``{glue:text}`name```, ``{glue:md}``) replaced by
  the values of the site's build, taken from MyST-NB's glue store of the executed page, and a
  ``{glue:figure}`` directive by its caption (the page's code draws the figure);
- preceded by a Markdown cell (which page and version it comes from, that it runs after
  ``pip install varshift``) and a code cell installing the plotting libraries the page's code
  imports where they are missing.

So a downloaded notebook needs nothing of the repository: ``run_notebooks.py`` executes every
page's download (but the PyTorch page's) in a fresh virtual environment with only varshift
installed (``nox -s docs-check``). Nothing is stored in the repository: the notebooks are built with the
site. Launch buttons (Binder, Colab) are configured in ``conf.py`` only when
``pyproject.toml`` names a repository.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat

#: the tag of the cells that only set up the site (never in a download)
SITE_ONLY = "site-only"
#: import name -> pip requirement installed by the first cell when missing
REQUIREMENTS = {"varshift": "varshift", "matplotlib": "matplotlib", "pandas": "pandas",
                "IPython": "ipython", "plotly": "plotly", "sklearn": "scikit-learn",
                "scipy": "scipy", "torch": "varshift[torch]"}

INSTALL = """\
# This notebook runs as downloaded after `pip install varshift`; this cell installs what the
# page's code imports where it is missing.
import importlib.util
import subprocess
import sys

REQUIREMENTS = {requirements!r}
missing = [req for name, req in REQUIREMENTS.items() if importlib.util.find_spec(name) is None]
if missing:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
"""

_GLUE_ROLE = re.compile(r"\{glue(?::(?:text|md|any))?\}`([^`]+)`")
_GLUE_FIGURE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{glue:figure\}\s+(?P<key>\S+)\s*\n"
                          r"(?P<body>.*?)^(?P=fence)\s*$", flags=re.M | re.S)


def is_executed(source: str) -> bool:
    """A MyST notebook page with at least one code cell."""
    return "file_format: mystnb" in source and "```{code-cell}" in source


def is_site_only(cell) -> bool:
    """A cell tagged ``site-only`` (it sets up the site, not the page's lesson)."""
    return SITE_ONLY in cell.get("metadata", {}).get("tags", [])


def _plain(output: dict, key: str) -> str:
    """The text a glued value shows (its ``text/plain``, without a string's quotes)."""
    data = output.get("data", {})
    text = data.get("text/markdown") or data.get("text/plain", "")
    if isinstance(text, list):
        text = "".join(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if ":" in key:  # {glue:text}`name:.2f`
        try:
            return format(value, key.split(":", 1)[1])
        except (TypeError, ValueError):
            return str(value)
    return value if isinstance(value, str) else text


def unglue(text: str, glue: dict) -> str:
    """Markdown with the glued values of the site's build written in place of the glue roles;
    a ``{glue:figure}`` directive becomes its caption (the page's code above it draws the
    figure in the notebook)."""

    def figure(match):
        body = "\n".join(line for line in match["body"].splitlines()
                         if not line.startswith(":")).strip()
        return f"*{body}*" if body else ""

    def role(match):
        key = match.group(1)
        output = glue.get(key.split(":", 1)[0])
        return _plain(output, key) if output else match.group(0)

    return _GLUE_ROLE.sub(role, _GLUE_FIGURE.sub(figure, text))


def page_notebook(source: str, docname: str, version: str,
                  glue: dict | None = None) -> nbformat.NotebookNode:
    """The downloadable notebook of one page (validated); ``glue`` maps the page's glue keys to
    their outputs (MyST-NB's ``<page>.glue.json``)."""
    from myst_nb.core.read import read_myst_markdown_notebook

    nb = read_myst_markdown_notebook(source.replace("RESULTS_FINGERPRINT", "(site build)"))
    cells = [cell for cell in nb.cells if not is_site_only(cell)]
    for cell in cells:
        if cell.cell_type == "markdown" and glue:
            cell.source = unglue(cell.source, glue)
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    requirements = {name: req for name, req in REQUIREMENTS.items()
                    if name == "varshift"
                    or re.search(rf"^\s*(from|import)\s+{name}\b", code, flags=re.M)}
    intro = [
        nbformat.v4.new_markdown_cell(
            f"*Notebook of the page `docs/{docname}.md` of varshift {version}, generated when the "
            "documentation was built.* It runs as downloaded after `pip install varshift`: the "
            "next cell installs what else the page's code imports. The cells that only set up "
            "the documentation site are left out; numbers quoted in the text are those of the "
            "site's build, and your run may differ in the last digits where the page trains a "
            "network."),
        nbformat.v4.new_code_cell(INSTALL.format(requirements=requirements)),
    ]
    nb.cells = intro + cells
    nb.metadata = {"kernelspec": nb.metadata.get("kernelspec", {"name": "python3",
                                                                 "display_name": "Python 3"}),
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    return nb


def _glue_of(app, pagename: str) -> dict:
    folder = getattr(getattr(app.env, "mystnb_config", None), "output_folder", None)
    path = Path(folder or Path(app.outdir).parent / "jupyter_execute") / f"{pagename}.glue.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


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
    notebook = page_notebook(source, pagename, app.config.release, _glue_of(app, pagename))
    nbformat.write(notebook, str(out))
    context["ipynb_source"] = f"{pagename}.ipynb"  # the theme's download menu links it


def setup(app):
    app.connect("html-page-context", _on_page)  # before the theme's header buttons (501)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
