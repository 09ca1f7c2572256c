"""report.md / verdicts.csv / checks.csv: numbers rounded to what they mean, no machine path,
the commit the runs were trained at, the regime beside the converged reference."""

from __future__ import annotations

import json
import math

import pandas as pd

from reproduce import report
from reproduce.profiles import get_profile


def test_numbers_are_rounded_to_a_tenth_of_the_margin():
    assert report._num(-7.507e-05, margin=0.01) == "0.000"
    assert report._num(0.1234, margin=0.05) == "0.123"
    assert report._num(13.3199, margin=0.5) == "13.32"
    assert report._num(float("inf")) == "inf" and report._num(float("nan")) == ""
    row = {"effect": math.nan, "ci_low": math.nan, "ci_high": math.nan, "margin": 1.0}
    assert report._interval(row) == "not measured"


def test_the_command_names_no_machine_path():
    cmd = "python -m reproduce run --profile quick --cached-only --out /tmp/x/y --data-dir=/d"
    assert report._public_command(cmd) == "python -m reproduce run --profile quick --cached-only"


def test_the_trained_commit_comes_from_the_records_provenance(tmp_path):
    manifest = {"command": "python -m reproduce run --cached-only --out /tmp/q",
                "git": {"commit": "HEAD-of-the-build"}}
    assert report._trained_commit(tmp_path, manifest)[0] == "not recorded"
    (tmp_path / "provenance.json").write_text(json.dumps({"commit": "abc123", "dirty": False}))
    assert report._trained_commit(tmp_path, manifest)[0] == "abc123"


def test_regime_prints_each_baseline_beside_its_reference(tmp_path):
    (tmp_path / "fig4").mkdir()
    pd.DataFrame({"net": ["wrn", "wrn", "preresnet"], "data": ["fashion_mnist"] * 3,
                  "placement": ["a", "b", "a"], "rate": [0.0, 0.0, 0.0],
                  "test_error_mean": [19.5, 19.5, 22.0], "test_error_std": [0.5, 0.5, 0.7],
                  "n_seeds": [5, 5, 5]}).to_csv(tmp_path / "fig4" / "table.csv", index=False)
    ref = tmp_path / "converged_reference.csv"
    pd.DataFrame({"net": ["wrn"], "data": ["fashion_mnist"], "epochs": [40],
                  "test_error": [9.5]}).to_csv(ref, index=False)
    # the pilot's reference: one no-dropout run per network, trained longer
    text = "\n".join(report.regime_lines(tmp_path, get_profile("pilot"), reference=ref))
    assert "| WRN | fashion_mnist | 19.5 +- 0.5 (5 seeds) | 9.5 | 40 |" in text
    assert "| PreResNet | fashion_mnist | 22.0 +- 0.7 (5 seeds) | not measured | |" in text
    assert "pilot's baselines are 10.0-10.0 pp above the converged reference" in text
    missing = "\n".join(report.regime_lines(tmp_path, get_profile("pilot"),
                                            reference=tmp_path / "absent.csv"))
    assert "has not been measured" in missing


def test_forest_labels_are_whole_claims_and_the_axis_holds_every_interval():
    from reproduce import plotting

    long = ("with dropout-(a) 0.5 the same training images are classified worse in inference "
            "mode than in training mode, by more than without dropout (DenseNet)")
    label = plotting.forest_label({"target": "fig5", "claim": long})
    assert " ".join(label.split("\n")) == f"fig5: {long}"  # nothing cut, only wrapped
    assert max(len(line) for line in label.split("\n")) <= plotting.FOREST_LABEL_WIDTH
    rows = [{"effect": 30.0, "ci_low": -4.0, "ci_high": 500.0, "margin": 2.0},
            {"effect": 0.5, "ci_low": 0.2, "ci_high": math.inf, "margin": 0.0}]
    low, high = plotting.forest_limits(rows)
    assert high > 250.0 and low < -2.0  # 500 / 2 and -4 / 2 both on the axis
    assert low > -4.0  # only as far left as the data and the margin reach
    assert plotting.forest_limits([{"effect": 3.0, "ci_low": 2.0, "ci_high": 4.0,
                                    "margin": 1.0}])[0] > -2.0  # the margin at -1 stays in view


def test_the_claim_table_shows_power_verdict_and_reason_in_words():
    row = {"target": "fig4", "claim": "a claim", "effect": 0.5, "ci_low": 0.1, "ci_high": 0.9,
           "margin": 0.02, "unit": "log ratio", "direction": "above", "agree": "9 of 10",
           "verdict": "holds", "reason": "its lower bound 0.100 clears the margin 0.020", "id": "p"}
    (head, _, line) = report._claim_table([row], power={"p": {"power": 0.834}})
    assert head.startswith("| claim | effect [interval at the verdict's level] | margin")
    assert "| 0.500 [0.100, 0.900] log ratio | > 0.02 log ratio | 9 of 10 | 83% | **holds** |" \
        in line and line.endswith("clears the margin 0.020 |")
