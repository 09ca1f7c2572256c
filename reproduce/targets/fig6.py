"""Fig. 6: pre-softmax outputs of training images in training mode vs inference mode.

The dropout-(a) 0.5 network of the first network of the profile (every seed, saved by the
trainer) is run on a fixed batch of training images twice: in training mode (dropout on, BN
normalising with the batch's statistics, one seeded dropout draw) and in inference mode
(dropout off, BN with its moving statistics). The paper shows a few images whose prediction
flips between the two because of the variance shift. Noise alone flips some predictions too,
so the control is the same network with the same noise draw but without the shift: its BN
moving statistics re-estimated on the same images with the noise off
(``varshift.recalibrate_bn(mode="sequential")``, exact), so that inference mode's statistics
are the noise-free ones. The claim is the flip rate minus the control's, paired by seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce import plotting
from reproduce._io import md_table
from reproduce.claims import Claim
from reproduce.profiles import PAPER_NAMES
from reproduce.runs import run_spec
from reproduce.targets._common import compare, write_csv

TITLE = "Fig. 6: pre-softmax outputs of training images, training mode vs inference mode"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")
RATE = 0.5
N_IMAGES = 512


def _net(profile):
    return "preresnet" if "preresnet" in profile.networks else profile.networks[0]


def _specs(profile):
    net, data = _net(profile), profile.data[0]
    return [run_spec(profile, net, "a", RATE, data=data, seed=s, save_model=True)
            for s in profile.seed_list()]


def runs(profile):
    return _specs(profile)


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
    """Logits of the saved model and of its shift-free control: each in training mode (the
    same seeded dropout draw) and in inference mode."""
    import varshift.layers  # noqa: F401  (registers Uout)
    from varshift import (
        recalibrate_bn,
        train,  # noqa: F401  (registers the trainer's optimizer)
    )
    from varshift._keras import keras as load_keras
    from varshift._keras import to_numpy

    keras = load_keras()
    model = keras.saving.load_model(ctx.model_path(spec), compile=False)
    control = recalibrate_bn(model, xb, mode="sequential", batch_size=len(xb))
    out = {}
    for name, net in (("shifted", model), ("control", control)):
        keras.utils.set_random_seed(0)  # the same dropout draw for both
        out[name] = (to_numpy(net(xb, training=True)), to_numpy(net(xb, training=False)))
    keras.backend.clear_session()
    return out


FLIPS = Claim(f"dropout-(a) {RATE:g} flips more training-image predictions between training and "
              "inference mode than the same noise without the shift", "above", 1.0, "pp",
              "flip rate(trained) - flip rate(BN statistics re-estimated with noise off)")


def _figure(ctx, tr, inf, yb, summary):
    pt, pi = tr.argmax(1), inf.argmax(1)
    order = np.argsort(-((pt != pi) * 2 + (pt == yb)))  # flipped and right in train mode first
    plt = plotting.style()
    fig, axes = plt.subplots(1, 5, figsize=(11, 2.4))
    classes = np.arange(tr.shape[1])
    for ax, i in zip(axes[:4], order[:4], strict=True):
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
    ax.set(xticks=x, xticklabels=[f"seed {s}" for s in summary.seed], ylabel="flipped (%)",
           title=f"{N_IMAGES} training images")
    ax.legend(loc="upper right", fontsize=6)
    plotting.finish(fig, profile.name, profile.data[0], ctx.dir, bottom=0.04)


def build(ctx):
    profile = ctx.profile
    specs = ctx.available(_specs(profile))
    rows, summary, first = [], [], None
    for spec in specs:
        xb, yb = training_batch(ctx, spec)
        out = outputs(ctx, spec, xb)
        seed = spec.config["seed"]
        flips = {k: 100.0 * float((tr.argmax(1) != inf.argmax(1)).mean()) for k, (tr, inf) in out.items()}
        tr, inf = out["shifted"]
        summary.append({"seed": seed, "flipped, trained": flips["shifted"],
                        "flipped, control": flips["control"],
                        "acc train mode": 100.0 * float((tr.argmax(1) == yb).mean()),
                        "acc inference mode": 100.0 * float((inf.argmax(1) == yb).mean())})
        for i in range(len(xb)):
            rows.append({"seed": seed, "image": i, "label": int(yb[i]),
                         "pred_train_mode": int(tr[i].argmax()), "pred_inference_mode": int(inf[i].argmax()),
                         **{f"train_logit_{k}": float(v) for k, v in enumerate(tr[i])},
                         **{f"inference_logit_{k}": float(v) for k, v in enumerate(inf[i])}})
        if first is None:
            first = (tr, inf, yb)
    if first is None:
        raise RuntimeError("fig6 needs the saved dropout-(a) 0.5 models")
    write_csv(pd.DataFrame(rows), ctx.dir / "table.csv")
    summary = pd.DataFrame(summary)
    _figure(ctx, *first, summary)
    row = compare(profile, FLIPS, dict(zip(summary.seed, summary["flipped, trained"], strict=True)),
                  dict(zip(summary.seed, summary["flipped, control"], strict=True)),
                  f"{N_IMAGES} training images, one seeded dropout draw per seed")
    md = ("The paper shows example outputs only. Share (%) of a fixed batch of training images "
          "whose predicted class differs between the modes, for the trained network and for its "
          "shift-free control, and the trained network's accuracy in each mode:\n\n"
          + md_table(summary))
    return {"verdicts": [row], "markdown": md}
