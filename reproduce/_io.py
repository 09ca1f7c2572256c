"""File helpers of the reproduction: atomic writes (from :mod:`varshift._io`), JSON, Markdown.

An interrupted write (Ctrl-C, a killed process) never leaves a half-written result file: the
reader sees either the old file or the complete new one. Written files get the umask's
permissions (``open(path, "w")``'s), and a replaced file keeps its mode.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from varshift._io import atomic_path, atomic_write_json, atomic_write_text, new_mode, to_jsonable

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_path", "to_jsonable", "new_mode", "read_json",
           "md_table"]


def read_json(path):
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def md_table(df, digits=4):
    """A pandas DataFrame as a GitHub-flavoured Markdown table (no ``tabulate`` needed)."""

    def cell(x):
        if isinstance(x, float):
            return "" if math.isnan(x) else f"{x:.{digits}g}"
        return str(x).replace("|", "\\|")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(x) for x in row) + " |")
    return "\n".join(lines)
