"""Where the runs of a plan train: in this process or in a pool of local worker processes
(:func:`execute_plan`; :mod:`reproduce.slurm` submits the same :func:`train_one` as a SLURM job
array).

Each run trains with its own ``backend`` and ``threads`` (:func:`worker_environment`, set
before the worker imports Keras), resumes from its own checkpoints (:func:`resume_state`), and
writes its record into the :class:`~reproduce.store.RunStore` when it has finished.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from reproduce._io import read_json
from reproduce.plan import default_backend, evaluations_layout
from reproduce.store import RunStore

__all__ = ["execute_plan", "train_one", "detect_gpus", "gpu_slots", "local_pool", "device_info",
           "worker_environment", "checkpoint_intact", "checkpoint_seconds", "resume_state",
           "CHECKPOINT_S"]


def worker_environment(config):
    """Environment a training process needs before it imports Keras: ``KERAS_BACKEND`` and
    the thread settings of the run (:func:`varshift.train.config.thread_environment`)."""
    from varshift.train.config import thread_environment

    backend = config.get("backend") or default_backend()
    return {"KERAS_BACKEND": backend,  # the user's XLA_FLAGS kept, the thread flags set
            **thread_environment(config.get("threads", 1), backend,
                                 xla_flags=os.environ.get("XLA_FLAGS"))}


def _prepare_process(config):
    """Before Keras is imported here: its backend and thread settings; GPU memory growth on
    TensorFlow. Where Keras already runs, ``varshift.train.run`` checks backend and threads."""
    if "keras" not in sys.modules:
        for name, value in worker_environment(config).items():
            os.environ[name] = value
    if (config.get("backend") or default_backend()) == "tensorflow":
        import varshift

        varshift.load_keras()  # TensorFlow imported quietly, then configured
        import tensorflow as tf

        try:
            for gpu in tf.config.list_physical_devices("GPU"):
                tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass


def device_info():
    """Where this process trains: host, backend, the GPU it uses (or CPU), slot and SLURM task."""
    import varshift

    backend = varshift.load_keras().backend.backend()
    device = "CPU"
    with contextlib.suppress(Exception):  # a backend that cannot list its devices: CPU
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                device = details.get("device_name") or gpus[0].name
        elif backend == "jax":
            import jax

            dev = jax.devices()[0]
            device = "CPU" if dev.platform == "cpu" else (dev.device_kind or str(dev))
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                device = torch.cuda.get_device_name(0)
    info = {"host": socket.gethostname(), "backend": backend, "device": device,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if os.environ.get("SLURM_JOB_ID"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        info["slurm_job"] = (f"{os.environ.get('SLURM_ARRAY_JOB_ID')}_{task}" if task
                             else os.environ["SLURM_JOB_ID"])
    return info


_CHECKPOINT_NAME = re.compile(r"checkpoint_\d+\.keras")


def checkpoint_intact(path):
    """Whether ``path`` is a complete ``.keras`` file: a zip holding the model's config and
    weights whose every member passes its CRC (a torn or garbage file does not)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if not {"config.json", "model.weights.h5"} <= set(archive.namelist()):
                return False
            return archive.testzip() is None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False


def resume_state(work, trainer_config):
    """``(resume, epochs_done)`` of the trainer's folder ``work``, decided from its own records.

    The trainer resumes from ``progress.json`` (or returns ``record.json``) only when the config
    stored there equals this run's and the file is whole: a finished record with its ``final``
    and ``history``; a progress whose ``checkpoint`` names an intact checkpoint file
    (:func:`checkpoint_intact`). A folder left by another version of the trainer, a torn file
    of a killed process or a garbage checkpoint starts the run afresh instead of failing.
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
            if not isinstance(stored, dict) or stored.get("config") != current \
                    or not isinstance(stored.get("history"), list):
                return False, 0
            if name == "record.json" and not isinstance(stored.get("final"), dict):
                return False, 0
            if name == "progress.json":
                checkpoint = stored.get("checkpoint")
                if not (isinstance(checkpoint, str) and _CHECKPOINT_NAME.fullmatch(checkpoint)
                        and checkpoint_intact(Path(work) / checkpoint)):
                    return False, 0
            return True, len(stored["history"])
    return True, 0


#: seconds between two checkpoints of a run (``varshift.train.run``'s ``checkpoint_seconds``;
#: ``VARSHIFT_CHECKPOINT_S`` overrides, ``0``: after every epoch). It never changes a result: a
#: resumed run continues exactly as if it had not been interrupted.
CHECKPOINT_S = 60.0


def checkpoint_seconds():
    """:data:`CHECKPOINT_S`, or ``VARSHIFT_CHECKPOINT_S`` (a finite number >= 0) when set."""
    text = os.environ.get("VARSHIFT_CHECKPOINT_S")
    if text is None:
        return CHECKPOINT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"VARSHIFT_CHECKPOINT_S must be a number of seconds >= 0; "
                         f"received {text!r}.")
    return value


def train_one(config, key, root, data_dir, force):
    """Train one run and write its record atomically (runs in a worker, a SLURM task or in-process).

    The backend and the CPU threads are the config's (``backend``, ``threads``), never the
    machine's: the same record on any number of cores.
    """
    _prepare_process(config)
    import varshift
    from reproduce.evaluations import hooks_for
    from varshift import train

    store = RunStore(Path(root).parent)
    run_dir = store.run_dir(key)
    work = run_dir / "work"
    if force and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    config = evaluations_layout(config)
    trainer_config = {**config, "data_dir": data_dir}
    resume, epochs_done = resume_state(work, trainer_config) if not force else (False, 0)
    record = train.run(trainer_config, evaluations=hooks_for(config), out_dir=str(work),
                       progress=False, resume=resume, checkpoint_seconds=checkpoint_seconds())
    wall = time.time() - start
    varshift.load_keras().backend.clear_session()
    from reproduce.claims import claims_hash

    wrapped = {"key": key, "config": config, "wall_time_s": wall,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "where": device_info(), "resumed_from_epoch": epochs_done,
               "claims_sha256": claims_hash(), "record": record}
    store.write(key, wrapped)
    return key, wall


def _die_with_parent():
    """Linux: this process gets SIGTERM when its parent dies (no orphaned workers)."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_init(slots=None, env=None):
    # Ctrl-C and a closed terminal go to the whole process group: let the parent decide (it
    # stops the workers), workers just go on until then
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.update(env or {})  # backend and threads, before anything imports Keras
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


def local_pool(jobs, gpus, env=None):
    """``jobs`` spawned worker processes; with ``gpus``, each takes one slot of :func:`gpu_slots`;
    ``env`` (:func:`worker_environment`) is set in each before it imports anything."""
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
                               initargs=(queue, env))


def _say_damaged(message):
    print(f"reproduce: {message}", file=sys.stderr, flush=True)


def _to_train(specs, store, force, on_done, on_damaged):
    """The specs to train: not cached (or ``force``); damaged records are moved aside first."""
    backends = sorted({s.config.get("backend") or default_backend() for s in specs})
    if len(backends) > 1:
        raise ValueError(f"one plan trains on one backend; received runs on {backends}")
    store.root.mkdir(parents=True, exist_ok=True)
    todo = []
    for spec in specs:
        state, reason = store.status(spec.key)
        if state == "done" and not force:
            if on_done:
                on_done(spec, None, True)
            continue
        if state == "damaged" and store.record_path(spec.key).exists():
            aside = store.quarantine(spec.key)
            if on_damaged:
                on_damaged(f"run {spec.label}: damaged record ({reason}) moved aside to "
                           f"{aside}; training it again")
        todo.append(spec)
    return todo


def execute_plan(specs, out_dir, *, data_dir=None, jobs=1, force=False, on_done=None,
                 failures=None, gpus=None, on_damaged=_say_damaged):
    """Train every spec not cached yet; call ``on_done(spec, wall_s, cached)`` after each.

    ``jobs > 1`` (or ``gpus`` given) trains in that many worker processes; each uses the
    run's own ``threads`` and ``backend`` (set before it imports Keras), so the numbers do
    not depend on ``jobs`` or on the machine's cores. A damaged record (:meth:`RunStore.status`)
    is moved aside, named through ``on_damaged(message)`` and trained again. With GPUs (``gpus``: ids, default
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
    todo = _to_train(specs, store, force, on_done, on_damaged)
    walls = {}
    if not todo:
        return walls
    root = str(store.root)
    if jobs <= 1 and not gpus:  # in this process (an explicit GPU gets its own worker)
        for spec in todo:
            try:
                key, wall = train_one(spec.config, spec.key, root, data_dir, force)
            except Exception as err:
                failed(spec, err)
                continue
            succeeded(spec, key, wall)
        return walls
    env = worker_environment(todo[0].config)  # one backend; threads travel in each config too
    pool = local_pool(jobs, detect_gpus() if gpus is None else gpus, env)
    try:
        pending = {pool.submit(train_one, s.config, s.key, root, data_dir, force): s
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
