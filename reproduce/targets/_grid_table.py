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
    networks_claim,
    paper_data_for,
    paper_table,
    seed_std,
    size_words,
    write_csv,
)

__all__ = ["build_grid_table"]


def build_grid_table(ctx, *, table, placement, noise, values, setting, value_name, claim_id,
                     primary_id):
    """Write table.csv / paper_vs_ours.csv and judge "does not hurt" (non-inferiority), paired
    by seed with the no-dropout baseline: the primary claim ``primary_id`` about the networks at
    the largest strength, and the secondary claim ``claim_id`` per network and strength (the
    per-network row that would repeat the primary claim, with one network, is left out)."""
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
    top = float(max(values))
    for data, d in df.groupby("data", sort=False):
        per_net = {network: {setting: by_seed(g, "test_error", value=top),
                             "none": by_seed(g, "test_error", value=0.0)}
                   for network, g in d.groupby("network", sort=False)}
        row = networks_claim(profile, primary_id, per_net, value=f"{top:g}")
        row["claim"] += "" if len(profile.data) == 1 else f" ({data})"
        verdicts.append(row)
    for (network, data), g in df.groupby(["network", "data"], sort=False):
        base = by_seed(g, "test_error", value=0.0)
        tag = network + ("" if len(profile.data) == 1 else f", {data}")
        for v in values:
            if float(v) == top and df.network.nunique() == 1:
                continue  # the primary claim itself
            verdicts.append(network_claim(profile, claim_id,
                                          {setting: by_seed(g, "test_error", value=float(v)),
                                           "none": base}, network=tag, value=f"{v:g}"))
    md = (f"Test error (%), paper's CIFAR numbers beside ours ({', '.join(profile.data)}, "
          f"{size_words(profile)} networks: {', '.join(profile.table_networks)}).\n\n"
          + md_table(pvo.drop(columns=["source", "paper_dataset"])))
    return {"verdicts": verdicts, "markdown": md}
