"""The checker of the built site's words (docs/_ext/site_text_checks.py) on small pages: it
finds every page with an error of each kind, and none of the pages without."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "docs" / "_ext" / "site_text_checks.py"
_SPEC = importlib.util.spec_from_file_location("site_text_checks", _PATH)
stc = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(stc)


def page(body: str) -> str:
    """A page as the theme writes it: navigation around an article."""
    return (f"<html><body><nav><ul><li>Fig. 4: a title in four architectures</li></ul></nav>"
            f"<article class='bd-article'>{body}</article></body></html>")


def line(verdict, effect, low, high, side, margin, reason, unit="log ratio"):
    return (f"<ul><li><p>“a claim (WRN)” (primary claim): <strong>{verdict}</strong>. Effect "
            f"{effect} [{low}, {high}] {unit}, margin {side} {margin} {unit}: {reason}.</p></li>"
            "</ul>")


CLEARS = "its lower bound 0.4569 clears the margin 0.0198 at the family level (Holm step 2 of " \
         "6, one-sided 99.500% bound)"
#: pages whose words agree with their numbers
GOOD = {
    "holds.html": line("holds", "0.8927", "0.4569", "1.2236", ">", "0.0198", CLEARS),
    "straddles.html": line("inconclusive", "0.0671", "0.0401", "0.0875", "<", "0.0488",
                           "its interval [0.0401, 0.0875] straddles the margin 0.0488"),
    "fails.html": line("does not hold", "0.1636", "0.1106", "0.1939", "<", "0.0488",
                       "its lower bound 0.1106 lies on the failing side of the margin 0.0488 at "
                       "the family level (Holm step 1 of 6, one-sided 99.583% bound)"),
    "stopped.html": line("inconclusive", "0.50", "0.0300", "0.9000", ">", "0.0198",
                         "its lower bound 0.0300 is beyond the margin 0.0198 at its own step's "
                         "level, but Holm's step-down stopped at an earlier claim (p3_b_less), "
                         "so it is not tested"),
    "check.html": line("holds", "−0.0046", "−0.0046", "0.0042", "±", "0.0100",
                       "every cell lies inside the band ±0.0100 (worst −0.0046)", "relative")
    .replace("primary claim", "theory check"),
    "minus.html": line("inconclusive", "0.2906", "−0.0355", "0.7109", ">", "0.0200",
                       "its interval [−0.0355, 0.7109] straddles the margin 0.0200", "statistic"),
    "table.html": "<table><thead><tr><th>claim</th><th>verdict</th><th>effect [interval at the "
                  "verdict's level]</th><th>margin</th><th>why</th></tr></thead><tbody><tr>"
                  "<td>c</td><td>holds</td><td>0.8927 [0.4569, 1.2236] log ratio</td><td>&gt; "
                  "0.0198 log ratio</td><td>" + CLEARS + "</td></tr></tbody></table>",
    "ties.html": "<p>The error is higher than the baseline in 1 of 3 settings (DenseNet CIFAR-10 "
                 "at 0.5: 4.87 vs 4.72), a tie in 1 (DenseNet CIFAR-10 at 0.2: 4.73 vs 4.72) "
                 "and lower in 1 (WRN CIFAR-10 at 0.5: 3.84 vs 3.97).</p>",
    "solution.html": "<div class='solution dropdown admonition'><div class='highlight'><pre>"
                     "import numpy as np\nfrom varshift import theory\nprint(theory.shift_ratio"
                     "(5.0, 4.0, 0.2))</pre></div></div>",
    "paper_scale.html": "<p>The paper trained four architectures on CIFAR.</p>",
    "checks_only.html": "<p><strong>What this site found.</strong> This artefact's claims are "
                        "formulas: they are checked (below), not judged as findings.</p>"
                        + line("holds", "0.0015", "−0.0007", "0.0037", "±", "0.0156",
                               "its 95% interval [−0.0007, 0.0037] lies inside the band "
                               "±0.0156", "relative").replace("primary claim", "theory check"),
    "p_holm.html": "<p><code>p_holm</code> is the Holm-adjusted p-value of the holds test.</p>",
}
#: pages with one error each, and a word of the problem the checker must name
BAD = {
    "holds_straddling.html": (line("holds", "0.06", "0.0100", "0.1200", ">", "0.0198",
                                   "its interval [0.0100, 0.1200] straddles the margin 0.0198"),
                              "with the reason 'straddles'"),
    "false_straddle.html": (line("inconclusive", "20.0", "2.8", "37.2", ">", "0.5",
                                 "its interval [2.8, 37.2] straddles the margin 0.5", "pp"),
                            "does not contain the margin"),
    "false_clear.html": (line("holds", "0.06", "0.0100", "0.1200", ">", "0.0198",
                              "its lower bound 0.0100 clears the margin 0.0198 at the family "
                              "level (Holm step 1 of 6, one-sided 99.583% bound)"),
                         "not beyond the margin"),
    "false_fail.html": (line("does not hold", "0.069", "0.052", "0.087", "<", "0.0488",
                             "its upper bound 0.087 lies on the failing side of the margin "
                             "0.0488 at the family level (Holm step 1 of 6, one-sided 99.583% "
                             "bound)"), "not beyond the margin"),
    "margin_mismatch.html": (line("holds", "0.8927", "0.4569", "1.2236", ">", "0.0488", CLEARS),
                             "quotes the margin"),
    "hand_written.html": ("<p>Inconclusive means that the interval straddles the margin.</p>",
                          "'straddles' without"),
    "bad_table.html": (GOOD["table.html"].replace("0.8927 [0.4569,", "0.8927 [0.0100,"),
                       "other side of the margin"),
    "tie_as_higher.html": ("<p>The error is higher than the baseline in 1 of 2 settings "
                           "(DenseNet CIFAR-10 at 0.2: 4.73 vs 4.72) and lower in 1 (WRN "
                           "CIFAR-10 at 0.5: 3.84 vs 3.97).</p>", "tie rule"),
    "lower_as_tie.html": ("<p>The error is higher than the baseline in 0 of 1 settings, a tie in "
                          "1 (WRN CIFAR-100 at 0.5: 18.87 vs 19.17) and lower in 0.</p>",
                          "tie rule"),
    "count.html": ("<p>The error is higher than the baseline in 2 of 2 settings (DenseNet "
                   "CIFAR-10 at 0.5: 4.87 vs 4.72).</p>", "lists 1 cases"),
    "solution_helper.html": (GOOD["solution.html"].replace("print(", "gnum('x', "),
                             "site helper 'gnum'"),
    "solution_vsdocs.html": (GOOD["solution.html"].replace("import numpy as np",
                                                           "from vsdocs import results"),
                             "site helper 'vsdocs'"),
    "four.html": ("<h1>Fig. 4: the shift per BN layer in four architectures</h1>",
                  "four architectures"),
    "no_verdicts.html": ("<p>The quick results shown hold no verdicts for this artefact.</p>"
                         + GOOD["check.html"], "no verdicts"),
    "p_holm_bare.html": ("<table><thead><tr><th>claim</th><th>p_holm</th></tr></thead><tbody>"
                         "<tr><td>c</td><td>0.01</td></tr></tbody></table>", "p_holm"),
}


@pytest.fixture
def site(tmp_path):
    for name, body in GOOD.items():
        (tmp_path / name).write_text(page(body), encoding="utf-8")
    for name, (body, _) in BAD.items():
        (tmp_path / "bad").mkdir(exist_ok=True)
        (tmp_path / "bad" / name).write_text(page(body), encoding="utf-8")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "ignored.html").write_text(page(BAD["four.html"][0]))
    return tmp_path


def test_finds_exactly_the_bad_pages(site):
    problems = stc.check(site)
    flagged = {p.split(":", 1)[0] for p in problems}
    assert flagged == {f"bad/{name}" for name in BAD}, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(BAD))
def test_names_the_problem(site, name):
    problems = [p for p in stc.check(site) if p.startswith(f"bad/{name}:")]
    assert len(problems) >= 1
    assert any(BAD[name][1] in p for p in problems), problems


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_page_alone(name):
    assert stc.check_page(page(GOOD[name])) == []


def test_navigation_is_not_the_page():
    """The theme's navigation lists every title; only the article's words are the page's."""
    assert stc.check_page(page("<p>Nothing to say.</p>")) == []
    assert stc.check_page("<p>Fig. 4 in four architectures</p>")  # no article: all of it


@pytest.mark.parametrize("verdict, side, margin, low, high, reason, ok", [
    ("holds", ">", 0.5, 2.8, 37.2, "its lower bound 2.8 clears the margin 0.5 at the family "
     "level", True),
    ("holds", "<", 0.05, 0.01, 0.04, "its upper bound 0.04 clears the margin 0.05 at the family "
     "level", True),
    ("holds", "<", 0.05, 0.01, 0.04, "its lower bound 0.01 clears the margin 0.05 at the family "
     "level", False),  # a "below" claim is cleared by its upper bound
    ("inconclusive", ">", 0.5, 2.8, 37.2, "its interval [2.8, 37.2] straddles the margin 0.5",
     False),
    ("inconclusive", ">", 0.5, 0.4, 37.2, "its interval [0.4, 37.2] straddles the margin 0.5",
     True),
    ("inconclusive", ">", 0.5, -1.0, 37.2, "one seed gives no interval", True),
    ("holds", ">", 0.5, -1.0, 37.2, "one seed gives no interval", False),
    ("not tested", None, float("nan"), float("nan"), float("nan"),
     "the smoke profile tests the plumbing only: it decides nothing", True),
    ("does not hold", "±", 0.01, 0.02, 0.03, "its 95% interval [0.02, 0.03] lies wholly outside "
     "the band +-0.01", True),
    ("does not hold", "±", 0.01, 0.0, 0.03, "its 95% interval [0.0, 0.03] lies wholly outside "
     "the band +-0.01", False),
])
def test_check_verdict(verdict, side, margin, low, high, reason, ok):
    assert (stc.check_verdict(verdict, side, margin, low, high, reason) == []) is ok
