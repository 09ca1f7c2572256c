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
from reproduce.markdown import md_table
from reproduce.profiles import PAPER_NAMES
from reproduce.targets._common import (
    by_seed,
    collect,
    fig4_specs,
    network_claim,
    networks_claim,
    paper_data_for,
    paper_table,
    shift_table,
    summarise,
    write_csv,
)

TITLE = "Fig. 4: variance shift per BN layer vs drop ratio, placements a and b, with test error"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv", "paper_vs_ours.csv")


def runs(profile):
    return fig4_specs(profile)


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
    return curves


def _with_baseline(summary):
    """Duplicate the no-dropout rows as rate 0 of both placements."""
    base = summary[summary.placement == "none"]
    out = [summary[summary.placement != "none"]]
    for placement in ("a", "b"):
        out.append(base.assign(placement=placement))
    return pd.concat(out, ignore_index=True).sort_values(["data", "net", "placement", "rate"])


def figure(ctx, summary, curves):
    from matplotlib.ticker import MaxNLocator

    profile = ctx.profile
    plt = plotting.style()
    nets = list(profile.networks)
    datas = list(profile.data)
    fig, axes = plt.subplots(3 * len(datas), len(nets), figsize=(2.5 * len(nets), 6.2 * len(datas)),
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
                    # viridis short of its pale yellow end, which a white page washes out
                    ax.plot(sel.layer, sel.statistic, lw=0.9, label=f"{rate:g}",
                            color=cmap(0.85 * k / max(1, len(rates) - 1)))
                ax.set_title(f"{PAPER_NAMES[net]}, dropout-({placement})")
                if j == 0:  # one short name: the shift statistic max(real/moving, moving/real)
                    ax.set_ylabel(f"shift statistic ({placement})")
                ax.set_xlabel("BN layer index")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))

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
                ax.set_ylabel(f"test error (%)\n{plotting.DATA_LABELS.get(data, data)}")
                ax.legend(loc="upper left")
    # the drop ratios' legend above the panels, where it hides no curve
    fig.legend(*axes[0, 0].get_legend_handles_labels(), title="drop ratio", loc="upper center",
               ncol=len(rates), bbox_to_anchor=(0.5, 1.0))
    plotting.finish(fig, profile.name, datas, ctx.dir, bottom=0.04, top=0.95,
                    note="bars: mean over seeds; error bars: ± 1 standard deviation across seeds")


def _tag(profile, net, data):
    return PAPER_NAMES[net] + (f" {data}" if len(profile.data) > 1 else "")


def _slopes(raw):
    """Per seed: least-squares slope of the mean statistic on the drop ratio (position a)."""
    out = {}
    for seed, g in raw.groupby("seed"):
        if g.rate.nunique() >= 2:
            out[seed] = float(np.polyfit(g.rate, g.mean_statistic, 1)[0])
    return out


def _excess(curves, net, data):
    """Per seed: mean over BN layers of statistic(b 0.5) - statistic(none), same layer."""
    c = curves[(curves.net == net) & (curves.data == data)]
    b = c[(c.placement == "b") & np.isclose(c.rate, 0.5)].set_index(["seed", "layer"]).statistic
    n = c[c.placement == "none"].set_index(["seed", "layer"]).statistic
    return (b - n).dropna().groupby(level="seed").mean().to_dict()


def _net_claims(profile, df, net, data):
    g = df[(df.net == net) & (df.data == data)]
    tag = _tag(profile, net, data)
    none = by_seed(g, "test_error", placement="none")
    a5 = by_seed(g, "test_error", placement="a", rate=0.5)
    out = [network_claim(profile, "fig4_raises", {"a": a5, "none": none}, network=tag)]
    raw_a = g[(g.placement == "a") | (g.placement == "none")]
    rates = sorted(raw_a.rate.unique().tolist())
    if len(rates) >= 3:  # a slope needs three drop ratios to say "grows"
        out.append(network_claim(profile, "fig4_grows", {"slope": _slopes(raw_a)},
                                 f"drop ratios {rates}", network=tag))
    elif net != fig1_net(profile):  # two ratios: the shift of a 0.5 over none (Fig. 1 judges its own)
        out.append(network_claim(profile, "fig4_shift",
                                 {"a": by_seed(g, "mean_statistic", placement="a", rate=0.5),
                                  "none": by_seed(g, "mean_statistic", placement="none")},
                                 f"drop ratios {rates}: two ratios show a difference, not growth",
                                 network=tag))
    out.append(network_claim(profile, "fig4_b_less",
                             {"a": by_seed(g, "mean_statistic", placement="a", rate=0.5),
                              "b": by_seed(g, "mean_statistic", placement="b", rate=0.5)},
                             network=tag))
    return out


def fig1_net(profile):
    """The network Fig. 1 judges (its claim is not repeated here)."""
    from reproduce.targets.fig1 import _net

    return _net(profile)


def claims(profile, df, curves):
    out = []
    for (net, data), _ in df.groupby(["net", "data"], sort=False):
        out += _net_claims(profile, df, net, data)
    for data in profile.data:
        d = df[df.data == data]
        nets = [n for n in profile.networks if n in set(d.net)]
        tag = f" ({data})" if len(profile.data) > 1 else ""
        per_net = {PAPER_NAMES[n]: {"a": by_seed(d[d.net == n], "test_error", placement="a", rate=0.5),
                                    "b": by_seed(d[d.net == n], "test_error", placement="b", rate=0.5),
                                    "none": by_seed(d[d.net == n], "test_error", placement="none")}
                   for n in nets}
        shift = {PAPER_NAMES[n]: {"a": by_seed(d[d.net == n], "mean_statistic", placement="a",
                                               rate=0.5),
                                  "none": by_seed(d[d.net == n], "mean_statistic",
                                                  placement="none")}
                 for n in nets}
        rows = [networks_claim(profile, "p1_shift", shift),
                networks_claim(profile, "p2_error", {k: {"a": v["a"], "none": v["none"]}
                                                     for k, v in per_net.items()}),
                networks_claim(profile, "p3_b_less", {k: {"a": v["a"], "b": v["b"]}
                                                      for k, v in per_net.items()})]
        for row in rows:
            row["claim"] += tag
        out += rows
        if "wrn" not in nets or len(nets) < 2:
            continue
        excess = {n: _excess(curves, n, data) for n in nets}
        seeds = sorted(excess["wrn"])
        rival = {s: min(excess[n][s] for n in nets if n != "wrn") for s in seeds}
        out.append(network_claim(profile, "fig4_wrn_smallest", {"rival": rival, "wrn": excess["wrn"]},
                                 "excess per network (mean over seeds): " + ", ".join(
                                     f"{PAPER_NAMES[n]} {np.mean(list(e.values())):.3g}"
                                     for n, e in excess.items())))
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


#: Why PreResNet with dropout-(b) 0.5 was as bad as (a) 0.5 at the pilot's scale (batch 64):
#: a one-off experiment whose script is not part of the package (test error %, 2,000 test
#: images; seed 0 unless stated), summarised in the report; the recipe quick trains with is
#: chosen by ``python -m reproduce.recipe_selection`` and ``python -m reproduce.regime_selection``.
PRERESNET_B_NOTE = (
    "**PreResNet, dropout-(b) 0.5 vs (a) 0.5 in the pilot's design: under-training, not "
    "width.** At 4 epochs on 4,000 "
    "images (width 8: the 1x1 convolution after the (b) dropout has a fan-in of 8/16/32) b and "
    "a were equally bad: b 61.8 / 58.9 %, a 72.2 / 58.0 % (seeds 0 / 1; the per-seed "
    "difference swings from -10 to +1 pp, so one seed decides nothing). Doubling the width "
    "(fan-in 16/32/64, as in PreResNet-164) changed nothing: b 72.2 %, a 73.1 %. Doubling the "
    "training (8 epochs) separated them as in the paper: b 40.6 %, a 72.3 %; so did twice the SGD "
    "steps at the same 4 epochs (batch 32 instead of 64): b 47.5 %, a 65.3 %. b's shift "
    "statistic fell (1.56 -> 1.35 at 8 epochs) while a's error stayed where its shift puts it. "
    "Both settings reach only about 60 % training-mode accuracy after 250 steps: dropout 0.5 in "
    "every block of a small network underfits, and that underfitting, not the (b) noise's "
    "fan-in, hid b's advantage. Seeds add noise on top. Hence the pilot trained at batch 32 "
    "with 5 paired seeds; that batch was chosen on test errors, one more reason the pilot is "
    "exploratory (quick's design was chosen on validation images).")


def build(ctx):
    specs = runs(ctx.profile)
    df = collect(ctx, specs)
    summary = summarise(df, ["net", "data", "placement", "rate"],
                        ["test_error", "mean_statistic", "max_statistic"])
    curves = layer_curves(ctx, specs)
    write_csv(_with_baseline(summary), ctx.dir / "table.csv")
    pvo = paper_vs_ours(summary)
    write_csv(pvo, ctx.dir / "paper_vs_ours.csv")
    figure(ctx, summary, curves.groupby(["net", "data", "placement", "rate", "layer"],
                                        as_index=False).statistic.mean())
    show = pvo[["placement", "network", "drop_ratio", "paper_error_pct_approx", "our_error_mean",
                "our_error_std", "n_seeds", "our_mean_statistic"]]
    md = (f"Test error (%) beside the paper's Fig. 4 bars (read by eye, {pvo.paper_dataset.iloc[0]}); "
          f"ours on {', '.join(ctx.profile.data)} with the profile's networks (see the setup "
          "differences), so only the trends are comparable. Shift statistic: mean over BN layers "
          "of max(real/moving, moving/real); "
          "Keras stores biased batch variances, (m-1)/m of the population's with m the values per "
          "channel in a batch (batch x H x W for a convolution), so an unshifted layer reads about "
          "1. The WRN claim compares like with like: each network's excess statistic over its own "
          "no-dropout run, layer by layer, averaged over its BN layers (normalised per BN layer, "
          "since the networks have different numbers of BN layers).\n\n"
          + (PRERESNET_B_NOTE + "\n\n" if ctx.profile.name == "pilot" else "")
          + md_table(show))
    return {"verdicts": claims(ctx.profile, df, curves), "markdown": md}
