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
    """Four example images (flipped ones first) as a 2 x 2 grid of their ten outputs in both
    modes, class names on the axis, and the flip rates per seed under them."""
    tr = np.asarray(block["logits"]["shifted_train"], dtype=float)
    inf = np.asarray(block["logits"]["shifted_inference"], dtype=float)
    yb = np.asarray(block["labels"])[: len(tr)]
    pt, pi = tr.argmax(1), inf.argmax(1)
    order = np.argsort(-((pt != pi) * 2 + (pt == yb)), kind="stable")  # flipped first
    profile = ctx.profile
    names = plotting.class_names(profile.data[0], tr.shape[1])
    plt = plotting.style()
    fig = plt.figure(figsize=(7.0, 8.2))
    grid = fig.add_gridspec(3, 2, height_ratios=(1.0, 1.0, 0.7), hspace=0.45, wspace=0.08)
    classes = np.arange(tr.shape[1])
    shown = order[:4]
    low = min(tr[shown].min(), inf[shown].min(), 0.0)
    high = max(tr[shown].max(), inf[shown].max(), 0.0)
    pad = 0.05 * (high - low)
    for n, i in enumerate(shown):
        ax = fig.add_subplot(grid[n // 2, n % 2])
        ax.barh(classes - 0.2, tr[i], 0.4, label="training mode")
        ax.barh(classes + 0.2, inf[i], 0.4, label="inference mode")
        ax.axvline(0.0, color="0.3", lw=0.6)
        flip = "flipped" if pt[i] != pi[i] else "not flipped"
        ax.set_title(f"{names[yb[i]]} image ({flip})\ntraining: {names[pt[i]]}, "
                     f"inference: {names[pi[i]]}", fontsize=8)
        ax.set_yticks(classes, names)
        ax.tick_params(axis="y", labelleft=n % 2 == 0, labelsize=8)
        ax.set(ylim=(len(classes) - 0.5, -0.5), xlim=(low - pad, high + pad))
        if n >= 2:
            ax.set_xlabel("pre-softmax output")
    fig.legend(*ax.get_legend_handles_labels(), loc="upper center", ncol=2,
               bbox_to_anchor=(0.5, 1.0), title="pre-softmax outputs of four training images "
               "(flipped ones first) in")
    ax = fig.add_subplot(grid[2, :])
    x = np.arange(len(summary))
    ax.bar(x - 0.2, summary["flipped, trained"], 0.4, label="trained network (with the shift)")
    ax.bar(x + 0.2, summary["flipped, control"], 0.4, label="control (no shift, same noise)")
    ax.set(xticks=x, xticklabels=[str(s) for s in summary.seed], xlabel="seed",
           ylabel="flipped (%)")
    ax.set_title(f"share of {int(block['n_images'])} training images whose prediction flips, "
                 f"{PAPER_NAMES.get(_net(profile))}, dropout-(a) {RATE:g}")
    ax.legend(loc="upper right")
    plotting.finish(fig, profile.name, profile.data[0], ctx.dir, bottom=0.03, top=0.93)


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
