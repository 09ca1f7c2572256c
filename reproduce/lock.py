"""``<out>/.lock``: one ``python -m reproduce run`` per output folder at a time.

The lock is an operating-system file lock (:class:`filelock.FileLock`: ``flock`` on POSIX), so
two processes never train into the same folder, and a holder that crashes or is killed
releases it with its last file descriptor: nothing stale blocks the next run. Who holds it
(pid, host, start time, command) is written next to it, in ``<out>/.lock.holder``, so that a
refused run can name the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

import filelock

from reproduce._io import atomic_write_json

__all__ = ["OutLock", "LockHeld"]


class LockHeld(RuntimeError):
    """Another live ``run`` holds the lock of the output folder."""


class OutLock:
    """The lock of the output folder ``out_dir``; a context manager.

    :meth:`acquire` takes it at once or raises :class:`LockHeld` naming the holder (from
    ``<out>/.lock.holder``); :meth:`release` (or leaving the ``with`` block) frees it and
    removes the holder's note.

    Example:

    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> with OutLock(out):
    ...     try:
    ...         OutLock(out).acquire()
    ...     except LockHeld as err:
    ...         print("in use by another run" in str(err))
    True
    """

    def __init__(self, out_dir):
        self.path = Path(out_dir) / ".lock"
        self.holder_path = Path(out_dir) / ".lock.holder"
        self._lock = filelock.FileLock(self.path, timeout=0)

    @property
    def held(self):
        return self._lock.is_locked

    def owner(self):
        """The holder's note: ``{"pid", "host", "started_at", "command"}`` (``{}`` if none)."""
        try:
            info = json.loads(self.holder_path.read_text(encoding="utf-8"))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            info = self.owner()
            where = (f"pid {info.get('pid')} on host {info.get('host')}, started "
                     f"{info.get('started_at')}: {info.get('command')!r}" if info
                     else "its holder is still starting")
            raise LockHeld(f"--out {str(self.path.parent)!r} is in use by another run ({where});"
                           " wait for it to finish or use another --out") from None
        try:
            atomic_write_json(self.holder_path, {
                "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "command": " ".join(["python -m reproduce", *sys.argv[1:]])})
        except BaseException:
            self._lock.release()
            raise
        return self

    def release(self):
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                self.holder_path.unlink()
            self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
