"""Fig. 6: pre-softmax outputs of training images in training mode vs inference mode.

The no-dropout and the dropout-(a) 0.5 network of the first network of the profile (seed 0,
saved by the trainer) are run on a fixed batch of training images twice: in training mode
(dropout on, BN normalising with the batch's statistics, one seeded dropout draw) and in
inference mode (dropout off, BN with its moving statistics). The paper shows a few images whose
prediction flips between the two because of the variance shift; here the outputs of four such
images and the share of the batch that flips, for both networks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce import plotting
from reproduce._io import md_table
from reproduce.profiles import PAPER_NAMES
from reproduce.runs import run_spec
from reproduce.targets._common import claim, write_csv

TITLE = "Fig. 6: pre-softmax outputs of training images, training mode vs inference mode"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")
RATE = 0.5
N_IMAGES = 256


def _net(profile):
    return "preresnet" if "preresnet" in profile.networks else profile.networks[0]


def _specs(profile):
    net, data = _net(profile), profile.data[0]
    return {0.0: run_spec(profile, net, "none", 0.0, data=data, seed=0, save_model=True),
            RATE: run_spec(profile, net, "a", RATE, data=data, seed=0, save_model=True)}


def runs(profile):
    return list(_specs(profile).values())


def training_batch(ctx, spec):
    """The first ``N_IMAGES`` of a seeded permutation of the run's training images, normalised
    exactly as the trainer's pipeline does (per-channel statistics of the training set)."""
    from varshift import data as vdata

    c = spec.config
    (x, y), _, _ = vdata.load(c["data"], ctx.data_dir, seed=c["seed"], subset=c.get("subset"))
    mean, std = vdata.channel_stats(x)
    idx = np.random.default_rng(1234).permutation(len(x))[:N_IMAGES]
    xb = (x[idx].astype("float32") / 255.0 - mean.reshape(1, 1, 1, -1)) / std.reshape(1, 1, 1, -1)
    return xb.astype("float32"), y[idx]


def outputs(ctx, spec, xb):
    """Logits in training mode (one seeded dropout draw) and in inference mode."""
    import varshift.layers  # noqa: F401  (registers Uout)
    from varshift import train  # noqa: F401  (registers the trainer's optimizer)
    from varshift._keras import keras as load_keras
    from varshift._keras import to_numpy

    keras = load_keras()
    keras.utils.set_random_seed(0)
    model = keras.saving.load_model(ctx.model_path(spec), compile=False)
    infer = to_numpy(model(xb, training=False))
    trained = to_numpy(model(xb, training=True))
    keras.backend.clear_session()
    return trained, infer


def build(ctx):
    profile = ctx.profile
    specs = _specs(profile)
    if len(ctx.available(specs.values())) < len(specs):
        raise RuntimeError("fig6 needs both saved models (no dropout, dropout-(a) 0.5, seed 0)")
    xb, yb = training_batch(ctx, specs[RATE])
    results, rows = {}, []
    for rate, spec in specs.items():
        tr, inf = outputs(ctx, spec, xb)
        results[rate] = (tr, inf)
        for i in range(len(xb)):
            rows.append({"rate": rate, "image": i, "label": int(yb[i]),
                         "pred_train_mode": int(tr[i].argmax()), "pred_inference_mode": int(inf[i].argmax()),
                         **{f"train_logit_{k}": float(v) for k, v in enumerate(tr[i])},
                         **{f"inference_logit_{k}": float(v) for k, v in enumerate(inf[i])}})
    df = pd.DataFrame(rows)
    write_csv(df, ctx.dir / "table.csv")

    summary = []
    for rate, (tr, inf) in results.items():
        pt, pi = tr.argmax(1), inf.argmax(1)
        summary.append({"dropout-(a)": rate, "flipped": float((pt != pi).mean()),
                        "acc train mode": float((pt == yb).mean()),
                        "acc inference mode": float((pi == yb).mean())})
    summary = pd.DataFrame(summary)

    tr, inf = results[RATE]
    pt, pi = tr.argmax(1), inf.argmax(1)
    order = np.argsort(-((pt != pi) * 2 + (pt == yb)))  # flipped and right in train mode first
    show = order[:4]
    plt = plotting.style()
    fig, axes = plt.subplots(1, 5, figsize=(11, 2.4))
    classes = np.arange(tr.shape[1])
    for ax, i in zip(axes[:4], show, strict=True):
        ax.bar(classes - 0.2, tr[i], 0.4, label="training mode")
        ax.bar(classes + 0.2, inf[i], 0.4, label="inference mode")
        ax.set(title=f"label {yb[i]}: train {pt[i]}, inference {pi[i]}", xlabel="class",
               xticks=classes)
        ax.tick_params(axis="x", labelsize=6)
    axes[0].set_ylabel(f"pre-softmax output\n{PAPER_NAMES.get(_net(profile))}, dropout-(a) {RATE:g}")
    axes[0].legend(loc="lower left")
    ax = axes[4]
    x = np.arange(len(summary))
    ax.bar(x - 0.25, 100 * summary["flipped"], 0.25, label="flipped")
    ax.bar(x, 100 * summary["acc train mode"], 0.25, label="acc, train mode")
    ax.bar(x + 0.25, 100 * summary["acc inference mode"], 0.25, label="acc, inference mode")
    ax.set(xticks=x, xticklabels=[f"dropout {r:g}" for r in summary["dropout-(a)"]], ylabel="%",
           title=f"{N_IMAGES} training images")
    ax.legend(loc="center right", fontsize=6)
    plotting.stamp(fig, profile.name, profile.data[0])
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    plotting.save(fig, ctx.dir)

    f0, f5 = summary.flipped.iloc[0], summary.flipped.iloc[1]
    verdicts = [claim(profile, f"more training images change their prediction between training and "
                      f"inference mode with dropout-(a) {RATE:g} than without dropout", f5 > f0,
                      f"flipped {f5:.1%} vs {f0:.1%} of {N_IMAGES} training images (one dropout draw)")]
    md = ("The paper shows example outputs only. Share of a fixed batch of training images whose "
          "predicted class differs between the modes, and the accuracy in each mode:\n\n"
          + md_table(summary))
    return {"verdicts": verdicts, "markdown": md}
