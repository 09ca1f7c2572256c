"""The runs of a plan as one SLURM job array, submitted through ``submitit``.

``python -m reproduce run --executor slurm`` submits every run that is neither cached nor
already queued as one job array (``pip install varshift[cluster]`` brings ``submitit``). Each
array task trains one run with the same function as the local executor
(:func:`reproduce.executors.train_one`) and writes the same atomic ``record.json`` into the same
run store: the output folder must be on a file system shared by the submitting machine and
the compute nodes.

Bookkeeping lives in ``<out>/slurm/``: ``queue.json`` maps each submitted run's key to its
array task (``"<array job>_<index>"``) and ``logs/`` holds submitit's pickles and the tasks'
logs. A run is submitted again only when it has no record and its task is no longer in
``squeue`` (it failed or was cancelled). A task that is preempted or reaches its time limit
receives SLURM's ``USR2`` signal (``--signal USR2@<delay>``); submitit then requeues it and the
trainer resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import getpass
import io
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reproduce._io import atomic_write_json, read_json
from reproduce.executors import train_one
from reproduce.store import RunStore

__all__ = ["SlurmOptions", "parse_time", "parse_slurm_args", "execute_slurm", "partition_specs",
           "SlurmUnavailable", "check_script_value", "poll_seconds", "read_task_status"]

#: squeue states of a task that still runs or will run (the others have ended)
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING"}
#: seconds between two looks at the queue (``VARSHIFT_SLURM_POLL_S`` overrides)
POLL_S = 20.0
#: ``--slurm-arg`` keys that submitit knows as named parameters (others go to ``#SBATCH``)
NAMED = {"cpus_per_task", "mem", "account", "qos", "constraint", "exclude", "nodelist",
         "comment", "mail_type", "mail_user", "gres", "job_name", "signal_delay_s"}


class SlurmUnavailable(RuntimeError):
    """``submitit`` or SLURM's commands are missing: the SLURM executor cannot be used here."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_script_value(option, value):
    """``value`` as text fit for the job script; ``ValueError`` naming ``option`` otherwise.

    Every value that reaches the ``#SBATCH`` block (partition, ``--slurm-arg`` keys and values,
    the log folder) must be one line: a newline, carriage return, NUL or any other control
    character would end the ``#SBATCH`` line and put the rest in the script that runs on the
    node.
    """
    text = str(value)
    bad = _CONTROL.search(text)
    if bad:
        raise ValueError(f"{option} must not contain control characters (newline, carriage "
                         f"return, NUL, ...); received {text!r} (character "
                         f"{bad.group()!r} at position {bad.start()})")
    return text


def poll_seconds(default=None):
    """Seconds between two looks at the queue: ``VARSHIFT_SLURM_POLL_S`` (a finite number
    > 0) when set, else ``default`` or :data:`POLL_S`; ``ValueError`` naming the variable."""
    text = os.environ.get("VARSHIFT_SLURM_POLL_S")
    if text is None:
        return float(default or POLL_S)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"VARSHIFT_SLURM_POLL_S must be a number of seconds > 0; "
                         f"received {text!r}.")
    return value


@dataclass(frozen=True)
class SlurmOptions:
    """How the array is requested: one task per run.

    Attributes:
        partition: SLURM partition (``None``: the cluster's default).
        gpus_per_run: GPUs per task (``--gpus-per-node``; 0 requests none).
        time_per_run: the time limit of one task in minutes; a run that needs longer resumes
            from its checkpoint in a requeued task.
        max_parallel: tasks of the array running at once (``%K``).
        extra: further ``#SBATCH`` settings (``--slurm-arg KEY=VALUE``).
        cpus_per_run: CPUs per task; default 4 per GPU, 1 without. The kernels' thread count
            is each run's ``threads`` (fixed by the profile, part of its key), not this.
    """

    partition: str | None = None
    gpus_per_run: int = 1
    time_per_run: int = 24 * 60
    max_parallel: int = 64
    extra: dict = field(default_factory=dict)
    cpus_per_run: int | None = None

    def __post_init__(self):
        if self.partition is not None:
            check_script_value("--partition", self.partition)
        for key, value in dict(self.extra).items():
            check_script_value("--slurm-arg key", key)
            if not _KEY.fullmatch(str(key)):
                raise ValueError(f"--slurm-arg key must be an sbatch option name (letters, "
                                 f"digits, '-' or '_'); received {key!r}")
            check_script_value(f"--slurm-arg {key}", value)

    @property
    def threads(self):
        return self.cpus_per_run or max(1, 4 * self.gpus_per_run)


def parse_time(text):
    """SLURM's ``[D-]HH:MM:SS`` (or ``MM``) as whole minutes, rounded up; ``ValueError`` otherwise."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2}):(\d{2})", str(text).strip())
    if m:
        days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
        total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    elif re.fullmatch(r"\d+", str(text).strip()):
        total = int(text) * 60
    else:
        raise ValueError(f"--time-per-run must be [D-]HH:MM:SS or minutes; received {text!r}")
    if total <= 0:
        raise ValueError(f"--time-per-run must be positive; received {text!r}")
    return -(-total // 60)


def parse_slurm_args(items):
    """``["KEY=VALUE", ...]`` as a dict (``-`` in keys read as ``_``); ``ValueError`` otherwise."""
    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        check_script_value("--slurm-arg", item)
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key or not value:
            raise ValueError(f"--slurm-arg must be KEY=VALUE; received {item!r}")
        if not _KEY.fullmatch(key):
            raise ValueError(f"--slurm-arg key must be an sbatch option name (letters, digits, "
                             f"'-' or '_'); received {item!r}")
        out[key] = value
    return out


def _check_available():
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SlurmUnavailable("--executor slurm needs submitit: pip install 'varshift[cluster]'") \
            from None
    missing = [c for c in ("sbatch", "squeue", "scancel") if not shutil.which(c)]
    if missing:
        raise SlurmUnavailable(f"--executor slurm needs SLURM's {', '.join(missing)} on PATH "
                               "(run it on a login node of the cluster)")


class _Queue:
    """``<out>/slurm/queue.json``: run key -> ``{"task": "<array>_<i>", "label", "submitted_at"}``."""

    def __init__(self, out_dir):
        self.dir = Path(out_dir) / "slurm"
        self.path = self.dir / "queue.json"
        self.logs = self.dir / "logs"
        self.entries = self._read() if self.path.is_file() else {}

    def _read(self):
        """The entries of ``queue.json``; ``SlurmUnavailable`` naming it if torn or malformed
        (submitting again without knowing what is queued could run a task twice)."""
        try:
            entries = read_json(self.path)
        except (OSError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            entries = reason
        if not (isinstance(entries, dict) and all(
                isinstance(e, dict) and isinstance(e.get("task"), str) for e in entries.values())):
            what = entries if isinstance(entries, str) else "not a map of run key -> task"
            raise SlurmUnavailable(f"{self.path} is torn or malformed ({what:.80}); check "
                                   "`squeue` for the tasks it listed, then remove it")
        return entries

    def save(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.entries)

    def log_path(self, key, kind="log.err"):
        """submitit's file of the task of ``key``: ``<logs>/<task>_0_<kind>``."""
        return self.logs / f"{self.entries[key]['task']}_0_{kind}"


def active_tasks():
    """``{"<array>_<i>": state}`` of this user's tasks in ``squeue`` (one call, arrays expanded)."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    except subprocess.CalledProcessError as err:
        last = (err.stderr or "").strip().splitlines()[-1:] or [f"exit status {err.returncode}"]
        raise SlurmUnavailable(f"squeue failed: {last[0]}") from None
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmUnavailable(f"squeue failed: {err}") from None
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def partition_specs(specs, store, queue, active):
    """Split ``specs`` into ``(cached, queued, todo)``: a run is never submitted twice.

    ``cached``: its record exists. ``queued``: its array task (``queue[key]["task"]``) is still
    in ``active`` (pending, running or requeued). ``todo``: the rest, to submit now.
    """
    cached, queued, todo = [], [], []
    for spec in specs:
        if store.done(spec.key):
            cached.append(spec)
        elif spec.key in queue and queue[spec.key]["task"] in active:
            queued.append(spec)
        else:
            todo.append(spec)
    return cached, queued, todo


class RunTask:
    """One array task: train one run with the local executor's function.

    ``checkpoint`` (submitit's hook, called on ``USR2`` at preemption or time-out) resubmits
    the same call; the requeued task resumes from the trainer's last epoch checkpoint.
    """

    def __call__(self, config, key, root, data_dir, threads=None):
        # ``threads`` (the task's CPUs) is kept for tasks queued by older versions; the
        # numbers use the run's own ``config["threads"]``
        return train_one(config, key, root, data_dir, False)

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def submit(specs, out_dir, options, *, data_dir=None, job_name="varshift"):
    """Submit ``specs`` as one job array; record their tasks in ``queue.json``; return the ids."""
    import submitit

    queue = _Queue(out_dir)
    check_script_value("--out", os.path.abspath(queue.logs))  # the script's --output/--error
    store = RunStore(out_dir)
    store.root.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=str(queue.logs), max_num_timeout=1000)
    named = {k: v for k, v in options.extra.items() if k in NAMED}
    extra = {k: v for k, v in options.extra.items() if k not in NAMED}
    named.setdefault("cpus_per_task", options.threads)
    named.setdefault("job_name", job_name)
    executor.update_parameters(time=options.time_per_run, partition=options.partition,
                               gpus_per_node=options.gpus_per_run or None,
                               array_parallelism=options.max_parallel,
                               additional_parameters=extra or None, **named)
    threads = int(named["cpus_per_task"])
    with executor.batch():
        jobs = [executor.submit(RunTask(), s.config, s.key, str(store.root), data_dir, threads)
                for s in specs]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for spec, job in zip(specs, jobs, strict=True):
        queue.entries[spec.key] = {"task": job.job_id, "label": spec.label, "submitted_at": now}
    queue.save()
    return [job.job_id for job in jobs]


class _NoGlobals(pickle.Unpickler):
    """Reads a pickle of plain values (tuples, strings, numbers) and refuses any global."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id")


def read_task_status(path):
    """``(status, message)`` of submitit's ``<task>_0_result.pkl``, never running its content.

    submitit writes ``("success", result)`` or ``("error", traceback text)``; both are plain
    values, read by an unpickler that refuses every global (a class, a function: anything
    that could run). Returns ``None`` for a file that is not such a pair (torn, or holding
    anything else); the message is the traceback's last line, control characters replaced.
    """
    try:
        with open(path, "rb") as fh:
            status, payload = _NoGlobals(io.BytesIO(fh.read(1 << 20))).load()
    except Exception:  # torn, refused or not a pair: nothing to say
        return None
    if not isinstance(status, str):
        return None
    lines = [ln for ln in str(payload).strip().splitlines() if ln.strip()] \
        if isinstance(payload, str) else []
    return status, _CONTROL.sub("?", lines[-1]) if lines else ""


def _failure(queue, key):
    """One line on why the task of ``key`` ended without a record, with its log's path."""
    entry = queue.entries[key]
    reason = "ended without a record (cancelled or killed)"
    status = read_task_status(queue.log_path(key, "result.pkl"))
    if status is not None and status[0] == "error" and status[1]:
        reason = status[1]
    return f"SLURM task {entry['task']} {reason}; log: {queue.log_path(key)}"


def wait(specs, out_dir, *, on_done=None, failures=None, on_poll=None, poll_s=None):
    """Follow the queued runs of ``specs`` until each has a record or its task has ended.

    Calls ``on_done(spec, wall_s, False)`` when a record appears (or the run failed) and
    ``on_poll("done d, failed f, running r, pending p")`` after each look at the queue. A
    failed run goes to ``failures`` as ``{label: "... ; log: PATH"}``; the others go on.
    """
    poll_s = poll_seconds(poll_s)
    store, queue = RunStore(out_dir), _Queue(out_dir)
    left = {s.key: s for s in specs if s.key in queue.entries}
    counts = {"done": 0, "failed": 0}
    while left:
        try:
            active = active_tasks()
        except SlurmUnavailable as err:  # a busy controller: look again later
            if on_poll:
                on_poll(f"{err}; retrying")
            time.sleep(poll_s)
            continue
        for key, spec in list(left.items()):
            if store.done(key):
                counts["done"] += 1
                wall = store.load(key).get("wall_time_s") or 0.0
            elif queue.entries[key]["task"] not in active:
                counts["failed"] += 1
                wall = 0.0
                if failures is not None:
                    failures[spec.label] = _failure(queue, key)
            else:
                continue
            del left[key]
            if on_done:
                on_done(spec, wall, False)
        running = sum(active.get(queue.entries[k]["task"]) in RUNNING_STATES for k in left)
        if on_poll:
            on_poll(f"done {counts['done']}, failed {counts['failed']}, running {running}, "
                    f"pending {len(left) - running}")
        if left:
            time.sleep(poll_s)
    return counts


def execute_slurm(specs, out_dir, options, *, data_dir=None, force=False, attach=False,
                  on_done=None, failures=None, on_poll=None, job_name="varshift"):
    """Submit what is neither cached nor queued (nothing with ``attach``), then :func:`wait`.

    Ctrl-C stops waiting, not the jobs: the message says how to attach again or cancel.
    """
    _check_available()
    check_script_value("--out", os.path.abspath(out_dir))
    if force:
        raise SlurmUnavailable("--force is not supported with --executor slurm: delete the "
                               "runs to retrain from <out>/runs instead")
    store, queue = RunStore(out_dir), _Queue(out_dir)
    cached, queued, todo = partition_specs(specs, store, queue.entries, active_tasks())
    for spec in cached:
        if on_done:
            on_done(spec, None, True)
    if todo and not attach:
        submit(todo, out_dir, options, data_dir=data_dir, job_name=job_name)
        queued = queued + todo
    elif todo and failures is not None:
        for spec in todo:
            failures[spec.label] = "not queued (--attach submits nothing)"
            if on_done:
                on_done(spec, 0.0, False)
    try:
        return wait(queued, out_dir, on_done=on_done, failures=failures, on_poll=on_poll)
    except KeyboardInterrupt:
        tasks = _Queue(out_dir).entries
        arrays = sorted({tasks[s.key]["task"].split("_")[0] for s in queued})
        print(f"reproduce: stopped waiting; the SLURM jobs keep running ({', '.join(arrays)}). "
              "Follow them again with the same command and --attach, or cancel them with "
              f"`scancel {' '.join(arrays)}`", file=sys.stderr, flush=True)
        raise
