r"""The power analysis that decides the confirmatory profile's seeds, from the pilot.

The pilot is the first design of ``quick`` (profile ``pilot``), whose records are published in
``docs/results/pilot``. Its primary claims are rebuilt from those records with the current
claims (:func:`pilot_rows`; nothing is trained). For each primary claim, with the pilot's
per-seed samples (mean :math:`\bar e`, standard deviation :math:`s`, :math:`n` seeds) and the
claim's margin :math:`\delta_m`, the distance from the margin on the side the pilot points to is
:math:`d = |\bar e - \delta_m|`, and the power of the one-sided t-test at level
:math:`\alpha' = 0.025 / 6` (Holm's first, strictest step in the family of six: every later
step tests at a larger level, so this is a lower bound of the claim's power under Holm) with
:math:`k` seeds is

.. math::
    1 - \beta(k) = P\bigl(T'_{k-1}(\lambda) > t_{1-\alpha',\,k-1}\bigr),\qquad
    \lambda = \frac{d}{s}\sqrt k ,

with :math:`T'` the noncentral t distribution (:func:`reproduce.claims.power`). The seeds
needed are the fewest :math:`k` with power >= 0.8. The decision powered is the one the pilot
points to: "holds" when its mean lies on the claimed side of the margin, else "does not hold".
A pilot's effect is an estimate: a confirmatory run at the pilot's effect has this power; a
smaller true effect has less.

Example:

>>> from reproduce.claims import seeds_for_power
>>> seeds_for_power(1.0, 1.0)  # an effect of one standard deviation beyond the margin
14
"""

from __future__ import annotations

import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from reproduce.claims import (
    FAILS,
    HOLDS,
    POWER_ALPHA,
    POWER_TARGET,
    PRIMARY,
    adjust_families,
    power,
    seeds_for_power,
)

__all__ = ["PILOT_DIR", "PILOT_TARGETS", "pilot_rows", "power_table", "format_power",
           "power_by_claim"]

#: where the pilot's records are published
PILOT_DIR = Path(__file__).resolve().parent.parent / "docs" / "results" / "pilot"
#: the targets that judge the primary claims
PILOT_TARGETS = ("fig4", "table3", "table4", "table6")


@lru_cache(maxsize=2)
def _pilot_rows(folder):
    from reproduce.profiles import get_profile
    from reproduce.registry import build_target

    profile = get_profile("pilot")
    rows = []
    with tempfile.TemporaryDirectory(prefix="varshift-pilot-") as tmp:
        os.symlink(Path(folder).resolve() / "runs", Path(tmp) / "runs")
        for name in PILOT_TARGETS:
            result = build_target(name, profile, tmp)
            rows += [{"target": name, **v} for v in result["verdicts"]]
    return tuple(adjust_families(rows))


def pilot_rows(folder=PILOT_DIR):
    """The pilot's verdict rows of the primary-claim targets under the current claims, decided
    family by family (:func:`reproduce.claims.adjust_families`); ``[]`` if the pilot's records
    are not there (an installed package without the repository's docs)."""
    folder = Path(folder)
    if not (folder / "runs").is_dir():
        return []
    return [dict(r) for r in _pilot_rows(str(folder))]


def power_table(rows, seeds, paper_seeds=None):
    """One row per primary claim of ``rows`` (the pilot's): the pilot's effect, spread and n,
    the decision it points to, the seeds that decision needs for 80% power, and the power at
    ``seeds`` (and at ``paper_seeds``, where given)."""
    out = []
    for r in rows:
        if r.get("family") != PRIMARY or len(r.get("samples") or []) < 2:
            continue
        x = np.asarray(r["samples"], dtype="float64")
        mean, sd, margin = float(x.mean()), float(x.std(ddof=1)), float(r["margin"])
        beyond = mean - margin if r["direction"] == "above" else margin - mean
        distance = abs(beyond)
        row = {"id": r["id"], "claim": r["claim"], "target": r.get("target", ""),
               "effect": mean, "sd": sd, "n": int(x.size), "margin": margin,
               "unit": r.get("unit", ""), "direction": r["direction"],
               "decides": HOLDS if beyond > 0 else FAILS,
               "seeds_needed": seeds_for_power(distance, sd),
               "power": power(distance, sd, seeds), "seeds": int(seeds)}
        if paper_seeds is not None:
            row["power_paper"] = power(distance, sd, paper_seeds)
            row["paper_seeds"] = int(paper_seeds)
        out.append(row)
    return out


def power_by_claim(profile, folder=PILOT_DIR):
    """``{claim id: power row}`` of ``profile``'s seeds at the pilot's effects ({} without
    the pilot's records)."""
    from reproduce.profiles import get_profile

    rows = pilot_rows(folder)
    paper = get_profile("paper").seeds
    return {r["id"]: r for r in power_table(rows, profile.seeds, paper)}


def _pct(x):
    return "" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def format_power(table, profile_name):
    """The power table as text lines (``python -m reproduce power``)."""
    if not table:
        return ["no pilot records found (docs/results/pilot): no power analysis"]
    seeds = table[0]["seeds"]
    paper = table[0].get("paper_seeds")
    head = (f"{'claim':<12} {'pilot effect':>12} {'pilot sd':>9} {'n pilot':>7} {'margin':>8} "
            f"{'decides':<13} {'seeds for 80%':>13} {f'power at {seeds}':>12}"
            + (f" {f'paper ({paper})':>11}" if paper else ""))
    lines = [f"power of the primary claims at the pilot's effect and spread: one-sided t-test at "
             f"{POWER_ALPHA:.5f} (0.025 / 6, Holm's first step), target {POWER_TARGET:.0%}; "
             f"profile {profile_name}: {seeds} seeds", head]
    for r in table:
        need = "> 1000" if r["seeds_needed"] is None else str(r["seeds_needed"])
        lines.append(f"{r['id']:<12} {r['effect']:>12.4f} {r['sd']:>9.4f} {r['n']:>7} "
                     f"{r['margin']:>8.4f} {r['decides']:<13} {need:>13} "
                     f"{_pct(r['power']):>12}"
                     + (f" {_pct(r.get('power_paper')):>11}" if paper else ""))
    most = [r["seeds_needed"] for r in table]
    lines.append("seeds for 80% power in every primary claim: "
                 + ("more than 1000" if None in most else str(max(most)))
                 + "; in the pilot, Tables 4 and 6 (p5_after_bn, p6_uout) ran on WRN only, so "
                 "their spread is one network's")
    return lines
