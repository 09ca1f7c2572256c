"""``python -m reproduce bundle``: one folder that runs a profile on a bare GPU machine.

The target machine (one NVIDIA H200, Python 3.12 with JAX, no TensorFlow, no Keras, no
network) installs nothing but wheels carried to it. ::

    python -m reproduce bundle --profile gpu --out .bundle     # online, once
    bash .bundle/run.sh                                        # there (or anywhere)

writes into ``--out``:

- ``wheels/``: Keras and every package it requires (namex, optree, absl-py, rich,
  markdown-it-py, mdurl, pygments, h5py, ml-dtypes, packaging, typing-extensions; not numpy),
  CPython ``--python-version`` (default 3.12) manylinux x86-64 wheels made with
  ``pip download --only-binary=:all: --no-deps``; they are cached in ``--wheel-cache``
  (default ``~/.cache/varshift/wheels``), so the command works offline once downloaded;
- ``src/``: the ``varshift`` and ``reproduce`` packages of this checkout (no build step);
- ``data/``: the four Fashion-MNIST idx files (when the profile uses Fashion-MNIST);
- ``run.sh``: installs the wheels the machine's Python lacks into ``$TARGET/site`` (never a
  second version of an installed package: a carried wheel whose distribution is already
  installed is skipped), runs the profile with ``KERAS_BACKEND=jax`` and ``--jobs`` worker
  processes sharing the GPU (the key runs, ``run fig5 table3``, first; then the rest of the
  plan in priority order) inside a wall-clock budget, builds the training targets from the
  runs finished so far (``run --cached-only``) and the report, and packs the finished run records
  into ONE archive, ``$OUT/varshift-<profile>-records.tar.gz``; ``RESUME=<archive>`` continues
  from an earlier session's archive;
- ``README.txt``: the same instructions, and ``bundle.json``: what is inside (sizes,
  sha256, the commit, the options).

The bundle must stay under 60 MiB (what travels to the target machine is limited to 64 MiB
with the repository); the command prints its size and fails with one line if it is over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reproduce.profiles import KEY_TARGETS

__all__ = ["WHEELS", "PLATFORMS", "LIMIT_MIB", "KEY_TARGETS", "BundleError", "write_bundle",
           "fetch_wheels", "main"]

#: the wheels a machine with Python and JAX but no Keras needs (Keras and its requirements,
#: pinned to the versions the test suite runs with; numpy comes with JAX)
WHEELS = {
    "keras": "3.15.1", "namex": "0.1.0", "optree": "0.20.0", "absl-py": "2.5.1",
    "rich": "15.0.0", "markdown-it-py": "4.3.0", "mdurl": "0.1.2", "pygments": "2.21.0",
    "h5py": "3.14.0", "ml-dtypes": "0.7.0", "packaging": "26.4",
    "typing-extensions": "4.16.0",
}
#: the manylinux tags pip may match for x86-64 (the target machine's glibc is newer than all)
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64")
#: what may travel to the target machine beside the repository
LIMIT_MIB = 60.0
#: data sets each profile's bundle carries; digits ships with scikit-learn
CARRIED_DATA = {"fashion_mnist"}
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "varshift" \
    / "wheels"
DEFAULT_MINUTES = 9.5  # of the target machine's 10 minutes per command


class BundleError(Exception):
    """A bundle could not be written (the message is one line; ``code``: the exit status)."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def _norm(name):
    return name.lower().replace("-", "_").replace(".", "_")


def _cached(cache, name, version):
    """The cached wheel of ``name==version`` in ``cache``, or ``None``."""
    prefix = f"{_norm(name)}-{version}-"
    for path in sorted(Path(cache).glob("*.whl")):
        if _norm(path.name.split("-")[0]) + "-" + path.name.split("-")[1] + "-" == prefix:
            return path
    return None


def _target_cache(cache, python_version):
    return Path(cache) / f"cp{python_version.replace('.', '')}-manylinux-x86_64"


def fetch_wheels(cache, python_version, *, download=True, wheels=None):
    """``[path]`` of every wheel of :data:`WHEELS` for CPython ``python_version``, from
    ``cache`` or (``download``) fetched into it with ``pip download``."""
    folder = _target_cache(cache, python_version)
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for name, version in (wheels or WHEELS).items():
        path = _cached(folder, name, version)
        if path is None and download:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "--only-binary=:all:", "--python-version", python_version,
                   "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)],
                   "-d", str(folder), f"{name}=={version}"]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
                raise BundleError(f"pip download {name}=={version} for CPython {python_version} "
                                  f"failed: {last}")
            path = _cached(folder, name, version)
        if path is None:
            raise BundleError(f"no wheel of {name}=={version} for CPython {python_version} in "
                              f"{folder}; run once online (without --offline) to download it")
        found.append(path)
    return found


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _size(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _copy_sources(dest):
    root = Path(__file__).resolve().parent.parent
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
    for package in ("varshift", "reproduce"):
        shutil.copytree(root / package, dest / package, ignore=ignore)
    for name in ("LICENSE", "CITATION.cff"):
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    return root


def _training_targets(profile):
    """The targets that read training runs (built on the target machine from its runs)."""
    from reproduce.registry import TARGETS, get_target

    return [t for t in TARGETS if get_target(t).runs(profile)]


def _copy_data(profile, dest, data_dir):
    """Copy the data sets of ``profile`` that a bare machine lacks; ``{file: path}``."""
    unsupported = [d for d in profile.data if d not in CARRIED_DATA | {"digits", "synthetic"}]
    if unsupported:
        raise BundleError(f"profile {profile.name!r} needs {unsupported[0]}, which a bundle cannot "
                          f"carry (it carries {', '.join(sorted(CARRIED_DATA))}; digits comes "
                          "with scikit-learn)")
    copied = {}
    if "fashion_mnist" in profile.data:
        from varshift.data.fashion_mnist import FASHION_FILES, find_fashion_mnist

        root = find_fashion_mnist(data_dir)
        if root is None:
            raise BundleError("Fashion-MNIST not found (apt-get install dataset-fashion-mnist, "
                              "or --data-dir DIR holding its four idx .gz files)")
        dest.mkdir(parents=True, exist_ok=True)
        for name in FASHION_FILES.values():
            shutil.copy2(Path(root) / name, dest / name)
            copied[name] = str(Path(root) / name)
    return copied


def _git(root):
    from reproduce.manifest import git_commit

    return git_commit(root)


def write_bundle(profile, out, *, python_version="3.12", cache=DEFAULT_CACHE, download=True,
                 data_dir=None, minutes=DEFAULT_MINUTES, jobs=None, limit_mib=LIMIT_MIB,
                 wheels=None):
    """Write the bundle of ``profile`` into ``out``; return its manifest (``bundle.json``).

    The bundle is assembled in a temporary folder beside ``out`` and moved into place only
    when complete and under ``limit_mib``; on any failure ``out`` is left as it was.
    ``BundleError`` (one line) if a wheel or the data is missing, ``out`` is a non-empty folder
    that is not a bundle, or the bundle is over ``limit_mib``.
    """
    from reproduce.budget import budget_note

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                              and not (out / "bundle.json").is_file())):
        raise BundleError(f"--out {str(out)!r} exists and is not an empty folder or an earlier "
                          "bundle; choose another folder", 2)
    if not (isinstance(minutes, int | float) and 1.0 <= float(minutes) <= 600.0):
        raise BundleError(f"--minutes must be a number of minutes in [1, 600]; received {minutes!r}", 2)
    jobs = int(profile.jobs if jobs is None else jobs)
    if jobs < 1:
        raise BundleError(f"--jobs must be a positive integer; received {jobs}", 2)
    paths = fetch_wheels(cache, python_version, download=download, wheels=wheels)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "wheels").mkdir()
        for path in paths:
            shutil.copy2(path, tmp / "wheels" / path.name)
        root = _copy_sources(tmp / "src")
        data = _copy_data(profile, tmp / "data", data_dir)
        _write_text(tmp / "run.sh", RUN_SH.format(
            profile=profile.name, minutes=f"{float(minutes):g}", jobs=jobs,
            key_targets=" ".join(KEY_TARGETS), data_arg='--data-dir "$HERE/data"' if data else "",
            build_targets=" ".join(_training_targets(profile))))
        os.chmod(tmp / "run.sh", 0o755)
        _write_text(tmp / "README.txt", README.format(
            profile=profile.name, minutes=f"{float(minutes):g}", jobs=jobs,
            key_targets=" ".join(KEY_TARGETS), python_version=python_version,
            budget=budget_note(profile) or profile.description))
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "profile": profile.name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git": _git(root), "python_version": python_version, "platforms": list(PLATFORMS),
            "minutes": float(minutes), "jobs": jobs,
            "wheels": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in paths},
            "data": {name: {"from": src, "bytes": (tmp / "data" / name).stat().st_size,
                            "sha256": _sha256(tmp / "data" / name)} for name, src in data.items()},
            "files": len(files) + 1,
        }
        manifest["bytes"] = _size(tmp)  # without bundle.json itself (under 10 kB)
        mib = manifest["bytes"] / 2**20
        if mib > limit_mib:
            raise BundleError(f"bundle of profile {profile.name!r} is {mib:.1f} MiB, over the "
                              f"{limit_mib:g} MiB limit")
        _write_text(tmp / "bundle.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _write_text(path, text):
    with open(path, "w", newline="\n") as fh:
        fh.write(text)


RUN_SH = r"""#!/usr/bin/env bash
# Run the '{profile}' profile of varshift's reproduction from this bundle (see README.txt).
# Environment: PYTHON (default python3, which must have JAX), TARGET (install + results folder,
# default /tmp/varshift-bundle), OUT (where the one archive goes, default $TARGET/out),
# MINUTES (wall-clock budget of the whole script, default {minutes}), JOBS (worker processes
# sharing the GPU, default {jobs}), RESUME (an archive of an earlier session to continue from).
set -uo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
PY="${{PYTHON:-python3}}"
TARGET="${{TARGET:-/tmp/varshift-bundle}}"
OUTDIR="${{OUT:-$TARGET/out}}"
MINUTES="${{MINUTES:-{minutes}}}"
JOBS="${{JOBS:-{jobs}}}"
PROFILE={profile}
RES="$TARGET/results/$PROFILE"
ARCHIVE="$OUTDIR/varshift-$PROFILE-records.tar.gz"
START=$(date +%s)
BUDGET=$("$PY" -c "import sys; print(int(float(sys.argv[1]) * 60))" "$MINUTES") || exit 2
RESERVE=${{RESERVE:-60}}   # seconds kept for building the targets, the report and the archive
left() {{ echo $(( BUDGET - ($(date +%s) - START) )); }}
say() {{ echo "run.sh: $*" >&2; }}
mkdir -p "$TARGET/site" "$OUTDIR" "$RES" || exit 2
LOG="$TARGET/run-$PROFILE-$(date -u +%Y%m%dT%H%M%SZ).log"  # packed into the archive
exec > >(tee -a "$LOG") 2>&1

# 1. the carried wheels this Python lacks, into $TARGET/site (installed ones are kept)
export PYTHONPATH="$TARGET/site:$HERE/src${{PYTHONPATH:+:$PYTHONPATH}}"
mapfile -t MISSING < <("$PY" - "$HERE/wheels" <<'EOF'
import importlib.metadata as md
import pathlib
import sys

for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    try:
        md.version(wheel.name.split("-")[0])
    except md.PackageNotFoundError:
        print(wheel)
EOF
)
if (( ${{#MISSING[@]}} )); then
    say "installing ${{#MISSING[@]}} wheels into $TARGET/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$TARGET/site" "${{MISSING[@]}}" || {{ say "pip install failed"; exit 1; }}
fi

# 2. the JAX backend, GPU memory shared by the workers, compiled programs cached across runs
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export TQDM_MININTERVAL="${{TQDM_MININTERVAL:-15}}"  # a short log: progress every 15 s
export XLA_PYTHON_CLIENT_MEM_FRACTION="${{XLA_PYTHON_CLIENT_MEM_FRACTION:-$("$PY" -c \
    "import sys; print(round(0.9 / int(sys.argv[1]), 3))" "$JOBS")}}"
export JAX_COMPILATION_CACHE_DIR="${{JAX_COMPILATION_CACHE_DIR:-$TARGET/jax-cache}}"
"$PY" -c "import keras, varshift, reproduce; print('keras', keras.__version__, 'backend', \
keras.backend.backend())" || {{ say "keras/varshift do not import"; exit 1; }}

# 3. continue from an earlier session's archive (RESUME, or resume.tar.gz beside run.sh)
RESUME="${{RESUME:-}}"
if [[ -z "$RESUME" && -f "$HERE/resume.tar.gz" ]]; then RESUME="$HERE/resume.tar.gz"; fi
if [[ -n "$RESUME" ]]; then
    say "resuming from $RESUME"
    tar -xzf "$RESUME" -C "$RES" || {{ say "cannot unpack RESUME=$RESUME"; exit 2; }}
fi

ARGS=(--profile "$PROFILE" --out "$RES" --jobs "$JOBS" {data_arg})
HELP=$("$PY" -m reproduce run --help 2>&1)  # a reproduce with --backend: say it
if [[ "$HELP" == *--backend* ]]; then ARGS+=(--backend jax); fi
train() {{  # train() TARGET...: train within the budget (SIGTERM keeps every finished run)
    local secs=$(( $(left) - RESERVE ))
    if (( secs < 30 )); then say "no time left for: ${{*:-the whole plan}}"; return 0; fi
    say "training ${{*:-the whole plan}} for at most $secs s"
    timeout --kill-after=60 "$secs" "$PY" -m reproduce run "$@" "${{ARGS[@]}}"
    local rc=$?
    say "reproduce run ${{*:-}} exited $rc"
}}
# 4. the key runs first, then the rest of the plan in priority order
train {key_targets}
train
# 5. the training targets from the runs finished so far, and the report, in the time left
# (the theory targets need no runs: `run --cached-only` builds them back home)
if (( $(left) > 30 )); then
    timeout $(( $(left) - 15 )) "$PY" -m reproduce run --cached-only {build_targets} "${{ARGS[@]}}" \
        || say "building from the cached runs stopped"
    timeout 60 "$PY" -m reproduce report {build_targets} --profile "$PROFILE" --out "$RES" \
        || say "report failed"
fi

# 6. one archive: the finished runs' records, the built targets, the saved models if they fit
LIST="$TARGET/archive-files.txt"
mkdir -p "$RES/logs" && cp "$LOG" "$RES/logs/" || say "cannot copy the log"
pack() {{  # pack MODELS(0|1)
    (cd "$RES" && {{ find . -path ./runs -prune -o -type f ! -name '.write-test-*' -print
        find ./runs -mindepth 2 -maxdepth 2 -name record.json
        if [[ $1 == 1 ]]; then find ./runs -path '*/work/model.keras'; fi; }} ) > "$LIST"
    tar -czf "$ARCHIVE" -C "$RES" -T "$LIST"
}}
pack 1 || {{ say "cannot write $ARCHIVE"; exit 1; }}
if (( $(stat -c %s "$ARCHIVE") > 15 * 1024 * 1024 )); then
    say "archive over 15 MiB with the saved models: packing without them"
    pack 0 || exit 1
fi
DONE=$(find "$RES/runs" -mindepth 2 -maxdepth 2 -name record.json 2>/dev/null | wc -l)
say "$DONE finished runs; $(du -h "$ARCHIVE" | cut -f1) archive $ARCHIVE ($(( $(date +%s) - START )) s)"
"""

README = """varshift reproduction bundle: profile '{profile}'
================================================

What this is: everything a machine with Python {python_version} and JAX (but no TensorFlow, no
Keras and no network) needs to run the '{profile}' profile of `python -m reproduce`:
wheels/ (Keras and what it requires), src/ (the varshift and reproduce packages), data/ (the
data set, if the profile needs one that does not ship with scikit-learn) and run.sh.

Run it:

    bash run.sh                      # or: OUT=/somewhere MINUTES=8 JOBS=8 bash run.sh

run.sh
  1. installs the carried wheels that this Python lacks into $TARGET/site (default
     /tmp/varshift-bundle/site; a package already installed is never installed twice);
  2. sets KERAS_BACKEND=jax, gives each of the JOBS workers (default {jobs}) a share of the GPU's
     memory (XLA_PYTHON_CLIENT_MEM_FRACTION) and caches XLA programs across runs;
  3. with RESUME=<archive of an earlier session> (or a resume.tar.gz put beside run.sh),
     unpacks it first, so the runs finished then are not trained again;
  4. trains the key runs (`python -m reproduce run {key_targets}`: no dropout, dropout-(a)
     and -(b) 0.5 of every network, every seed), then the rest of the plan in priority order,
     stopping cleanly when the budget (MINUTES, default {minutes}, for the whole script) is
     nearly spent: every finished run is kept, the runs in flight are lost;
  5. builds the targets that read training runs from the finished runs (`run
     --cached-only`) and the report, if time is left (the theory targets are built back home);
  6. packs the run records and the built targets into ONE archive,
     $OUT/varshift-{profile}-records.tar.gz (default OUT: $TARGET/out).

Back home: unpack the archive into results/{profile}/ and run
`python -m reproduce run --cached-only --profile {profile}` (or `publish`); to continue the
plan in a later session, put the archive beside run.sh as resume.tar.gz (or pass
RESUME=path/to/archive). On a machine that returns only what is written under $OUT, the archive
is the one file to fetch (it stays under 16 MiB: the saved models are left out if needed).
What travels there is this folder (under 60 MiB), e.g. inside a repository checkout, ignored by
git; run.sh needs nothing outside it but Python with JAX, pip, tar and coreutils' timeout.

The plan and its budget (estimates, not measurements):
{budget}

bundle.json lists every file with its size and sha256, the commit it was made from and the
options. Remake the bundle with `python -m reproduce bundle --profile {profile} --out DIR`.
"""


def main(*, out, profile="gpu", python_version="3.12", wheel_cache=None, offline=False,
         data_dir=None, minutes=None, jobs=None):
    """The ``bundle`` command (``python -m reproduce bundle``, whose options these are); a
    failure raises :class:`BundleError` (one line, ``code`` 1, or 2 for a bad argument) before
    anything is written."""
    from reproduce.profiles import get_profile

    try:
        profile = get_profile(profile)
    except KeyError as err:
        raise BundleError(err.args[0], 2) from None
    version = python_version
    if version == "here":
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not (version.count(".") == 1 and all(p.isdigit() for p in version.split("."))):
        raise BundleError(f"--python-version must look like 3.12 (or be 'here'); received "
                          f"{version!r}", 2)
    manifest = write_bundle(profile, out, python_version=version,
                            cache=Path(wheel_cache or DEFAULT_CACHE), download=not offline,
                            data_dir=data_dir, jobs=jobs,
                            minutes=DEFAULT_MINUTES if minutes is None else minutes)
    print(f"bundle {out}: profile {profile.name}, {len(manifest['wheels'])} wheels for "
          f"CPython {version}, {manifest['files']} files, {manifest['bytes'] / 2**20:.1f} MiB "
          f"(limit {LIMIT_MIB:g} MiB); run it with `bash {Path(out) / 'run.sh'}`")
    return 0
