r"""The statistics of claims: effects over seeds, two families, Holm, intervals, verdicts, power.

Every claim of the reproduction report is decided here, by one rule.

**Claims and families.** Every claim is written once in ``reproduce/claims.toml`` (text,
source, family, effect, direction, unit, margin and the margin's rationale), in one of three
families:

- ``primary``: the paper's six headline claims, each about the networks (per seed, the mean
  over the networks of the per-network effect). The family-wise error is controlled inside it.
- ``secondary``: everything else the paper shows (per network; Fig. 3, 5, 6, Table 1's
  mechanism), adjusted within its own family and labelled exploratory.
- ``theory check``: formulas against simulation and identities of the implementation; they
  guard the code, are not findings and are not adjusted.

**Effects.** A claim's effect :math:`\hat\theta` is the mean of :math:`n` samples
:math:`e_1, \dots, e_n`, one per seed: the seed is the unit of replication. Error claims are
log ratios, :math:`e_s = \log(\mathrm{err}^{x}_s / \mathrm{err}^{\mathrm{none}}_s)`, with the
margin :math:`\log(1 + \delta)`; one :math:`\delta` per kind of claim (``[deltas]`` of the file).

**Tests.** A claim with ``direction="above"`` holds when :math:`\theta > \delta_m` (the margin),
``"below"`` when :math:`\theta < \delta_m` (the non-inferiority claims "does not hurt" are
below a margin > 0). Each claim gets two one-sided t-tests (``scipy.stats.ttest_1samp`` with
``alternative=``): one whose rejection means *holds*, one whose rejection means *does not
hold*. Within each family, each set of p-values is adjusted by Holm's step-down method
(``statsmodels.stats.multitest.multipletests(method="holm")``) at the one-sided level
:data:`ALPHA` = 0.025: the chance of any wrong "holds" in a family is at most 0.025, and of any
wrong "does not hold" at most 0.025, whatever the dependence between its claims.

**Intervals at the verdict's level.** Holm's step :math:`k` (of :math:`m`) compares the
:math:`k`-th smallest p-value with :math:`\alpha / (m - k + 1)`; that comparison is the
one-sided t-bound at confidence :math:`1 - \alpha / (m - k + 1)` against the margin. The interval
shown for a claim is made of those two bounds (``confidence_interval`` of the same
``ttest_1samp``): the bound of its "holds" test at its own Holm step's level and the bound of its
"does not hold" test at its step's level. So

- **holds**: the bound clears the margin at the family level (and every earlier step did);
- **does not hold**: the other bound lies on the failing side of the margin at the family level;
- **inconclusive**: the interval straddles the margin, *or* a bound is beyond the margin but
  Holm's step-down stopped at an earlier claim (the reason names it), *or* one seed.

Every verdict carries its ``reason`` in words, generated from these numbers
(:func:`reason_text`). A family of one claim is the plain one-sided test at 0.025 (a 95%
two-sided interval).

**Power.** :func:`power` is the power of one such one-sided test, from the noncentral t
distribution, and :func:`seeds_for_power` the seeds it needs (see :mod:`reproduce.power`).

Example:

>>> c = Claim("dropout-(a) 0.5 raises the test error", "above", 1.0, "pp")
>>> judge(c, paired({0: 30.0, 1: 31.0, 2: 29.5}, {0: 25.0, 1: 25.5, 2: 24.0}))["verdict"]
'holds'
"""

from __future__ import annotations

import ast
import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["Claim", "HOLDS", "FAILS", "INCONCLUSIVE", "UNTESTED", "VERDICTS", "LEVEL", "ALPHA",
           "PRIMARY", "SECONDARY", "CHECK", "FAMILIES", "EMPIRICAL", "CLAIMS_FILE", "t_interval",
           "paired", "decide", "judge", "untested", "paper_passes", "p_values", "agree",
           "adjust_families", "load_claims", "load_deltas", "get_claim",
           "evaluate", "over_networks", "ClaimSpec", "claims_hash", "margin_kind",
           "power", "seeds_for_power", "reason_text", "REASONS", "POWER_TARGET",
           "POWER_ALPHA"]

HOLDS, FAILS, INCONCLUSIVE, UNTESTED = "holds", "does not hold", "inconclusive", "not tested"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTED)
DIRECTIONS = ("above", "below", "within")
LEVEL = 0.95
#: the family-wise level of each one-sided set of tests ("holds", "does not hold") of a family
ALPHA = (1.0 - LEVEL) / 2.0
PRIMARY, SECONDARY, CHECK = "primary", "secondary", "theory check"
FAMILIES = (PRIMARY, SECONDARY, CHECK)
#: the families whose claims are findings (Holm-adjusted within each, in verdicts.csv)
EMPIRICAL = (PRIMARY, SECONDARY)
#: the margins' keys in ``claims.toml``: a default and the kinds of profile that may differ
MARGIN_KEYS = ("default", "smoke", "cpu", "gpu")
#: profile -> the kind of its margins (a profile not named here takes the defaults)
PROFILE_KIND = {"smoke": "smoke", "quick": "cpu", "pilot": "cpu", "gpu": "gpu", "paper": "gpu"}
RULES = ("mean", "every")
SCOPES = ("network", "networks", "cells")
CLAIMS_FILE = Path(__file__).resolve().parent / "claims.toml"
#: the power every primary claim must have at the confirmatory profile's seeds
POWER_TARGET = 0.8
#: the level of the power analysis: Holm's first (strictest) step in the primary family of six
POWER_ALPHA = ALPHA / 6


@dataclass(frozen=True)
class Claim:
    """A claim: what it says, which side of which margin the effect must lie on, in what unit.

    Args:
        text: the claim, one line.
        direction: ``"above"``, ``"below"`` or ``"within"`` (see the module docstring).
        margin: the smallest effect that matters, in ``unit`` (``"within"``: half-width > 0).
        unit: the effect's unit (``"log ratio"``, ``"pp"``, ...), written next to the margin.
        effect: what the effect is, in words, for the report.
        id: the claim's id in ``reproduce/claims.toml`` ("" for an ad-hoc claim).
        source: the paper's table/figure/section it restates, or ``"ours"``.
        family: ``"primary"``, ``"secondary"`` or ``"theory check"``.
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


def margin_kind(profile):
    """The kind of margins of ``profile`` (a name or a profile): ``smoke``, ``cpu``, ``gpu``,
    or ``default`` for a profile :data:`PROFILE_KIND` does not name."""
    return PROFILE_KIND.get(getattr(profile, "name", profile), "default")


@dataclass(frozen=True)
class ClaimSpec:
    """One entry of ``claims.toml``: a claim with its margins by kind of profile."""

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
    delta: str = ""

    def margin(self, profile):
        """The margin under ``profile``: its own kind's, else the default."""
        kind = margin_kind(profile)
        return float(self.margins.get(kind, self.margins["default"]))

    def claim(self, profile, **fill):
        """The :class:`Claim` under ``profile`` (a name or a profile), ``{...}`` of the text
        filled from ``fill``."""
        return Claim(self.text.format(**fill) if fill else self.text, self.direction,
                     self.margin(profile), self.unit, self.effect_is, id=self.id,
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
             "rationale")


def claims_hash(path=CLAIMS_FILE):
    """SHA-256 (hex) of the claims file's bytes: what every run record's provenance names."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=4)
def load_deltas(path=CLAIMS_FILE):
    """``{kind: (delta, rationale)}`` of the file's ``[deltas]`` table."""
    raw = _toml(path).get("deltas", {})
    out = {}
    for kind, entry in raw.items():
        delta = float(entry.get("delta", math.nan))
        if not (0.0 < delta < 1.0) or not entry.get("rationale"):
            raise ValueError(f"delta {kind!r} in {Path(path).name} needs 0 < delta < 1 and a "
                             f"rationale; received {entry!r}")
        out[kind] = (delta, entry["rationale"])
    return out


def _margins(cid, raw, deltas):
    """A claim's margins: ``{key: value}`` with a ``default``; a ``delta = "kind"`` claim's
    margin is log(1 + delta) at every profile."""
    if "delta" in raw:
        if raw["delta"] not in deltas or "margin" in raw:
            raise ValueError(f"claim {cid!r}: delta must name one of {sorted(deltas)} (and no "
                             f"margin besides); received delta={raw['delta']!r}")
        return {"default": math.log1p(deltas[raw["delta"]][0])}
    margins = raw.get("margin")
    if not isinstance(margins, dict) or "default" not in margins \
            or not set(margins) <= set(MARGIN_KEYS):
        raise ValueError(f"claim {cid!r}: margin must be a table with a 'default' and at most "
                         f"the keys {MARGIN_KEYS}; received {margins!r}")
    return {k: float(v) for k, v in margins.items()}


@lru_cache(maxsize=4)
def load_claims(path=CLAIMS_FILE):
    """``{id: ClaimSpec}`` of the claims file, checked field by field (one line per error)."""
    out = {}
    deltas = load_deltas(path)
    for cid, raw in _toml(path).items():
        if cid == "deltas":
            continue
        missing = [k for k in _REQUIRED if k not in raw]
        if missing:
            raise ValueError(f"claim {cid!r} in {Path(path).name} lacks {', '.join(missing)}")
        if raw["family"] not in FAMILIES or raw["scope"] not in SCOPES:
            raise ValueError(f"claim {cid!r}: family must be one of {FAMILIES} and scope one of "
                             f"{SCOPES}; received {raw['family']!r}, {raw['scope']!r}")
        if raw["family"] in EMPIRICAL and raw["direction"] == "within":
            raise ValueError(f"claim {cid!r}: a {raw['family']} claim is 'above' or 'below' a "
                             "margin (equivalence belongs to the theory checks)")
        if raw["family"] == PRIMARY and raw["scope"] != "networks":
            raise ValueError(f"claim {cid!r}: a primary claim is about the networks "
                             f"(scope 'networks'); received scope {raw['scope']!r}")
        paper = raw.get("paper", {})
        if raw["family"] != CHECK and raw["source"] != "ours" and not paper \
                and raw.get("paper_numbers", True):
            raise ValueError(f"claim {cid!r}: a paper claim names its numbers (paper = ...) or "
                             "says why there are none (paper_numbers = false, no_numbers = ...)")
        spec = ClaimSpec(cid, raw["family"], raw["source"], raw["text"], raw["effect"],
                         raw["effect_is"], raw["scope"], raw["direction"], raw["unit"],
                         _margins(cid, raw, deltas), raw["rationale"], raw.get("rule", "mean"),
                         paper, raw.get("no_numbers", ""), raw.get("delta", ""))
        for kind in (*MARGIN_KEYS, "unnamed"):
            spec.claim(kind)  # validates direction, margin, rule
        out[cid] = spec
    return out


def get_claim(claim_id, profile, **fill):
    """The claim ``claim_id`` of ``claims.toml`` with ``profile``'s margin (any profile: a
    profile whose kind has no margin of its own takes the default)."""
    specs = load_claims()
    if claim_id not in specs:
        raise KeyError(f"unknown claim {claim_id!r}; claims.toml defines {', '.join(specs)}")
    return specs[claim_id].claim(profile, **fill)


_OPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}
_FUNCS = {"log": np.log}


def evaluate(formula, values):
    """The value of an effect ``formula`` (names, numbers, ``+ - * /``, parentheses and
    ``log(...)``) with the names bound to ``values`` (numbers or equal-length arrays)."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCS and len(node.args) == 1 and not node.keywords:
            return _FUNCS[node.func.id](ev(node.args[0]))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise KeyError(f"effect {formula!r} needs {node.id!r}; received "
                               f"{sorted(values)}")
            return np.asarray(values[node.id], dtype="float64")
        raise ValueError("effect formulas use names, numbers, + - * / and log(); received "
                         f"{formula!r}")

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


def _finite(samples, what):
    x = np.asarray(samples, dtype="float64").reshape(-1)
    if x.size == 0:
        raise ValueError(f"{what} needs at least one sample; received none")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} needs finite samples; received {x.tolist()}")
    return x


def _constant(x):
    return bool(np.all(x == x[0]))


def _one_sided(x, margin, alternative, confidence=1.0 - ALPHA):
    """``(p, bound)`` of the one-sided t-test of ``mean(x)`` against ``margin``
    (``scipy.stats.ttest_1samp``): ``alternative="greater"`` gives the lower confidence bound,
    ``"less"`` the upper, at ``confidence``. Identical samples: the sign decides, bound = x."""
    from scipy import stats

    if _constant(x):
        diff = float(x[0]) - margin
        sign = diff if alternative == "greater" else -diff
        return (0.0 if sign > 0 else 1.0 if sign < 0 else 0.5), float(x[0])
    res = stats.ttest_1samp(x, margin, alternative=alternative)
    ci = res.confidence_interval(confidence_level=confidence)
    return float(res.pvalue), float(ci.low if alternative == "greater" else ci.high)


def t_interval(samples, level=LEVEL):
    """``(mean, low, high, n)``: Student's two-sided t-interval of the mean of ``samples``
    (``scipy.stats.ttest_1samp(...).confidence_interval``). One sample gives
    ``(x, -inf, inf, 1)``. NaNs and infinities are refused."""
    x = _finite(samples, "t_interval")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); received level={level!r}")
    n, mean = x.size, float(x.mean())
    if n < 2:
        return mean, -math.inf, math.inf, n
    if _constant(x):
        return mean, mean, mean, n
    from scipy import stats

    ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=level)
    return mean, float(ci.low), float(ci.high), n


_HOLDS_SIDE = {"above": "greater", "below": "less"}
_FAILS_SIDE = {"above": "less", "below": "greater"}


def p_values(direction, margin, samples):
    """``(p_holds, p_fails)``: the one-sided p-values of ``ttest_1samp`` whose rejection
    means "holds" and "does not hold"; ``(nan, nan)`` for one sample. ``"within"``: the larger
    of the two one-sided p-values at the band's edges (TOST) for holds, the smaller of the
    reverse pair for does not hold."""
    x = _finite(samples, "p_values")
    if x.size < 2:
        return math.nan, math.nan
    if direction in _HOLDS_SIDE:
        return (_one_sided(x, margin, _HOLDS_SIDE[direction])[0],
                _one_sided(x, margin, _FAILS_SIDE[direction])[0])
    if direction == "within":
        above_low = _one_sided(x, -margin, "greater")[0]
        below_high = _one_sided(x, margin, "less")[0]
        return (max(above_low, below_high),
                min(_one_sided(x, -margin, "less")[0], _one_sided(x, margin, "greater")[0]))
    raise ValueError(f"direction must be one of {DIRECTIONS}; received {direction!r}")


def agree(direction, margin, samples):
    """``"k of n"``: how many samples lie on the claimed side of the margin."""
    x = _finite(samples, "agree")
    ok = {"above": x > margin, "below": x < margin, "within": np.abs(x) < margin}[direction]
    return f"{int(ok.sum())} of {x.size}"


def paired(treated, control):
    """Paired differences ``treated[s] - control[s]`` over the seeds ``s`` both settings share,
    as ``{seed: difference}``.

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
    return {s: float(t[s]) - float(c[s]) for s in sorted(t)}


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


#: reason codes of a verdict -> the words (``{...}`` filled from the row's numbers)
REASONS = {
    "clears": "its {bound} bound {value} clears the margin {margin} at the family level "
              "({step})",
    "failing_side": "its {bound} bound {value} lies on the failing side of the margin {margin} "
                    "at the family level ({step})",
    "straddles": "its interval [{low}, {high}] straddles the margin {margin}",
    "stopped": "its {bound} bound {value} is beyond the margin {margin} at its own step's "
               "level, but Holm's step-down stopped at an earlier claim ({stop}), so it is not "
               "tested",
    "one_sample": "one seed gives no interval",
    "no_samples": "its result holds no per-seed samples to test",
    "untested": "the smoke profile tests the plumbing only: it decides nothing",
    "inside": "its 95% interval [{low}, {high}] lies inside the band +-{margin}",
    "outside": "its 95% interval [{low}, {high}] lies wholly outside the band +-{margin}",
    "overlaps": "its 95% interval [{low}, {high}] overlaps an edge of the band +-{margin}",
    "unadjusted_clears": "its 95% interval [{low}, {high}] clears the margin {margin}",
    "unadjusted_fails": "its 95% interval [{low}, {high}] lies on the failing side of the "
                        "margin {margin}",
    "every_holds": "every cell lies on the claimed side of {margin} (worst {value})",
    "every_fails": "a cell lies on the wrong side of {margin} (worst {value})",
    "every_inside": "every cell lies inside the band +-{margin} (worst {value})",
    "every_outside": "a cell lies outside the band +-{margin} (worst {value})",
}


def _fmt(x, margin=None):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if margin is not None and math.isfinite(float(margin)) and float(margin) != 0.0:
        decimals = max(0, 2 - math.floor(math.log10(abs(float(margin)))))
        text = f"{x:.{decimals}f}"
        return text.lstrip("-") if float(text) == 0 else text
    return f"{x:.3g}"


def reason_text(row):
    """The verdict's reason in words, from the row's numbers and its ``why`` code."""
    why = row.get("why") or ""
    if why not in REASONS:
        return ""
    m = row.get("margin", math.nan)
    above = row.get("direction") != "below"
    # the "holds" test's bound is the lower one of an "above" claim, the upper one of "below"
    side = {"clears": "holds", "failing_side": "fails"}.get(why, row.get("stopped_side") or "holds")
    bound_is_low = above if side == "holds" else not above
    value = row.get("ci_low") if bound_is_low else row.get("ci_high")
    if why.startswith("every"):
        value = row.get("effect")
    level = row.get("level_low") if bound_is_low else row.get("level_high")
    step = row.get("step_low") if bound_is_low else row.get("step_high")
    step_text = (f"Holm step {step}, one-sided {_fmt(100 * level, 0.1)}% bound"
                 if step and level is not None and math.isfinite(float(level)) else "")
    return REASONS[why].format(
        bound="lower" if bound_is_low else "upper", value=_fmt(value, m), margin=_fmt(m, m),
        low=_fmt(row.get("ci_low", math.nan), m), high=_fmt(row.get("ci_high", math.nan), m),
        step=step_text, stop=row.get("stop", ""))


def judge(claim, samples, evidence="", *, test=True, paper=""):
    """One verdict row of ``claim`` from its effect samples (one per seed, or per simulated
    cell for theory checks).

    ``claim.rule == "every"`` (theory checks over cells): the effect is the worst cell, the
    interval the range of the cells, and the claim holds only if every cell does. The row's
    verdict, interval and reason are those of a family of one claim (a two-sided 95% interval);
    :func:`adjust_families` replaces them for the primary and secondary claims.

    Args:
        claim: a :class:`Claim`.
        samples: the effect's samples: ``{seed: value}`` or a sequence (seeds 0, 1, ...).
        evidence: what the numbers are, for the report.
        test: ``False`` writes ``not tested`` (smoke profile) but still reports the numbers.
        paper: for a claim that does not hold, whether the paper's own numbers would pass.

    Returns:
        ``{claim, id, family, source, verdict, why, reason, effect, ci_low, ci_high, margin,
        unit, n, agree, p_holds, p_fails, evidence, direction, effect_is, samples, seeds}``.
    """
    if isinstance(samples, dict):
        seeds = sorted(samples)
        values = [samples[s] for s in seeds]
    else:
        values = list(np.asarray(samples, dtype="float64").reshape(-1))
        seeds = list(range(len(values)))
    x = _finite(values, "judge")
    if claim.rule == "every":
        effect, low, high, verdict = _every(claim, x)
        n, p_hold, p_fail = x.size, math.nan, math.nan
        within = claim.direction == "within"
        why = (("every_inside" if within else "every_holds") if verdict == HOLDS
               else ("every_outside" if within else "every_fails"))
        evidence = f"{evidence}; every cell must hold: effect = the worst cell, interval = the " \
                   "range of the cells".lstrip("; ")
    else:
        effect, low, high, n = t_interval(x)
        verdict = decide(claim.direction, claim.margin, low, high)
        p_hold, p_fail = p_values(claim.direction, claim.margin, x)
        if n < 2:
            why = "one_sample"
        elif claim.direction == "within":
            why = {HOLDS: "inside", FAILS: "outside"}.get(verdict, "overlaps")
        else:
            why = {HOLDS: "unadjusted_clears", FAILS: "unadjusted_fails"}.get(verdict,
                                                                              "straddles")
    if not test:
        verdict, why = UNTESTED, "untested"
    if n < 2 and test:
        evidence = f"{evidence}; one sample: no interval".lstrip("; ")
    if verdict == FAILS and paper:
        evidence = f"{evidence}; {paper}"
    row = {"claim": claim.text, "id": claim.id, "family": claim.family, "source": claim.source,
           "verdict": verdict, "why": why, "effect": effect, "ci_low": low, "ci_high": high,
           "level_low": LEVEL if n > 1 else math.nan, "level_high": LEVEL if n > 1 else math.nan,
           "margin": float(claim.margin), "unit": claim.unit, "n": n,
           "agree": agree(claim.direction, claim.margin, x), "p_holds": p_hold,
           "p_fails": p_fail, "evidence": evidence, "direction": claim.direction,
           "effect_is": claim.effect, "rule": claim.rule,
           "samples": [float(v) for v in x], "seeds": [int(s) for s in seeds]}
    row["reason"] = reason_text(row)
    return row


def untested(claim, reason):
    """A ``not tested`` row of ``claim`` with no numbers (missing runs, missing settings)."""
    nan = float("nan")
    return {"claim": claim.text, "id": claim.id, "family": claim.family, "source": claim.source,
            "verdict": UNTESTED, "why": "untested", "reason": reason, "effect": nan,
            "ci_low": nan, "ci_high": nan, "level_low": nan, "level_high": nan,
            "margin": float(claim.margin), "unit": claim.unit, "n": 0, "agree": "",
            "p_holds": nan, "p_fails": nan, "evidence": reason, "direction": claim.direction,
            "effect_is": claim.effect, "rule": claim.rule, "samples": [], "seeds": []}


def _holm_side(rows, idx, test_side, alpha):
    """Holm's step-down over ``rows[idx]`` for one set of tests (``"holds"`` or ``"fails"``):
    ``{i: (reject, p_adjusted, bound, level, step, stop_id)}``."""
    from statsmodels.stats.multitest import multipletests

    sides = _HOLDS_SIDE if test_side == "holds" else _FAILS_SIDE
    xs = {i: np.asarray(rows[i]["samples"], dtype="float64") for i in idx}
    p = np.array([_one_sided(xs[i], rows[i]["margin"], sides[rows[i]["direction"]])[0]
                  for i in idx])
    reject, p_adj, _, _ = multipletests(p, alpha=alpha, method="holm")
    m = len(idx)
    order = np.argsort(p, kind="stable")
    rank = np.empty(m, dtype=int)
    rank[order] = np.arange(m)
    stop = next((k for k in range(m) if not reject[order[k]]), None)
    stop_id = "" if stop is None else rows[idx[order[stop]]].get("id") or rows[idx[order[stop]]]["claim"]
    out = {}
    for j, i in enumerate(idx):
        level = 1.0 - alpha / (m - rank[j])
        _, bound = _one_sided(xs[i], rows[i]["margin"], sides[rows[i]["direction"]], level)
        out[i] = (bool(reject[j]), float(p_adj[j]), bound, level, f"{rank[j] + 1} of {m}",
                  stop_id if stop is not None and rank[j] > stop else "")
    return out


def adjust_families(rows, alpha=ALPHA):
    """Decide the primary and secondary claims of ``rows`` family by family (Holm's step-down
    on both one-sided tests, see the module docstring); return new rows whose interval is made
    of the two bounds at their Holm steps' levels, with ``verdict``, ``why``, ``reason``,
    ``p_holm`` (of "holds"), ``p_holm_fails``, ``step_low``/``step_high``,
    ``level_low``/``level_high`` and ``verdict_unadjusted``. Theory checks and untested rows
    keep their verdict."""
    rows = [dict(r) for r in rows]
    for r in rows:
        r.setdefault("p_holm", math.nan)
        r.setdefault("p_holm_fails", math.nan)
        r["verdict_unadjusted"] = r.get("verdict")
    for fam in EMPIRICAL:
        members = [i for i, r in enumerate(rows) if r.get("family") == fam
                   and r.get("verdict") != UNTESTED]
        live = []
        for i in members:
            r = rows[i]
            if len(r.get("samples") or []) < 2:
                r["verdict"] = INCONCLUSIVE
                r["why"] = "one_sample" if r.get("samples") else "no_samples"
                r["reason"] = reason_text(r)
            else:
                live.append(i)
        if not live:
            continue
        holds = _holm_side(rows, live, "holds", alpha)
        fails = _holm_side(rows, live, "fails", alpha)
        for i in live:
            r = rows[i]
            h_rej, h_p, h_bound, h_level, h_step, h_stop = holds[i]
            f_rej, f_p, f_bound, f_level, f_step, f_stop = fails[i]
            above = r["direction"] == "above"
            r["p_holm"], r["p_holm_fails"] = h_p, f_p
            if above:
                r["ci_low"], r["level_low"], r["step_low"] = h_bound, h_level, h_step
                r["ci_high"], r["level_high"], r["step_high"] = f_bound, f_level, f_step
            else:
                r["ci_high"], r["level_high"], r["step_high"] = h_bound, h_level, h_step
                r["ci_low"], r["level_low"], r["step_low"] = f_bound, f_level, f_step
            m = r["margin"]
            holds_beyond = h_bound > m if above else h_bound < m
            fails_beyond = f_bound < m if above else f_bound > m
            r["stopped_side"], r["stop"] = "", ""
            if h_rej:
                r["verdict"], r["why"] = HOLDS, "clears"
            elif f_rej:
                r["verdict"], r["why"] = FAILS, "failing_side"
            elif holds_beyond:
                r["verdict"], r["why"], r["stopped_side"], r["stop"] = \
                    INCONCLUSIVE, "stopped", "holds", h_stop
            elif fails_beyond:
                r["verdict"], r["why"], r["stopped_side"], r["stop"] = \
                    INCONCLUSIVE, "stopped", "fails", f_stop
            else:
                r["verdict"], r["why"] = INCONCLUSIVE, "straddles"
            r["reason"] = reason_text(r)
    return rows


def power(distance, sd, n, alpha=POWER_ALPHA):
    """Power of the one-sided one-sample t-test at level ``alpha`` with ``n`` samples when the
    true mean lies ``distance`` beyond the margin (on the tested side) and the samples' standard
    deviation is ``sd``: ``P(T' > t_{1-alpha, n-1})`` with ``T'`` noncentral t,
    ``nc = distance / sd * sqrt(n)`` (``scipy.stats.nct``)."""
    from scipy import stats

    n = int(n)
    if n < 2:
        return 0.0
    if not sd > 0:
        return 1.0 if distance > 0 else 0.0
    crit = stats.t.ppf(1.0 - alpha, n - 1)
    return float(stats.nct.sf(crit, n - 1, distance / sd * math.sqrt(n)))


def seeds_for_power(distance, sd, target=POWER_TARGET, alpha=POWER_ALPHA, limit=1000):
    """The fewest seeds (>= 2) whose :func:`power` reaches ``target``; ``None`` if the effect
    lies on the margin or the other side of it, or more than ``limit`` seeds are needed."""
    if not distance > 0:
        return None
    for n in range(2, limit + 1):
        if power(distance, sd, n, alpha) >= target:
            return n
    return None


def paper_passes(claim, paper_effect, source):
    """One sentence: would the paper's own (point) effect pass ``claim``'s margin?"""
    if paper_effect is None or not math.isfinite(float(paper_effect)):
        return f"the paper gives no number for this comparison ({source})"
    ok = decide(claim.direction, claim.margin, paper_effect, paper_effect) == HOLDS
    return (f"the paper's own numbers give {paper_effect:+.3g} {claim.unit}, which "
            f"{'would pass' if ok else 'would not pass'} the same margin on its point estimate "
            f"(the paper publishes no interval; {source})")
