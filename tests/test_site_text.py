"""What no page of the site may show, and how verdict effects are rounded (docs/_ext)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))


def test_page_guard_finds_tracebacks_missing_files_and_temporary_paths():
    import page_guard

    html = ("<html><script>var s = '/tmp/x';</script><body><p>Fine text, rate 0.5.</p>"
            "<pre>Traceback (most recent call last):</pre>"
            "<p>File not found: filepath=/tmp/abc/model.keras</p></body></html>")
    found = page_guard.problems(page_guard.visible_text(html))
    assert [f.split(":")[0] for f in found] == ["a traceback", '"File not found"',
                                                 "a temporary path"]
    assert page_guard.problems(page_guard.visible_text(
        "<p>Run <code>python -m reproduce run fig6 --profile quick</code>.</p>")) == []
    # a script's text is not shown, so it is not a finding
    assert page_guard.problems(page_guard.visible_text("<script>'/tmp/'</script>")) == []


def test_verdict_effects_are_rounded_as_their_reasons_are():
    """Effect, interval and margin carry the decimals of the verdict's reason (a hundredth of
    the margin), so the numbers of one sentence agree; never "-0.000"."""
    pytest.importorskip("IPython")
    pytest.importorskip("matplotlib")
    import vsdocs

    row = {"effect": 4.43, "ci_low": -0.17, "ci_high": 9.04, "margin": 1.0, "unit": "pp"}
    assert vsdocs.effect_text(row) == "4.43 [\u22120.17, 9.04] pp"
    tiny = {"effect": -7.507e-05, "ci_low": -2e-4, "ci_high": 1e-6, "margin": 0.01, "unit": ""}
    assert vsdocs.effect_text(tiny) == "\u22120.0001 [\u22120.0002, 0.0000]"
    assert vsdocs.effect_text({"effect": float("nan"), "margin": 1.0}) == ""
    assert vsdocs.margin_text({"margin": 0.0198, "direction": "above", "unit": "log ratio"}) == \
        "> 0.0198 log ratio (an error ratio of 1.02)"
    assert vsdocs.margin_text({"margin": 0.01, "direction": "within", "unit": "relative"}) == \
        "\u00b1 0.0100 relative"


def test_a_verdict_sentence_gives_the_verdict_s_own_reason():
    """The site never gives a generic reason ("the interval straddles the margin") for a
    verdict whose reason is another: it quotes the reason its report generated, beside the
    verdict's interval and margin."""
    pytest.importorskip("IPython")
    pytest.importorskip("matplotlib")
    import site_text_checks
    import vsdocs

    reason = ("its lower bound 0.4100 is beyond the margin 0.0198 at its own step's level, but "
              "Holm's step-down stopped at an earlier claim (p3_b_less), so it is not tested")
    stopped = {"claim": "Adjust BN lowers the error", "family": "primary",
               "design": "confirmatory", "verdict": "inconclusive", "reason": reason,
               "effect": 0.9, "ci_low": 0.41, "ci_high": 1.6, "margin": 0.0198,
               "direction": "above", "unit": "log ratio"}
    line = vsdocs.verdict_line(stopped)
    assert "stopped at an earlier claim" in line and "straddles" not in line
    assert "margin > 0.0198 log ratio" in line and "(primary claim, confirmatory)" in line
    assert vsdocs.reason_kind(stopped) == "stopped"
    # the checker of the built site reads the line back and finds it true
    html = f"<article><ul><li><p>{line.replace('**', '')}</p></li></ul></article>"
    assert site_text_checks.check_page(html) == []
    # no reason recorded: none invented
    bare = dict(stopped, reason="")
    assert vsdocs.verdict_line(bare).endswith("(an error ratio of 1.02).")
    assert vsdocs.reason_kind(bare) == ""


def test_reasons_are_counted_by_their_own_words():
    pytest.importorskip("IPython")
    pd = pytest.importorskip("pandas")
    import vsdocs

    table = pd.DataFrame([
        {"verdict": "inconclusive", "reason": "its interval [0.01, 0.2] straddles the margin 0.02"},
        {"verdict": "inconclusive", "reason": "one seed gives no interval"},
        {"verdict": "holds", "reason": "its lower bound 0.3 clears the margin 0.02 at the family "
                                       "level (Holm step 1 of 6, one-sided 99.583% bound)"}])
    assert vsdocs.reasons_in_words(table) == (
        "1 holds (clears its margin at the family level: 1), 2 inconclusive (its interval "
        "straddles the margin: 1; one seed gives no interval: 1)")
