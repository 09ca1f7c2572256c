"""Figures of the site: the paper's numbering for reproduced paper figures, letters for the
site's own, an anchor and a "cite this figure" line under each (``docs/_ext/figures.py``).

A two-page toy site is built with Sphinx and MyST-NB from notebooks whose image outputs are
stored (nothing is executed).
"""

import base64
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

#: a 1 x 1 PNG
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082")).decode()


def _site(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    src = tmp_path / "src"
    (src / "reproduction").mkdir(parents=True)

    def notebook(title):
        nb = nbformat.v4.new_notebook()
        nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3"},
                       "language_info": {"name": "python"}}
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}"),
                    nbformat.v4.new_code_cell("show()", outputs=[nbformat.v4.new_output(
                        "display_data", data={"image/png": PNG, "text/plain": "<Image>"})])]
        return nb

    nbformat.write(notebook("Fig. 6"), str(src / "reproduction" / "fig6.ipynb"))
    nbformat.write(notebook("Eq. 8"), str(src / "reproduction" / "eq8.ipynb"))
    (src / "tiny.png").write_bytes(base64.b64decode(PNG))
    (src / "index.md").write_text(
        "# Home\n\n```{figure} tiny.png\n:name: fig-home\n\nThe home page's figure.\n```\n\n"
        "```{toctree}\nreproduction/eq8\nreproduction/fig6\n```\n", encoding="utf-8")
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'docs' / '_ext')!r})\n"
        "extensions = ['myst_nb', 'figures']\nnb_execution_mode = 'off'\nrelease = '9.9'\n"
        "numfig = True\nnumfig_format = {'figure': 'Figure %s', 'table': 'Table %s'}\n"
        "html_baseurl = 'https://example.org/docs/'\n", encoding="utf-8")
    results = tmp_path / "results" / "quick"
    for target, title in (("fig6", "Fig. 6: pre-softmax outputs, training vs inference mode"),
                          ("eq8", "Eq. 7-8 (case a): variance shift of Dropout -> BN")):
        (results / target).mkdir(parents=True)
        (results / target / "result.json").write_text(json.dumps({"title": title}))
    (results / "manifest.json").write_text(json.dumps(
        {"profile": "quick", "git": {"commit": "0123456789abcdef"}}))
    return src


def _figure(html):
    found = re.search(r"<figure.*?</figure>", html, flags=re.S)
    assert found, "no <figure> in the page"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(0)).split()), found.group(0)


def test_paper_figures_keep_the_papers_number_and_site_figures_get_letters(tmp_path, monkeypatch):
    pytest.importorskip("myst_nb")
    from sphinx.cmd.build import build_main

    src = _site(tmp_path)
    monkeypatch.setenv("VARSHIFT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("VARSHIFT_PUBLISHED", str(tmp_path / "none"))
    out = tmp_path / "html"
    assert build_main(["-q", "-b", "html", str(src), str(out)]) == 0

    home, _ = _figure((out / "index.html").read_text(encoding="utf-8"))
    assert home.startswith("Figure A The home page’s figure.")  # never "Fig. 1"
    assert "Cite this figure: varshift 9.9 documentation, Figure A, " \
           "https://example.org/docs/index.html#fig-home." in home

    eq8, _ = _figure((out / "reproduction" / "eq8.html").read_text(encoding="utf-8"))
    assert "Figure B Eq. 7-8 (case a) checked by simulation: variance shift of Dropout → BN." in eq8
    assert "reproduction/eq8.html#figure-eq8." in eq8  # computed by the build: no commit

    fig6, raw = _figure((out / "reproduction" / "fig6.html").read_text(encoding="utf-8"))
    assert 'id="figure-fig6"' in raw and "caption-number" not in raw  # not in Sphinx's count
    assert "Fig. 6, reproduced. Pre-softmax outputs, training vs. inference mode. Drawn from " \
           "the quick records shown on this page." in fig6
    assert "Cite this figure: varshift 9.9 documentation, Fig. 6, reproduced, " \
           "https://example.org/docs/reproduction/fig6.html#figure-fig6; drawn from the " \
           "records of commit 0123456." in fig6


def test_site_figures_are_lettered_past_z():
    figures = pytest.importorskip("figures")
    assert [figures.letters(n) for n in (1, 2, 26, 27, 28, 52, 53)] == \
           ["A", "B", "Z", "AA", "AB", "AZ", "BA"]


def test_raw_tables_of_reproduction_pages_show_headers_in_words(tmp_path):
    pytest.importorskip("sphinx_design")
    pytest.importorskip("myst_nb")
    from sphinx.cmd.build import build_main

    src = tmp_path / "src"
    (src / "reproduction").mkdir(parents=True)
    table = "| test_error_mean | seed |\n|---|---|\n| 4.5 | 1 |\n"
    (src / "index.md").write_text(f"# Home\n\n{table}\n```{{toctree}}\nreproduction/t\n```\n")
    (src / "reproduction" / "t.md").write_text(
        f"# Table\n\n{table}\n:::{{dropdown}} Our measurements\n{table}:::\n")
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'docs' / '_ext')!r})\n"
        "extensions = ['myst_nb', 'sphinx_design', 'raw_tables']\n"
        "myst_enable_extensions = ['colon_fence']\n")
    assert build_main(["-q", "-b", "html", str(src), str(tmp_path / "html")]) == 0
    page = (tmp_path / "html" / "reproduction" / "t.html").read_text(encoding="utf-8")
    heads = re.findall(r"<th[^>]*>\s*<p>(.*?)</p>", page)
    assert heads == ["test error mean", "seed", "test error mean", "seed"]
    # other pages keep their headers (there a name may be the point)
    assert "test_error_mean" in (tmp_path / "html" / "index.html").read_text(encoding="utf-8")
