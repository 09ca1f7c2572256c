"""Shared training runs: planned by the targets, trained once, cached by their configuration.

A run is one call of ``varshift.train.run(config)``. Its key (:func:`run_key`) is a hash of
the full configuration: network, size, placement, noise, rate, data set, recipe, seed,
the evaluation hooks, save_model, and everything else that changes the numbers, among them ``threads``
(the CPU threads of the kernels, fixed by the profile, never taken from the machine) and
``backend`` (the Keras backend); not the data folder, which changes where data is read
from, not what is computed. Fig. 4, Fig. 5 and Table 3 all read the same dropout-(a) 0.5
run, so it is trained once.

Layout: ``<out>/runs/<hash>/record.json`` (written atomically when the run has finished, with
a SHA-256 checksum of its content) and ``<out>/runs/<hash>/work/`` (the trainer's own folder:
checkpoints to resume from, ``model.keras``). A record is validated whenever it is read
(:meth:`RunStore.status`): a torn, emptied or hand-edited one is *damaged*; ``run`` moves it
aside (``record.json.damaged-<time>``) and trains the run again. ``<out>/.lock`` marks the
folder as used by one ``run`` (:class:`OutLock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
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
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from reproduce._io import atomic_write_json, read_json

__all__ = ["RunSpec", "run_spec", "run_key", "RunStore", "DamagedRecord", "OutLock", "LockHeld",
           "execute_plan", "detect_gpus", "gpu_slots", "device_info", "worker_environment",
           "BadStatistic", "check_statistics", "POSITIVE_STATISTICS", "checkpoint_intact"]

#: bump when the meaning of a record changes, to invalidate every cache (new config fields such
#: as ``threads`` and ``backend`` change every key by themselves)
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
    """Hash of a run's full configuration (``data_dir`` excluded): the cache key.

    The first 16 hex digits of the SHA-256 of ``{"v": CACHE_VERSION, "config": config}`` as
    JSON with sorted keys. Stable: the same config gives the same key in any process, on any
    machine; any field that changes the numbers (``threads``, ``backend`` included) changes it.
    """
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


#: settings whose runs also compute Table 3's "Adjust BN" errors (the ``adjust_bn`` hook)
ADJUST_SETTINGS = {("a", "dropout", 0.5), ("b", "dropout", 0.5)}


#: settings whose runs are evaluated after every epoch (Fig. 5 reads their per-epoch accuracy);
#: the others are evaluated once, after training
EPOCH_EVAL_SETTINGS = {("none", "dropout", 0.0), ("a", "dropout", 0.5)}

#: settings whose runs store Fig. 6's outputs (the ``fig6`` hook), on the profile's first network
FIG6_SETTINGS = {("a", "dropout", 0.5)}


def run_spec(profile, net, placement="none", rate=0.0, *, noise="dropout", beta=0.0, data=None,
             seed=0, save_model=False, adjust=None, fig6=None):
    """The :class:`RunSpec` of one training run under ``profile``.

    ``placement="none"`` or a zero noise parameter (``rate`` for the dropout kinds, ``beta``
    for Uout; the config holds that one only) both mean the no-dropout baseline and give the
    same run, so Fig. 4's 0 point, Table 4's and Table 6's baselines share one training.
    The config's ``evaluations`` (:mod:`reproduce.evaluations`) always hold ``cos2``;
    ``adjust=None`` adds the "Adjust BN" errors only where Table 3 reads them
    (:data:`ADJUST_SETTINGS`); ``fig6=None`` adds Fig. 6's outputs only where Fig. 6 reads
    them (:data:`FIG6_SETTINGS` on ``profile.networks[0]``).
    """
    from reproduce.evaluations import evaluations_config
    from varshift.noise import get

    param = get(noise).param
    value = float(beta if param == "beta" else rate)
    if placement == "none" or value == 0.0:
        placement, noise, param, value = "none", "dropout", "rate", 0.0
    if adjust is None:
        adjust = (placement, noise, value) in ADJUST_SETTINGS
    if fig6 is None:
        fig6 = (placement, noise, value) in FIG6_SETTINGS and net == profile.networks[0]
    config = {
        "net": net,
        "size": _resolve_size(net, profile.size),
        "placement": placement,
        "noise": noise,
        param: value,
        "data": data or profile.data[0],
        "recipe": profile.recipe_kind,
        "overrides": {**profile.recipe, **profile.net_recipe.get(net, {})},
        "seed": int(seed),
        "save_model": bool(save_model),
        "train_eval_samples": profile.eval_samples,
        "stats_samples": profile.eval_samples,
        "eval_batch_size": profile.eval_batch_size,
        "evaluations": evaluations_config(adjust=bool(adjust), fig6=bool(fig6),
                                          adjust_samples=profile.adjust_samples),
        "epoch_eval": (placement, noise, value) in EPOCH_EVAL_SETTINGS,
        "threads": int(profile.threads),
        "backend": profile.backend or default_backend(),
    }
    if profile.subset:
        config["subset"] = dict(profile.subset)  # RunConfig.subset: varshift.data.take_subset
    if profile.config_layout == "fields":
        config = fields_layout(config, profile.adjust_samples)
    return RunSpec(config=config, key=run_key(config))


def fields_layout(config, adjust_samples):
    """``config`` with its end-of-run work named as records written before the evaluation
    hooks named it: ``adjust`` (Table 3's Adjust BN), ``adjust_samples`` and ``fig6`` instead
    of ``evaluations`` (``cos2`` ran in every run then too). :func:`evaluations_layout` undoes
    it."""
    out = {k: v for k, v in config.items() if k != "evaluations"}
    evaluations = config.get("evaluations") or {}
    out.update(adjust="adjust_bn" in evaluations, adjust_samples=adjust_samples,
               fig6="fig6" in evaluations)
    return out


def evaluations_layout(config):
    """A run config in the current layout (``evaluations``), from either layout."""
    if "evaluations" in config or not {"adjust", "fig6"} <= set(config):
        return dict(config)
    from reproduce.evaluations import evaluations_config

    out = {k: v for k, v in config.items() if k not in ("adjust", "adjust_samples", "fig6")}
    out["evaluations"] = evaluations_config(adjust=bool(config["adjust"]),
                                            fig6=bool(config["fig6"]),
                                            adjust_samples=config.get("adjust_samples"))
    return out


#: the backend of a profile that names none, when ``KERAS_BACKEND`` names none either
DEFAULT_BACKEND = "tensorflow"


def default_backend():
    """The backend of a profile that names none: the user's ``KERAS_BACKEND`` (one of
    ``tensorflow``, ``jax``, ``torch``), else :data:`DEFAULT_BACKEND`. It becomes part of
    every run's config and key, so it is never a silent choice."""
    env = os.environ.get("KERAS_BACKEND", "")
    return env if env in ("tensorflow", "jax", "torch") else DEFAULT_BACKEND

_SETTING_RANK = {("none", "dropout", 0.0): 0, ("a", "dropout", 0.5): 1, ("b", "dropout", 0.5): 2}
_RATE_RANK = {0.3: 0, 0.7: 1, 0.1: 2}
#: network name -> relative CPU training cost at the small size (WRN = 1; CPU-seconds per
#: small-network run measured for the quick profile: WRN about 22, PreResNet about 45,
#: DenseNet-BC about 50, ResNeXt about 90): the plan runs cheap networks first
PLAN_COST = {"preresnet": 2.0, "resnext29": 4.0, "wrn": 1.0, "densenet_bc": 2.3}


def priority(spec):
    """Sort key of the plan: the runs most verdicts rest on first.

    An interrupted or time-limited run of the plan (then ``run --cached-only``) thus covers the
    most claims: first seed of the baseline and dropout 0.5 (a, b), then the ratios 0.3 and
    0.7, the tables' settings, the other seeds, and the ratio 0.1 last; cheap networks first.
    """
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
    cost = PLAN_COST.get(c["net"], float("inf"))
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


class DamagedRecord(ValueError):
    """A ``record.json`` that cannot be trusted: unreadable, not a record, or edited."""


#: fields every stored record has (besides ``checksum``)
RECORD_FIELDS = {"key": str, "config": dict, "record": dict}


def record_checksum(wrapped):
    """SHA-256 of a stored record's content (every field but ``checksum``), as canonical JSON."""
    from reproduce._io import to_jsonable

    body = {k: v for k, v in wrapped.items() if k != "checksum"}
    blob = json.dumps(to_jsonable(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def validate_record(wrapped, key):
    """``DamagedRecord`` naming the first problem unless ``wrapped`` is the intact record of ``key``."""
    if not isinstance(wrapped, dict):
        raise DamagedRecord(f"not a JSON object but {type(wrapped).__name__}")
    for name, kind in RECORD_FIELDS.items():
        if not isinstance(wrapped.get(name), kind):
            raise DamagedRecord(f"field {name!r} is missing or not a {kind.__name__}")
    inner = wrapped["record"]
    if not isinstance(inner.get("final"), dict) or not isinstance(inner.get("history"), list):
        raise DamagedRecord("the trainer's record lacks 'final' or 'history'")
    if wrapped["key"] != key or run_key(wrapped["config"]) != key:
        raise DamagedRecord(f"it is not the record of run {key} (its key or config differs)")
    if "checksum" not in wrapped:
        raise DamagedRecord("it has no checksum (written by an older version)")
    if wrapped["checksum"] != record_checksum(wrapped):
        raise DamagedRecord("its checksum does not match its content (edited or corrupted)")


class BadStatistic(ValueError):
    """A record holds a statistic that cannot be true (a variance of 0, a NaN): not stored."""


#: statistics of a record's per-layer shift rows (``record.final.shift``) that are variances
#: or ratios of variances: finite and > 0 whenever they are measured
POSITIVE_STATISTICS = ("moving_var", "real_var", "shift", "ratio")
#: statistics that are undefined for some layers and then stored as null (a ratio of means of
#: opposite signs): NaN is allowed there and only there
UNDEFINED_AS_NULL = ("mean_ratio",)


def _non_finite(value, where):
    """``(where, value)`` of the first NaN or infinity in ``value`` (nested), else ``None``."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in UNDEFINED_AS_NULL:
                found = _non_finite(v, f"{where}.{k}")
                if found:
                    return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{where}[{i}]")
            if found:
                return found
    elif hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy values and arrays
        return _non_finite(value.tolist(), where)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool) \
            and not math.isfinite(float(value)):
        return where, value
    return None


def check_statistics(key, record):
    """``BadStatistic`` (one line: run, statistic, value, expectation) unless every statistic of
    the trainer's ``record`` can be true: every :data:`POSITIVE_STATISTICS` of a shift row is a
    finite number > 0, and no number of ``final`` or ``history`` is NaN or infinite (but
    :data:`UNDEFINED_AS_NULL`)."""
    final = record.get("final") if isinstance(record, dict) else None
    for i, row in enumerate((final or {}).get("shift") or []):
        for name in POSITIVE_STATISTICS:
            if not isinstance(row, dict) or name not in row:
                continue
            value = row[name]
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (ok and math.isfinite(float(value)) and float(value) > 0):
                raise BadStatistic(f"run {key}: statistic final.shift[{i}].{name} "
                                   f"({row.get('bn_layer', '?')}) is {value!r}; expected a finite "
                                   "number > 0 (a variance or a ratio of variances); not stored")
    for part in ("final", "history"):
        found = _non_finite((record or {}).get(part), part)
        if found:
            raise BadStatistic(f"run {key}: statistic {found[0]} is {found[1]!r}; expected a "
                               "finite number; not stored")


class RunStore:
    """The cache folder ``<out>/runs``: where records live, how they are looked up and checked."""

    def __init__(self, out_dir):
        self.root = Path(out_dir) / "runs"

    def run_dir(self, key):
        return self.root / key

    def record_path(self, key):
        return self.run_dir(key) / "record.json"

    def write(self, key, wrapped):
        """Write the record of ``key`` atomically, with its checksum; a record with a statistic
        that cannot be true is refused first (:func:`check_statistics`, ``BadStatistic``)."""
        from reproduce._io import to_jsonable

        check_statistics(key, wrapped.get("record"))
        wrapped = to_jsonable({k: v for k, v in wrapped.items() if k != "checksum"})
        wrapped["checksum"] = record_checksum(wrapped)
        atomic_write_json(self.record_path(key), wrapped)

    def status(self, key):
        """``("done", None)``, ``("missing", None)`` or ``("damaged", reason)``; changes nothing.

        A record moved aside earlier (:meth:`quarantine`) and not trained again since counts
        as damaged, so results built from it are not mistaken for current ones.
        """
        path = self.record_path(key)
        if not path.is_file():
            aside = self.damaged_files(key)
            if aside:
                return "damaged", f"moved aside to {aside[-1]} and not trained again"
            return "missing", None
        try:
            wrapped = read_json(path)
        except (OSError, ValueError) as err:  # torn or unreadable
            return "damaged", f"unreadable ({type(err).__name__}: {str(err).splitlines()[0]})"
        try:
            validate_record(wrapped, key)
        except DamagedRecord as err:
            return "damaged", str(err)
        return "done", None

    def damaged_files(self, key):
        return sorted(self.run_dir(key).glob("record.json.damaged-*"))

    def done(self, key):
        """Whether ``key`` has an intact record."""
        return self.status(key)[0] == "done"

    def load(self, key):
        """The intact record of ``key``; ``DamagedRecord`` (naming the file) otherwise."""
        state, reason = self.status(key)
        if state != "done":
            raise DamagedRecord(f"run record {self.record_path(key)} is "
                                f"{'missing' if state == 'missing' else 'damaged: ' + reason}")
        return read_json(self.record_path(key))

    def quarantine(self, key):
        """Move a damaged ``record.json`` aside (``record.json.damaged-<UTC time>``); its path."""
        path = self.record_path(key)
        if not path.exists():
            return None
        aside = path.with_name(f"record.json.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(path, aside)
        return aside

    def model_path(self, key):
        return self.run_dir(key) / "work" / "model.keras"

    def _twins(self, spec):
        return [run_key(cfg) for cfg in
                (spec.config, {**spec.config, "save_model": not spec.config["save_model"]})]

    def find(self, spec):
        """The record of ``spec``, or of its ``save_model`` twin; ``None`` if not trained (or
        damaged: :meth:`why_missing` says which)."""
        for key in self._twins(spec):
            if self.done(key):
                return self.load(key)
        return None

    def why_missing(self, spec):
        """Why :meth:`find` gives nothing: ``"is damaged: ..."`` or ``"has not been trained"``."""
        for key in self._twins(spec):
            state, reason = self.status(key)
            if state == "damaged":
                return f"has a damaged record ({reason})"
        return "has not been trained"


class LockHeld(RuntimeError):
    """Another live ``run`` holds the lock of the output folder."""


class OutLock:
    """``<out>/.lock``: one ``run`` per output folder at a time.

    The lock file holds the owner's pid, host, start time and command; it is created
    atomically (a complete file is hard-linked into place, so nobody reads a half-written
    one). A lock whose process is dead (same host, pid gone) is taken over; a lock held by a
    live process, or by another host (its pid cannot be checked from here), raises
    :class:`LockHeld` naming the owner. Released on exit.
    """

    def __init__(self, out_dir):
        self.path = Path(out_dir) / ".lock"
        self.held = False

    @staticmethod
    def _alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's live process
            return True
        return True

    def owner(self):
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": " ".join(["python -m reproduce", *sys.argv[1:]])}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".lock.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(me) + "\n", encoding="utf-8")
        try:
            for _ in range(5):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return self
                except FileExistsError:
                    pass
                info = self.owner()
                pid, host = info.get("pid"), info.get("host")
                if info and (host != me["host"] or (isinstance(pid, int) and self._alive(pid))):
                    where = f"pid {pid} on host {host}, started {info.get('started_at')}"
                    raise LockHeld(f"--out {str(self.path.parent)!r} is in use by another run "
                                   f"({where}: {info.get('command')!r}); wait for it to finish"
                                   f" or use another --out (remove {self.path} if that process"
                                   " is gone)")
                # stale (dead pid on this host) or unreadable: take it over
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self.path, self.path.with_name(f".lock.stale-{os.getpid()}"))
                    os.unlink(self.path.with_name(f".lock.stale-{os.getpid()}"))
            raise LockHeld(f"cannot take the lock {self.path}: it keeps changing hands")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def release(self):
        if self.held and self.owner().get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


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
        from varshift._keras import tf

        tfm = tf()
        try:
            for gpu in tfm.config.list_physical_devices("GPU"):
                tfm.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass


def device_info():
    """Where this process trains: host, backend, the GPU it uses (or CPU), slot and SLURM task."""
    from varshift._keras import keras

    backend = keras().backend.backend()
    device = "CPU"
    with contextlib.suppress(Exception):  # a backend that cannot list its devices: CPU
        if backend == "tensorflow":
            from varshift._keras import tf

            gpus = tf().config.list_physical_devices("GPU")
            if gpus:
                details = tf().config.experimental.get_device_details(gpus[0])
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


def _resume_state(work, trainer_config):
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


def _train_one(config, key, root, data_dir, force):
    """Train one run and write its record atomically (runs in a worker, a SLURM task or in-process).

    The backend and the CPU threads are the config's (``backend``, ``threads``), never the
    machine's: the same record on any number of cores.
    """
    _prepare_process(config)
    from reproduce.evaluations import hooks_for
    from varshift import train
    from varshift._keras import keras

    store = RunStore(Path(root).parent)
    run_dir = store.run_dir(key)
    work = run_dir / "work"
    if force and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    config = evaluations_layout(config)
    trainer_config = {**config, "data_dir": data_dir}
    resume, epochs_done = _resume_state(work, trainer_config) if not force else (False, 0)
    record = train.run(trainer_config, evaluations=hooks_for(config), out_dir=str(work),
                       progress=False, resume=resume, checkpoint_seconds=checkpoint_seconds())
    wall = time.time() - start
    keras().backend.clear_session()
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


def _local_pool(jobs, gpus, env=None):
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
                key, wall = _train_one(spec.config, spec.key, root, data_dir, force)
            except Exception as err:
                failed(spec, err)
                continue
            succeeded(spec, key, wall)
        return walls
    env = worker_environment(todo[0].config)  # one backend; threads travel in each config too
    pool = _local_pool(jobs, detect_gpus() if gpus is None else gpus, env)
    try:
        pending = {pool.submit(_train_one, s.config, s.key, root, data_dir, force): s
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
