"""Regenerate every figure and table of Li et al. (CVPR 2019) with one command.

``python -m reproduce run --profile smoke|quick|paper`` trains the shared runs once (cached by
their configuration), builds every target (one module per paper artefact in
:mod:`reproduce.targets`) and ``python -m reproduce report`` writes ``report.md`` and
``verdicts.csv`` beside the figures and tables. ``nox -s reproduce`` does both.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv=None):
    """Entry point of ``python -m reproduce`` (see :mod:`reproduce.__main__`)."""
    from reproduce.__main__ import main as _main

    return _main(argv)
