"""Shared training runs: planned by the targets, trained once, cached by their configuration.

A run is one call of ``varshift.train.run(config)``. Its key is a hash of the full
configuration (network, size, placement, noise, rate, data set, recipe, seed, adjust,
save_model; not the data folder, which changes where data is read from, not what is
computed). Fig. 4, Fig. 5 and Table 3 all read the same dropout-(a) 0.5 run, so it is
trained once.

Layout: ``<out>/runs/<hash>/record.json`` (written atomically when the run has finished, so
its presence means "done") and ``<out>/runs/<hash>/work/`` (the trainer's own folder:
checkpoints to resume from, ``model.keras``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from reproduce._io import atomic_write_json, new_mode, read_json

__all__ = ["RunSpec", "run_spec", "run_key", "RunStore", "execute_plan"]

#: bump when the meaning of a record changes, to invalidate every cache
CACHE_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``config`` is what ``varshift.train.run`` receives (no data_dir)."""

    config: dict = field(hash=False, compare=False)
    key: str = ""

    @property
    def label(self):
        c = self.config
        noise = "" if c["noise"] == "dropout" else f" {c['noise']}"
        return (f"{c['net']} {c['placement']}{noise} {c['rate']:g} {c['data']} "
                f"seed {c['seed']}")


def run_key(config):
    """Hash of a run's full configuration (``data_dir`` excluded): the cache key."""
    clean = {k: v for k, v in config.items() if k != "data_dir"}
    blob = json.dumps({"v": CACHE_VERSION, "config": clean}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


_SIZE_CACHE = {}


def _resolve_size(net, size):
    if size == "paper":
        return {}
    if size == "small":
        if net not in _SIZE_CACHE:
            from varshift import nets

            _SIZE_CACHE[net] = dict(nets.SMALL_SIZES[net])
        return dict(_SIZE_CACHE[net])
    return dict(size)


#: settings whose runs also compute Table 3's "Adjust BN" errors (the costliest final step)
ADJUST_SETTINGS = {("a", "dropout", 0.5), ("b", "dropout", 0.5)}


def run_spec(profile, net, placement="none", rate=0.0, *, noise="dropout", data=None, seed=0,
             save_model=False, adjust=None):
    """The :class:`RunSpec` of one training run under ``profile``.

    ``placement="none"`` or ``rate=0`` both mean the no-dropout baseline and give the same
    run, so Fig. 4's 0 point, Table 4's and Table 6's baselines share one training.
    ``adjust=None`` computes the "Adjust BN" errors only where Table 3 reads them
    (:data:`ADJUST_SETTINGS`).
    """
    if placement == "none" or float(rate) == 0.0:
        placement, noise, rate = "none", "dropout", 0.0
    if adjust is None:
        adjust = (placement, noise, float(rate)) in ADJUST_SETTINGS
    config = {
        "net": net,
        "size": _resolve_size(net, profile.size),
        "placement": placement,
        "noise": noise,
        "rate": float(rate),
        "data": data or profile.data[0],
        "recipe": profile.recipe_kind,
        "overrides": dict(profile.recipe),
        "seed": int(seed),
        "adjust": bool(adjust),
        "save_model": bool(save_model),
        "train_eval_samples": profile.eval_samples,
        "stats_samples": profile.eval_samples,
    }
    if profile.subset:
        config["subset"] = dict(profile.subset)  # ours, not the trainer's: see _subset_dir
    return RunSpec(config=config, key=run_key(config))


_SETTING_RANK = {("none", "dropout", 0.0): 0, ("a", "dropout", 0.5): 1, ("b", "dropout", 0.5): 2}
_RATE_RANK = {0.3: 0, 0.7: 1, 0.1: 2}
_NET_COST = {"wrn": 0, "preresnet": 1, "densenet_bc": 2, "resnext29": 3}


def priority(spec):
    """Sort key of the plan: the runs most verdicts rest on first.

    An interrupted or time-limited run of the plan (then ``run --cached-only``) thus covers the
    most claims: first seed of the baseline and dropout 0.5 (a, b), then the ratios 0.3 and
    0.7, the tables' settings, the other seeds, and the ratio 0.1 last; cheap networks first.
    """
    c = spec.config
    setting = (c["placement"], c["noise"], float(c["rate"]))
    first = c["seed"] == 0
    if setting in _SETTING_RANK:
        group = 0 if first else 3
    elif c["noise"] == "dropout" and c["placement"] in ("a", "b"):
        group = 4 if float(c["rate"]) == 0.1 else (1 if first else 3)
    else:
        group = 2 if first else 3
    return (group, _SETTING_RANK.get(setting, 3), _RATE_RANK.get(float(c["rate"]), 3),
            _NET_COST.get(c["net"], 9), c["data"], c["seed"])


def merge_specs(specs):
    """Deduplicate specs by key; a run asked for with and without ``save_model`` saves it."""
    by_key = {}
    for spec in specs:
        by_key.setdefault(spec.key, spec)
    # save_model is part of the key; drop the unsaved twin of a saved run
    saved = {run_key({**s.config, "save_model": False}) for s in by_key.values()
             if s.config["save_model"]}
    merged = [s for k, s in by_key.items() if not (k in saved and not s.config["save_model"])]
    return sorted(merged, key=priority)


class RunStore:
    """The cache folder ``<out>/runs``: where records live and how they are looked up."""

    def __init__(self, out_dir):
        self.root = Path(out_dir) / "runs"

    def run_dir(self, key):
        return self.root / key

    def record_path(self, key):
        return self.run_dir(key) / "record.json"

    def done(self, key):
        return self.record_path(key).is_file()

    def load(self, key):
        return read_json(self.record_path(key))

    def model_path(self, key):
        return self.run_dir(key) / "work" / "model.keras"

    def find(self, spec):
        """The record of ``spec``, or of its ``save_model`` twin; ``None`` if not trained."""
        for cfg in (spec.config, {**spec.config, "save_model": not spec.config["save_model"]}):
            key = run_key(cfg)
            if self.done(key):
                return self.load(key)
        return None


def _write_idx(path, array):
    """Write a uint8 array as a gzip'ed IDX file (the format of the original Fashion-MNIST)."""
    import gzip

    import numpy as np

    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(header + array.tobytes())


def _stratified(y, n, seed):
    """``n`` indices of ``y``, the same share of every class, from a seeded permutation."""
    import numpy as np

    rng = np.random.default_rng([int(seed), 0x5B5E7])
    order = rng.permutation(len(y))
    classes = np.unique(y)
    per = {c: order[y[order] == c] for c in classes}
    take = []
    for i, c in enumerate(classes):
        k = n // len(classes) + (1 if i < n % len(classes) else 0)
        take.extend(per[c][:k].tolist())
    return np.sort(np.asarray(take))


def subset_dir(out_root, data, subset, data_dir):
    """A folder with a fixed class-stratified subset of ``data`` as IDX files; made once.

    ``varshift.data.load`` reads Fashion-MNIST from the four IDX files of ``data_dir``, so a
    quick-profile run trains on the subset by pointing ``data_dir`` here. The subset is the same
    for every seed and run (seed 0 of the selection), so runs differ only in their own seed.
    """
    from varshift import data as vdata
    from varshift.data.fashion_mnist import FASHION_FILES

    if data != "fashion_mnist":
        raise ValueError(f"subsets are implemented for fashion_mnist only; received data={data!r}")
    name = f"{data}-train{subset['n_train']}-test{subset['n_test']}"
    folder = Path(out_root) / "data" / name
    if folder.is_dir():
        return folder
    (x, y), (xt, yt), info = vdata.load(data, data_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    os.chmod(tmp, new_mode(folder=True))  # mkdtemp makes 0700; the umask's, as mkdir would
    i, j = _stratified(y, subset["n_train"], 0), _stratified(yt, subset["n_test"], 0)
    for k, arr in (("x_train", x[i, ..., 0]), ("y_train", y[i]), ("x_test", xt[j, ..., 0]),
                   ("y_test", yt[j])):
        _write_idx(tmp / FASHION_FILES[k], arr)
    (tmp / "SOURCE.txt").write_text(
        f"class-stratified subset (selection seed 0) of {info['source']}: "
        f"{subset['n_train']} of {info['n_train']} training and {subset['n_test']} of "
        f"{info['n_test']} test images\n")
    try:
        os.rename(tmp, folder)
    except OSError:  # another worker made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _train_one(config, key, root, data_dir, force, threads):
    """Train one run and write its record atomically (runs in a worker or in-process)."""
    if threads:
        from varshift._keras import tf

        tfm = tf()
        try:
            tfm.config.threading.set_intra_op_parallelism_threads(threads)
            tfm.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process
            pass
    from varshift import train
    from varshift._keras import keras

    store = RunStore(Path(root).parent)
    run_dir = store.run_dir(key)
    work = run_dir / "work"
    if force and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    trainer_config = {k: v for k, v in config.items() if k != "subset"}
    if config.get("subset"):
        data_dir = str(subset_dir(store.root.parent, config["data"], config["subset"], data_dir))
    try:
        record = train.run({**trainer_config, "data_dir": data_dir}, out_dir=str(work),
                           progress=False, resume=not force)
    except ValueError as err:  # a checkpoint left by another version of the trainer
        if "different config" not in str(err):
            raise
        record = train.run({**trainer_config, "data_dir": data_dir}, out_dir=str(work),
                           progress=False, resume=False)
    if config.get("subset"):
        record.setdefault("data", {})["subset_of"] = (Path(data_dir) / "SOURCE.txt").read_text().strip()
    wall = time.time() - start
    keras().backend.clear_session()
    wrapped = {"key": key, "config": config, "wall_time_s": wall,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "record": record}
    atomic_write_json(store.record_path(key), wrapped)
    return key, wall


def _worker_init():
    # Ctrl-C goes to the whole process group: let the parent decide, workers just stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def execute_plan(specs, out_dir, *, data_dir=None, jobs=1, force=False, on_done=None,
                 failures=None):
    """Train every spec not cached yet; call ``on_done(spec, wall_s, cached)`` after each.

    ``jobs > 1`` trains in that many worker processes (each with ``cpu_count // jobs``
    TensorFlow threads). A finished run's record is written before the next starts, so an
    interrupt loses only the runs in flight. A run that fails is recorded in ``failures``
    (``{label: message}``, if given; re-raised otherwise) and the others go on. Returns
    ``{key: wall_s}`` of the runs trained now.
    """

    def failed(spec, err):
        if failures is None:
            raise err
        failures[spec.label] = f"{type(err).__name__}: {err}".splitlines()[0]
        if on_done:
            on_done(spec, 0.0, False)

    def succeeded(spec, key, wall):
        walls[key] = wall
        if on_done:
            on_done(spec, wall, False)

    store = RunStore(out_dir)
    store.root.mkdir(parents=True, exist_ok=True)
    todo = []
    for spec in specs:
        if store.done(spec.key) and not force:
            if on_done:
                on_done(spec, None, True)
        else:
            todo.append(spec)
    walls = {}
    if not todo:
        return walls
    root = str(store.root)
    if jobs <= 1:
        for spec in todo:
            try:
                key, wall = _train_one(spec.config, spec.key, root, data_dir, force, 0)
            except Exception as err:
                failed(spec, err)
                continue
            succeeded(spec, key, wall)
        return walls
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # terminating workers on Ctrl-C makes multiprocessing's resource tracker warn about their
    # semaphores at exit; nothing leaks (the tracker cleans them), so keep the exit quiet
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    old = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{old},{quiet}" if old else quiet
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                               initializer=_worker_init)
    try:
        pending = {pool.submit(_train_one, s.config, s.key, root, data_dir, force, threads): s
                   for s in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                spec = pending.pop(fut)
                try:
                    key, wall = fut.result()
                except Exception as err:
                    failed(spec, err)
                    continue
                succeeded(spec, key, wall)
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown
        for proc in procs:  # the in-flight runs: their checkpoints stay, records never started
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.join(timeout=10)
        raise
    pool.shutdown()
    return walls
