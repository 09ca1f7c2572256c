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
from reproduce.profiles import PAPER_NAMES
from reproduce.registry import UNTESTED, verdict
from reproduce.runs import noise_value, run_spec

__all__ = ["fig4_specs", "baseline_specs", "grid_specs", "collect", "summarise", "test_error",
           "shift_table", "claim", "write_csv", "paper_table", "mean_std", "SMOKE_NOTE"]

SMOKE_NOTE = ("smoke profile: 1 epoch of tiny networks on 8x8 digits tests the plumbing only; "
              "values shown are not evidence")
PAPER_DIR = Path(__file__).resolve().parent.parent / "data"


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
            "test_error_adjust_sequential": test_error(final, "test_error_adjust_sequential"),
            "test_error_adjust_simultaneous": test_error(final, "test_error_adjust_simultaneous"),
            "mean_statistic": float(shift["statistic"].mean()) if len(shift) else np.nan,
            "max_statistic": float(shift["statistic"].max()) if len(shift) else np.nan,
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


def summarise(df, by, values):
    """Mean, std and count over seeds of ``values`` for each group ``by``."""
    agg = {}
    for v in values:
        agg[f"{v}_mean"] = (v, "mean")
        agg[f"{v}_std"] = (v, lambda s: float(np.std(s, ddof=1)) if len(s) > 1 else np.nan)
    agg["n_seeds"] = ("seed", "nunique")
    return df.groupby(by, sort=False).agg(**agg).reset_index()


def claim(profile, text, outcome, evidence):
    """A verdict, marked not tested at the smoke profile (its numbers are not evidence)."""
    if profile.name == "smoke":
        return verdict(text, UNTESTED, f"{SMOKE_NOTE}; {evidence}")
    return verdict(text, outcome, evidence)


def write_csv(df, path):
    """Write a DataFrame to CSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def paper_table(name="paper_results.csv"):
    """A transcribed paper data file (``reproduce/data``), comments skipped."""
    return pd.read_csv(PAPER_DIR / name, comment="#")


def no_worse(err, base_mean, base_std):
    """Error at or below the baseline: within 2 std of the baseline's seeds, at least 0.5 pp."""
    tol = max(2.0 * (0.0 if np.isnan(base_std) else base_std), 0.5)
    return err <= base_mean + tol, tol
