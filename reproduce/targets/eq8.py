"""Eq. 7-8, case (a): Dropout directly before BN. Formula, Monte Carlo and Keras.

For several (mean c, variance v) of the unit entering dropout and drop ratios 0.1-0.7:

- the formula: Var_train = (c^2 + v)/p - c^2 (Eq. 7), shift = v / Var_train (Eq. 8);
- Monte Carlo: inverted dropout applied to N(c, v) samples in numpy;
- Keras: ``Input -> Dropout(rate) -> BatchNormalization`` (``varshift.models.dropout_bn_model``),
  the moving variance it converges to under ``fit`` (batch 32), computed exactly by
  ``varshift.models.converged_bn_statistics``. Keras stores the biased batch variance, i.e.
  (m-1)/m = 31/32 of Eq. 7; the table shows both the raw and the corrected shift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce import plotting
from reproduce.markdown import md_table
from reproduce.targets._common import check, write_csv
from reproduce.targets._theory import BATCH, chunk_variances, keras_stored_variance, noise_mc
from varshift import theory

TITLE = "Eq. 7-8 (case a): variance shift of Dropout -> BN vs drop ratio"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")

#: (c, v): centred, the seed notebook's data (5, 4), a mean comparable to the std, negative
CASES = ((0.0, 1.0), (1.0, 1.0), (5.0, 4.0), (-2.0, 1.0))
RATES = (0.1, 0.2, 0.3, 0.5, 0.7)


def runs(profile):
    return []


def compute(profile, seed=0):
    """The table: one row per (c, v, rate), formula beside Monte Carlo beside Keras."""
    from varshift.models import dropout_bn_model

    rng = np.random.default_rng(seed)
    n_mc, n_k = profile.mc_samples, profile.keras_samples
    c = np.array([cv[0] for cv in CASES])
    v = np.array([cv[1] for cv in CASES])
    x_mc = c + np.sqrt(v) * rng.standard_normal((n_mc, len(CASES)))
    x_k = (c + np.sqrt(v) * rng.standard_normal((n_k, len(CASES)))).astype("float32")
    rows = []
    for rate in RATES:
        y = noise_mc(x_mc, "dropout", rate, rng)
        var_test_mc, var_train_mc = x_mc.var(axis=0), y.var(axis=0)
        model = dropout_bn_model(len(CASES), rate, seed=seed, compile=False)
        stored = keras_stored_variance(model, x_k, seed=seed)
        xk = x_k.astype("float64")
        ck, vk = xk.mean(axis=0), xk.var(axis=0)  # the Keras sample's own mean and variance
        expected = theory.keras_expected_moving_variance(theory.dropout_train_variance(ck, vk, rate),
                                                         BATCH)
        for j, (cj, vj) in enumerate(CASES):
            rows.append({
                "mean": cj, "var": vj, "rate": rate,
                "var_train_formula": float(theory.dropout_train_variance(cj, vj, rate)),
                "var_train_mc": var_train_mc[j],
                "keras_stored_var": stored[j],
                "keras_expected_stored_var": expected[j],
                "shift_formula": float(theory.shift_ratio(cj, vj, rate)),
                "shift_mc": var_test_mc[j] / var_train_mc[j],
                "shift_keras_raw": vk[j] / stored[j],
                "shift_keras_corrected": vk[j] / stored[j] * (BATCH - 1) / BATCH,
                "var_train_keras_sample": float(theory.dropout_train_variance(ck[j], vk[j], rate)),
            })
    worked = chunk_variances(noise_mc(5.0 + 2.0 * rng.standard_normal(n_mc), "dropout", 0.2, rng))
    return pd.DataFrame(rows), worked


def claims(df, profile, worked_chunks):
    m = BATCH
    raw = 1.0 - df.keras_stored_var / df.var_train_keras_sample  # 1 - stored / Eq. 7
    centred = df[df["mean"] == 0.0]
    cells = f"{len(df)} (c, v, rate) cells"
    return [
        check(profile, "eq8_mc", df.shift_mc / df.shift_formula - 1.0,
              f"{cells}, {profile.mc_samples} samples each"),
        check(profile, "eq8_keras_biased", raw,
              f"{cells}, {profile.keras_samples} samples, batch {m}; (m-1)/m predicts "
              f"1/m = {1 / m:.4f}"),
        check(profile, "eq8_keras_m1m", df.keras_stored_var / df.keras_expected_stored_var - 1.0,
              cells),
        check(profile, "eq8_c0", centred.shift_mc / (1.0 - centred.rate) - 1.0,
              f"{len(centred)} cells with c = 0"),
        check(profile, "eq8_worked", np.asarray(worked_chunks) / 11.25 - 1.0,
              f"{len(worked_chunks)} Monte Carlo chunks; shift formula 0.3556"),
    ]


def figure(df, ctx):
    plt = plotting.style()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 3.0))
    grid = np.linspace(0.0, 0.75, 76)
    for i, (c, v) in enumerate(CASES):
        sub = df[(df["mean"] == c) & (df["var"] == v)]
        line, = ax1.plot(grid, theory.shift_ratio(c, v, grid), label=f"c={c:g}, v={v:g}")
        col = line.get_color()
        ax1.plot(sub.rate, sub.shift_mc, "o", mfc="none", color=col)
        ax1.plot(sub.rate, sub.shift_keras_corrected, "x", color=col)
        ax2.plot(sub.var_train_formula, sub.keras_stored_var, plotting.MARKERS[i], color=col,
                 mfc="none")
    ax1.plot([], [], "ko", mfc="none", label="Monte Carlo")
    ax1.plot([], [], "kx", label="Keras BN (x 31/32)")
    ax1.set(xlabel="drop ratio 1 - p", ylabel="Var_test / Var_train", title="Eq. 8: shift",
            ylim=(0, 1.02))
    ax1.legend(loc="lower left")
    lim = [df.var_train_formula.min() * 0.8, df.var_train_formula.max() * 1.2]
    ax2.plot(lim, lim, "k-", lw=0.8, label="Eq. 7")
    ax2.plot(lim, np.array(lim) * (BATCH - 1) / BATCH, "k--", lw=0.8, label="Eq. 7 x 31/32")
    ax2.set(xscale="log", yscale="log", xlabel="Eq. 7 Var_train",
            ylabel="Keras moving variance", title="What Keras BN stores")
    ax2.legend(loc="upper left")
    plotting.finish(fig, ctx.profile.name, "theory", ctx.dir)


def build(ctx):
    df, worked = compute(ctx.profile)
    write_csv(df, ctx.dir / "table.csv")
    figure(df, ctx)
    sel = df[df.rate.isin([0.2, 0.5])][["mean", "var", "rate", "shift_formula", "shift_mc",
                                        "shift_keras_corrected"]]
    md = ("Formula (Eq. 7-8) vs Monte Carlo vs the moving variance Keras' BatchNormalization "
          f"converges to (batch {BATCH}, biased variance, hence the 31/32 correction). "
          "The paper gives formulas only; the worked values are ours (the first is the seed "
          "notebook's Dropout(0.2) on N(5, 2^2)): (p, c, v) = (0.8, 5, 4) gives "
          "Var_train = 11.25, shift 0.35556; (0.5, 1, 1) gives 3 and 1/3.\n\n"
          + md_table(sel))
    return {"verdicts": claims(df, ctx.profile, worked), "markdown": md}
