"""A paper-like matplotlib style, and saving figures as PNG + SVG atomically.

Every figure is stamped with the profile and the data set it was made from, so a smoke or
quick figure is never mistaken for the paper's.
"""

from __future__ import annotations

from pathlib import Path

from reproduce._io import atomic_path
from varshift.nets.registry import NETWORKS

__all__ = ["plt", "style", "stamp", "save", "DATA_LABELS", "NET_COLORS", "MARKERS"]

DATA_LABELS = {
    "digits": "scikit-learn digits (8x8)",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "theory": "Monte Carlo + Keras toy models",
}
#: network name -> colour of its curves (from ``varshift.nets.NETWORKS``)
NET_COLORS = {name: net.color for name, net in NETWORKS.items()}
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
