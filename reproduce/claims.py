r"""The statistics of claims: an effect, its 95% interval over seeds, a margin, a verdict.

Every claim of the reproduction report is decided here, by one rule.

A claim states its **direction** and its **margin** :math:`\delta` (the smallest effect that
matters), in its own unit. The effect :math:`\hat\theta` is the mean of :math:`n` samples
:math:`e_1, \dots, e_n` (one per seed; for a comparison of two settings, the paired
differences :math:`e_s = y^{\text{treated}}_s - y^{\text{control}}_s` of runs that share seed
:math:`s`), and its 95% confidence interval is Student's t-interval

.. math::
    \hat\theta \pm t_{0.975,\,n-1}\, \frac{s_e}{\sqrt n},\qquad
    s_e^2 = \frac{1}{n-1}\sum_s (e_s - \hat\theta)^2 .

With the interval :math:`[L, H]`:

- ``direction="above"`` (effect :math:`> \delta`; "raises", "grows"): **holds** if
  :math:`L > \delta`, **does not hold** if :math:`H < \delta`, else **inconclusive**;
- ``direction="below"`` (effect :math:`< \delta`; "lowers", and the non-inferiority claims
  "does not hurt", whose margin :math:`\delta > 0` is the largest harm that does not matter):
  **holds** if :math:`H < \delta`, **does not hold** if :math:`L > \delta`;
- ``direction="within"`` (equivalence, :math:`|\theta| < \delta`; "formula matches Monte
  Carlo"): **holds** if :math:`-\delta < L` and :math:`H < \delta`, **does not hold** if the
  interval lies entirely outside :math:`[-\delta, \delta]`.

One sample gives no interval (:math:`[-\infty, \infty]`), hence **inconclusive**; **not
tested** marks the smoke profile and missing runs. Settings compared by one claim must share
their seeds: :func:`paired` refuses anything else.

Example:

>>> c = Claim("dropout-(a) 0.5 raises the test error", "above", 1.0, "pp")
>>> judge(c, paired({0: 30.0, 1: 31.0, 2: 29.5}, {0: 25.0, 1: 25.5, 2: 24.0}))["verdict"]
'holds'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Claim", "HOLDS", "FAILS", "INCONCLUSIVE", "UNTESTED", "VERDICTS", "LEVEL",
           "t_interval", "paired", "decide", "judge", "untested", "paper_passes"]

HOLDS, FAILS, INCONCLUSIVE, UNTESTED = "holds", "does not hold", "inconclusive", "not tested"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTED)
DIRECTIONS = ("above", "below", "within")
LEVEL = 0.95


@dataclass(frozen=True)
class Claim:
    """A claim: what it says, which side of which margin the effect must lie on, in what unit.

    Args:
        text: the claim, one line.
        direction: ``"above"``, ``"below"`` or ``"within"`` (see the module docstring).
        margin: the smallest effect that matters, in ``unit`` (``"within"``: half-width > 0).
        unit: the effect's unit (``"pp"``, ``"ratio"``, ...), written next to the margin.
        effect: what the effect is (``"error(a 0.5) - error(none)"``), for the report.
    """

    text: str
    direction: str
    margin: float
    unit: str
    effect: str = ""

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Claim direction must be one of {DIRECTIONS}; "
                             f"received direction={self.direction!r}")
        if not math.isfinite(float(self.margin)):
            raise ValueError(f"Claim margin must be a finite number; received {self.margin!r}")
        if self.direction == "within" and self.margin <= 0:
            raise ValueError("a 'within' claim needs a margin > 0 (the half-width of the "
                             f"equivalence band); received margin={self.margin!r}")


def t_interval(samples, level=LEVEL):
    """``(mean, low, high, n)``: Student's t-interval of the mean of ``samples``.

    One sample gives ``(x, -inf, inf, 1)``. NaNs and infinities are refused.
    """
    x = np.asarray(samples, dtype="float64").reshape(-1)
    if x.size == 0:
        raise ValueError("t_interval needs at least one sample; received none")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"t_interval needs finite samples; received {x.tolist()}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); received level={level!r}")
    n, mean = x.size, float(x.mean())
    if n < 2:
        return mean, -math.inf, math.inf, n
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def paired(treated, control):
    """Paired differences ``treated[s] - control[s]`` over the seeds ``s`` both settings share.

    Args:
        treated, control: mappings seed -> value (or pandas Series indexed by seed).

    Raises:
        ValueError: if the two settings do not have exactly the same seeds.
    """
    t, c = dict(treated), dict(control)
    if set(t) != set(c):
        raise ValueError("compared settings must share their seeds; received treated seeds "
                         f"{sorted(t)} and control seeds {sorted(c)}")
    if not t:
        raise ValueError("paired needs at least one seed; received none")
    return np.array([float(t[s]) - float(c[s]) for s in sorted(t)])


def decide(direction, margin, low, high):
    """The verdict of an interval ``[low, high]`` against ``margin`` in ``direction``."""
    if direction == "above":
        return HOLDS if low > margin else FAILS if high < margin else INCONCLUSIVE
    if direction == "below":
        return HOLDS if high < margin else FAILS if low > margin else INCONCLUSIVE
    if direction == "within":
        if -margin < low and high < margin:
            return HOLDS
        return FAILS if (high < -margin or low > margin) else INCONCLUSIVE
    raise ValueError(f"direction must be one of {DIRECTIONS}; received {direction!r}")


def judge(claim, samples, evidence="", *, test=True, paper=""):
    """One verdict row of ``claim`` from its effect samples (paired differences or values).

    Args:
        claim: a :class:`Claim`.
        samples: the effect's samples (one per seed, or per simulated cell for theory claims).
        evidence: what the numbers are, for the report.
        test: ``False`` writes ``not tested`` (smoke profile) but still reports the numbers.
        paper: for a claim that does not hold, whether the paper's own numbers would pass.

    Returns:
        ``{claim, verdict, effect, ci_low, ci_high, margin, unit, n, evidence, direction}``.
    """
    effect, low, high, n = t_interval(samples)
    verdict = decide(claim.direction, claim.margin, low, high) if test else UNTESTED
    if n < 2 and test:
        evidence = f"{evidence}; one sample: no interval".lstrip("; ")
    if verdict == FAILS and paper:
        evidence = f"{evidence}; {paper}"
    return {"claim": claim.text, "verdict": verdict, "effect": effect, "ci_low": low,
            "ci_high": high, "margin": float(claim.margin), "unit": claim.unit, "n": n,
            "evidence": evidence, "direction": claim.direction, "effect_is": claim.effect}


def untested(claim, reason):
    """A ``not tested`` row of ``claim`` with no numbers (missing runs, missing settings)."""
    nan = float("nan")
    return {"claim": claim.text, "verdict": UNTESTED, "effect": nan, "ci_low": nan,
            "ci_high": nan, "margin": float(claim.margin), "unit": claim.unit, "n": 0,
            "evidence": reason, "direction": claim.direction, "effect_is": claim.effect}


def paper_passes(claim, paper_effect, source):
    """One sentence: would the paper's own (point) effect pass ``claim``'s margin?"""
    if paper_effect is None or not math.isfinite(float(paper_effect)):
        return f"the paper gives no number for this comparison ({source})"
    ok = decide(claim.direction, claim.margin, paper_effect, paper_effect) == HOLDS
    return (f"the paper's own numbers give {paper_effect:+.3g} {claim.unit}, which "
            f"{'would pass' if ok else 'would not pass'} the same margin on its point estimate "
            f"(the paper publishes no interval; {source})")
