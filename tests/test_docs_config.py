"""Cheap checks of the documentation's machinery (no Sphinx build, no browser).

The site itself is built by ``nox -s docs`` and checked in Chromium by ``nox -s docs-check``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "_ext"))


def test_cite_bibtex_is_generated_from_citation_cff():
    import cff_bibtex

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    bib = cff_bibtex.cff_to_bibtex(cff)
    entries = re.findall(r"^@(\w+)\{([^,]+),", bib, flags=re.M)
    assert entries[0][0] == "inproceedings"   # the paper first: classic BibTeX knows it
    assert entries[1] == ("software", "varshift")
    assert bib.count("{") == bib.count("}")
    paper = cff["preferred-citation"]
    assert f"doi       = {{{paper['doi']}}}" in bib
    authors = " and ".join(f"{a['family-names']}, {a['given-names']}" for a in paper["authors"])
    assert authors in bib
    assert f"version = {{{cff['version']}}}" in bib


def test_citation_bib_is_rewritten_only_when_it_changes(tmp_path):
    import cff_bibtex

    out = tmp_path / "gen" / "citation.bib"
    assert cff_bibtex.write_citation_bib(ROOT / "CITATION.cff", out) is True
    assert cff_bibtex.write_citation_bib(ROOT / "CITATION.cff", out) is False
    assert out.read_text(encoding="utf-8").startswith("@inproceedings{")


def _conf_value(name, **env):
    code = f"import runpy; print(runpy.run_path('docs/conf.py')[{name!r}])"
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "VARSHIFT_DOCS_EXECUTE")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, **env}, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_execution_is_cached_locally_and_forced_in_ci():
    pytest.importorskip("sphinx")
    assert _conf_value("nb_execution_mode") == "cache"
    assert _conf_value("nb_execution_mode", CI="true") == "force"


def test_every_page_is_in_a_toctree_and_every_toctree_entry_exists():
    pages = {str(p.relative_to(DOCS).with_suffix("")) for p in DOCS.rglob("*.md")
             if not {"_build", "_ext", "_static"} & set(p.relative_to(DOCS).parts)}
    listed = set()
    for page in pages:
        text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
        for block in re.findall(r"```\{toctree\}\n(.*?)```", text, flags=re.S):
            for line in block.splitlines():
                if line.strip() and not line.startswith(":"):
                    folder = str(Path(page).parent)
                    listed.add(line.strip() if folder == "." else f"{folder}/{line.strip()}")
    assert listed <= pages, f"toctree entries without a page: {sorted(listed - pages)}"
    assert pages - listed == {"index"}, f"pages in no toctree: {sorted(pages - listed - {'index'})}"
    targets = ("eq8 eq14 eq15 fig1 fig3 fig4 fig5 fig6 table1 table3 table4 table6").split()
    assert {f"reproduction/{t}" for t in targets} <= pages


def _write_results(root, profile, target="eq8"):
    folder = root / profile
    (folder / target).mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"profile": profile}), encoding="utf-8")
    (folder / target / "result.json").write_text(json.dumps(
        {"verdicts": [{"claim": f"{profile} claim", "verdict": "holds", "evidence": "e"}]}),
        encoding="utf-8")


def test_reproduction_pages_prefer_quick_results_over_smoke(tmp_path, monkeypatch):
    pytest.importorskip("myst_nb")
    import vsdocs

    monkeypatch.setenv("VARSHIFT_RESULTS", str(tmp_path))
    monkeypatch.setenv("VARSHIFT_PUBLISHED", str(tmp_path / "none"))  # no published records
    _write_results(tmp_path, "smoke")
    assert vsdocs.results() == ("smoke", tmp_path / "smoke")
    _write_results(tmp_path, "quick")
    assert vsdocs.results() == ("quick", tmp_path / "quick")
    # no verdicts.csv yet: the verdicts come from the targets' result.json
    table = vsdocs.verdicts("eq8")
    assert table[["target", "claim", "verdict"]].values.tolist() == [["eq8", "quick claim", "holds"]]


def test_site_checker_finds_broken_links_and_anchors(tmp_path):
    import check_site

    (tmp_path / "index.html").write_text('<a href="page.html#here">ok</a>', encoding="utf-8")
    (tmp_path / "page.html").write_text('<h1 id="here">x</h1>', encoding="utf-8")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "skip.html").write_text("", encoding="utf-8")
    assert check_site.pages(tmp_path) == ["index.html", "page.html"]
    server, base = check_site.serve(tmp_path)
    try:
        links = check_site.LinkChecker()
        assert links.problem(base + "page.html#here") is None
        assert "no element with id 'gone'" in links.problem(base + "page.html#gone")
        assert "HTTP 404" in links.problem(base + "missing.html")
    finally:
        server.shutdown()


def test_classic_bibtex_apa_and_ieee_are_generated_from_citation_cff(tmp_path):
    import cff_bibtex

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    classic = cff_bibtex.cff_to_classic_bibtex(cff)
    entries = re.findall(r"^@(\w+)\{([^,]+),", classic, flags=re.M)
    assert [kind for kind, _ in entries] == ["misc", "misc"]   # classic BibTeX: no @software
    assert f"note   = {{Version {cff['version']}}}" in classic
    assert "eprint        = {1801.05134}" in classic and "abs/1801.05134v1" in classic
    assert classic.count("{") == classic.count("}")
    apa, ieee = cff_bibtex.cff_to_apa(cff), cff_bibtex.cff_to_ieee(cff)
    paper = cff["preferred-citation"]
    assert apa.startswith("Li, X., Chen, S., Hu, X., & Yang, J. (2019). Understanding the disharmony")
    assert f"https://doi.org/{paper['doi']}" in apa
    assert f"(Version {cff['version']}) [Computer software]." in apa
    assert ieee.startswith("X. Li, S. Chen, X. Hu, and J. Yang, \u201cUnderstanding the Disharmony")
    assert f"version {cff['version']}" in ieee
    # the software URL comes only from a software key of [project.urls] (not the paper's link)
    assert cff_bibtex.software_url(ROOT / "pyproject.toml") != "https://arxiv.org/abs/1801.05134"
    (tmp_path / "pyproject.toml").write_text(
        '[project.urls]\nPaper = "https://arxiv.org/abs/1"\nRepository = "https://example.org/vs"\n')
    assert cff_bibtex.software_url(tmp_path / "pyproject.toml") == "https://example.org/vs"
    written = cff_bibtex.write_citation_files(ROOT / "CITATION.cff", tmp_path / "gen",
                                              tmp_path / "pyproject.toml")
    assert sorted(n for n in written if n.startswith("citation")) == [
        "citation-apa.txt", "citation-classic.bib", "citation-ieee.txt", "citation-result.txt",
        "citation.bib"]
    assert "cite-paper-biblatex.bib" in written and "cite-software-apa.txt" in written
    assert "(pp. 2682\u20132690). IEEE. https://doi.org/" in (
        tmp_path / "gen" / "cite-paper-apa.txt").read_text(encoding="utf-8")
    result = (tmp_path / "gen" / "citation-result.txt").read_text(encoding="utf-8")
    assert f"(Version {cff['version']})" in result and "results of commit <commit>" in result
    assert "howpublished = {\\url{https://example.org/vs}}" in (
        tmp_path / "gen" / "citation-classic.bib").read_text(encoding="utf-8")
    assert "[Computer software]. https://example.org/vs" in (
        tmp_path / "gen" / "citation-apa.txt").read_text(encoding="utf-8")


PAGE = """---
file_format: mystnb
kernelspec:
  name: python3
  display_name: Python 3
---

# A page

```{code-cell} ipython3
:tags: [site-only, remove-cell]
from vsdocs import gnum  # results: RESULTS_FINGERPRINT
```

The shift is {glue:text}`shift` ({glue:text}`ratio:.2f` of it), {glue:md}`sentence`

```{code-cell} ipython3
import matplotlib.pyplot as plt
import numpy as np
```

```{glue:figure} fig
:name: fig-x

The caption.
```
"""


def test_downloaded_notebook_leaves_out_site_only_cells_and_writes_glued_values():
    pytest.importorskip("myst_nb")
    import nbformat
    import notebooks

    glue = {"shift": {"data": {"text/plain": "'0.356'"}},
            "ratio": {"data": {"text/plain": "0.59661"}},
            "sentence": {"data": {"text/markdown": "It **holds**."}},
            "fig": {"data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}}
    nb = notebooks.page_notebook(PAGE, "page", "0.1.0", glue)
    nbformat.validate(nb)
    assert "pip install varshift" in nb.cells[0].source
    sources = [c.source for c in nb.cells]
    assert not any("vsdocs" in s or "RESULTS_FINGERPRINT" in s for s in sources)
    assert not any(notebooks.SITE_ONLY in c.metadata.get("tags", []) for c in nb.cells)
    assert "The shift is 0.356 (0.60 of it), It **holds**." in sources
    assert "*The caption.*" in sources  # the code above draws the figure
    # the first code cell installs what the remaining code imports, nothing of the site
    install = nb.cells[1].source
    assert "'matplotlib': 'matplotlib'" in install and "'varshift': 'varshift'" in install
    assert "vsdocs" not in install and "'pandas'" not in install
    assert sources[-2] == "import matplotlib.pyplot as plt\nimport numpy as np"  # unchanged
    # without the glue store, the roles stay as written
    assert "{glue:text}`shift`" in "".join(
        c.source for c in notebooks.page_notebook(PAGE, "page", "0.1.0").cells)
    theory = (DOCS / "theory.md").read_text(encoding="utf-8")
    assert notebooks.is_executed(theory) and not notebooks.is_executed("# text only")


def test_interactive_figure_precomputes_every_slider_combination():
    pytest.importorskip("plotly")
    import interactive
    import numpy as np

    x = np.linspace(0.0, 1.0, 5)
    html = interactive.slider_figure(
        x, lambda a, b: {"sum": a + b * x, "prod": a * b * x}, {"a": [0.0, 1.0, 2.0], "b": [1.0, 3.0]},
        {"a": 1.0, "b": 3.0}).data
    grid = json.loads(re.search(r"var grid = (\{.*?\});", html, flags=re.S).group(1))
    assert grid["shape"] == [3, 2] and grid["start"] == [1, 1] and len(grid["frames"]) == 6
    # frame (a=2, b=1) holds the Python function's values: the browser only looks them up
    assert grid["frames"][2 * 2 + 0][0] == pytest.approx((2.0 + 1.0 * x).tolist())
    assert grid["frames"][2 * 2 + 1][1] == pytest.approx((2.0 * 3.0 * x).tolist())
    assert "plotly_sliderchange" in html and "Plotly.restyle" in html
    with pytest.raises(ValueError, match="start must give one of each slider's values"):
        interactive.slider_figure(x, lambda a: {"y": a * x}, {"a": [0.0, 1.0]}, {"a": 0.5})
