"""Eq. 15: Uout vs Bernoulli dropout vs Gaussian dropout before BN.

Three multiplicative noises with E[m] = 1 and Var[m] = s^2, identity at inference:
Bernoulli inverted dropout (s^2 = rate / (1 - rate)), Keras' GaussianDropout (the same s^2) and
Uout (s^2 = beta^2 / 3). For c = 0 every one shifts the variance by 1 / (1 + s^2); Uout's
3 / (3 + beta^2) is Eq. 15. Left: shift vs each noise's own parameter (rate or beta). Right: shift
vs the noise variance s^2, where the three coincide: at matched noise variance Uout is no
better than dropout, so part of Table 6's benefit may be weaker noise.

Formula, Monte Carlo (numpy) and Keras (``noise layer -> BatchNormalization``, the moving
variance it converges to, x 31/32) for each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reproduce import plotting
from reproduce.markdown import md_table
from reproduce.targets._common import check, write_csv
from reproduce.targets._theory import BATCH, fmt, keras_stored_variance, noise_mc
from varshift import noise, theory

TITLE = "Eq. 15: Uout vs Bernoulli vs Gaussian dropout, shift vs noise strength and variance"
ARTEFACTS = ("figure.png", "figure.svg", "table.csv")

PARAMS = (0.1, 0.2, 0.3, 0.5, 0.7)
MEAN, VAR = 0.0, 1.0  #: the paper's Eq. 15 assumes c = 0
NOISES = ("dropout", "gaussian", "uout")
LABELS = {"dropout": "Bernoulli dropout (rate)", "gaussian": "Gaussian dropout (rate)",
          "uout": "Uout (beta)"}


def runs(profile):
    return []


def noise_var(kind, param):
    """s^2 of the multiplicative noise ``kind`` at its own parameter (``varshift.noise``)."""
    return noise.get(kind).noise_var(param)


def formula(kind, param):
    if kind == "uout":
        return float(theory.uout_shift_ratio(MEAN, VAR, param))
    if kind == "gaussian":
        return float(theory.gaussian_dropout_shift_ratio(MEAN, VAR, param))
    return float(theory.shift_ratio(MEAN, VAR, param))


def _keras_model(kind, param, seed):
    import varshift

    keras = varshift.load_keras()
    inputs = keras.Input(shape=(1,))
    layer = noise.get(kind).make(param, seed=seed)
    outputs = keras.layers.BatchNormalization()(layer(inputs))
    return keras.Model(inputs, outputs)


def compute(profile, seed=0):
    rng = np.random.default_rng(seed)
    x = MEAN + np.sqrt(VAR) * rng.standard_normal(profile.mc_samples)
    xk = (MEAN + np.sqrt(VAR) * rng.standard_normal((profile.keras_samples, 1))).astype("float32")
    settings = [(k, p, "own parameter") for k in NOISES for p in PARAMS]
    # matched noise variance: Uout(beta) against dropout at uout_matched_rate(beta)
    for beta in (0.1, 0.2, 0.3, 0.5):
        rate = float(theory.uout_matched_rate(beta))
        settings += [("dropout", rate, f"matched to Uout {beta:g}"),
                     ("gaussian", rate, f"matched to Uout {beta:g}")]
    rows = []
    test_k = float(xk.astype("float64").var())
    for kind, param, group in settings:
        y = noise_mc(x, kind, param, rng)
        stored = keras_stored_variance(_keras_model(kind, param, seed), xk, seed=seed)[0]
        rows.append({"noise": kind, "param": param, "group": group,
                     "noise_var": noise_var(kind, param), "shift_formula": formula(kind, param),
                     "shift_mc": x.var() / y.var(),
                     "shift_keras_corrected": test_k / stored * (BATCH - 1) / BATCH})
    return pd.DataFrame(rows)


def claims(df, profile):
    own = df[df.group == "own parameter"]
    u = own[own.noise == "uout"].set_index("param").shift_mc
    d = own[own.noise == "dropout"].set_index("param").shift_mc
    paper = {0.1: 0.996678, 0.2: 0.986842, 0.3: 0.970874, 0.5: 0.923077}
    err_paper = max(abs(formula("uout", b) - val) for b, val in paper.items())
    diffs = []
    for beta in (0.1, 0.2, 0.3, 0.5):
        for kind in ("dropout", "gaussian"):
            m = df[(df.group == f"matched to Uout {beta:g}") & (df.noise == kind)].shift_mc.iloc[0]
            diffs.append(float(m) / float(u.loc[beta]) - 1.0)
    return [
        check(profile, "eq15_mc", df.shift_mc / df.shift_formula - 1.0,
              f"{len(df)} cells, {profile.mc_samples} samples each; formula vs the paper's Uout "
              f"values: max difference {err_paper:.1e}"),
        check(profile, "eq15_keras", df.shift_keras_corrected / df.shift_formula - 1.0,
              f"{len(df)} cells, {profile.keras_samples} samples each; margin 1/(2m)"),
        check(profile, "eq15_uout_less", [float(u.loc[p] - d.loc[p]) for p in PARAMS],
              "; ".join(f"{p:g}: Uout {fmt(u.loc[p], 3)} vs dropout {fmt(d.loc[p], 3)}"
                        for p in PARAMS)),
        check(profile, "eq15_matched", diffs, "so Uout's advantage is its weaker noise, not its shape"),
    ]


def figure(df, ctx):
    plt = plotting.style()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.2, 3.0))
    grid = np.linspace(0.0, 0.75, 76)
    own = df[df.group == "own parameter"]
    for i, kind in enumerate(NOISES):
        ls = "--" if kind == "gaussian" else "-"
        ax1.plot(grid, [formula(kind, g) for g in grid], ls, color=f"C{i}", label=LABELS[kind])
        sub = own[own.noise == kind]
        ax1.plot(sub.param, sub.shift_mc, plotting.MARKERS[i], mfc="none", color=f"C{i}")
        ax1.plot(sub.param, sub.shift_keras_corrected, "x", color=f"C{i}")
    ax1.set(xlabel="rate (dropouts) or beta (Uout)", ylabel="Var_test / Var_train",
            title="shift vs noise parameter (c = 0)", ylim=(0.2, 1.02))
    ax1.legend(loc="lower left")
    s2 = np.logspace(-3.5, 0.5, 80)
    ax2.plot(s2, 1.0 / (1.0 + s2), "k-", lw=0.8, label="1 / (1 + s^2)")
    for i, kind in enumerate(NOISES):
        sub = df[df.noise == kind]
        ax2.plot(sub.noise_var, sub.shift_mc, plotting.MARKERS[i], mfc="none", color=f"C{i}",
                 label=LABELS[kind].split(" (")[0])
    ax2.set(xscale="log", xlabel="noise variance s^2 = Var[m]", ylabel="Var_test / Var_train",
            title="matched noise variance", ylim=(0.2, 1.02))
    ax2.legend(loc="lower left")
    plotting.finish(fig, ctx.profile.name, "theory", ctx.dir)


def build(ctx):
    df = compute(ctx.profile)
    write_csv(df, ctx.dir / "table.csv")
    figure(df, ctx)
    u = df[(df.noise == "uout") & (df.group == "own parameter") & (df.param <= 0.5)]
    paper = pd.DataFrame({"beta": u.param, "paper_shift": [0.996678, 0.986842, 0.970874, 0.923077],
                          "shift_formula": u.shift_formula, "shift_mc": u.shift_mc,
                          "shift_keras_corrected": u.shift_keras_corrected})
    write_csv(paper.assign(source="Eq. 15 of arXiv:1801.05134 (Sec. 5), 3 / (3 + beta^2), evaluated"),
              ctx.dir / "paper_vs_ours.csv")
    md = ("Uout's shift at c = 0 (paper Sec. 5 values beside ours):\n\n" + md_table(paper)
          + "\n\nAt matched noise variance (right panel) all three noises give the same shift; "
          "the paper compares Uout and dropout at equal parameter values only.")
    return {"verdicts": claims(df, ctx.profile), "markdown": md}
