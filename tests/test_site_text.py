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


def test_verdict_effects_are_rounded_to_their_margin():
    pytest.importorskip("IPython")
    pytest.importorskip("matplotlib")
    import vsdocs

    row = {"effect": 4.43, "ci_low": -0.17, "ci_high": 9.04, "margin": 1.0, "unit": "pp"}
    assert vsdocs.effect_text(row) == "4.4 [\u22120.2, 9.0] pp"
    tiny = {"effect": -7.507e-05, "ci_low": -2e-4, "ci_high": 1e-4, "margin": 0.01, "unit": ""}
    assert vsdocs.effect_text(tiny) == "0.000 [0.000, 0.000]"
    assert vsdocs.effect_text({"effect": float("nan"), "margin": 1.0}) == ""


def test_a_verdict_sentence_gives_the_verdict_s_own_reason():
    """The site never gives a generic reason ("the interval straddles the margin") for a
    verdict whose reason is another: it quotes the reason its report generated."""
    pytest.importorskip("IPython")
    pytest.importorskip("matplotlib")
    import vsdocs

    stopped = {"verdict": "inconclusive",
               "reason": "its lower bound 0.41 is beyond the margin 0.02 at its own step's "
                         "level, but Holm's step-down stopped at an earlier claim (p3_b_less)"}
    assert "stopped at an earlier claim" in vsdocs._why(stopped)
    assert "straddles" not in vsdocs._why(stopped)
    assert vsdocs._why({"verdict": "inconclusive"}) == ""  # no reason recorded: none invented
