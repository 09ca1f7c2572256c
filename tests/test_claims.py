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
    assert d == {0: 1.0, 1: 3.0} and list(d) == [0, 1]


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


# ------------------------------------------------------------------ claims written once, in advance
def test_every_claim_is_complete_and_used_by_a_target():
    """claims.toml gives every claim its text, source, family, effect, direction, unit, a
    margin for each profile and a rationale; every id is used by a target, and no target
    asks for an id the file lacks."""
    import re
    from pathlib import Path

    from reproduce.claims import FAMILIES, load_claims

    specs = load_claims()
    for cid, s in specs.items():
        assert s.family in FAMILIES and s.source and s.text and s.effect and s.rationale, cid
        assert "default" in s.margins, cid
    targets = Path(__file__).resolve().parent.parent / "reproduce" / "targets"
    code = "\n".join(p.read_text() for p in targets.glob("*.py"))
    used = set(re.findall(r'(?:profile, |claim_id=|primary_id=)"((?:eq|fig|table|p)\d+_[a-z0-9_]+)"',
                          code))
    assert set(specs) - used == set(), "claims no target judges"
    assert used - set(specs) == set(), "targets ask for claims the file lacks"
    assert not re.search(r"Claim\(\s*f?\"", code), "a target defines a claim in code"


def test_paper_claims_hold_on_the_papers_own_numbers():
    """Every paper-sourced claim, judged on the paper's point estimates (no interval: the point
    against the margin) under the paper profile's margins, holds: a perfect reproduction
    passes. A paper claim without numbers says why (a figure) instead."""
    from reproduce.claims import load_claims
    from reproduce.targets import paper_effects

    judged = 0
    for cid, spec in load_claims().items():
        if spec.family == "theory check" or spec.source == "ours":
            continue
        if not spec.paper:
            assert "Fig." in spec.source and spec.no_numbers, cid
            continue
        effects = paper_effects(spec)
        assert effects, cid
        for profile in ("paper", "gpu"):
            m = spec.margin(profile)
            for case, value in effects.items():
                assert decide(spec.direction, m, value, value) == HOLDS, (cid, case, value, m)
        judged += len(effects)
    assert judged >= 80  # per network x data set (x drop ratio), CIFAR-10 and CIFAR-100


def test_paper_fraction_of_the_harm_is_the_issue_s_number():
    from reproduce.claims import load_claims
    from reproduce.targets import paper_effects

    fr = paper_effects(load_claims()["table3_recovers_a"])
    assert fr["PreResNet, cifar10"] == pytest.approx((8.42 - 6.42) / (8.42 - 5.02))  # 59%


def test_margins_come_from_the_file_per_profile():
    from reproduce.claims import get_claim, load_deltas

    quick, paper = get_claim("fig4_raises", "quick", network="WRN"), get_claim("fig4_raises", "paper")
    assert quick.text.endswith("(WRN)") and quick.unit == "log ratio"
    sup = math.log1p(load_deltas()["superiority"][0])  # one delta per kind, on the log scale
    assert quick.margin == paper.margin == pytest.approx(sup) and quick.family == "secondary"
    ni = get_claim("table4_no_harm", "quick", network="WRN", value="0.5")
    assert ni.margin == pytest.approx(math.log1p(load_deltas()["non_inferiority"][0]))
    assert get_claim("p5_after_bn", "gpu", value="0.5").margin == ni.margin
    # theory checks: the smoke profile's smaller Monte Carlo gets its own margin
    assert get_claim("eq8_mc", "smoke").margin > get_claim("eq8_mc", "quick").margin
    with pytest.raises(KeyError, match="unknown claim"):
        get_claim("no_such_claim", "quick")


# ------------------------------------------------------------------ p-values, Holm, k of n
@pytest.mark.parametrize("direction, margin", [("above", 1.0), ("below", 1.0), ("within", 0.5)])
def test_p_values_are_the_interval_rule(direction, margin):
    """p_holds < 0.025 exactly when the 95% interval says holds, p_fails < 0.025 exactly when
    it says does not hold: the Holm step adjusts the same tests the intervals make."""
    from reproduce.claims import ALPHA, p_values

    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(400):
        x = rng.normal(rng.uniform(-3, 3), rng.uniform(0.05, 2.0), size=rng.integers(2, 8))
        _, lo, hi, _ = t_interval(x)
        verdict = decide(direction, margin, lo, hi)
        ph, pf = p_values(direction, margin, x)
        assert (ph < ALPHA) == (verdict == HOLDS), (x, lo, hi, ph)
        assert (pf < ALPHA) == (verdict == FAILS), (x, lo, hi, pf)
        seen.add(verdict)
    assert seen == {HOLDS, FAILS, INCONCLUSIVE}


def test_statsmodels_holm_matches_the_step_down_by_hand():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 0.02, 0.03, 0.06, max(0.06, 0.04) = 0.06
    reject, adj, _, _ = multipletests(p, alpha=0.025, method="holm")
    assert adj.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject.tolist() == [False, False, False, True]  # 0.005 <= 0.025/4; 0.01 > 0.025/3


def test_one_sided_bounds_and_p_values_are_students_by_hand():
    """The p-values of "holds" and "does not hold", and the one-sided bounds a claim alone in
    its family gets at level ``1 - alpha``, are Student's t by hand."""
    from reproduce.claims import adjust_families, p_values

    x = np.array([1.0, 2.0, 4.0, 3.5])
    se = np.std(x, ddof=1) / 2.0
    t = (x.mean() - 1.0) / se
    p_holds, p_fails = p_values("above", 1.0, x)
    assert p_holds == pytest.approx(stats.t.sf(t, 3))
    assert p_fails == pytest.approx(stats.t.cdf(t, 3))
    row = judge(Claim("c", "above", 1.0, "u", id="c", family="secondary"), dict(enumerate(x)))
    for alpha in (0.01, 0.1):
        out = adjust_families([row], alpha=alpha)[0]
        assert out["level_low"] == out["level_high"] == pytest.approx(1.0 - alpha)
        assert out["ci_low"] == pytest.approx(x.mean() - stats.t.ppf(1.0 - alpha, 3) * se)
        assert out["ci_high"] == pytest.approx(x.mean() + stats.t.ppf(1.0 - alpha, 3) * se)


def _with_p(p, n=5, margin=0.0, cid="c"):
    """A claim "above ``margin``" whose one-sided p-value of "holds" is ``p``."""
    z = np.arange(n, dtype=float)
    z = (z - z.mean()) / z.std(ddof=1)
    t = stats.t.isf(p, n - 1)
    return judge(Claim(cid, "above", margin, "u", id=cid, family="primary"),
                 dict(enumerate(margin + t / math.sqrt(n) + z)))


def _family(rng, m, fam="primary"):
    if rng.uniform() < 0.2:  # p-values in the window where the step-down stops early
        first = rng.uniform(0.0126, 0.024)
        return [_with_p(first, cid="a"), _with_p(rng.uniform(first, 0.0249), cid="b")]
    rows = []
    for i in range(m):
        direction = ["above", "below"][rng.integers(2)]
        claim = Claim(f"claim {i}", direction, float(rng.uniform(-0.5, 0.5)), "u", id=f"c{i}",
                      family=fam)
        n = int(rng.integers(2, 12))
        x = rng.normal(claim.margin + rng.normal(0, 1.5), rng.uniform(0.2, 2.0), n)
        rows.append(judge(claim, dict(enumerate(x))))
    return rows


def test_adjust_families_decides_at_the_adjusted_level_and_leaves_checks_alone():
    from reproduce.claims import adjust_families

    claim = Claim("x", "above", 0.0, "pp", family="secondary")
    check = Claim("identity", "within", 0.1, "relative", family="theory check")
    weak = judge(claim, [1.0, 2.0, 1.5, 0.4, 1.1])  # holds alone (interval above 0)
    strong = judge(claim, [5.0, 5.1, 4.9, 5.2, 5.0])
    # ten such claims: Holm multiplies the smallest p by 10, and the step-down keeps it for all
    rows = [dict(weak) for _ in range(10)] + [strong, judge(check, [0.0, 0.01, -0.01])]
    out = adjust_families(rows)
    assert weak["verdict"] == HOLDS and out[0]["verdict_unadjusted"] == HOLDS
    assert weak["p_holds"] < 0.025 < 10 * weak["p_holds"]
    assert all(r["verdict"] == INCONCLUSIVE and r["p_holm"] >= 0.025 for r in out[:10])
    assert out[10]["verdict"] == HOLDS and out[10]["p_holm"] == pytest.approx(11 * strong["p_holds"])
    assert out[-1]["verdict"] == HOLDS and math.isnan(out[-1]["p_holm"])  # checks: not adjusted
    # the interval shown is the verdict's: strong's lower bound at Holm step 1 of 11
    x = np.array(strong["samples"])
    low = x.mean() - stats.t.ppf(1 - 0.025 / 11, 4) * x.std(ddof=1) / math.sqrt(5)
    assert out[10]["ci_low"] == pytest.approx(low) and out[10]["step_low"] == "1 of 11"


def test_families_are_adjusted_apart():
    """Holm over the primary family only: ten secondary claims do not weaken a primary one."""
    from reproduce.claims import adjust_families

    prim = judge(Claim("p", "above", 0.0, "pp", id="p", family="primary"), [1.0, 2.0, 1.5, 0.4, 1.1])
    sec = judge(Claim("s", "above", 0.0, "pp", id="s", family="secondary"), [1.0, 2.0, 1.5, 0.4, 1.1])
    out = adjust_families([prim] + [dict(sec) for _ in range(10)])
    assert out[0]["verdict"] == HOLDS and out[0]["step_low"] == "1 of 1"
    assert all(r["verdict"] == INCONCLUSIVE for r in out[1:])


def _said(text, word):
    """The number written after ``word`` in a reason."""
    import re

    return float(re.search(rf"{word} (-?[0-9.]+)", text).group(1))


def test_verdicts_are_holm_and_every_reason_is_true_of_its_numbers():
    """Many synthetic families: each verdict is statsmodels' Holm decision; each interval bound
    beyond the margin is a rejection unless the step-down stopped earlier; each reason in words
    is true of the interval, the margin and the step-down."""
    from reproduce.claims import ALPHA, adjust_families

    def step_down(p):  # Holm by hand: reject the k-th smallest while p_(k) <= alpha / (m - k)
        out, m = [False] * len(p), len(p)
        for k, i in enumerate(np.argsort(p, kind="stable")):
            if p[i] > ALPHA / (m - k):
                break
            out[i] = True
        return out

    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(50):
        rows = adjust_families(_family(rng, int(rng.integers(1, 9))))
        rej_h = step_down([r["p_holds"] for r in rows])
        rej_f = step_down([r["p_fails"] for r in rows])
        for r, h, f in zip(rows, rej_h, rej_f, strict=True):
            m, lo, hi, above = r["margin"], r["ci_low"], r["ci_high"], r["direction"] == "above"
            good = lo > m if above else hi < m   # the holds-bound beyond the margin
            bad = hi < m if above else lo > m    # the fails-bound on the failing side
            assert lo <= r["effect"] <= hi
            assert (r["verdict"] == HOLDS) == bool(h) and (r["verdict"] == FAILS) == bool(f)
            why = r["why"]
            seen.add(why)
            if why == "clears":
                assert good and r["verdict"] == HOLDS
                assert _said(r["reason"], "bound") == pytest.approx(lo if above else hi, abs=1e-3)
                assert ("lower" in r["reason"]) == above and "clears" in r["reason"]
            elif why == "failing_side":
                assert bad and r["verdict"] == FAILS
                assert _said(r["reason"], "bound") == pytest.approx(hi if above else lo, abs=1e-3)
                assert "failing side" in r["reason"]
            elif why == "straddles":
                assert not good and not bad and lo <= m <= hi and r["verdict"] == INCONCLUSIVE
                assert "straddles" in r["reason"]
                assert _said(r["reason"], "margin") == pytest.approx(m, abs=1e-3)
            elif why == "stopped":
                assert (good or bad) and r["verdict"] == INCONCLUSIVE and r["stop"]
                stopper = next(x for x in rows if (x["id"] or x["claim"]) == r["stop"])
                side = "p_holds" if r["stopped_side"] == "holds" else "p_fails"
                assert stopper[side] <= r[side]  # the step-down stopped at an earlier claim
                assert "stopped at an earlier claim" in r["reason"]
            else:
                raise AssertionError(why)
    assert seen == {"clears", "failing_side", "straddles", "stopped"}


def test_power_is_the_noncentral_t_and_agrees_with_simulation():
    from reproduce.claims import POWER_ALPHA, power, seeds_for_power

    n, d, sd = 8, 0.9, 1.0
    crit = stats.t.ppf(1 - POWER_ALPHA, n - 1)
    assert power(d, sd, n) == pytest.approx(stats.nct.sf(crit, n - 1, d / sd * math.sqrt(n)))
    rng = np.random.default_rng(0)
    x = rng.normal(d, sd, size=(20000, n))
    t = x.mean(1) / (x.std(1, ddof=1) / math.sqrt(n))
    assert np.mean(t > crit) == pytest.approx(power(d, sd, n), abs=0.015)
    k = seeds_for_power(d, sd)
    assert power(d, sd, k) >= 0.8 > power(d, sd, k - 1)
    assert seeds_for_power(-0.1, 1.0) is None and seeds_for_power(0.0, 1.0) is None


def test_every_claim_has_a_margin_at_every_profile():
    from reproduce.claims import get_claim, load_claims
    from reproduce.profiles import PROFILES

    for cid in load_claims():
        for name in PROFILES:
            claim = get_claim(cid, name, network="X", value="0.5")
            assert math.isfinite(claim.margin), (cid, name)


def test_the_claims_hash_is_the_file_s_sha256(tmp_path):
    import hashlib

    from reproduce.claims import CLAIMS_FILE, claims_hash

    assert claims_hash() == hashlib.sha256(CLAIMS_FILE.read_bytes()).hexdigest()
    other = tmp_path / "claims.toml"
    other.write_bytes(CLAIMS_FILE.read_bytes() + b"\n# changed\n")
    assert claims_hash(other) != claims_hash()


def test_k_of_n_shows_a_split_the_mean_hides():
    row = judge(RAISES, [30.0, 28.0, -1.0, 31.0, -2.0])
    assert row["agree"] == "3 of 5"


def test_for_every_cell_is_judged_on_the_worst_cell():
    """+3% in one cell and -3% in another average to 0 but do not match within 1%."""
    every = Claim("formula matches Monte Carlo in every cell", "within", 0.01, "relative",
                  rule="every")
    cells = [0.03, -0.03] + [0.0] * 18
    assert judge(Claim("mean", "within", 0.01, "relative"), cells)["verdict"] == HOLDS  # the old rule
    row = judge(every, cells)
    assert row["verdict"] == FAILS and abs(row["effect"]) == pytest.approx(0.03)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(-0.03), pytest.approx(0.03))
    assert judge(every, [0.005, -0.004, 0.0])["verdict"] == HOLDS


# ------------------------------------------------------------------ the seed is the unit
def test_over_networks_keeps_one_sample_per_seed():
    from reproduce.claims import over_networks

    per_seed = over_networks({"A": {0: 1.0, 1: 3.0}, "B": {0: 3.0, 1: 5.0}})
    assert per_seed == {0: 2.0, 1: 4.0}
    with pytest.raises(ValueError, match="share their seeds"):
        over_networks({"A": {0: 1.0, 1: 3.0}, "B": {0: 3.0}})


def _table3_frame(seeds=5, nets=("preresnet", "wrn", "densenet_bc")):
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for net in nets:
        for s in range(seeds):
            base = 20.0 + rng.normal()
            rows.append({"net": net, "data": "fashion_mnist", "placement": "none", "seed": s,
                         "test_error": base, "stats_samples": np.nan,
                         **{f"test_error_adjust_{m}": np.nan
                            for m in ("sequential", "one_pass", "one_pass_noise")}})
            for p, harm in (("a", 20.0), ("b", 6.0)):
                err = base + harm + rng.normal()
                adj = base + 0.3 * harm + rng.normal()
                rows.append({"net": net, "data": "fashion_mnist", "placement": p, "seed": s,
                             "test_error": err, "test_error_adjust_sequential": adj,
                             "test_error_adjust_one_pass": adj + rng.normal(0, 0.2),
                             "test_error_adjust_one_pass_noise": err + rng.normal(),
                             "stats_samples": 2000})
    return pd.DataFrame(rows)


def test_table3_claims_have_one_sample_per_seed_and_no_duplicates():
    """Table 3 no longer pools networks x seeds (n = 15): every claim's n is the number of
    seeds, the baseline claim exists, and no two claims are the same test."""
    from reproduce.profiles import get_profile
    from reproduce.targets import table3

    rows = table3._claims(get_profile("quick"), _table3_frame())
    assert rows and all(r["n"] == 5 for r in rows), [(r["id"], r["n"]) for r in rows]
    ids = [r["id"] for r in rows]
    assert ids.count("table3_above_baseline") == 3 and ids.count("table3_one_pass") == 1
    assert "Adjust BN (one_pass) lowers" not in " ".join(r["claim"] for r in rows)
    keys = [(round(r["effect"], 12), round(r["ci_low"], 12), round(r["ci_high"], 12)) for r in rows]
    assert len(set(keys)) == len(keys)
    adjust = next(r for r in rows if r["id"] == "p4_adjust")
    assert adjust["verdict"] == HOLDS and adjust["family"] == "primary"
    # log(a / a_adjust) with a = base + 20, a_adjust = base + 6 and base about 20
    assert adjust["effect"] == pytest.approx(np.log(40.0 / 26.0), abs=0.1)
    assert {r["id"] for r in rows} == {"p4_adjust", "table3_lowers_b", "table3_recovers_a",
                                       "table3_above_baseline", "table3_one_pass"}


def test_evaluate_is_arithmetic_only():
    from reproduce.claims import evaluate

    assert evaluate("(a - none) / none", {"a": 30.0, "none": 20.0}) == pytest.approx(0.5)
    assert evaluate("a - b", {"a": np.array([1.0, 2.0]), "b": 1.0}).tolist() == [0.0, 1.0]
    assert evaluate("log(a / none)", {"a": 30.0, "none": 20.0}) == pytest.approx(np.log(1.5))
    with pytest.raises(ValueError, match="names, numbers"):
        evaluate("__import__('os')", {})
    with pytest.raises(KeyError, match="needs 'b'"):
        evaluate("a - b", {"a": 1.0})
