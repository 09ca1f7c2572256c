"""Tables 4 and 6: one setting at several strengths against the no-dropout baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce._io import md_table
from reproduce.targets._common import claim, collect, grid_specs, no_worse, paper_table, write_csv

__all__ = ["build_grid_table"]


def build_grid_table(ctx, *, table, placement, noise, values, setting, value_name, claim_text):
    """Write table.csv / paper_vs_ours.csv and judge "at or below the baseline"."""
    profile = ctx.profile
    df = collect(ctx, grid_specs(profile, placement, noise, values))
    df = df.assign(value=np.where(df.placement == "none", 0.0, df.value))
    summary = df.groupby(["network", "data", "value"], as_index=False, sort=False).agg(
        error_mean=("test_error", "mean"),
        error_std=("test_error", lambda s: s.std(ddof=1) if len(s) > 1 else np.nan),
        n_seeds=("seed", "nunique"))
    summary = summary.rename(columns={"value": value_name}).sort_values(
        ["data", "network", value_name])
    write_csv(summary, ctx.dir / "table.csv")

    paper = paper_table()
    paper = paper[paper.table == table]
    rows = []
    for r in summary.itertuples(index=False):
        pdata = r.data if r.data in ("cifar10", "cifar100") else "cifar10"
        v = getattr(r, value_name)
        kind = "none" if v == 0 else setting
        p = paper[(paper.dataset == pdata) & (paper.network == r.network) & (paper.setting == kind)
                  & np.isclose(paper.x, v)]
        rows.append({"network": r.network, value_name: v, "paper_dataset": pdata,
                     "paper_error_pct": p.error_pct.iloc[0] if len(p) else "",
                     "our_data": r.data, "our_error_mean": r.error_mean, "our_error_std": r.error_std,
                     "n_seeds": r.n_seeds,
                     "source": f"reproduce/data/paper_results.csv (Table {table})"})
    pvo = pd.DataFrame(rows)
    write_csv(pvo, ctx.dir / "paper_vs_ours.csv")

    ok, ev = True, []
    for (network, _data), g in summary.groupby(["network", "data"], sort=False):
        base = g[g[value_name] == 0]
        if base.empty:
            continue
        bm, bs = base.error_mean.iloc[0], base.error_std.iloc[0]
        worst = g[g[value_name] > 0].error_mean.max()
        good, tol = no_worse(worst, bm, bs)
        ok &= bool(good)
        ev.append(f"{network}: baseline {bm:.2f}, worst {worst:.2f} (tolerance +{tol:.2f})")
    verdicts = [claim(profile, claim_text, ok and bool(ev),
                      "; ".join(ev) + "; rule: every strength within max(2 std of the baseline seeds, "
                      "0.5 pp) of the baseline")]
    md = (f"Test error (%), paper's CIFAR numbers beside ours ({', '.join(profile.data)}, "
          f"{profile.size} networks: {', '.join(profile.table_networks)}).\n\n"
          + md_table(pvo.drop(columns=["source", "paper_dataset"])))
    return {"verdicts": verdicts, "markdown": md}
