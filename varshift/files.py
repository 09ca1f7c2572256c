"""Atomic file writes and plain-JSON conversion: how ``varshift.train`` writes its records and
checkpoints, for anyone who writes results beside them (the reproduction does).

An interrupted write (Ctrl-C, a killed process) never leaves a half-written file: the data goes
to a temporary file in the same folder, which then replaces the target, so a reader sees either
the old file or the complete new one. The result has the permissions a plain
``open(path, "w")`` would give (the umask's); a file that existed keeps its mode.

Example:

>>> import json, pathlib, tempfile
>>> import numpy as np
>>> path = pathlib.Path(tempfile.mkdtemp()) / "result.json"
>>> atomic_write_json(path, {"shift": np.float32(1.5), "layers": np.arange(2)})
>>> json.loads(path.read_text())
{'shift': 1.5, 'layers': [0, 1]}
"""

from __future__ import annotations

from varshift._io import atomic_path, atomic_write_json, atomic_write_text, to_jsonable

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "to_jsonable"]
