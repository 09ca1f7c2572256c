"""Tables 4 and 6: one setting at several strengths against the no-dropout baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce._io import md_table
from reproduce.targets._common import (
    by_seed,
    collect,
    grid_specs,
    network_claim,
    paper_data_for,
    paper_table,
    seed_std,
    write_csv,
)

__all__ = ["build_grid_table"]


def build_grid_table(ctx, *, table, placement, noise, values, setting, value_name, claim_id):
    """Write table.csv / paper_vs_ours.csv and judge "does not hurt" (non-inferiority) per
    network and strength, paired by seed with the no-dropout baseline."""
    profile = ctx.profile
    df = collect(ctx, grid_specs(profile, placement, noise, values))
    df = df.assign(value=np.where(df.placement == "none", 0.0, df.value))
    summary = df.groupby(["network", "data", "value"], as_index=False, sort=False).agg(
        error_mean=("test_error", "mean"),
        error_std=("test_error", seed_std),
        n_seeds=("seed", "nunique"))
    summary = summary.rename(columns={"value": value_name}).sort_values(
        ["data", "network", value_name])
    write_csv(summary, ctx.dir / "table.csv")

    paper = paper_table()
    paper = paper[paper.table == table]
    rows = []
    for r in summary.itertuples(index=False):
        pdata = paper_data_for(r.data)
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

    verdicts = []
    for (network, data), g in df.groupby(["network", "data"], sort=False):
        base = by_seed(g, "test_error", value=0.0)
        tag = network + ("" if len(profile.data) == 1 else f", {data}")
        for v in values:
            verdicts.append(network_claim(profile, claim_id,
                                          {setting: by_seed(g, "test_error", value=float(v)),
                                           "none": base}, network=tag, value=f"{v:g}"))
    md = (f"Test error (%), paper's CIFAR numbers beside ours ({', '.join(profile.data)}, "
          f"{profile.size} networks: {', '.join(profile.table_networks)}).\n\n"
          + md_table(pvo.drop(columns=["source", "paper_dataset"])))
    return {"verdicts": verdicts, "markdown": md}
