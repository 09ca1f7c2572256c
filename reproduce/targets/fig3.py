"""Fig. 3: cos^2(theta) per conv layer and d cos^2(theta) against d, networks without dropout.

Top: the mean cos^2(theta) (Eq. 13) of every conv layer against its index; bottom: d cos^2 of
every layer against its fan-in d, trained (filled) and at initialisation with the same seed
(open), first seed. Same data as Table 1. The claim, per network: the least-squares slope of
log(d cos^2) on log d over its conv layers, trained minus at initialisation, paired by seed.
"""

from __future__ import annotations

import numpy as np

from reproduce import plotting
from reproduce.profiles import PAPER_NAMES
from reproduce.targets._common import network_claim, write_csv
from reproduce.targets.table1 import cos2_layers
from reproduce.targets.table1 import runs as _table1_runs

TITLE = "Fig. 3: cos^2(theta) per conv layer and d cos^2(theta) vs d, networks without dropout"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")


def runs(profile):
    return _table1_runs(profile)


def slopes(layers):
    """``{(net, data, state): {seed: slope}}`` over each run's conv layers."""
    out = {}
    for (net, data, state, seed), g in layers.groupby(["net", "data", "state", "seed"]):
        y = np.log(g.mean_d_cos2.clip(lower=1e-9))
        slope = float(np.polyfit(np.log(g.d), y, 1)[0]) if g.d.nunique() > 1 else 0.0
        out.setdefault((net, data, state), {})[seed] = slope
    return out


def build(ctx):
    profile = ctx.profile
    layers = cos2_layers(ctx)
    write_csv(layers, ctx.dir / "table.csv")
    first = layers[layers.seed == layers.seed.min()]
    plt = plotting.style()
    datas = list(profile.data)
    fig, axes = plt.subplots(2, len(datas), figsize=(4.4 * len(datas), 5.2), squeeze=False)
    for j, data in enumerate(datas):
        sub = first[first.data == data]
        for k, (net, g) in enumerate(sub.groupby("net", sort=False)):
            color = plotting.NET_COLORS.get(net, f"C{k}")
            tr, init = g[g.state == "trained"], g[g.state == "init"]
            axes[0, j].plot(tr["index"], tr.mean_cos2, ".-", color=color, label=PAPER_NAMES[net], lw=0.7)
            axes[1, j].plot(tr.d, tr.mean_d_cos2, plotting.MARKERS[k], color=color,
                            label=PAPER_NAMES[net])
            axes[1, j].plot(init.d, init.mean_d_cos2, plotting.MARKERS[k], color=color, mfc="none")
        axes[0, j].set(xlabel="conv layer index", ylabel=r"mean $\cos^2\theta$ (trained)",
                       yscale="log", title=plotting.DATA_LABELS.get(data, data))
        d = np.logspace(np.log10(max(1, sub.d.min())), np.log10(sub.d.max()), 20)
        axes[1, j].plot(d, np.ones_like(d), "k--", lw=0.8,
                        label=r"random init: $E[d\cos^2\theta] = 1$")
        axes[1, j].plot([], [], "o", color="0.4", mfc="none", label="open: at initialisation")
        axes[1, j].set(xscale="log", yscale="log", xlabel="fan-in $d$",
                       ylabel=r"mean $d\cos^2\theta$")
        plotting.plain_log_ticks(axes[0, j], "y")
        plotting.plain_log_ticks(axes[1, j], "y")
        plotting.plain_log_ticks(axes[1, j], "x")
        axes[0, j].legend(loc="upper right")
        axes[1, j].legend(loc="lower right", ncol=2)
    plotting.finish(fig, profile.name, datas, ctx.dir, bottom=0.02)
    s = slopes(layers)
    verdicts = []
    for (net, data, state), trained in s.items():
        if state != "trained":
            continue
        verdicts.append(network_claim(profile, "fig3_slope",
                                      {"trained": trained, "init": s[(net, data, "init")]},
                                      network=PAPER_NAMES[net]))
    md = ("The paper plots these for its CIFAR networks without giving the per-layer numbers; "
          f"ours cover {layers.net.nunique()} networks, {len(first) // 2} conv layers (first "
          "seed), trained and at initialisation.")
    return {"verdicts": verdicts, "markdown": md}
