"""Table 3: "Adjust BN": re-estimating BN's statistics after training, dropout 0.5 in a and b.

After training, every BN layer's moving mean/variance is re-estimated on the training data with
the weights fixed and the network in inference mode (``varshift.recalibrate_bn``), in both
modes: ``sequential`` (layer by layer, each pass seeing the corrected earlier layers; exact)
and ``simultaneous`` (one pass). The trainer records the test error before and after both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce._io import md_table
from reproduce.profiles import PAPER_NAMES
from reproduce.runs import run_spec
from reproduce.targets._common import claim, collect, mean_std, paper_table, write_csv

TITLE = "Table 3: test error before and after adjusting BN (sequential and simultaneous), dropout 0.5"
ARTEFACTS = ("table.csv", "paper_vs_ours.csv")
RATE = 0.5
COLS = {"test_error": "", "test_error_adjust_sequential": "_adjust",
        "test_error_adjust_simultaneous": "_adjust_simultaneous"}


def runs(profile):
    return [run_spec(profile, net, placement, RATE, data=data, seed=s)
            for data in profile.data for net in profile.networks for placement in ("a", "b")
            for s in profile.seeds_for(placement, RATE)]


def build(ctx):
    profile = ctx.profile
    df = collect(ctx, runs(profile))
    rows = []
    for (net, data, placement), g in df.groupby(["net", "data", "placement"], sort=False):
        row = {"network": PAPER_NAMES[net], "data": data, "placement": placement, "rate": RATE,
               "n_seeds": g.seed.nunique()}
        for col in COLS:
            row[f"{col}_mean"] = g[col].mean()
            row[f"{col}_std"] = g[col].std(ddof=1) if len(g) > 1 else np.nan
            row[col] = mean_std(g[col])
        rows.append(row)
    table = pd.DataFrame(rows)
    write_csv(table, ctx.dir / "table.csv")

    paper = paper_table()
    paper = paper[paper.table == 3]
    pvo = []
    for r in table.itertuples(index=False):
        pdata = r.data if r.data in ("cifar10", "cifar100") else "cifar10"
        for col, suffix in COLS.items():
            p = paper[(paper.dataset == pdata) & (paper.network == r.network)
                      & (paper.setting == r.placement + suffix)]
            pvo.append({"network": r.network, "placement": r.placement, "setting": r.placement + suffix,
                        "paper_dataset": pdata,
                        "paper_error_pct": p.error_pct.iloc[0] if len(p) else "",
                        "our_data": r.data, "our_error_mean": getattr(r, f"{col}_mean"),
                        "our_error_std": getattr(r, f"{col}_std"), "n_seeds": r.n_seeds,
                        "source": "reproduce/data/paper_results.csv (Table 3)" if len(p) else
                                  "not in the paper (simultaneous adjust is ours)"})
    pvo = pd.DataFrame(pvo)
    write_csv(pvo, ctx.dir / "paper_vs_ours.csv")

    verdicts = []
    for placement in ("a", "b"):
        sub = table[table.placement == placement]
        for mode in ("sequential", "simultaneous"):
            after = sub[f"test_error_adjust_{mode}_mean"]
            ok = bool((after < sub.test_error_mean).all())
            ev = "; ".join(f"{r.network}: {r.test_error_mean:.2f} -> "
                           f"{getattr(r, f'test_error_adjust_{mode}_mean'):.2f}"
                           for r in sub.itertuples(index=False))
            verdicts.append(claim(profile, f"adjusting BN ({mode}) lowers the dropout-({placement}) "
                                  f"{RATE:g} test error", ok, ev))
    gain = table.assign(gain=table.test_error_mean - table.test_error_adjust_sequential_mean)
    both = gain[gain.placement == "a"].merge(gain[gain.placement == "b"], on=["network", "data"],
                                             suffixes=("_a", "_b"))
    if len(both):
        ok = bool((both.gain_a > both.gain_b).all())
        verdicts.append(claim(profile, "adjusting BN (sequential) helps more in position a than in b",
                              ok, "gain a vs b (pp): " + ", ".join(
                                  f"{r.network} {r.gain_a:.2f}/{r.gain_b:.2f}"
                                  for r in both.itertuples(index=False))))
    show = pvo.drop(columns=["source", "paper_dataset"])
    md = ("Test error (%) before and after adjusting BN, paper's CIFAR-10 numbers beside ours "
          f"({', '.join(profile.data)}, {profile.size} networks). The paper does not say whether its "
          "adjustment is sequential or simultaneous; both are shown.\n\n" + md_table(show))
    return {"verdicts": verdicts, "markdown": md}
