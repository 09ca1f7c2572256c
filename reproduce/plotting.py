"""A paper-like matplotlib style, and saving figures as PNG + SVG atomically.

Every figure is stamped with the profile and the data set it was made from, so a smoke or
quick figure is never mistaken for the paper's.
"""

from __future__ import annotations

from pathlib import Path

from reproduce._io import atomic_path

__all__ = ["plt", "style", "stamp", "save", "finish", "forest", "plain_log_ticks", "class_names",
           "DATA_LABELS", "NET_COLORS", "MARKERS", "VERDICT_COLORS", "CLASS_NAMES"]

DATA_LABELS = {
    "digits": "scikit-learn digits (8x8)",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "theory": "Monte Carlo + Keras toy models",
}
#: data set -> the names of its classes, in label order (data sets not listed: the label numbers)
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
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


def class_names(data, n):
    """The names of the ``n`` classes of data set ``data`` (their numbers where unknown)."""
    names = CLASS_NAMES.get(data, ())
    return list(names) if len(names) == n else [str(i) for i in range(n)]


def plain_log_ticks(ax, axis="y"):
    """Label a log axis with plain numbers (0.3, 1, 2) at 1, 2 and 5 times the powers of ten,
    instead of ``3 x 10^-1`` at every minor tick."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def stamp(fig, profile, data, note=None):
    """Label ``fig`` with the profile and the data set(s) in its bottom-right corner; ``note``
    (how to read the figure) goes on the line above, so the two never overlap."""
    names = [data] if isinstance(data, str) else list(data)
    label = ", ".join(DATA_LABELS.get(n, n) for n in names)
    text = f"varshift reproduce | profile: {profile} | data: {label}"
    fig.text(0.995, 0.005, f"{note}\n{text}" if note else text, ha="right", va="bottom",
             fontsize=6, color="0.4", linespacing=1.5)


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


def finish(fig, profile, data, target_dir, *, bottom=0.03, top=1.0, stem="figure", note=None):
    """Stamp ``fig`` (:func:`stamp`, with its ``note``), lay it out between the stamp and
    ``top`` (room for a figure legend above the panels) and :func:`save` it."""
    stamp(fig, profile, data, note)
    fig.tight_layout(rect=(0, bottom, 1, top))
    return save(fig, target_dir, stem)


#: colour of each verdict in the forest plot
VERDICT_COLORS = {"holds": "#1a7f37", "does not hold": "#cf222e", "inconclusive": "#bf8700",
                  "not tested": "0.6"}


#: characters per line of a forest plot's claim label (wrapped at words, never cut)
FOREST_LABEL_WIDTH = 54


def forest_label(row, width=FOREST_LABEL_WIDTH):
    """A forest-plot row's label: ``target: claim``, whole, wrapped at words into lines."""
    import textwrap

    claim = str(row["claim"]).replace("cos^2(theta)", "cos²θ").replace("cos^2", "cos²")
    return "\n".join(textwrap.wrap(f"{row['target']}: {claim}", width=width,
                                   break_long_words=False, break_on_hyphens=False))


def _scaled(row):
    """Effect and interval of ``row`` in units of its ``|margin|`` (margin 0: unscaled)."""
    scale = abs(row["margin"]) or 1.0
    return tuple(row[k] / scale for k in ("effect", "ci_low", "ci_high"))


def forest_limits(rows):
    """The x range of a forest plot: every finite effect and interval end of ``rows`` and the
    margins (+-1), with a little room; only the side of zero the data reach is drawn wide."""
    import math

    values = [v for r in rows for v in _scaled(r) if math.isfinite(v)] + [-1.0, 1.0]
    low, high = min(values), max(values)
    # symlog: pad by a factor beyond the linear range, by a constant inside it
    pad = lambda v: v * 1.6 if abs(v) > 2.0 else v + math.copysign(0.8, v)  # noqa: E731
    return pad(low), pad(high)


def forest(rows, out_dir, profile, data, stem="forest"):
    """Forest plot of verdict rows: effect and the interval its verdict uses, in units of each
    claim's margin.

    Every row is scaled by its own ``|margin|`` (margin 0: unscaled), so claims in different
    units share one axis; the margin sits at +-1 (``within`` claims: both), the claimed side is
    the row's direction. Each row's label is its whole claim, wrapped (:func:`forest_label`);
    the axis spans every finite interval (:func:`forest_limits`), and an interval without a
    finite end (one seed) is drawn to the axis' edge with an arrow.
    """
    import math

    from matplotlib.ticker import FuncFormatter

    pyplot = style()
    n = max(1, len(rows))
    labels = [forest_label(r) for r in rows]
    lines = [label.count("\n") + 1 for label in labels]
    heights = [0.12 + 0.14 * k for k in lines]  # inches per row
    y_top = [sum(heights[:i]) for i in range(n)]
    ys = [-(top + h / 2) for top, h in zip(y_top, heights, strict=False)]
    fig, ax = pyplot.subplots(figsize=(7.0, 0.9 + sum(heights)))
    low, high = forest_limits(rows)
    for r, y in zip(rows, ys, strict=False):
        color = VERDICT_COLORS.get(r["verdict"], "0.3")
        eff, lo, hi = _scaled(r)
        if math.isfinite(eff):
            lo_c = lo if math.isfinite(lo) else (low if math.isnan(lo) or lo < 0 else eff)
            hi_c = hi if math.isfinite(hi) else (high if math.isnan(hi) or hi > 0 else eff)
            ax.plot([lo_c, hi_c], [y, y], "-", color=color, lw=1.4)
            ax.plot([eff], [y], "o", color=color, ms=4)
            for end, finite, marker in ((lo_c, math.isfinite(lo), "<"),
                                        (hi_c, math.isfinite(hi), ">")):
                if not finite:
                    ax.plot([end], [y], marker, color=color, ms=4)
        marks = (-1.0, 1.0) if r["direction"] == "within" else (r["margin"] / (abs(r["margin"]) or 1.0),)
        for m in marks:
            ax.plot([m], [y], "|", color="k", ms=8, mew=1.4)
    ax.set_yticks(ys, labels, fontsize=7.5, linespacing=1.1)
    ax.axvline(0.0, color="0.5", lw=0.6)
    ax.set_xscale("symlog", linthresh=2.0)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}".replace("-", "\u2212")))
    ax.set(xlim=(low, high), ylim=(-sum(heights), 0.0))
    ax.set_xlabel("effect / |margin| (symlog scale)\nblack tick: the margin; dot: the effect; "
                  "bar: the interval the verdict uses", fontsize=8)
    ax.tick_params(axis="y", length=0)
    for verdict, color in VERDICT_COLORS.items():
        ax.plot([], [], "o-", color=color, label=verdict)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(VERDICT_COLORS),
              fontsize=7)
    ax.grid(False)
    ax.grid(True, axis="x", alpha=0.25)
    return finish(fig, profile, data, out_dir, bottom=0.02, stem=stem)
