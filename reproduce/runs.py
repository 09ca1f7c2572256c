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
import subprocess
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from reproduce._io import atomic_write_json, read_json

__all__ = ["RunSpec", "run_spec", "run_key", "RunStore", "execute_plan", "detect_gpus", "gpu_slots",
           "device_info"]

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
        return (f"{c['net']} {c['placement']}{noise} {noise_value(c):g} {c['data']} "
                f"seed {c['seed']}")


def noise_value(config):
    """The noise parameter of a run config: ``beta`` for Uout, ``rate`` for the dropout kinds."""
    from varshift.noise import get

    return float(config.get(get(config["noise"]).param, 0.0))


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
    if net in size:  # per-network sizes ({net: size keywords}: the gpu profile)
        return dict(size[net])
    return dict(size)


#: settings whose runs also compute Table 3's "Adjust BN" errors (the costliest final step)
ADJUST_SETTINGS = {("a", "dropout", 0.5), ("b", "dropout", 0.5)}


#: settings whose runs are evaluated after every epoch (Fig. 5 reads their per-epoch accuracy);
#: the others are evaluated once, after training
EPOCH_EVAL_SETTINGS = {("none", "dropout", 0.0), ("a", "dropout", 0.5)}


def run_spec(profile, net, placement="none", rate=0.0, *, noise="dropout", beta=0.0, data=None,
             seed=0, save_model=False, adjust=None):
    """The :class:`RunSpec` of one training run under ``profile``.

    ``placement="none"`` or a zero noise parameter (``rate`` for the dropout kinds, ``beta``
    for Uout; the config holds that one only) both mean the no-dropout baseline and give the
    same run, so Fig. 4's 0 point, Table 4's and Table 6's baselines share one training.
    ``adjust=None`` computes the "Adjust BN" errors only where Table 3 reads them
    (:data:`ADJUST_SETTINGS`).
    """
    from varshift.noise import get

    param = get(noise).param
    value = float(beta if param == "beta" else rate)
    if placement == "none" or value == 0.0:
        placement, noise, param, value = "none", "dropout", "rate", 0.0
    if adjust is None:
        adjust = (placement, noise, value) in ADJUST_SETTINGS
    config = {
        "net": net,
        "size": _resolve_size(net, profile.size),
        "placement": placement,
        "noise": noise,
        param: value,
        "data": data or profile.data[0],
        "recipe": profile.recipe_kind,
        "overrides": dict(profile.recipe),
        "seed": int(seed),
        "adjust": bool(adjust),
        "save_model": bool(save_model),
        "train_eval_samples": profile.eval_samples,
        "stats_samples": profile.eval_samples,
        "epoch_eval": (placement, noise, value) in EPOCH_EVAL_SETTINGS,
    }
    if profile.subset:
        config["subset"] = dict(profile.subset)  # RunConfig.subset: varshift.data.take_subset
    return RunSpec(config=config, key=run_key(config))


_SETTING_RANK = {("none", "dropout", 0.0): 0, ("a", "dropout", 0.5): 1, ("b", "dropout", 0.5): 2}
_RATE_RANK = {0.3: 0, 0.7: 1, 0.1: 2}


def priority(spec):
    """Sort key of the plan: the runs most verdicts rest on first.

    An interrupted or time-limited run of the plan (then ``run --cached-only``) thus covers the
    most claims: first seed of the baseline and dropout 0.5 (a, b), then the ratios 0.3 and
    0.7, the tables' settings, the other seeds, and the ratio 0.1 last; cheap networks first.
    """
    from varshift.nets import NETWORKS

    c = spec.config
    rate = noise_value(c)
    setting = (c["placement"], c["noise"], rate)
    first = c["seed"] == 0
    if setting in _SETTING_RANK:
        group = 0 if first else 3
    elif c["noise"] == "dropout" and c["placement"] in ("a", "b"):
        group = 4 if rate == 0.1 else (1 if first else 3)
    else:
        group = 2 if first else 3
    cost = NETWORKS[c["net"]].cost if c["net"] in NETWORKS else float("inf")
    return (group, _SETTING_RANK.get(setting, 3), _RATE_RANK.get(rate, 3), cost, c["data"],
            c["seed"])


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


def _configure_tf(threads):
    """Thread counts and GPU memory growth of this process (before any op runs)."""
    from varshift._keras import tf

    tfm = tf()
    try:
        if threads:
            tfm.config.threading.set_intra_op_parallelism_threads(threads)
            tfm.config.threading.set_inter_op_parallelism_threads(threads)
        for gpu in tfm.config.list_physical_devices("GPU"):
            tfm.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # already initialised in this process
        pass
    return tfm


def device_info():
    """Where this process trains: host, the GPU TensorFlow uses (or CPU), slot and SLURM task."""
    import socket

    from varshift._keras import tf

    gpus = tf().config.list_physical_devices("GPU")
    device = "CPU"
    if gpus:
        details = tf().config.experimental.get_device_details(gpus[0])
        device = details.get("device_name") or gpus[0].name
    info = {"host": socket.gethostname(), "device": device,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if os.environ.get("SLURM_JOB_ID"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        info["slurm_job"] = (f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{task}" if task
                             else os.environ["SLURM_JOB_ID"])
    return info


def _resume_state(work, trainer_config):
    """``(resume, epochs_done)`` of the trainer's folder ``work``, decided from its own records.

    The trainer resumes from ``progress.json`` (or returns ``record.json``) only when the config
    stored there equals this run's; a folder left by another version of the trainer (a stored
    ``config`` field that differs) is started afresh instead of failing.
    """
    from varshift import train

    current = train.RunConfig.from_any(trainer_config).to_dict()
    for name in ("record.json", "progress.json"):
        path = Path(work) / name
        if path.is_file():
            try:
                stored = read_json(path)
            except (OSError, ValueError):  # a torn file of a killed process: start afresh
                return False, 0
            if stored.get("config") != current:
                return False, 0
            return True, len(stored.get("history", []))
    return True, 0


def _train_one(config, key, root, data_dir, force, threads):
    """Train one run and write its record atomically (runs in a worker, a SLURM task or in-process)."""
    _configure_tf(threads)
    from varshift import train
    from varshift._keras import keras

    store = RunStore(Path(root).parent)
    run_dir = store.run_dir(key)
    work = run_dir / "work"
    if force and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    trainer_config = {**config, "data_dir": data_dir}
    resume, epochs_done = _resume_state(work, trainer_config) if not force else (False, 0)
    record = train.run(trainer_config, out_dir=str(work), progress=False, resume=resume)
    wall = time.time() - start
    keras().backend.clear_session()
    wrapped = {"key": key, "config": config, "wall_time_s": wall,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "where": device_info(), "resumed_from_epoch": epochs_done,
               "record": record}
    atomic_write_json(store.record_path(key), wrapped)
    return key, wall


def _worker_init(slots=None):
    # Ctrl-C goes to the whole process group: let the parent decide, workers just stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if slots is not None:  # this worker's GPU, before TensorFlow is imported here
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slots.get())
        os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"


def detect_gpus():
    """The GPU ids this process may hand out: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi``.

    Returns a list of strings (``[]`` on a machine without an NVIDIA GPU or driver).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def gpu_slots(jobs, gpus):
    """The GPU of each of ``jobs`` workers: round-robin over ``gpus`` (``None`` without GPUs).

    One worker per GPU is the intended use (``--gpus 0,1,2,3``); more workers than GPUs share
    them (memory growth on), fewer leave some idle.
    """
    if not gpus:
        return None
    return [str(gpus[i % len(gpus)]) for i in range(jobs)]


def _local_pool(jobs, gpus):
    """``jobs`` spawned worker processes; with ``gpus``, each takes one slot of :func:`gpu_slots`."""
    # terminating workers on Ctrl-C makes multiprocessing's resource tracker warn about their
    # semaphores at exit; nothing leaks (the tracker cleans them), so keep the exit quiet
    quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
    old = os.environ.get("PYTHONWARNINGS")
    if quiet not in (old or ""):
        os.environ["PYTHONWARNINGS"] = f"{old},{quiet}" if old else quiet
    ctx = get_context("spawn")
    slots = gpu_slots(jobs, gpus)
    queue = None
    if slots:
        queue = ctx.Queue()
        for slot in slots:
            queue.put(slot)
    return ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                               initargs=(queue,))


def execute_plan(specs, out_dir, *, data_dir=None, jobs=1, force=False, on_done=None,
                 failures=None, gpus=None):
    """Train every spec not cached yet; call ``on_done(spec, wall_s, cached)`` after each.

    ``jobs > 1`` (or ``gpus`` given) trains in that many worker processes (each with
    ``cpu_count // jobs`` TensorFlow threads). With GPUs (``gpus``: ids, default
    :func:`detect_gpus`) each worker owns one (:func:`gpu_slots`): ``CUDA_VISIBLE_DEVICES`` is
    set in the worker before it imports TensorFlow, with memory growth on; each record names
    its host and device. A finished run's record is written before the next starts, so an
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
    if jobs <= 1 and not gpus:  # in this process (an explicit GPU gets its own worker)
        for spec in todo:
            try:
                key, wall = _train_one(spec.config, spec.key, root, data_dir, force, 0)
            except Exception as err:
                failed(spec, err)
                continue
            succeeded(spec, key, wall)
        return walls
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = _local_pool(jobs, detect_gpus() if gpus is None else gpus)
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
