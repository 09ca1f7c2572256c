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

**p-values and Holm.** The interval rule is a pair of one-sided t-tests at
:math:`\alpha = (1 - 0.95)/2 = 0.025` each: with :math:`t = (\hat\theta - \delta)/(s_e/\sqrt n)`,
an ``"above"`` claim holds iff :math:`p_{\text{holds}} = P(T_{n-1} > t) < \alpha` (the same as
:math:`L > \delta`) and does not hold iff :math:`p_{\text{fails}} = P(T_{n-1} < t) < \alpha`
(:math:`H < \delta`); ``"below"`` swaps them; ``"within"`` takes the larger of the two
one-sided p-values at :math:`\pm\delta` (TOST) for holds and the smaller of the reverse pair
for does not hold. Over the empirical claims of a run (paper and our claims, not the theory
checks), :func:`holm` adjusts both sets of p-values by Holm's step-down method and decides each
verdict at the adjusted level: the probability of any wrong "holds" is at most
:math:`\alpha`, and of any wrong "does not hold" at most :math:`\alpha`, whatever the
dependence between claims. With one claim this is the interval rule.

**Claims are data.** Every claim (text, source, family, effect, direction, unit, margin per
profile and the margin's rationale) is written once in ``reproduce/claims.toml``; a target asks
for it by id with :func:`get_claim`.

Example:

>>> c = Claim("dropout-(a) 0.5 raises the test error", "above", 1.0, "pp")
>>> judge(c, paired({0: 30.0, 1: 31.0, 2: 29.5}, {0: 25.0, 1: 25.5, 2: 24.0}))["verdict"]
'holds'
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["Claim", "HOLDS", "FAILS", "INCONCLUSIVE", "UNTESTED", "VERDICTS", "LEVEL", "ALPHA",
           "FAMILIES", "EMPIRICAL", "CHECK", "CLAIMS_FILE", "t_interval", "paired", "decide",
           "judge", "untested", "paper_passes", "p_values", "agree", "holm", "apply_holm",
           "load_claims", "get_claim", "evaluate", "over_networks", "with_margin", "ClaimSpec"]

HOLDS, FAILS, INCONCLUSIVE, UNTESTED = "holds", "does not hold", "inconclusive", "not tested"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTED)
DIRECTIONS = ("above", "below", "within")
LEVEL = 0.95
#: the level of each one-sided test of the interval rule
ALPHA = (1.0 - LEVEL) / 2.0
PAPER, OURS, CHECK = "paper claim", "our claim", "theory check"
FAMILIES = (PAPER, OURS, CHECK)
#: the families whose claims are findings (Holm-adjusted, in verdicts.csv)
EMPIRICAL = (PAPER, OURS)
PROFILES = ("smoke", "quick", "paper")
RULES = ("mean", "every")
SCOPES = ("network", "networks", "cells")
CLAIMS_FILE = Path(__file__).resolve().parent / "claims.toml"


@dataclass(frozen=True)
class Claim:
    """A claim: what it says, which side of which margin the effect must lie on, in what unit.

    Args:
        text: the claim, one line.
        direction: ``"above"``, ``"below"`` or ``"within"`` (see the module docstring).
        margin: the smallest effect that matters, in ``unit`` (``"within"``: half-width > 0).
        unit: the effect's unit (``"pp"``, ``"relative"``, ...), written next to the margin.
        effect: what the effect is, in words, for the report.
        id: the claim's id in ``reproduce/claims.toml`` ("" for an ad-hoc claim).
        source: the paper's table/figure/section it restates, or ``"ours"``.
        family: ``"paper claim"``, ``"our claim"`` or ``"theory check"``.
        rule: ``"mean"`` (t-interval of the mean) or ``"every"`` (the worst sample decides).
        formula: the effect as a formula of named quantities (see :func:`evaluate`).
        rationale: why this margin, one line.
    """

    text: str
    direction: str
    margin: float
    unit: str
    effect: str = ""
    id: str = ""
    source: str = ""
    family: str = ""
    rule: str = "mean"
    formula: str = ""
    rationale: str = ""

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Claim direction must be one of {DIRECTIONS}; "
                             f"received direction={self.direction!r}")
        if not math.isfinite(float(self.margin)):
            raise ValueError(f"Claim margin must be a finite number; received {self.margin!r}")
        if self.direction == "within" and self.margin <= 0:
            raise ValueError("a 'within' claim needs a margin > 0 (the half-width of the "
                             f"equivalence band); received margin={self.margin!r}")
        if self.rule not in RULES:
            raise ValueError(f"Claim rule must be one of {RULES}; received rule={self.rule!r}")
        if self.family and self.family not in FAMILIES:
            raise ValueError(f"Claim family must be one of {FAMILIES}; "
                             f"received family={self.family!r}")


@dataclass(frozen=True)
class ClaimSpec:
    """One entry of ``claims.toml``: a claim with its margins for every profile."""

    id: str
    family: str
    source: str
    text: str
    effect: str
    effect_is: str
    scope: str
    direction: str
    unit: str
    margins: dict
    rationale: str
    rule: str = "mean"
    paper: dict = field(default_factory=dict)
    no_numbers: str = ""

    def claim(self, profile, **fill):
        """The :class:`Claim` under ``profile`` (a name or a profile), ``{...}`` of the text
        filled from ``fill``."""
        name = getattr(profile, "name", profile)
        if name not in self.margins:
            raise KeyError(f"claim {self.id!r} has no margin for profile {name!r}; "
                           f"claims.toml gives {sorted(self.margins)}")
        return Claim(self.text.format(**fill) if fill else self.text, self.direction,
                     float(self.margins[name]), self.unit, self.effect_is, id=self.id,
                     source=self.source, family=self.family, rule=self.rule,
                     formula=self.effect, rationale=self.rationale)


def _toml(path):
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


_REQUIRED = ("family", "source", "text", "effect", "effect_is", "scope", "direction", "unit",
             "margin", "rationale")


@lru_cache(maxsize=4)
def load_claims(path=CLAIMS_FILE):
    """``{id: ClaimSpec}`` of the claims file, checked field by field (one line per error)."""
    out = {}
    for cid, raw in _toml(path).items():
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise ValueError(f"claim {cid!r} in {Path(path).name} lacks {', '.join(missing)}")
        margins = raw["margin"]
        if not isinstance(margins, dict) or set(margins) != set(PROFILES):
            raise ValueError(f"claim {cid!r}: margin must give every profile {PROFILES}; "
                             f"received {margins!r}")
        if raw["family"] not in FAMILIES or raw["scope"] not in SCOPES:
            raise ValueError(f"claim {cid!r}: family must be one of {FAMILIES} and scope one of "
                             f"{SCOPES}; received {raw['family']!r}, {raw['scope']!r}")
        if (raw["source"] == "ours") != (raw["family"] == OURS) and raw["family"] != CHECK:
            raise ValueError(f"claim {cid!r}: source 'ours' goes with family {OURS!r}; received "
                             f"source {raw['source']!r}, family {raw['family']!r}")
        paper = raw.get("paper", {})
        if raw["family"] == PAPER and not paper and raw.get("paper_numbers", True):
            raise ValueError(f"claim {cid!r}: a paper claim names its numbers (paper = ...) or "
                             "says why there are none (paper_numbers = false, no_numbers = ...)")
        spec = ClaimSpec(cid, raw["family"], raw["source"], raw["text"], raw["effect"],
                         raw["effect_is"], raw["scope"], raw["direction"], raw["unit"],
                         {k: float(v) for k, v in margins.items()}, raw["rationale"],
                         raw.get("rule", "mean"), paper, raw.get("no_numbers", ""))
        for prof in PROFILES:
            spec.claim(prof)  # validates direction, margin, rule
        out[cid] = spec
    return out


def get_claim(claim_id, profile, **fill):
    """The claim ``claim_id`` of ``claims.toml`` with ``profile``'s margin."""
    specs = load_claims()
    if claim_id not in specs:
        raise KeyError(f"unknown claim {claim_id!r}; claims.toml defines {', '.join(specs)}")
    return specs[claim_id].claim(profile, **fill)


_OPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}


def evaluate(formula, values):
    """The value of an effect ``formula`` (names, numbers, ``+ - * /``, parentheses) with the
    names bound to ``values`` (numbers or equal-length arrays)."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise KeyError(f"effect {formula!r} needs {node.id!r}; received "
                               f"{sorted(values)}")
            return np.asarray(values[node.id], dtype="float64")
        raise ValueError(f"effect formulas use names, numbers and + - * /; received {formula!r}")

    return ev(ast.parse(formula, mode="eval"))


def over_networks(per_network):
    """``{seed: mean over networks}`` of ``{network: {seed: value}}``: the seed stays the unit.

    Raises:
        ValueError: if the networks do not share their seeds.
    """
    per_network = {k: dict(v) for k, v in per_network.items()}
    if not per_network:
        raise ValueError("over_networks needs at least one network; received none")
    seeds = [set(v) for v in per_network.values()]
    if any(s != seeds[0] for s in seeds):
        raise ValueError("networks compared by one claim must share their seeds; received "
                         + ", ".join(f"{k}: {sorted(v)}" for k, v in per_network.items()))
    return {s: float(np.mean([v[s] for v in per_network.values()])) for s in sorted(seeds[0])}


def t_interval(samples, level=LEVEL):
    """``(mean, low, high, n)``: Student's t-interval of the mean of ``samples``.

    One sample gives ``(x, -inf, inf, 1)``. NaNs and infinities are refused.
    """
    x = _finite(samples, "t_interval")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); received level={level!r}")
    n, mean = x.size, float(x.mean())
    if n < 2:
        return mean, -math.inf, math.inf, n
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def _finite(samples, what):
    x = np.asarray(samples, dtype="float64").reshape(-1)
    if x.size == 0:
        raise ValueError(f"{what} needs at least one sample; received none")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} needs finite samples; received {x.tolist()}")
    return x


def _sf(x, margin):
    """``P(T > t)``, ``t = (mean - margin) / se``, for the samples ``x`` (n >= 2)."""
    from scipy import stats

    n, se = x.size, float(x.std(ddof=1)) / math.sqrt(x.size)
    diff = float(x.mean()) - margin
    if se == 0.0:  # identical samples: the sign of the difference decides
        return 0.0 if diff > 0 else 1.0 if diff < 0 else 0.5
    return float(stats.t.sf(diff / se, n - 1))


def p_values(direction, margin, samples):
    """``(p_holds, p_fails)``: the one-sided p-values whose ``< ALPHA`` is the interval rule's
    "holds" and "does not hold" (see the module docstring); ``(nan, nan)`` for one sample."""
    x = _finite(samples, "p_values")
    if x.size < 2:
        return math.nan, math.nan
    if direction == "above":
        up = _sf(x, margin)
        return up, 1.0 - up
    if direction == "below":
        up = _sf(x, margin)
        return 1.0 - up, up
    if direction == "within":
        above_low, above_high = _sf(x, -margin), _sf(x, margin)  # P(T > t) at -margin, +margin
        return max(above_low, 1.0 - above_high), min(1.0 - above_low, above_high)
    raise ValueError(f"direction must be one of {DIRECTIONS}; received {direction!r}")


def agree(direction, margin, samples):
    """``"k of n"``: how many samples lie on the claimed side of the margin."""
    x = _finite(samples, "agree")
    ok = {"above": x > margin, "below": x < margin, "within": np.abs(x) < margin}[direction]
    return f"{int(ok.sum())} of {x.size}"


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


def _every(claim, x):
    """A "for every cell" claim: the worst cell decides; the range of the cells is reported."""
    if claim.direction == "within":
        worst = float(x[np.argmax(np.abs(x))])
        verdict = HOLDS if np.all(np.abs(x) < claim.margin) else FAILS
    elif claim.direction == "above":
        worst = float(x.min())
        verdict = HOLDS if worst > claim.margin else FAILS
    else:
        worst = float(x.max())
        verdict = HOLDS if worst < claim.margin else FAILS
    return worst, float(x.min()), float(x.max()), verdict


def judge(claim, samples, evidence="", *, test=True, paper=""):
    """One verdict row of ``claim`` from its effect samples (paired differences or values).

    ``claim.rule == "every"`` (theory checks over cells): the effect is the worst cell, the
    interval the range of the cells, and the claim holds only if every cell does.

    Args:
        claim: a :class:`Claim`.
        samples: the effect's samples (one per seed, or per simulated cell for theory claims).
        evidence: what the numbers are, for the report.
        test: ``False`` writes ``not tested`` (smoke profile) but still reports the numbers.
        paper: for a claim that does not hold, whether the paper's own numbers would pass.

    Returns:
        ``{claim, id, family, source, verdict, effect, ci_low, ci_high, margin, unit, n, agree,
        p_holds, p_fails, evidence, direction, effect_is}``; ``verdict`` is the claim's own
        (unadjusted) verdict, which :func:`apply_holm` replaces for the empirical claims.
    """
    x = _finite(samples, "judge")
    if claim.rule == "every":
        effect, low, high, verdict = _every(claim, x)
        n, p_hold, p_fail = x.size, math.nan, math.nan
        evidence = f"{evidence}; every cell must hold: effect = the worst cell, interval = the " \
                   "range of the cells".lstrip("; ")
    else:
        effect, low, high, n = t_interval(x)
        verdict = decide(claim.direction, claim.margin, low, high)
        p_hold, p_fail = p_values(claim.direction, claim.margin, x)
    if not test:
        verdict = UNTESTED
    if n < 2 and test:
        evidence = f"{evidence}; one sample: no interval".lstrip("; ")
    if verdict == FAILS and paper:
        evidence = f"{evidence}; {paper}"
    return {"claim": claim.text, "id": claim.id, "family": claim.family, "source": claim.source,
            "verdict": verdict, "effect": effect, "ci_low": low, "ci_high": high,
            "margin": float(claim.margin), "unit": claim.unit, "n": n,
            "agree": agree(claim.direction, claim.margin, x), "p_holds": p_hold,
            "p_fails": p_fail, "evidence": evidence, "direction": claim.direction,
            "effect_is": claim.effect}


def untested(claim, reason):
    """A ``not tested`` row of ``claim`` with no numbers (missing runs, missing settings)."""
    nan = float("nan")
    return {"claim": claim.text, "id": claim.id, "family": claim.family, "source": claim.source,
            "verdict": UNTESTED, "effect": nan, "ci_low": nan, "ci_high": nan,
            "margin": float(claim.margin), "unit": claim.unit, "n": 0, "agree": "",
            "p_holds": nan, "p_fails": nan, "evidence": reason, "direction": claim.direction,
            "effect_is": claim.effect}


def holm(p):
    """Holm's step-down adjusted p-values of ``p`` (NaNs stay NaN and do not count)."""
    p = np.asarray(p, dtype="float64")
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def apply_holm(rows, alpha=ALPHA):
    """Holm-adjust the empirical claims of ``rows`` (paper and our claims with p-values) and
    decide each at the adjusted level; return new rows with ``p_holm`` (of "holds"),
    ``p_holm_fails`` and ``verdict_unadjusted``. Theory checks and untested rows keep their
    verdict (``p_holm`` empty)."""
    rows = [dict(r) for r in rows]
    live = [i for i, r in enumerate(rows) if r.get("family") in EMPIRICAL
            and r.get("verdict") != UNTESTED]
    ph = holm([_nan(rows[i].get("p_holds")) for i in live])
    pf = holm([_nan(rows[i].get("p_fails")) for i in live])
    for r in rows:
        r.setdefault("p_holm", math.nan)
        r.setdefault("p_holm_fails", math.nan)
        r["verdict_unadjusted"] = r.get("verdict")
    for i, a, b in zip(live, ph, pf, strict=True):
        r = rows[i]
        r["p_holm"], r["p_holm_fails"] = float(a), float(b)
        if math.isnan(a):
            r["verdict"] = INCONCLUSIVE
        else:
            r["verdict"] = HOLDS if a < alpha else FAILS if b < alpha else INCONCLUSIVE
    return rows


def _nan(x):
    return math.nan if x is None else float(x)


def paper_passes(claim, paper_effect, source):
    """One sentence: would the paper's own (point) effect pass ``claim``'s margin?"""
    if paper_effect is None or not math.isfinite(float(paper_effect)):
        return f"the paper gives no number for this comparison ({source})"
    ok = decide(claim.direction, claim.margin, paper_effect, paper_effect) == HOLDS
    return (f"the paper's own numbers give {paper_effect:+.3g} {claim.unit}, which "
            f"{'would pass' if ok else 'would not pass'} the same margin on its point estimate "
            f"(the paper publishes no interval; {source})")


def with_margin(claim, margin):
    """A copy of ``claim`` with another margin (the paper test judges at ``paper``'s)."""
    return replace(claim, margin=float(margin))
