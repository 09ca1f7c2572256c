"""Which reproduction results the site shows, and rebuilding published records at build time.

Order of preference (:func:`choose`):

1. a local ``results/paper``, ``results/gpu`` or ``results/quick`` (a developer's own run), as
   it is;
2. the published ``paper``, then ``gpu`` (one H200), then ``quick``, then the exploratory
   ``pilot`` records (``docs/results/<profile>/``, written by
   ``python -m reproduce publish``): copied into a build folder
   (``docs/_build/results/<profile>/``) where every target's build step, the theory targets and
   the report run with the current code and no training (``reproduce run --cached-only``);
3. a local ``results/smoke``, else the smoke profile run once (the pages say so).

The rebuild (:func:`stage`) is redone only when the published records or the code of
``varshift`` / ``reproduce`` change (a stamp file), so a warm docs build costs nothing here.
Environment: ``VARSHIFT_RESULTS`` (local results, default ``<root>/results``),
``VARSHIFT_PUBLISHED`` (default ``<root>/docs/results``), ``VARSHIFT_STAGE`` (default
``<root>/docs/_build/results``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).resolve()
# the repository (docs/_ext/..) or, for a downloaded notebook, the folder it runs in
ROOT = Path(os.environ.get("VARSHIFT_ROOT") or (
    _HERE.parents[2] if len(_HERE.parents) > 2 and (_HERE.parents[2] / "reproduce").is_dir()
    else Path.cwd()))
LOCAL = ("paper", "gpu", "quick")  # a developer's own results, preferred first
PUBLISHED = ("paper", "gpu", "quick", "pilot")
PROVENANCE = "provenance.json"
STAMP = ".stamp"
CODE = ("varshift", "reproduce")  # the code whose change makes the rebuild stale

__all__ = ["Shown", "choose", "stage", "shown", "commits_since"]


@dataclass(frozen=True)
class Shown:
    """The results the pages show: ``origin`` is ``local``, ``published`` or ``smoke``."""

    profile: str
    origin: str
    folder: Path  # what the pages read
    source: Path  # where it comes from (the published folder for ``published``)


def _dirs():
    env = os.environ.get
    return (Path(env("VARSHIFT_RESULTS") or ROOT / "results"),
            Path(env("VARSHIFT_PUBLISHED") or ROOT / "docs" / "results"),
            Path(env("VARSHIFT_STAGE") or ROOT / "docs" / "_build" / "results"))


def choose() -> Shown:
    """The results to show, by the order of preference above (nothing is run)."""
    local, published, staged = _dirs()
    for profile in LOCAL:
        if (local / profile / "manifest.json").is_file():
            return Shown(profile, "local", local / profile, local / profile)
    for profile in PUBLISHED:
        folder = published / profile
        if (folder / "manifest.json").is_file() and (folder / PROVENANCE).is_file():
            return Shown(profile, "published", staged / profile, folder)
    return Shown("smoke", "smoke", local / "smoke", local / "smoke")


def _stamp(published: Path) -> str:
    digest = hashlib.sha1()
    files = sorted(published.rglob("*.json"))
    for base in CODE:
        files += sorted((ROOT / base).rglob("*.py"))
    for path in files:
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _reproduce(command, profile, out):
    """``python -m reproduce run --cached-only`` or ``report`` on ``out`` (never trains)."""
    extra = ["--cached-only"] if command == "run" else []
    return subprocess.run([sys.executable, "-m", "reproduce", command, "--profile", profile,
                           "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True,
                          check=False)


def stage(shown: Shown, log=print) -> Path:
    """Make ``shown.folder`` ready: rebuild published records, or run the smoke profile.

    Published: copy the records and manifest into the build folder and run every target's
    build step and the report with the current code (``run --cached-only``: nothing is
    trained); the published ``manifest.json`` is kept, the rebuild's goes to
    ``build-manifest.json``. Redone only when the stamp (records + code) changes.
    """
    if shown.origin == "local":
        return shown.folder
    if shown.origin == "smoke":
        if not (shown.folder / "manifest.json").is_file():
            log("varshift docs: no results to show; running the smoke profile (a few minutes)")
            for command in ("run", "report"):
                subprocess.run([sys.executable, "-m", "reproduce", command, "--profile", "smoke",
                                "--out", str(shown.folder)], cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return shown.folder
    stamp = _stamp(shown.source)
    folder = shown.folder
    if (folder / STAMP).is_file() and (folder / STAMP).read_text() == stamp:
        return folder
    log(f"varshift docs: rebuilding the published {shown.profile} records with the current "
        "code (no training)")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(shown.source, folder)
    for command in ("run", "report"):
        done = _reproduce(command, shown.profile, folder)
        if done.returncode != 0:
            raise RuntimeError(f"rebuilding the published records {shown.source} failed "
                               f"(`reproduce {command}` exit {done.returncode}): "
                               f"{done.stderr[-2000:]}")
    os.replace(folder / "manifest.json", folder / "build-manifest.json")
    shutil.copy2(shown.source / "manifest.json", folder / "manifest.json")
    (folder / STAMP).write_text(stamp)
    return folder


def shown() -> Shown:
    """:func:`choose`, with its folder made ready by :func:`stage`."""
    choice = choose()
    stage(choice, log=lambda msg: print(msg, file=sys.stderr))
    return choice


def provenance(choice: Shown) -> dict:
    """Where the shown results come from: ``provenance.json`` if published, else the manifest."""
    path = choice.source / PROVENANCE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    manifest = json.loads((choice.folder / "manifest.json").read_text(encoding="utf-8"))
    git = manifest.get("git") or {}
    return {"profile": manifest.get("profile", choice.profile), "commit": git.get("commit"),
            "dirty": git.get("dirty"), "started_at": manifest.get("started_at"),
            "machine": manifest.get("platform") or {}, "wall_time_s": manifest.get("wall_time_s"),
            "varshift_version": (manifest.get("versions") or {}).get("varshift")}


def commits_since(commit: str | None) -> int | None:
    """How many commits the checkout's HEAD is ahead of ``commit`` (``None`` if unknown)."""
    if not commit:
        return None
    try:
        done = subprocess.run(["git", "rev-list", "--count", f"{commit}..HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10, check=True)
        return int(done.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


#: in a page executed by the site build, "N commits before this build" is left as this
#: placeholder and filled in when the page is written (``results_stamp``), so the execution
#: cache does not depend on the checkout's HEAD
SINCE_PLACEHOLDER = "COMMITS-SINCE-"
IN_SITE = "VARSHIFT_DOCS_BUILD"


def commits_since_text(commit: str, in_site: bool | None = None) -> str:
    """"N commits before this build" (or a placeholder for the site build to fill in)."""
    if in_site if in_site is not None else os.environ.get(IN_SITE):
        return f"{SINCE_PLACEHOLDER}{commit}"
    ago = commits_since(commit)
    if ago is None:
        return "a commit not in this checkout's history"
    return f"{ago} commit{'s' if ago != 1 else ''} before this build"


def head() -> str:
    """The checkout's HEAD commit ('' outside git)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
