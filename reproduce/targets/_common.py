"""Shared pieces of the training-based targets: the run grids, record accessors, claims.

The grids are defined once here, so targets that read the same runs (Fig. 1, Fig. 4, Fig. 5,
Table 3 all read the dropout-(a) 0.5 runs; Tables 4 and 6 share the no-dropout baselines with
Fig. 4) ask for identical configurations and the plan deduplicates them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from reproduce._io import atomic_path
from reproduce.claims import evaluate, get_claim, judge, load_claims, over_networks, paper_passes
from reproduce.profiles import PAPER_NAMES
from reproduce.runs import noise_value, run_spec

__all__ = ["fig4_specs", "baseline_specs", "grid_specs", "collect", "summarise", "test_error",
           "shift_table", "write_csv", "paper_table", "mean_std", "seed_std", "paper_data_for",
           "by_seed", "decide", "check", "network_claim", "networks_claim", "seed_effect",
           "paper_effects", "SMOKE_NOTE"]

SMOKE_NOTE = ("smoke profile: tiny samples, tiny networks, 1 epoch; it tests the plumbing only, "
              "values shown are not evidence")
PAPER_DIR = Path(__file__).resolve().parent.parent / "data"


def size_words(profile):
    """How a target's text names the profile's network sizes: ``"small"``, ``"paper"`` or,
    for sizes given per network, where they are listed."""
    return profile.size if isinstance(profile.size, str) else "per-network sizes (see setup)"


def baseline_specs(profile, networks=None, save_model=False):
    """No-dropout runs, every seed, every data set."""
    return [run_spec(profile, net, "none", 0.0, data=data, seed=s, save_model=save_model)
            for data in profile.data for net in (networks or profile.networks)
            for s in profile.seed_list()]


def fig4_specs(profile, placements=("a", "b"), networks=None):
    """Fig. 4's grid: every network x placement x drop ratio (0 = the shared baseline)."""
    specs = baseline_specs(profile, networks)
    for data in profile.data:
        for net in networks or profile.networks:
            for placement in placements:
                for rate in profile.fig4_rates:
                    if rate == 0.0:
                        continue
                    specs += [run_spec(profile, net, placement, rate, data=data, seed=s)
                              for s in profile.seeds_for(placement, rate)]
    return specs


def grid_specs(profile, placement, noise, values):
    """Tables 4/6: ``placement``/``noise`` at ``values`` on the table networks, every seed for
    the baseline and the first seed for the others (every seed where ``profile.seeded`` is None)."""
    from varshift.noise import get

    nets, param = profile.table_networks, get(noise).param  # "rate" or "beta"
    specs = baseline_specs(profile, nets)
    for data in profile.data:
        for net in nets:
            for v in values:
                specs += [run_spec(profile, net, placement, noise=noise, data=data, seed=s,
                                   **{param: v})
                          for s in profile.seeds_for(f"{placement}/{noise}", v)]
    return specs


def test_error(final, key="test_error"):
    """A test error from a record's ``final`` block, in percent (``varshift.train`` stores %)."""
    val = final.get(key)
    return np.nan if val is None else float(val)


def shift_table(final):
    """The per-BN-layer shift rows of a record as a DataFrame with the paper's statistic."""
    rows = final.get("shift") or final.get("shift_rows") or []
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    r = df["real_var"].astype(float) / df["moving_var"].astype(float)
    df["statistic"] = np.maximum(r, 1.0 / r)  # max(real/moving, moving/real), Fig. 4
    return df


#: the "Adjust BN" variants the ``adjust_bn`` hook records (``reproduce.evaluations.ADJUST_MODES``)
ADJUST_MODES = ("sequential", "one_pass", "one_pass_noise")


def collect(ctx, specs):
    """One row per run: configuration, test errors and the mean shift statistic."""
    rows = []
    for spec in ctx.available(specs):
        c = spec.config
        final = ctx.record(spec).get("final", {})
        shift = shift_table(final)
        rows.append({
            "net": c["net"], "network": PAPER_NAMES.get(c["net"], c["net"]), "data": c["data"],
            "placement": c["placement"], "noise": c["noise"], "value": noise_value(c),
            "rate": c.get("rate", 0.0), "seed": c["seed"],
            "test_error": test_error(final),
            **{f"test_error_adjust_{m}": test_error(final, f"test_error_adjust_{m}")
               for m in ADJUST_MODES},
            "mean_statistic": float(shift["statistic"].mean()) if len(shift) else np.nan,
            "max_statistic": float(shift["statistic"].max()) if len(shift) else np.nan,
            "stats_samples": final.get("stats_samples"),
            "adjust_samples": final.get("adjust_samples"),
            "key": spec.key,
        })
    return pd.DataFrame(rows).drop_duplicates("key")


def mean_std(values):
    """``mean +- std (n)`` text, std over seeds (ddof 1; none for one seed)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.2f} (1 seed)"
    return f"{v.mean():.2f} +- {v.std(ddof=1):.2f} ({len(v)} seeds)"


def seed_std(values):
    """Standard deviation over seeds (ddof 1); NaN for fewer than two seeds."""
    v = np.asarray(values, dtype=float)
    return float(np.std(v, ddof=1)) if len(v) > 1 else np.nan


def summarise(df, by, values):
    """Mean, std and count over seeds of ``values`` for each group ``by``."""
    agg = {}
    for v in values:
        agg[f"{v}_mean"] = (v, "mean")
        agg[f"{v}_std"] = (v, seed_std)
    agg["n_seeds"] = ("seed", "nunique")
    return df.groupby(by, sort=False).agg(**agg).reset_index()


def paper_data_for(data):
    """The paper's data set our numbers are compared with (10-class sets with CIFAR-10)."""
    return data if data in ("cifar10", "cifar100") else "cifar10"


def by_seed(df, column, /, **where):
    """``{seed: df[column]}`` of the rows of ``df`` matching ``where`` (other column == value)."""
    sel = df
    for col, want in where.items():
        sel = sel[np.isclose(sel[col], want)] if isinstance(want, float) else sel[sel[col] == want]
    return dict(zip(sel["seed"].tolist(), sel[column].astype(float).tolist(), strict=True))


#: what a claim that does not hold says when the paper has no number to check against
NO_PAPER_NUMBER = "the paper publishes no number for this effect, so its own data cannot be checked"


def decide(profile, claim, samples, evidence, paper=""):
    """:func:`reproduce.claims.judge` under ``profile``: ``not tested`` at the smoke profile."""
    if profile.name == "smoke":
        evidence = f"{SMOKE_NOTE}; {evidence}"
    return judge(claim, samples, evidence, test=profile.name != "smoke",
                 paper=paper or NO_PAPER_NUMBER)


def check(profile, claim_id, samples, evidence, **fill):
    """A claim of ``claims.toml`` judged on ``samples`` (theory checks: cells or chunks)."""
    return decide(profile, get_claim(claim_id, profile, **fill), samples, evidence)


def seed_effect(formula, values):
    """``{seed: formula(values at seed)}`` of ``values = {name: {seed: value}}``; every name
    must have the same seeds (the paired design)."""
    values = {k: dict(v) for k, v in values.items()}
    seeds = [set(v) for v in values.values()]
    if not seeds or any(s != seeds[0] for s in seeds):
        raise ValueError("settings compared by one claim must share their seeds; received "
                         + ", ".join(f"{k}: {sorted(v)}" for k, v in values.items()))
    order = sorted(seeds[0])
    arrays = {k: np.array([v[s] for s in order], dtype="float64") for k, v in values.items()}
    return dict(zip(order, np.atleast_1d(evaluate(formula, arrays)).tolist(), strict=True))


def _evidence(values):
    """``name mean`` of each quantity, then the number of seeds."""
    means = ", ".join(f"{k} {np.mean(list(v.values())):.3g}" for k, v in values.items())
    n = len(next(iter(values.values()))) if values else 0
    return f"{means} (means over {n} seeds)"


def network_claim(profile, claim_id, values, evidence="", **fill):
    """A per-network claim: its effect formula per seed of ``values = {name: {seed: value}}``."""
    claim = get_claim(claim_id, profile, **fill)
    effect = seed_effect(claim.formula, values)
    return decide(profile, claim, effect, f"{_evidence(values)}; {evidence}".rstrip("; "),
                  _paper_note(claim))


def networks_claim(profile, claim_id, per_network, evidence="", **fill):
    """A claim about the networks: per seed, the mean over networks of the per-network effect
    (``per_network = {network: {name: {seed: value}}}``); n is the number of seeds."""
    claim = get_claim(claim_id, profile, **fill)
    effects = {net: seed_effect(claim.formula, v) for net, v in per_network.items()}
    per_seed = over_networks(effects)
    each = ", ".join(f"{net} {np.mean(list(e.values())):.3g}" for net, e in effects.items())
    ev = (f"mean over {len(effects)} networks per seed, {len(per_seed)} seeds; per network "
          f"(mean over seeds): {each}; {evidence}").rstrip("; ")
    return decide(profile, claim, per_seed, ev, _paper_note(claim))


def _paper_note(claim):
    spec = load_claims()[claim.id]
    if not spec.paper:
        return NO_PAPER_NUMBER
    effects = paper_effects(spec)
    if not effects:
        return NO_PAPER_NUMBER
    low = min(effects, key=lambda k: effects[k] if claim.direction != "below" else -effects[k])
    return paper_passes(claim, effects[low], f"the paper's least favourable case, {low}; "
                        f"{spec.source}")


def _names(formula):
    import ast

    tree = ast.parse(formula, mode="eval")
    funcs = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in funcs})


def paper_effects(spec):
    """``{case: effect}`` of a paper claim on the paper's own point estimates (the numbers its
    ``paper`` entry names), per network and data set, or per data set for a claim about the
    networks (mean over the paper's networks)."""
    tables = list(spec.paper.get("tables", []))
    if not tables:
        return {}
    out = {}
    if tables == [1]:
        t = paper_table("paper_table1_cos.csv")
        for data, g in t.groupby("dataset", sort=False):
            d = dict(zip(g.network, g.mean_d_cos2.astype(float), strict=True))
            if spec.scope == "network":
                for net, v in d.items():  # random init has E[d cos^2] = 1
                    out[f"{net}, {data}"] = float(evaluate(spec.effect, {"trained": v, "init": 1.0}))
            else:
                rival = max(v for k, v in d.items() if k != "WRN")
                out[data] = float(evaluate(spec.effect, {"wrn": d["WRN"], "rival": rival}))
        return out
    paper = paper_table()
    paper = paper[paper.table.isin(tables)]
    names = _names(spec.effect)
    xs = ([float(spec.paper["x"])] if "x" in spec.paper else
          sorted(set(paper[paper.setting.isin([n for n in names if n != "none"])].x.astype(float))))
    for data, g in paper.groupby("dataset", sort=False):
        per_net = {}
        for net, h in g.groupby("network", sort=False):
            for x in xs:
                vals = {}
                for name in names:
                    sel = h[(h.setting == name) & np.isclose(h.x, 0.0 if name == "none" else x)]
                    if len(sel):
                        vals[name] = float(sel.error_pct.iloc[0])
                if len(vals) == len(names):
                    per_net[(net, x)] = float(evaluate(spec.effect, vals))
        if spec.scope == "network":
            out.update({f"{net}, {data}" + (f", x {x:g}" if len(xs) > 1 else ""): v
                        for (net, x), v in per_net.items()})
        elif per_net:
            for x in xs:
                vs = [v for (_, xx), v in per_net.items() if xx == x]
                out[data + (f", x {x:g}" if len(xs) > 1 else "")] = float(np.mean(vs))
    return out


def write_csv(df, path):
    """Write a DataFrame to CSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def paper_table(name="paper_results.csv"):
    """A transcribed paper data file (``reproduce/data``), comments skipped."""
    return pd.read_csv(PAPER_DIR / name, comment="#")
