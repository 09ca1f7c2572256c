"""Developer and user sessions: ``nox -s tests``, ``lint``, ``docs``, ``docs-check``, ``reproduce``.

Every session installs what it needs into its own virtual environment, so on a fresh machine
with Python and pip, ``python3 -m pip install nox`` is the only manual step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
# Keep Keras' and matplotlib's caches out of the user's home during tests and builds.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore::DeprecationWarning"}


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest). Extra arguments go to pytest, e.g. ``nox -s tests -- -k uout``."""
    session.install("-e", ".[test]")
    tmp = tempfile.mkdtemp(prefix="varshift-tests-")
    env = {**QUIET_ENV, "KERAS_HOME": os.path.join(tmp, "keras"),
           "MPLCONFIGDIR": os.path.join(tmp, "mpl")}
    session.run("pytest", *(session.posargs or ["-q"]), env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """Static checks with ruff."""
    session.install("ruff>=0.4")
    session.run("ruff", "check", "varshift", "reproduce", "tests", "benchmarks", "noxfile.py",
                *session.posargs)
