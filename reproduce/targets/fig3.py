"""Fig. 3: cos^2(theta) per conv layer and d cos^2(theta) against d, networks without dropout.

Top: the mean cos^2(theta) (Eq. 13) of every conv layer against its index; bottom: d cos^2 of
every layer against its fan-in d, with the random-init expectation d cos^2 = 1 for reference.
Same data as Table 1 (``final["cos2"]`` of the no-dropout runs), first seed.
"""

from __future__ import annotations

import numpy as np

from reproduce import plotting
from reproduce.targets._common import claim, write_csv
from reproduce.targets.table1 import cos2_layers
from reproduce.targets.table1 import runs as _table1_runs

TITLE = "Fig. 3: cos^2(theta) per conv layer and d cos^2(theta) vs d, networks without dropout"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")


def runs(profile):
    return _table1_runs(profile)


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
            axes[0, j].plot(g["index"], g.mean_cos2, ".-", color=color, label=g.network.iloc[0], lw=0.7)
            axes[1, j].plot(g.d, g.mean_d_cos2, plotting.MARKERS[k], color=color, mfc="none",
                            label=g.network.iloc[0])
        axes[0, j].set(xlabel="conv layer index", ylabel="mean cos^2(theta)", yscale="log",
                       title=plotting.DATA_LABELS.get(data, data))
        d = np.logspace(np.log10(max(1, sub.d.min())), np.log10(sub.d.max()), 20)
        axes[1, j].plot(d, np.ones_like(d), "k--", lw=0.8, label="random init (E = 1)")
        axes[1, j].set(xscale="log", yscale="log", xlabel="fan-in d", ylabel="mean d cos^2(theta)")
        axes[0, j].legend(loc="upper right")
        axes[1, j].legend(loc="lower right", ncol=2)
    plotting.stamp(fig, profile.name, datas)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    plotting.save(fig, ctx.dir)
    corr = float(np.corrcoef(np.log(layers.d), np.log(layers.mean_d_cos2.clip(lower=1e-9)))[0, 1])
    verdicts = [claim(profile, "d cos^2(theta) grows with the fan-in d (so wide layers tolerate dropout)",
                      corr > 0.3, f"correlation of log d and log d cos^2 over all conv layers: {corr:.2f}")]
    md = ("The paper plots these for its CIFAR networks without giving the per-layer numbers; "
          f"ours cover {layers.net.nunique()} networks, {len(first)} conv layers (first seed).")
    return {"verdicts": verdicts, "markdown": md}
