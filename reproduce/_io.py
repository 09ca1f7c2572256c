"""File helpers of the reproduction: atomic writes (from :mod:`varshift.files`) and JSON.

An interrupted write (Ctrl-C, a killed process) never leaves a half-written result file: the
reader sees either the old file or the complete new one. Written files get the umask's
permissions (``open(path, "w")``'s), and a replaced file keeps its mode.
"""

from __future__ import annotations

import json
from pathlib import Path

from varshift.files import atomic_path, atomic_write_json, atomic_write_text, to_jsonable

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_path", "to_jsonable", "read_json"]


def read_json(path):
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
