"""Fig. 6: pre-softmax outputs of training images in training mode vs inference mode.

The dropout-(a) 0.5 network of the first network of the profile (every seed) is run by the
``fig6`` evaluation hook (:func:`reproduce.evaluations.fig6`), at the end of training, on a
fixed set of training images twice: in training mode (dropout on, BN normalising with the
batch's statistics, one seeded dropout draw, BN's moving statistics saved and restored around
the call) and in inference mode (dropout off, BN with its moving statistics). The paper shows a
few images whose prediction flips between the two because of the variance shift. Noise alone
flips some predictions too, so the control is the same network with the same noise draw but
without the shift: its BN moving statistics re-estimated on the same images with the noise off.
The hook stores the predictions of both (and the logits of the first 16 images) in the run
record (``final["fig6"]``), so the figure, table and verdict are rebuilt from the published
records alone. The claim is the flip rate minus the control's, paired by seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce import plotting
from reproduce.markdown import md_table
from reproduce.plan import run_spec
from reproduce.profiles import PAPER_NAMES
from reproduce.targets._common import network_claim, write_csv

TITLE = "Fig. 6: pre-softmax outputs of training images, training mode vs inference mode"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")
RATE = 0.5
#: the record's prediction lists (``final["fig6"]["pred"]``)
PREDICTIONS = ("shifted_train", "shifted_inference", "control_train", "control_inference")


def _net(profile):
    """The network whose (a) runs record Fig. 6's outputs (``reproduce.plan.FIG6_SETTINGS``)."""
    return profile.networks[0]


def _spec(profile, data, seed):
    return run_spec(profile, _net(profile), "a", RATE, data=data, seed=seed, fig6=True)


def _specs(profile):
    return [_spec(profile, profile.data[0], s) for s in profile.seed_list()]


def runs(profile):
    return _specs(profile)


def fig6_block(record):
    """The record's Fig. 6 data, checked: equal-length prediction lists, logits of the first
    images in both modes."""
    block = (record.get("final") or {}).get("fig6")
    if not block:
        raise RuntimeError("the run record holds no Fig. 6 data (final['fig6']); re-run the "
                           "dropout-(a) 0.5 runs of Fig. 6 with a trainer that records it")
    n = int(block["n_images"])
    pred = block["pred"]
    lengths = {k: len(pred[k]) for k in PREDICTIONS}
    if n < 1 or set(lengths.values()) != {n} or len(block["labels"]) != n:
        raise RuntimeError(f"Fig. 6 data of a record is inconsistent: n_images {n}, labels "
                           f"{len(block['labels'])}, predictions {lengths}")
    return block


def flip_rates(block):
    """``(shifted, control)``: % of the images whose prediction differs between the modes."""
    p = {k: np.asarray(block["pred"][k]) for k in PREDICTIONS}
    return (100.0 * float(np.mean(p["shifted_train"] != p["shifted_inference"])),
            100.0 * float(np.mean(p["control_train"] != p["control_inference"])))


def _figure(ctx, block, summary):
    tr = np.asarray(block["logits"]["shifted_train"], dtype=float)
    inf = np.asarray(block["logits"]["shifted_inference"], dtype=float)
    yb = np.asarray(block["labels"])[: len(tr)]
    pt, pi = tr.argmax(1), inf.argmax(1)
    order = np.argsort(-((pt != pi) * 2 + (pt == yb)), kind="stable")  # flipped first
    plt = plotting.style()
    fig, axes = plt.subplots(1, 5, figsize=(11, 2.4))
    classes = np.arange(tr.shape[1])
    for ax, i in zip(axes[:4], order[:4], strict=False):
        ax.bar(classes - 0.2, tr[i], 0.4, label="training mode")
        ax.bar(classes + 0.2, inf[i], 0.4, label="inference mode")
        ax.set(title=f"label {yb[i]}: train {pt[i]}, inference {pi[i]}", xlabel="class",
               xticks=classes)
        ax.tick_params(axis="x", labelsize=6)
    profile = ctx.profile
    axes[0].set_ylabel(f"pre-softmax output\n{PAPER_NAMES.get(_net(profile))}, dropout-(a) {RATE:g}")
    axes[0].legend(loc="lower left")
    ax = axes[4]
    x = np.arange(len(summary))
    ax.bar(x - 0.2, summary["flipped, trained"], 0.4, label="trained (shifted)")
    ax.bar(x + 0.2, summary["flipped, control"], 0.4, label="control (no shift)")
    ax.set(xticks=x, xticklabels=[str(s) for s in summary.seed], xlabel="seed", ylabel="flipped (%)",
           title=f"{int(block['n_images'])} training images")
    ax.legend(loc="upper right", fontsize=6)
    plotting.finish(fig, profile.name, profile.data[0], ctx.dir, bottom=0.04)


def build(ctx):
    profile = ctx.profile
    rows, summary, first = [], [], None
    for spec in ctx.available(_specs(profile)):
        block = fig6_block(ctx.record(spec))
        seed = spec.config["seed"]
        shifted, control = flip_rates(block)
        labels = np.asarray(block["labels"])
        p = {k: np.asarray(block["pred"][k]) for k in PREDICTIONS}
        summary.append({"seed": seed, "images": int(block["n_images"]),
                        "flipped, trained": shifted, "flipped, control": control,
                        "acc train mode": 100.0 * float(np.mean(p["shifted_train"] == labels)),
                        "acc inference mode": 100.0 * float(np.mean(p["shifted_inference"] == labels))})
        idx = block.get("image_indices") or list(range(len(labels)))
        for i in range(len(labels)):
            rows.append({"seed": seed, "image": int(idx[i]), "label": int(labels[i]),
                         **{f"pred_{k}": int(p[k][i]) for k in PREDICTIONS}})
        if first is None:
            first = block
    if first is None:
        raise RuntimeError("fig6 needs the dropout-(a) 0.5 runs' records")
    write_csv(pd.DataFrame(rows), ctx.dir / "table.csv")
    summary = pd.DataFrame(summary)
    _figure(ctx, first, summary)
    row = network_claim(profile, "fig6_flips",
                        {"shifted": dict(zip(summary.seed, summary["flipped, trained"], strict=True)),
                         "control": dict(zip(summary.seed, summary["flipped, control"], strict=True))},
                        f"{int(first['n_images'])} training images, one seeded dropout draw per seed",
                        network=PAPER_NAMES.get(_net(profile), _net(profile)))
    md = ("The paper shows example outputs only. Share (%) of a fixed set of training images "
          "whose predicted class differs between the modes, for the trained network and for its "
          "shift-free control, and the trained network's accuracy in each mode, per seed:\n\n"
          + md_table(summary, floatfmt=".3g"))
    return {"verdicts": [row], "markdown": md}
