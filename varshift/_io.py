"""Atomic file writes and plain-JSON conversion, shared by ``varshift.train`` and ``reproduce``.

An interrupted write (Ctrl-C, a killed process) never leaves a half-written result file: the
data goes to a temporary file in the same folder, which then replaces the target with
``os.replace``, so a reader sees either the old file or the complete new one. The result has
the permissions a plain ``open(path, "w")`` would give (the umask's), and a file that existed
keeps its mode.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "to_jsonable", "new_mode"]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_mode(folder: bool = False) -> int:
    """The mode ``open(path, "w")`` (or ``mkdir`` for a ``folder``) gives a new file under the umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def _target_mode(path: Path) -> int:
    """An existing file keeps its mode; a new one gets ``0o666 & ~umask`` like ``open(path, "w")``."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return new_mode()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; when the block succeeds, move it onto ``path``.

    The caller writes the temporary file however it likes (``savefig``, ``to_csv``,
    ``model.save``); its name ends with ``path``'s suffix so format-sniffing writers work. If the
    block raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _target_mode(path))  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def to_jsonable(obj):
    """Plain-JSON version of ``obj``: numpy values -> Python, pandas frames -> records,
    paths -> strings, tuples -> lists, NaN/inf -> ``None``."""
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
    atomic_write_text(path, json.dumps(to_jsonable(data), indent=1) + "\n")
