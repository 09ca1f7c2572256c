"""Fig. 5: accuracy on the training data per epoch, in training mode vs inference mode.

For every network with dropout-(a) 0 and 0.5: the training-data accuracy measured with the
network in training mode (noise on, BN on batch statistics: what ``fit`` reports) and in
inference mode (noise off, BN on its moving statistics), per epoch, from the trainer's history.
The paper's point: with dropout-(a) 0.5 the inference-mode curve falls below the training-mode
curve, although inference mode has no dropout noise; without dropout the two agree.
"""

from __future__ import annotations

import pandas as pd

from reproduce import plotting
from reproduce._io import md_table
from reproduce.profiles import PAPER_NAMES
from reproduce.runs import run_spec
from reproduce.targets._common import claim, write_csv

TITLE = "Fig. 5: training-data accuracy per epoch, training mode vs inference mode, dropout 0 vs 0.5"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")
RATES = (0.0, 0.5)


def _specs(profile):
    return [(rate, run_spec(profile, net, "a", rate, data=data, seed=s))
            for data in profile.data for net in profile.networks for rate in RATES
            for s in profile.seed_list()]


def runs(profile):
    return [s for _, s in _specs(profile)]


def history(ctx):
    rows = []
    for rate, spec in _specs(ctx.profile):
        if not ctx.available([spec]):
            continue
        c = spec.config
        for h in ctx.record(spec).get("history", []):
            rows.append({"net": c["net"], "network": PAPER_NAMES[c["net"]], "data": c["data"],
                         "rate": rate, "seed": c["seed"], "epoch": h["epoch"],
                         "train_mode": 100.0 * h["train_acc_train_mode"],
                         "inference_mode": 100.0 * h["train_acc_inference_mode"],
                         "test": 100.0 * h.get("test_acc", float("nan"))})
    return pd.DataFrame(rows)


def build(ctx):
    profile = ctx.profile
    df = history(ctx)
    write_csv(df, ctx.dir / "table.csv")
    mean = df.groupby(["net", "network", "data", "rate", "epoch"], as_index=False, sort=False)[
        ["train_mode", "inference_mode"]].mean()
    plt = plotting.style()
    nets, datas = list(profile.networks), list(profile.data)
    fig, axes = plt.subplots(len(datas), len(nets), figsize=(2.3 * len(nets), 2.4 * len(datas)),
                             squeeze=False)
    for i, data in enumerate(datas):
        for j, net in enumerate(nets):
            ax = axes[i, j]
            for k, rate in enumerate(RATES):
                g = mean[(mean.net == net) & (mean.data == data) & (mean.rate == rate)]
                ax.plot(g.epoch, g.train_mode, ".-", color=f"C{k}", label=f"{rate:g} train mode")
                ax.plot(g.epoch, g.inference_mode, "x--", color=f"C{k}", label=f"{rate:g} inference mode")
            ax.set(title=f"{PAPER_NAMES[net]}, dropout-(a)", xlabel="epoch")
            if j == 0:
                ax.set_ylabel(f"train accuracy (%), {plotting.DATA_LABELS.get(data, data)}")
                ax.legend(loc="lower right")
    plotting.stamp(fig, profile.name, datas)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    plotting.save(fig, ctx.dir)

    last = df[df.epoch == df.groupby(["net", "data", "rate", "seed"]).epoch.transform("max")]
    gap = last.assign(gap=last.train_mode - last.inference_mode).groupby(
        ["network", "data", "rate"], as_index=False, sort=False).gap.mean()
    table = gap.pivot_table(index=["network", "data"], columns="rate", values="gap").reset_index()
    table.columns = [c if isinstance(c, str) else f"gap at {c:g}" for c in table.columns]
    ok = bool(((table["gap at 0.5"] > 0) & (table["gap at 0.5"] > table["gap at 0"])).all())
    ev = "; ".join(f"{r.network}: {r[3]:+.2f} pp at 0.5 vs {r[2]:+.2f} at 0"
                   for r in table.itertuples(index=False))
    verdicts = [claim(profile, "with dropout-(a) 0.5 the final training-data accuracy is lower in "
                      "inference mode than in training mode, and the gap exceeds that without dropout",
                      ok, ev)]
    md = ("Final-epoch gap (training mode minus inference mode, percentage points, mean over seeds). "
          "The paper shows the curves only. Training-mode accuracy is the running accuracy of the "
          "epoch's own training pass (what `fit` reports, as in the paper's PyTorch logs), so early "
          "in training it lags the end-of-epoch inference-mode accuracy even without dropout; the "
          "verdict therefore also compares the gap with the no-dropout gap.\n\n" + md_table(table))
    return {"verdicts": verdicts, "markdown": md}
