"""Atomic file writes: a temp file in the same folder, then ``os.replace``.

An interrupted write (Ctrl-C, a killed process) never leaves a half-written result file: the
reader sees either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_path", "to_jsonable", "read_json", "md_table"]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    The caller writes the temporary file however it likes (``savefig``, ``to_csv``); if the
    block raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def to_jsonable(obj):
    """Convert numpy scalars/arrays, pandas frames, paths and tuples to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame
        return to_jsonable(obj.to_dict(orient="records"))
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_json(path, data):
    """Write ``data`` (numpy/pandas values allowed) as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(to_jsonable(data), indent=1, sort_keys=False) + "\n")


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
