"""Fig. 4: per-BN-layer variance shift for drop ratios 0-0.7, placements a and b, with errors.

For every network, placement (a: dropout before the last BN of each block; b: before the last
convolution) and drop ratio, the statistic ``max(real_var / moving_var, moving_var / real_var)``
of every BN layer (``varshift.measure_shift`` after training, inference mode over the training
data), and the test error as bars. Drop ratio 0 is the shared no-dropout run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce import plotting
from reproduce._io import md_table
from reproduce.profiles import PAPER_NAMES
from reproduce.targets._common import (
    claim,
    collect,
    fig4_specs,
    mean_std,
    paper_table,
    shift_table,
    summarise,
    write_csv,
)

TITLE = "Fig. 4: variance shift per BN layer vs drop ratio, placements a and b, with test error"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv", "paper_vs_ours.csv")


def runs(profile):
    return fig4_specs(profile)


def _spearman(x, y):
    return float(pd.Series(x).rank().corr(pd.Series(y).rank()))


def paper_data_for(data):
    """The paper's data set our numbers are compared with (10-class sets with CIFAR-10)."""
    return data if data in ("cifar10", "cifar100") else "cifar10"


def layer_curves(ctx, specs):
    """Per-layer statistic, averaged over seeds, per (net, data, placement, rate)."""
    parts = []
    for spec in ctx.available(specs):
        c = spec.config
        df = shift_table(ctx.record(spec).get("final", {}))
        if df.empty:
            continue
        df = df.assign(layer=np.arange(1, len(df) + 1), net=c["net"], data=c["data"],
                       placement=c["placement"], rate=c["rate"], seed=c["seed"])
        parts.append(df[["net", "data", "placement", "rate", "seed", "layer", "statistic"]])
    curves = pd.concat(parts, ignore_index=True).drop_duplicates(
        ["net", "data", "placement", "rate", "seed", "layer"])
    return curves.groupby(["net", "data", "placement", "rate", "layer"], as_index=False).statistic.mean()


def _with_baseline(summary):
    """Duplicate the no-dropout rows as rate 0 of both placements."""
    base = summary[summary.placement == "none"]
    out = [summary[summary.placement != "none"]]
    for placement in ("a", "b"):
        out.append(base.assign(placement=placement))
    return pd.concat(out, ignore_index=True).sort_values(["data", "net", "placement", "rate"])


def figure(ctx, summary, curves):
    profile = ctx.profile
    plt = plotting.style()
    nets = list(profile.networks)
    datas = list(profile.data)
    fig, axes = plt.subplots(3 * len(datas), len(nets), figsize=(2.2 * len(nets), 5.6 * len(datas)),
                             squeeze=False)
    cmap = plt.get_cmap("viridis")
    rates = list(profile.fig4_rates)
    summary = _with_baseline(summary)
    for di, data in enumerate(datas):
        for j, net in enumerate(nets):
            for pi, placement in enumerate(("a", "b")):
                ax = axes[3 * di + pi, j]
                for k, rate in enumerate(rates):
                    sel = curves[(curves.net == net) & (curves.data == data) & (curves.rate == rate)
                                 & (curves.placement == ("none" if rate == 0 else placement))]
                    ax.plot(sel.layer, sel.statistic, color=cmap(k / max(1, len(rates) - 1)),
                            lw=0.9, label=f"{rate:g}")
                ax.set_title(f"{PAPER_NAMES[net]}, dropout-({placement})")
                if j == 0:
                    ax.set_ylabel(f"max(real/moving, moving/real), ({placement})")
                ax.set_xlabel("BN layer index")
                if j == 0 and pi == 0:
                    ax.legend(title="drop ratio", loc="upper left")
            ax = axes[3 * di + 2, j]
            width = 0.38
            for pi, placement in enumerate(("a", "b")):
                sel = summary[(summary.net == net) & (summary.data == data)
                              & (summary.placement == placement)].set_index("rate").reindex(rates)
                x = np.arange(len(rates)) + (pi - 0.5) * width
                ax.bar(x, sel.test_error_mean, width, yerr=sel.test_error_std.fillna(0.0),
                       label=f"dropout-({placement})", color=f"C{pi}", capsize=2)
            ax.set_xticks(np.arange(len(rates)), [f"{r:g}" for r in rates])
            ax.set(xlabel="drop ratio", title=f"{PAPER_NAMES[net]}, test error")
            if j == 0:
                ax.set_ylabel(f"test error (%), {data}")
                ax.legend(loc="upper left")
    plotting.stamp(fig, profile.name, datas)
    fig.tight_layout(rect=(0, 0.015, 1, 1))
    plotting.save(fig, ctx.dir)


def _tag(profile, net, data):
    return PAPER_NAMES[net] + (f" {data}" if len(profile.data) > 1 else "")


def claims(profile, df, summary):
    out = []
    ev, ok = [], True
    for (net, data), g in summary.groupby(["net", "data"], sort=False):
        base = g[g.placement == "none"]
        a5 = g[(g.placement == "a") & (g.rate == 0.5)]
        if base.empty or a5.empty:
            continue
        ok &= bool(a5.test_error_mean.iloc[0] > base.test_error_mean.iloc[0])
        raw = df[(df.net == net) & (df.data == data)]
        a5_raw = raw[(raw.placement == "a") & (raw.rate == 0.5)].test_error
        ev.append(f"{_tag(profile, net, data)} {mean_std(a5_raw)}"
                  f" vs {mean_std(raw[raw.placement == 'none'].test_error)}")
    out.append(claim(profile, "dropout-(a) 0.5 raises the test error over no dropout", ok and bool(ev),
                     "; ".join(ev) or "no runs"))

    full = _with_baseline(summary)
    ev, ok = [], True
    for (net, data), group in full[full.placement == "a"].groupby(["net", "data"], sort=False):
        g = group.sort_values("rate")
        rho = _spearman(g.rate, g.mean_statistic_mean)
        ok &= rho >= 0.9
        ev.append(f"{_tag(profile, net, data)}: " + ", ".join(f"{s:.3g}" for s in g.mean_statistic_mean)
                  + f" (Spearman {rho:.2f})")
    out.append(claim(profile, "the shift grows with the drop ratio in position a (mean statistic over "
                     "BN layers, Spearman >= 0.9 for every network)", ok and len(profile.fig4_rates) > 2,
                     "; ".join(ev)))

    ev, ok, n = [], True, 0
    for (net, data), g in summary.groupby(["net", "data"], sort=False):
        a = g[g.placement == "a"].set_index("rate").mean_statistic_mean
        b = g[g.placement == "b"].set_index("rate").mean_statistic_mean
        common = sorted(set(a.index) & set(b.index))
        wins = [r for r in common if b[r] < a[r]]
        n += len(common)
        ok &= len(wins) == len(common)
        ev.append(f"{_tag(profile, net, data)} b < a at {len(wins)}/{len(common)} ratios")
    out.append(claim(profile, "position b shifts less than position a", ok and n > 0, "; ".join(ev)))

    if "wrn" in profile.networks and len(profile.networks) > 1:
        ev, ok = [], True
        b = summary[summary.placement == "b"]
        for (data, rate), g in b.groupby(["data", "rate"], sort=False):
            if "wrn" not in set(g.net) or g.net.nunique() < 2:
                continue  # a partial build without WRN or without a rival at this ratio
            best = g.loc[g.mean_statistic_mean.idxmin(), "net"]
            ok &= best == "wrn"
            ev.append(f"{data} {rate:g}: smallest {PAPER_NAMES[best]} "
                      f"(WRN {g[g.net == 'wrn'].mean_statistic_mean.iloc[0]:.3g})")
        out.append(claim(profile, "WRN's shift is the smallest of the networks in position b",
                         ok and bool(ev), "; ".join(ev)))
    else:
        out.append(claim(profile, "WRN's shift is the smallest of the networks in position b",
                         "not tested at this profile", "needs WRN and another network"))

    ev, ok = [], True
    for (net, data), g in summary.groupby(["net", "data"], sort=False):
        a5 = g[(g.placement == "a") & (g.rate == 0.5)].test_error_mean
        b5 = g[(g.placement == "b") & (g.rate == 0.5)].test_error_mean
        if a5.empty or b5.empty:
            continue
        ok &= bool(b5.iloc[0] < a5.iloc[0])
        ev.append(f"{_tag(profile, net, data)} b {b5.iloc[0]:.2f} vs a {a5.iloc[0]:.2f}")
    out.append(claim(profile, "dropout-(b) 0.5 hurts less than dropout-(a) 0.5 (lower test error)",
                     ok and bool(ev), "; ".join(ev)))
    return out


def paper_vs_ours(summary):
    paper = paper_table("paper_fig4_bars_approx.csv")
    rows = []
    full = _with_baseline(summary)
    for r in full.itertuples(index=False):
        pdata = paper_data_for(r.data)
        p = paper[(paper.placement == r.placement) & (paper.dataset == pdata)
                  & (paper.network == PAPER_NAMES[r.net]) & np.isclose(paper.drop_ratio, r.rate)]
        rows.append({"placement": r.placement, "network": PAPER_NAMES[r.net], "drop_ratio": r.rate,
                     "paper_dataset": pdata,
                     "paper_error_pct_approx": p.error_pct_approx.iloc[0] if len(p) else "",
                     "our_data": r.data, "our_error_mean": r.test_error_mean,
                     "our_error_std": r.test_error_std, "n_seeds": r.n_seeds,
                     "our_mean_statistic": r.mean_statistic_mean,
                     "source": "reproduce/data/paper_fig4_bars_approx.csv (read by eye)"})
    return pd.DataFrame(rows)


def build(ctx):
    specs = runs(ctx.profile)
    df = collect(ctx, specs)
    summary = summarise(df, ["net", "data", "placement", "rate"],
                        ["test_error", "mean_statistic", "max_statistic"])
    curves = layer_curves(ctx, specs)
    write_csv(_with_baseline(summary), ctx.dir / "table.csv")
    pvo = paper_vs_ours(summary)
    write_csv(pvo, ctx.dir / "paper_vs_ours.csv")
    figure(ctx, summary, curves)
    show = pvo[["placement", "network", "drop_ratio", "paper_error_pct_approx", "our_error_mean",
                "our_error_std", "n_seeds", "our_mean_statistic"]]
    md = (f"Test error (%) beside the paper's Fig. 4 bars (read by eye, {pvo.paper_dataset.iloc[0]}); "
          f"ours on {', '.join(ctx.profile.data)} with {ctx.profile.size} networks, so only the "
          "trends are comparable. Statistic: mean over BN layers of max(real/moving, moving/real); "
          "Keras stores biased batch variances, (N-1)/N of the population's with N the values per "
          "channel in a batch (batch x H x W for a convolution), so an unshifted layer reads about "
          "1.\n\n"
          + md_table(show))
    return {"verdicts": claims(ctx.profile, df, summary), "markdown": md}
