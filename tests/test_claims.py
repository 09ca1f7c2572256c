"""The statistics of claims (reproduce.claims) on constructed numbers.

Every verdict of the reproduction report comes from :func:`reproduce.claims.judge`: a clear
effect on the claimed side of the margin holds, a reversed one does not hold, a noisy one is
inconclusive; for superiority ("raises") and non-inferiority ("does not hurt") claims alike.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from reproduce.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    UNTESTED,
    Claim,
    decide,
    judge,
    paired,
    paper_passes,
    t_interval,
)

RAISES = Claim("dropout raises the error", "above", 1.0, "pp")
NO_HARM = Claim("dropout after BN does not hurt", "below", 1.0, "pp")  # non-inferiority
MATCHES = Claim("formula matches Monte Carlo", "within", 0.01, "relative")
SEEDS = [0, 1, 2, 3, 4]


def _errors(base, shift, noise, seed=0):
    """Control and treated errors per seed: treated = control + shift + noise."""
    rng = np.random.default_rng(seed)
    control = {s: base + rng.normal(0, 1.0) for s in SEEDS}
    treated = {s: control[s] + shift + rng.normal(0, noise) for s in SEEDS}
    return treated, control


def test_t_interval_is_students():
    x = [1.0, 2.0, 4.0, 3.5]
    mean, lo, hi, n = t_interval(x)
    half = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2.0
    assert (mean, n) == (pytest.approx(2.625), 4)
    assert (lo, hi) == (pytest.approx(2.625 - half), pytest.approx(2.625 + half))
    assert t_interval([3.0])[1:3] == (-math.inf, math.inf)  # one seed: no interval


@pytest.mark.parametrize("claim, shift, expected", [
    (RAISES, 6.0, HOLDS),          # clear effect beyond the margin
    (RAISES, -4.0, FAILS),         # reversed
    (RAISES, 1.0, INCONCLUSIVE),   # noisy: the interval straddles the margin (noise below)
    (NO_HARM, -2.0, HOLDS),        # clearly no harm: interval below +1 pp
    (NO_HARM, 5.0, FAILS),         # clear harm
    (NO_HARM, 1.0, INCONCLUSIVE),
])
def test_verdicts_of_both_claim_kinds(claim, shift, expected):
    noise = 3.0 if expected == INCONCLUSIVE else 0.2
    treated, control = _errors(25.0, shift, noise)
    row = judge(claim, paired(treated, control), "constructed")
    assert row["verdict"] == expected, row
    assert row["ci_low"] < row["effect"] < row["ci_high"] and row["n"] == len(SEEDS)
    assert row["effect"] == pytest.approx(np.mean([treated[s] - control[s] for s in SEEDS]))
    assert (row["margin"], row["unit"]) == (1.0, "pp")


def test_within_claims_need_the_whole_interval_inside_the_band():
    rng = np.random.default_rng(1)
    assert judge(MATCHES, rng.normal(0.0, 0.002, 20))["verdict"] == HOLDS
    assert judge(MATCHES, rng.normal(0.05, 0.002, 20))["verdict"] == FAILS
    assert judge(MATCHES, rng.normal(0.0, 0.05, 20))["verdict"] == INCONCLUSIVE
    assert decide("within", 0.01, -0.02, -0.011) == FAILS


def test_one_seed_is_never_decided():
    row = judge(RAISES, [30.0])
    assert row["verdict"] == INCONCLUSIVE and "one sample" in row["evidence"]


def test_mismatched_seeds_are_refused():
    with pytest.raises(ValueError, match=r"share their seeds.*\[0, 1, 2\].*\[0, 1\]"):
        paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.0, 1: 2.0})
    with pytest.raises(ValueError, match="share their seeds"):
        paired({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})


def test_pairing_is_by_seed_not_by_order():
    # the same values in another insertion order: pairing follows the seed keys
    d = paired({1: 10.0, 0: 5.0}, {0: 4.0, 1: 7.0})
    assert d.tolist() == [1.0, 3.0]


def test_untested_keeps_the_numbers_but_decides_nothing():
    treated, control = _errors(25.0, 6.0, 0.2)
    row = judge(RAISES, paired(treated, control), test=False)
    assert row["verdict"] == UNTESTED and row["effect"] > 5


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="direction"):
        Claim("x", "greater", 1.0, "pp")
    with pytest.raises(ValueError, match="margin > 0"):
        Claim("x", "within", 0.0, "pp")
    with pytest.raises(ValueError, match="finite"):
        t_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        t_interval([])


def test_paper_check_uses_the_same_rule():
    assert "would pass" in paper_passes(RAISES, 3.5, "Fig. 4")
    assert "would not pass" in paper_passes(RAISES, 0.4, "Fig. 4")
    assert "no number" in paper_passes(RAISES, None, "Fig. 4")
    row = judge(RAISES, [-5.0, -4.0, -4.5], paper=paper_passes(RAISES, 3.5, "Fig. 4"))
    assert row["verdict"] == FAILS and "would pass" in row["evidence"]
