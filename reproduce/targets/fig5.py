"""Fig. 5: accuracy on the training data per epoch, in training mode vs inference mode.

For every network with dropout-(a) 0 and 0.5: the accuracy of the same fixed training images
(un-augmented), with the same weights, after every epoch, measured with the network in
training mode (noise on, BN on the batch statistics of training-size batches; the moving
statistics are left untouched) and in inference mode (noise off, BN on its moving statistics),
from the trainer's history (``epoch_eval``).
The paper's point: with dropout-(a) 0.5 the inference-mode curve falls below the training-mode
curve, although inference mode has no dropout noise; without dropout the two agree.
"""

from __future__ import annotations

import pandas as pd

from reproduce import plotting
from reproduce.markdown import md_table
from reproduce.plan import run_spec
from reproduce.profiles import PAPER_NAMES
from reproduce.targets._common import by_seed, network_claim, write_csv

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
                         "train_mode": 100.0 * h["train_acc_train_mode_fixed"],
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
    fig, axes = plt.subplots(len(datas), len(nets), figsize=(2.3 * len(nets), 2.4 * len(datas) + 0.5),
                             squeeze=False)
    for i, data in enumerate(datas):
        for j, net in enumerate(nets):
            ax = axes[i, j]
            for k, rate in enumerate(RATES):
                g = mean[(mean.net == net) & (mean.data == data) & (mean.rate == rate)]
                ax.plot(g.epoch, g.train_mode, ".-", color=f"C{k}",
                        label=f"rate {rate:g}, training mode")
                ax.plot(g.epoch, g.inference_mode, "x--", color=f"C{k}",
                        label=f"rate {rate:g}, inference mode")
            ax.set(title=f"{PAPER_NAMES[net]}, dropout-(a)", xlabel="epoch")
            if j == 0:
                ax.set_ylabel(f"train accuracy (%)\n{plotting.DATA_LABELS.get(data, data)}")
    # one legend under the panels, where it hides no curve
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=4,
               title="Keras drop ratio (rate) and the mode the training images are evaluated in",
               bbox_to_anchor=(0.5, 0.03))
    plotting.finish(fig, profile.name, datas, ctx.dir, bottom=0.2)

    last = df[df.epoch == df.groupby(["net", "data", "rate", "seed"]).epoch.transform("max")]
    last = last.assign(gap=last.train_mode - last.inference_mode)
    verdicts = []
    for (net, data), g in last.groupby(["net", "data"], sort=False):
        verdicts.append(network_claim(
            profile, "fig5_gap", {"a": by_seed(g, "gap", rate=0.5), "none": by_seed(g, "gap", rate=0.0)},
            "gap with dropout-(a) 0.5 vs without, final epoch",
            network=PAPER_NAMES[net] + ("" if len(datas) == 1 else f", {data}")))
    table = last.groupby(["network", "data", "rate"], as_index=False, sort=False)[
        ["train_mode", "inference_mode", "gap"]].mean()
    md = ("Final epoch, mean over seeds: accuracy (%) of the same fixed training images with the "
          "same weights in training mode and in inference mode, and their gap. The paper shows "
          "the curves only (and its training-mode curve is `fit`'s running accuracy on augmented "
          "batches; ours measures both modes on the same images).\n\n" + md_table(table))
    return {"verdicts": verdicts, "markdown": md}

