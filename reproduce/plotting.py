"""A paper-like matplotlib style, and saving figures as PNG + SVG atomically.

Every figure is stamped with the profile and the data set it was made from, so a smoke or
quick figure is never mistaken for the paper's.
"""

from __future__ import annotations

from pathlib import Path

from reproduce._io import atomic_path

__all__ = ["plt", "style", "stamp", "save", "finish", "forest", "DATA_LABELS", "NET_COLORS",
           "MARKERS", "VERDICT_COLORS"]

DATA_LABELS = {
    "digits": "scikit-learn digits (8x8)",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "theory": "Monte Carlo + Keras toy models",
}
#: network name -> colour of its curves (a network not named here takes matplotlib's cycle)
NET_COLORS = {"preresnet": "#1f77b4", "resnext29": "#ff7f0e", "wrn": "#2ca02c",
              "densenet_bc": "#d62728"}
MARKERS = ("o", "s", "^", "D", "v", "P")

_STYLE = {
    "font.family": "serif",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "savefig.dpi": 150,
    "svg.hashsalt": "varshift",  # deterministic SVG ids
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot

    return pyplot


class _LazyPlt:
    def __getattr__(self, name):
        return getattr(_pyplot(), name)


plt = _LazyPlt()


def style():
    """Apply the paper-like style (serif, inward ticks, light grid)."""
    pyplot = _pyplot()
    pyplot.rcParams.update(_STYLE)
    return pyplot


def stamp(fig, profile, data):
    """Label ``fig`` with the profile and the data set(s) in its bottom-right corner."""
    names = [data] if isinstance(data, str) else list(data)
    label = ", ".join(DATA_LABELS.get(n, n) for n in names)
    fig.text(0.995, 0.005, f"varshift reproduce | profile: {profile} | data: {label}",
             ha="right", va="bottom", fontsize=6, color="0.4")


def save(fig, target_dir, stem="figure"):
    """Write ``<stem>.png`` and ``<stem>.svg`` into ``target_dir`` atomically; close ``fig``."""
    target_dir = Path(target_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        path = target_dir / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", metadata=_metadata(ext))
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _metadata(ext):
    # no creation dates in the files: identical inputs give identical outputs
    return {"Date": None} if ext == "svg" else {"Software": "varshift reproduce"}


def finish(fig, profile, data, target_dir, *, bottom=0.03, stem="figure"):
    """Stamp ``fig`` (:func:`stamp`), lay it out above the stamp and :func:`save` it."""
    stamp(fig, profile, data)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return save(fig, target_dir, stem)


#: colour of each verdict in the forest plot
VERDICT_COLORS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#bf8700",
                  "not tested": "0.6"}


def forest(rows, out_dir, profile, data, stem="forest"):
    """Forest plot of verdict rows: effect and the interval its verdict uses, in units of each
    claim's margin.

    Every row is scaled by its own ``|margin|`` (margin 0: unscaled), so claims in different
    units share one axis; the margin sits at +-1 (``within`` claims: both), the claimed side is
    the row's direction. Intervals beyond the axis (one seed) are drawn to its edge.
    """
    import math

    pyplot = style()
    n = max(1, len(rows))
    fig, ax = pyplot.subplots(figsize=(7.0, 0.9 + 0.19 * n))
    scaled = [abs(r[k] / (abs(r["margin"]) or 1.0)) for r in rows
              for k in ("effect", "ci_low", "ci_high")]
    lim = min(100.0, max([4.0] + [1.1 * v for v in scaled if math.isfinite(v)]))
    for i, r in enumerate(rows):
        y = n - 1 - i
        scale = abs(r["margin"]) or 1.0
        color = VERDICT_COLORS.get(r["verdict"], "0.3")
        eff, lo, hi = (r["effect"] / scale, r["ci_low"] / scale, r["ci_high"] / scale)
        if math.isfinite(eff):
            lo_c = max(-lim, lo) if not math.isnan(lo) else eff
            hi_c = min(lim, hi) if not math.isnan(hi) else eff
            ax.plot([lo_c, hi_c], [y, y], "-", color=color, lw=1.2)
            ax.plot([min(max(eff, -lim), lim)], [y], "o", color=color, ms=3.5)
        marks = (-1.0, 1.0) if r["direction"] == "within" else (r["margin"] / scale,)
        for m in marks:
            ax.plot([m], [y], "|", color="k", ms=7)
    ax.set_yticks(range(n), [f"{r['target']}: {r['claim'][:70]}" for r in rows][::-1],
                  fontsize=5.5)
    ax.axvline(0.0, color="0.5", lw=0.6)
    ax.set_xscale("symlog", linthresh=2.0)
    ax.set(xlim=(-lim, lim), ylim=(-0.7, n - 0.3),
           xlabel="effect / |margin|, symlog (black tick: margin; dot: effect; "
                  "bar: the verdict's interval)")
    for verdict, color in VERDICT_COLORS.items():
        ax.plot([], [], "o-", color=color, label=verdict)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=6)
    ax.grid(False)
    return finish(fig, profile, data, out_dir, bottom=0.02, stem=stem)
