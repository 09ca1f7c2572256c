"""``<out>/manifest.json``: what produced the results (versions, commit, seeds, data, timings)."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from reproduce._io import atomic_write_json, read_json

__all__ = ["package_versions", "git_commit", "gpu_info", "build_info", "write_manifest"]

PACKAGES = ("varshift", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "torch", "numpy",
            "pandas", "matplotlib", "scikit-learn", "tqdm")


def package_versions():
    """Installed versions of the packages the results depend on (missing ones omitted)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def git_commit(root=None):
    """``{"commit": sha, "dirty": bool}`` of the checkout, or ``None`` outside git."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": dirty}


def gpu_info():
    """``[{"index", "name", "driver", "memory"}]`` of the NVIDIA GPUs of the machine it runs on
    (``nvidia-smi``)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[f.strip() for f in line.split(",")] for line in out.splitlines() if line.strip()]
    return [dict(zip(("index", "name", "driver", "memory"), r, strict=False)) for r in rows]


def build_info(backend="tensorflow"):
    """CUDA/cuDNN versions TensorFlow was built with (``tf.sysconfig.get_build_info()``).

    ``is_cuda_build`` false (and no versions) for a CPU build; ``{}`` without TensorFlow or
    for another ``backend`` (TensorFlow is then not imported).
    """
    if backend != "tensorflow":
        return {}
    try:
        import varshift

        if varshift.load_keras().backend.backend() != "tensorflow":
            return {}
        import tensorflow as tf

        info = dict(tf.sysconfig.get_build_info())
    except ImportError:
        return {}
    keep = ("is_cuda_build", "cuda_version", "cudnn_version", "is_rocm_build")
    return {k: info[k] for k in keep if k in info}


def _data_info(records):
    seen = {}
    for rec in records:
        info = rec.get("record", {}).get("data") or {}
        name = info.get("name") or rec.get("config", {}).get("data")
        if name and name not in seen:
            seen[name] = {k: info.get(k) for k in ("name", "source", "subset_of", "n_train",
                                                   "n_test", "shape", "num_classes") if k in info}
    return list(seen.values())


def write_manifest(out_dir, profile, *, targets, specs, store, started, wall_time_s,
                   interrupted=False, failures=None, jobs=1, executor="local"):
    """Write ``manifest.json``, merging the runs of earlier invocations on the same folder
    (a torn or malformed earlier manifest, or malformed parts of it, are not carried over).

    ``backend`` and ``threads`` are the profile's (every run's config holds them too).
    """
    backend = getattr(profile, "backend", None) or "tensorflow"
    path = Path(out_dir) / "manifest.json"
    try:
        old = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):  # a torn manifest of an older run: start a new one
        old = {}
    old = old if isinstance(old, dict) else {}
    # what is kept of earlier invocations: their runs and targets, where they are well-formed
    runs = {k: v for k, v in old.get("runs", {}).items() if isinstance(v, dict)} \
        if isinstance(old.get("runs"), dict) else {}
    old_targets = [t for t in old.get("targets", []) if isinstance(t, str)] \
        if isinstance(old.get("targets"), list) else []
    records = []
    for spec in specs:
        if store.done(spec.key):
            rec = store.load(spec.key)
            records.append(rec)
            runs[spec.key] = {"label": spec.label, "config": spec.config,
                              "wall_time_s": rec.get("wall_time_s"),
                              "finished_at": rec.get("finished_at"),
                              "where": rec.get("where"),
                              "claims_sha256": rec.get("claims_sha256"),
                              "record": f"runs/{spec.key}/record.json"}
    built = sorted(set(old_targets) | set(targets))
    from reproduce.budget import budget_note
    from reproduce.claims import claims_hash
    manifest = {
        "profile": profile.name,
        "profile_description": profile.description,
        "budget_note": budget_note(profile),
        "command": " ".join(["python -m reproduce", *sys.argv[1:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_time_s": wall_time_s,
        "interrupted": interrupted,
        "failures": failures or {},
        "jobs": jobs,
        "executor": executor,
        "backend": backend,
        "threads": getattr(profile, "threads", None),
        "seeds": profile.seed_list(),
        "data": _data_info(records) or [{"name": n} for n in profile.data],
        "recipe_overrides": profile.recipe,
        "targets": built,
        "versions": package_versions(),
        "git": git_commit(),
        "platform": {"machine": platform.machine(), "system": platform.system(),
                     "processor": platform.processor(), "node": platform.node(),
                     "gpus": gpu_info(), "tensorflow_build": build_info(backend)},
        "claims_sha256": claims_hash(),
        "runs": runs,
        "total_run_time_s": sum(r["wall_time_s"] for r in runs.values()
                                if isinstance(r.get("wall_time_s"), (int, float))),
    }
    atomic_write_json(path, manifest)
    return manifest
