"""Sphinx configuration of the varshift documentation site.

Pages are MyST markdown notebooks executed by MyST-NB at build time. Execution is cached in
``docs/_build/.jupyter_cache`` locally (a rebuild with nothing changed executes nothing) and
forced when the environment variable ``CI`` is set, or when ``VARSHIFT_DOCS_EXECUTE`` names a
MyST-NB execution mode (``force``, ``cache``, ``off``...).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

# The notebooks' kernels inherit this environment: they import the page helpers from
# docs/_ext, find the repository root, stay quiet (TensorFlow, warnings) and draw off-screen.
_tmp = Path(tempfile.gettempdir()) / "varshift-docs"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(DOCS / "_ext"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
os.environ["VARSHIFT_ROOT"] = str(ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
os.environ.setdefault("KERAS_HOME", str(_tmp / "keras"))
os.environ.setdefault("MPLCONFIGDIR", str(_tmp / "mpl"))
os.environ.setdefault("PYTHONWARNINGS", "ignore")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["VARSHIFT_DOCS_BUILD"] = "1"  # page helpers: running inside the site build

import varshift  # noqa: E402

project = "varshift"
author = "The varshift developers"
copyright = "2026, The varshift developers"  # noqa: A001
release = version = varshift.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinxcontrib.bibtex",
    "sphinx_copybutton",
    "sphinx_design",
    "sphinx_exercise",  # exercises with solutions (as in QuantEcon's lectures)
    "sphinx_togglebutton",  # solutions hidden behind a toggle
    "cff_bibtex",  # docs/_ext: BibTeX for the Cite page, generated from CITATION.cff
    "vs_api",  # docs/_ext: autodoc sections for the varshift modules that exist
    "results_stamp",  # docs/_ext: rebuild published records; re-execute pages when results change
    "interactive",  # docs/_ext: plotly.js served by the site, on the pages with a Plotly figure
    "notebooks",  # docs/_ext: every executed page as a downloadable .ipynb
    "page_guard",  # docs/_ext: fail the build if a page shows a traceback or a machine path
    "figures",  # docs/_ext: numbered, captioned, anchored figures with a "cite this figure" line
    "raw_tables",  # docs/_ext: the reproduction pages' raw CSV tables with headers in words
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache", "**.ipynb_checkpoints",
                    "_ext", "README.md"]
root_doc = "index"

# --- MyST / MyST-NB -----------------------------------------------------------------------
myst_enable_extensions = ["amsmath", "dollarmath", "colon_fence", "deflist", "substitution"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

_mode = os.environ.get("VARSHIFT_DOCS_EXECUTE") or ("force" if os.environ.get("CI") else "cache")
nb_execution_mode = _mode
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = True  # a page that fails fails the build
nb_execution_show_tb = True
nb_output_stderr = "remove"  # no TensorFlow/absl start-up lines or progress bars in the pages
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs may use directives (dropdown, admonitions)
nb_kernel_rgx_aliases = {".*": "python3"}

# Figures: a reproduced paper figure keeps the paper's number ("Fig. 6 (reproduced)"), the
# site's own figures and tables are numbered with letters ("Figure A"), see docs/_ext/figures.py
numfig = True
numfig_format = {"figure": "Figure %s", "table": "Table %s"}

# --- autodoc / napoleon -------------------------------------------------------------------
autodoc_default_options = {"members": True, "show-inheritance": False, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# No internet at build time: intersphinx is not used, so names of other projects that appear
# in signatures and docstrings are not cross-referenced (nitpicky mode would flag them).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|keras|tf|tensorflow|pandas|pd|click|tqdm|matplotlib)\..*"),
    (r"py:.*", r"(numpy|np|keras|pandas|pd|optional|callable|array-like|array_like)"),
    (r"py:class", r"(Layer|Model|DataFrame|ndarray|Tensor|Path|PathLike|function)"),
    (r"py:class", r"(default|float|int|str|bool|dict|list|tuple|None|sequence|iterable).*"),
    (r"py:class", r".*\.(Layer|Model|Callback|DataFrame|ndarray)"),
    (r"py:mod", r"varshift\.(.+\.)?_\w+"),  # private modules are not documented
    (r"py:class", r"collections\.abc\..*"),  # dataclass field annotations (no intersphinx)
    (r"py:exc", r"\*\*kwargs"),  # napoleon reads a class docstring's "**kwargs:" line as a field
]

# --- bibliography -------------------------------------------------------------------------
bibtex_bibfiles = ["references.bib"]
bibtex_default_style = "plain"
bibtex_reference_style = "author_year"

# --- HTML ---------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "varshift"
html_static_path = ["_static"]
html_css_files = ["varshift.css"]
# formulas and verdict tables fitted to the screen's width (see the script's header)
html_js_files = [("varshift-fit.js", {"defer": "defer"})]
html_last_updated_fmt = ""
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "home_page_in_toc": True,
}
html_show_sourcelink = False
html_context = {"default_mode": "light"}  # an explicit mode: the theme logs an error on an empty one


def _repository_url() -> str | None:
    """The repository URL of ``pyproject.toml``'s ``[project.urls]``, if it names one."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: no launch buttons
        return None
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get(
        "urls", {})
    for key in ("Repository", "Source", "Source Code", "GitHub", "Homepage"):
        url = urls.get(key, "")
        if any(host in url for host in ("github.com", "gitlab.com", "bitbucket.org")):
            return url.rstrip("/")
    return None


def _documentation_url() -> str:
    """``[project.urls] Documentation`` of ``pyproject.toml`` ('' when it names none)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return ""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get(
        "urls", {})
    return urls.get("Documentation", "").rstrip("/")


# where the site is hosted: the "cite this figure" lines give full addresses (figures.py); none
# is invented when pyproject.toml does not name one (the lines then give the page's path)
html_baseurl = _documentation_url()

# Launch buttons (Binder, Colab) need the repository; none is invented when pyproject.toml
# does not name one.
if _repository_url():
    html_theme_options.update({
        "repository_url": _repository_url(), "path_to_docs": "docs", "use_repository_button": True,
        "launch_buttons": {"binderhub_url": "https://mybinder.org",
                           "colab_url": "https://colab.research.google.com"}})
# MathJax 3 is served from the site itself (docs/_static/mathjax, Apache-2.0): the pages
# render their formulas offline and without a third-party CDN.
mathjax_path = "mathjax/es5/tex-chtml-full.js"
mathjax3_config = {"tex": {"macros": {"Var": r"\operatorname{Var}"}}}
suppress_warnings = ["mystnb.unknown_mime_type"]
