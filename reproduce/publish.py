"""``python -m reproduce publish``: commit a finished reproduction's run records to the site.

The documentation cannot train (hours of CPU) but it can rebuild everything after training.
``publish`` copies what the rebuild needs from a finished reproduction folder
(``results/<profile>/``) into ``docs/results/<profile>/``:

- ``runs/<key>/record.json`` of every run the plan needs (configuration, history, final
  statistics); never the runs' ``work/`` folders (checkpoints, saved models);
- ``manifest.json`` as the reproduction wrote it;
- ``provenance.json``: where the records come from (varshift version, commit, date, machine,
  wall time) and when and from which commit they were published.

It refuses the ``smoke`` profile (it tests the plumbing: it is not evidence) and a folder with a
missing target, a failed target or run, or a run of the current plan without a record, and names
them. The destination is replaced only once everything is copied (a temporary folder renamed).
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import time
from pathlib import Path

from reproduce._io import atomic_write_json, read_json

__all__ = ["PublishError", "REFUSED_PROFILES", "check_complete", "publish", "DEFAULT_DEST"]

#: profiles whose results are not evidence, with the one-line reason
REFUSED_PROFILES = {"smoke": "the smoke profile tests the plumbing, not the paper: it is not "
                             "evidence; publish the quick or paper profile"}
#: where ``publish`` writes by default (relative to the working directory: the repository root)
DEFAULT_DEST = Path("docs") / "results"
PROVENANCE = "provenance.json"


class PublishError(ValueError):
    """The reproduction cannot be published; the message says why in one line."""


def _names(items, limit=6):
    items = list(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _manifest(src):
    """``src/manifest.json`` as a dict; ``PublishError`` naming the file if torn or not one."""
    path = Path(src) / "manifest.json"
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as err:
        raise PublishError(f"{path}: unreadable or torn JSON ({str(err).splitlines()[0]}); "
                           "run `python -m reproduce run` again to rewrite it") from None
    if not isinstance(manifest, dict):
        raise PublishError(f"{path}: must be a JSON object; received {type(manifest).__name__}")
    for key, kind in (("targets", list), ("failures", (dict, list)), ("git", dict)):
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            raise PublishError(f"{path}: field {key!r} is {manifest[key]!r:.60}; expected "
                               f"{'a list' if kind is list else 'an object'}")
    return manifest


def _check_destination(dest_root, dest):
    """``PublishError`` unless ``dest_root`` is (or can become) a folder and ``dest`` is a
    folder of published records or absent: a file there is never replaced."""
    for path, what in ((dest_root, "--dest"), (dest, "the published profile")):
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            kind = "a link" if path.is_symlink() else "a file"
            raise PublishError(f"{what} {str(path)!r} is {kind}, not a folder; remove it or "
                               "choose another --dest")


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_complete(src, profile):
    """The records to publish: ``{key: path of record.json}`` of every run the plan needs.

    Args:
        src: a reproduction folder (``results/<profile>``) with ``manifest.json``.
        profile: the :class:`~reproduce.profiles.Profile` it was run with.

    Raises:
        PublishError: the profile is refused, or the folder is not a complete, successful
            reproduction of every target (the message names what is missing or failed).
    """
    from reproduce.registry import TARGETS, plan
    from reproduce.store import RunStore

    if profile.name in REFUSED_PROFILES:
        raise PublishError(f"refusing to publish profile {profile.name!r}: "
                           f"{REFUSED_PROFILES[profile.name]}")
    src = Path(src)
    if not (src / "manifest.json").is_file():
        raise PublishError(f"no manifest.json in {str(src)!r}; run `python -m reproduce run "
                           f"--profile {profile.name}` first")
    manifest = _manifest(src)
    if manifest.get("profile", profile.name) != profile.name:
        raise PublishError(f"{str(src)!r} holds profile {manifest['profile']!r}, "
                           f"not {profile.name!r}")
    built = set(manifest.get("targets") or [])
    missing = [t for t in TARGETS if t not in built or not (src / t / "result.json").is_file()]
    problems = []
    if missing:
        problems.append(f"missing target(s) {_names(missing)}")
    if manifest.get("failures"):
        problems.append(f"failed: {_names(manifest['failures'])}")
    store = RunStore(src)
    records, absent = {}, []
    for spec in plan(profile, TARGETS):
        rec = store.find(spec)
        if rec is None:
            absent.append(spec.label)
        else:
            records[rec["key"]] = store.record_path(rec["key"])
    if absent:
        problems.append(f"{len(absent)} run(s) without a record: {_names(absent, 4)}")
    if manifest.get("interrupted"):
        problems.append("the last run was interrupted")
    if problems:
        raise PublishError(f"refusing to publish {str(src)!r}: " + "; ".join(problems)
                           + f" (finish it with `python -m reproduce run --profile {profile.name}`)")
    return records


def _provenance(manifest, records, src):
    import varshift
    from reproduce.manifest import git_commit, package_versions

    git = manifest.get("git") or {}
    version = (manifest.get("versions") or {}).get("varshift") or varshift.__version__
    return {
        "profile": manifest.get("profile"),
        "varshift_version": version,
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
        "started_at": manifest.get("started_at"),
        "machine": manifest.get("platform") or {},
        "wall_time_s": manifest.get("wall_time_s"),
        "total_run_time_s": manifest.get("total_run_time_s"),
        "runs": len(records),
        "claims_sha256": sorted({(manifest.get("runs", {}).get(k) or {}).get("claims_sha256")
                                 or "not recorded" for k in records}),
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "published_from": {"folder": str(src), **(git_commit() or {}),
                           "varshift_version": package_versions().get("varshift")
                           or varshift.__version__,
                           "python": platform.python_version()},
    }


def publish(src, profile, dest_root=DEFAULT_DEST):
    """Copy the run records and manifest of ``src`` to ``dest_root/<profile>``; return that folder.

    Args:
        src: the finished reproduction folder.
        profile: its :class:`~reproduce.profiles.Profile`.
        dest_root: the folder of published profiles (default ``docs/results``).

    Raises:
        PublishError: see :func:`check_complete`; also a torn ``manifest.json`` or a
            destination that is a file; nothing is written then.
    """
    src, dest_root = Path(src), Path(dest_root)
    records = check_complete(src, profile)
    manifest = _manifest(src)
    dest = dest_root / profile.name
    _check_destination(dest_root, dest)
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{profile.name}-", dir=dest_root))
    try:
        for key, path in sorted(records.items()):
            (tmp / "runs" / key).mkdir(parents=True)
            shutil.copy2(path, tmp / "runs" / key / "record.json")
        shutil.copy2(src / "manifest.json", tmp / "manifest.json")
        atomic_write_json(tmp / PROVENANCE, _provenance(manifest, records, src))
        old = dest_root / f".{profile.name}-old"
        if dest.exists():
            _remove(old)  # left by an earlier publish that was killed mid-swap
            dest.rename(old)
        tmp.rename(dest)
        _remove(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
