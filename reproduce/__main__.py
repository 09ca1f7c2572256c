"""``python -m reproduce list | plan | run | report | publish | power | bundle``: every artefact
of the paper (``python -m reproduce COMMAND --help`` for each command's options).

``power --profile P`` prints each primary claim's power at P's seeds and the seeds it needs for
80%, at the effect and spread of the pilot's published records (:mod:`reproduce.power`).

``bundle --profile gpu --out DIR`` writes a folder that runs a profile on a bare GPU machine
(:mod:`reproduce.bundle`).

``run`` and ``report`` take the same options (so that one command line serves both): ``--profile``
(default quick), ``--out DIR`` (default ``results/<profile>/``), ``--jobs N``, ``--gpus 0,1``,
``--seeds K``, ``--data-dir DIR``, ``--force``, ``--backend tensorflow|jax|torch`` (default: the
profile's, else ``KERAS_BACKEND``, else tensorflow; part of every run's key); on a SLURM cluster
``--executor slurm`` with ``--partition``, ``--gpus-per-run``, ``--time-per-run``,
``--max-parallel``, ``--slurm-arg KEY=VALUE``, ``--attach``. Errors in the arguments print one
line and exit with status 2; a failed target (or ``publish`` of an incomplete reproduction)
exits with status 1; Ctrl-C (or SIGTERM, or SIGHUP: a closed terminal) stops the workers,
keeps every finished run, writes the manifest (a second Ctrl-C waits until it is written) and
exits with status 130. One ``run`` at a time per ``--out`` (``<out>/.lock``,
:class:`~reproduce.lock.OutLock`): a second one names the holder and exits with status 2.
Before any work: ``KERAS_BACKEND``, ``VARSHIFT_CHECKPOINT_S`` and ``VARSHIFT_SLURM_POLL_S`` are
checked, ``--seeds`` is at most :data:`MAX_SEEDS` and ``--jobs`` at most :data:`MAX_JOBS`, and
``run`` writes, syncs and measures 1 MiB in ``--out`` (a full disk is named, not met later by
the runs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import click

from reproduce.profiles import PROFILES, get_profile
from reproduce.registry import TARGETS, build_target, get_target, plan
from varshift.train.config import BACKENDS

USAGE_ERROR, FAILED, INTERRUPTED = 2, 1, 130
#: the module each ``--backend`` needs
_BACKEND_MODULE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
BUNDLED_DATA = {"digits", "synthetic"}  # shipped with scikit-learn / generated: nothing to find
#: the most seeds and local worker processes one invocation accepts (the paper uses 5 seeds; a
#: power analysis asks for tens, not thousands)
MAX_SEEDS, MAX_JOBS = 1000, 1024


class _Exit(Exception):
    def __init__(self, message, code=USAGE_ERROR):
        super().__init__(message)
        self.code = code


def _check_executor(args):
    """Parse ``--gpus`` and the SLURM options into ``args.gpu_ids`` / ``args.slurm``."""
    args.gpu_ids, args.slurm = None, None
    if args.gpus is not None:
        ids = [g.strip() for g in args.gpus.split(",") if g.strip()]
        if not ids or not all(g.isdigit() for g in ids):
            raise _Exit(f"--gpus must be GPU ids such as 0,1,2,3; received {args.gpus!r}")
        args.gpu_ids = ids
    if args.executor != "slurm":
        return
    from reproduce import slurm

    if args.force:
        raise _Exit("--force is not supported with --executor slurm; delete <out>/runs/<key> "
                    "of the runs to retrain")
    try:
        minutes = slurm.parse_time(args.time_per_run)
        extra = slurm.parse_slurm_args(args.slurm_arg)
        cpus = extra.pop("cpus_per_task", None)
        if cpus is not None and not (cpus.isdigit() and int(cpus) > 0):
            raise ValueError(f"--slurm-arg cpus-per-task must be a positive integer; "
                             f"received {cpus!r}")
        args.slurm = slurm.SlurmOptions(partition=args.partition, gpus_per_run=args.gpus_per_run,
                                        time_per_run=minutes, max_parallel=args.max_parallel,
                                        extra=extra, cpus_per_run=int(cpus) if cpus else None)
        # the log folder under --out is written into the job script
        slurm.check_script_value("--out", os.path.abspath(args.out or "results"))
    except ValueError as err:
        raise _Exit(str(err)) from None
    if args.command == "run":  # submitit and sbatch are there, before anything is written
        try:
            slurm._check_available()
            slurm._Queue(args.out or Path("results") / args.profile)  # its queue is readable
        except slurm.SlurmUnavailable as err:
            raise _Exit(str(err)) from None


def _check_environment():
    """Every environment variable ``reproduce`` reads, checked before any work: one line."""
    from reproduce import slurm
    from reproduce.executors import checkpoint_seconds

    name = os.environ.get("KERAS_BACKEND", "")
    if name and name not in BACKENDS:
        raise _Exit(f"KERAS_BACKEND must be one of {', '.join(BACKENDS)} (or unset); "
                    f"received {name!r}")
    try:
        checkpoint_seconds()
        slurm.poll_seconds()
    except ValueError as err:
        raise _Exit(str(err)) from None


def _check_args(args):
    _check_environment()
    profile = get_profile(args.profile)  # a name of PROFILES: click.Choice
    if args.seeds is not None:  # in [1, MAX_SEEDS]: click.IntRange
        profile = profile.with_seeds(args.seeds)
    from reproduce.plan import default_backend

    backend = args.backend or profile.backend or default_backend()
    if args.command == "run" and importlib.util.find_spec(_BACKEND_MODULE[backend]) is None:
        raise _Exit(f"--backend {backend} needs the {_BACKEND_MODULE[backend]} package, which is "
                    "not installed here")
    profile = dataclasses.replace(profile, backend=backend)
    if args.out is not None and not args.out.strip():
        raise _Exit("--out must name a folder; received '' (leave it out for "
                    f"results/{profile.name}/)")
    _check_executor(args)
    if args.jobs is None:  # an explicit --jobs is in [1, MAX_JOBS]: click.IntRange
        args.jobs = len(args.gpu_ids) if args.gpu_ids else profile.jobs
    targets = [t for t in TARGETS if t in args.targets] if args.targets else list(TARGETS)
    out = Path(args.out) if args.out else Path("results") / profile.name
    return profile, targets, out


#: bytes ``run`` must be able to write into ``--out`` before it starts (records, checkpoints)
ROOM_BYTES = 1 << 20


def _check_writable(out, room=0):
    """``--out`` can be created and written: ``room`` bytes of it, where given, written, synced
    and read back in size (a short write on a nearly full disk is caught, not just an error)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if room and shutil.disk_usage(out).free < room:
            raise _Exit(f"--out {str(out)!r} has {shutil.disk_usage(out).free} bytes free; "
                        f"expected at least {room} (records and checkpoints)")
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".write-test-")
        try:
            if room:
                written = os.write(fd, b"\0" * room)
                os.fsync(fd)
                stored = os.fstat(fd).st_size
                if written != room or stored != room:
                    raise _Exit(f"--out {str(out)!r} has no room for {room} bytes: a test write "
                                f"stored {min(written, stored)} (a full disk or a file size "
                                "limit); free some space or use another --out")
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as err:
        reason = err.strerror or str(err)
        raise _Exit(f"cannot write to --out {str(out)!r}: {reason}") from None


def _check_data(profile, data_dir):
    """Data that is not bundled (Fashion-MNIST, CIFAR) must load: otherwise fail early, one line.

    The loaders look on disk first (``--data-dir``, Keras' cache, Debian's package) and download
    only where the machine is online; their error names the remedies.
    """
    if set(profile.data) <= BUNDLED_DATA:
        return
    from varshift import data

    for name in profile.data:
        try:
            data.load(name, data_dir=data_dir)
        except Exception as err:  # any failure to find/download the data
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise _Exit(f"profile {profile.name!r} needs {name} but it could not be loaded "
                        f"(data dir {data_dir or 'default'}): {first}", FAILED) from None


def cmd_list(profile, targets):
    print(f"profile {profile.name}: {profile.description}")
    for name in PROFILES:
        mark = "*" if name == profile.name else " "
        print(f"  {mark} {name}: {PROFILES[name].description}")
    print("targets (training runs needed at this profile):")
    try:
        counts = {t: len(get_target(t).runs(profile)) for t in targets}
        total = len(plan(profile, targets))
    except Exception:  # the networks module is not importable: still list the targets
        counts, total = {}, "?"
    for t in targets:
        print(f"  {t:7s} {str(counts.get(t, '?')):>4s} runs  {get_target(t).TITLE}")
    print(f"distinct training runs in the plan: {total}")
    return 0


def cmd_plan(profile, targets):
    from reproduce.budget import format_cost

    print("\n".join(format_cost(profile, plan(profile, targets))))
    return 0


def _execute(specs, out, args, on_done, on_poll):
    """Train the runs not cached yet, locally or as a SLURM job array; ``{label: message}``."""
    from reproduce.executors import execute_plan

    failures = {}
    if args.executor == "slurm":
        from reproduce import slurm

        try:
            slurm.execute_slurm(specs, out, args.slurm, data_dir=args.data_dir, force=args.force,
                                attach=args.attach, on_done=on_done, failures=failures,
                                on_poll=on_poll, job_name=f"varshift-{args.profile}")
        except slurm.SlurmUnavailable as err:
            raise _Exit(str(err), FAILED) from None
    else:
        execute_plan(specs, out, data_dir=args.data_dir, jobs=args.jobs, force=args.force,
                     on_done=on_done, failures=failures, gpus=args.gpu_ids)
    return failures


def _set_backend_environment(profile):
    """``KERAS_BACKEND`` and the thread settings of the profile's runs, before Keras is imported
    in this process (the workers set them themselves)."""
    from reproduce.executors import worker_environment

    if "keras" in sys.modules:
        return
    env = worker_environment({"backend": profile.backend, "threads": profile.threads})
    os.environ.update(env)


def _failed_runs_of(name, profile, failed):
    """The first run of target ``name`` that failed now (``failed``: key -> (label, message))."""
    try:
        keys = [s.key for s in get_target(name).runs(profile)]
    except Exception:  # the target cannot even plan: its build says why
        return None
    for key in keys:
        if key in failed:
            return failed[key]
    return None


def cmd_run(profile, targets, out, args):
    from reproduce.lock import LockHeld, OutLock

    _check_writable(out, ROOM_BYTES)
    lock = OutLock(out)
    try:
        lock.acquire()
    except LockHeld as err:
        raise _Exit(str(err)) from None
    except OSError as err:
        raise _Exit(f"cannot lock --out {str(out)!r}: {err.strerror or err}") from None
    try:
        return _run_locked(profile, targets, out, args)
    finally:
        lock.release()


def _build_targets(profile, targets, out, args, bar, failed, failures):
    """Build each target; one whose run failed now names that run's error instead."""
    from tqdm import tqdm

    for name in targets:
        bar.set_postfix_str(f"building {name}")
        cause = _failed_runs_of(name, profile, failed)
        if cause is not None:  # the real cause, not "has not been trained"
            failures[name] = f"not built: its run {cause[0]} failed ({cause[1]})"
            tqdm.write(f"reproduce: target {name} {failures[name]}", file=sys.stderr)
            bar.update(1)
            continue
        try:
            build_target(name, profile, out, data_dir=args.data_dir, partial=args.cached_only)
        except KeyboardInterrupt:
            raise
        except Exception as err:  # one target failing must not hide the others
            failures[name] = f"{type(err).__name__}: {err}".splitlines()[0]
            tqdm.write(f"reproduce: target {name} failed: {failures[name]}", file=sys.stderr)
        bar.update(1)


def _run_locked(profile, targets, out, args):
    from tqdm import tqdm

    from reproduce.manifest import write_manifest
    from reproduce.store import RunStore

    start = time.time()
    specs = plan(profile, targets)
    store = RunStore(out)
    if args.cached_only:
        specs = [s for s in specs if store.find(s) is not None]
    if specs and not args.cached_only:  # the theory targets need no data set
        _check_data(profile, args.data_dir)
    bar = tqdm(total=len(specs) + len(targets), unit="step", file=sys.stderr, dynamic_ncols=True,
               desc=f"reproduce {profile.name}", smoothing=0.1,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
    failures, interrupted = {}, False

    def on_done(spec, wall, cached):
        bar.set_postfix_str(f"{'cached' if cached else f'{wall:.0f}s'}: {spec.label}"[:60])
        bar.update(1)

    try:
        failed = {}
        if args.cached_only:
            bar.update(len(specs))
        else:
            run_failures = _execute(specs, out, args, on_done, bar.set_postfix_str)
            by_label = {s.label: s.key for s in specs}
            for label, message in run_failures.items():
                failures[f"run {label}"] = message
                failed[by_label.get(label, label)] = (label, message)
                tqdm.write(f"reproduce: run {label} failed: {message}", file=sys.stderr)
        _build_targets(profile, targets, out, args, bar, failed, failures)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with _signals_deferred() as caught:  # a second Ctrl-C waits for the manifest
            bar.close()
            try:
                write_manifest(out, profile, targets=[t for t in targets if t not in failures],
                               specs=specs, store=store, started=start,
                               wall_time_s=time.time() - start, interrupted=interrupted,
                               failures=failures, jobs=args.jobs, executor=args.executor)
            except OSError as err:
                print(f"reproduce: error: cannot write {out / 'manifest.json'}: "
                      f"{err.strerror or err}", file=sys.stderr)
                return FAILED
        interrupted = interrupted or bool(caught)
    if interrupted:
        done = sum(store.done(s.key) for s in specs)
        print(f"reproduce: interrupted; {done}/{len(specs)} finished runs kept in {out / 'runs'}; "
              "run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
    built = [t for t in targets if t not in failures]
    print(f"reproduce: {len(built)}/{len(targets)} targets built in {out} "
          f"({time.time() - start:.0f} s)", file=sys.stderr)
    return FAILED if failures else 0


def _check_records(profile, targets, out):
    """``report`` must not pass on stale results: every record the targets rest on that is
    damaged (or was moved aside and not trained again) is named, exit 2."""
    from reproduce.store import RunStore

    store = RunStore(out)
    bad = []
    for spec in plan(profile, targets):
        if store.find(spec) is None and "damaged" in store.why_missing(spec):
            bad.append(f"{spec.label} ({spec.key}) {store.why_missing(spec)}")
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise _Exit(f"the results in {str(out)!r} rest on a damaged run record: run {bad[0]}"
                    f"{more}; `python -m reproduce run --profile {profile.name} --out {out}` "
                    "retrains it")


def cmd_report(profile, targets, out):
    from reproduce.report import ReportInputError, check_inputs, write_report

    if not any((out / t / "result.json").is_file() for t in targets):  # it would test nothing
        run = " ".join(["python -m reproduce run", *(targets if len(targets) < len(TARGETS) else []),
                        f"--profile {profile.name}",
                        *([] if out == Path("results") / profile.name else [f"--out {out}"])])
        raise _Exit(f"no results in {str(out)!r} to report on; `{run}` writes them")
    _check_records(profile, targets, out)
    try:
        check_inputs(out, targets, profile)  # every file read, before anything is written
    except ReportInputError as err:
        raise _Exit(str(err)) from None
    _check_writable(out)
    rows = write_report(out, profile, targets)
    from reproduce.report import closing_note

    print(closing_note(out, rows))
    print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0


def cmd_publish(profile, out, dest):
    from reproduce.publish import DEFAULT_DEST, PublishError, publish

    try:
        folder = publish(out, profile, Path(dest) if dest else DEFAULT_DEST)
    except PublishError as err:
        raise _Exit(str(err), USAGE_ERROR if profile.name == "smoke" else FAILED) from None
    print(f"published {profile.name}: {folder}", file=sys.stderr)
    return 0


def cmd_power(profile):
    """The power analysis of the primary claims at ``profile``'s seeds (:mod:`reproduce.power`)."""
    from reproduce.power import format_power, pilot_rows, power_table

    rows = pilot_rows()
    table = power_table(rows, profile.seeds, get_profile("paper").seeds)
    print("\n".join(format_power(table, profile.name)))
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_deferred():
    """Ctrl-C, SIGTERM and SIGHUP are noted, not raised, until the block has finished (its file
    is then complete); yields the list of the signals caught meanwhile."""
    caught = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    names = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in names}
    try:
        yield caught
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------ the commands
#: the value of every option a command does not take (the helpers above read one namespace)
_DEFAULTS = {"targets": (), "profile": "quick", "out": None, "jobs": None, "seeds": None,
             "data_dir": None, "force": False, "backend": None, "cached_only": False,
             "executor": "local", "gpus": None, "partition": None, "gpus_per_run": 1,
             "time_per_run": "24:00:00", "max_parallel": 64, "slurm_arg": (), "attach": False,
             "dest": None}

_OPTIONS = {
    "targets": click.argument("targets", nargs=-1, type=click.Choice(list(TARGETS)),
                              metavar="[TARGET]..."),
    "profile": click.option("--profile", type=click.Choice(list(PROFILES)), default="quick",
                            show_default=True, help="the profile: networks, sizes, seeds, budget"),
    "out": click.option("--out", default=None,
                        help="output folder (default results/<profile>/)"),
    "jobs": click.option("--jobs", type=click.IntRange(1, MAX_JOBS), default=None,
                         help="parallel training processes (default: the profile's, or one per "
                              "--gpus id)"),
    "seeds": click.option("--seeds", type=click.IntRange(1, MAX_SEEDS), default=None,
                          help="number of seeds (default: the profile's)"),
    "data_dir": click.option("--data-dir", default=None, help="where the data sets are (or go)"),
    "force": click.option("--force", is_flag=True, help="retrain cached runs, rebuild everything"),
    "backend": click.option("--backend", type=click.Choice(BACKENDS), default=None,
                            help="Keras backend of the runs (default: the profile's, else "
                                 "$KERAS_BACKEND, else tensorflow); part of every run's key"),
    "cached_only": click.option("--cached-only", is_flag=True,
                                help="train nothing: build the targets from the runs cached so far "
                                     "(verdicts say how many runs they rest on)"),
    "executor": click.option("--executor", type=click.Choice(["local", "slurm"]), default="local",
                             show_default=True,
                             help="local worker processes or one SLURM job array (submitit)"),
    "gpus": click.option("--gpus", default=None,
                         help="local: GPU ids, one worker each, e.g. 0,1,2,3 (default: every GPU "
                              "visible, shared round-robin by --jobs workers)"),
    "partition": click.option("--partition", default=None,
                              help="slurm: partition (default: the cluster's)"),
    "gpus_per_run": click.option("--gpus-per-run", type=click.IntRange(min=0), default=1,
                                 show_default=True, help="slurm: GPUs per task"),
    "time_per_run": click.option("--time-per-run", default="24:00:00", show_default=True,
                                 help="slurm: time limit of one task, [D-]HH:MM:SS (a longer run "
                                      "requeues and resumes)"),
    "max_parallel": click.option("--max-parallel", type=click.IntRange(min=1), default=64,
                                 show_default=True, help="slurm: array tasks running at once"),
    "slurm_arg": click.option("--slurm-arg", multiple=True, metavar="KEY=VALUE",
                              help="slurm: any further sbatch option, e.g. account=abc, "
                                   "cpus-per-task=8 (repeatable)"),
    "attach": click.option("--attach", is_flag=True,
                           help="slurm: submit nothing, follow the runs queued by an earlier "
                                "`run`"),
    "dest": click.option("--dest", default=None,
                         help="folder of published profiles (default docs/results)"),
}

#: the options of ``run``, also taken by ``report`` so that one command line serves both
RUN_OPTIONS = ("targets", "profile", "out", "jobs", "seeds", "data_dir", "force", "backend",
               "cached_only", "executor", "gpus", "partition", "gpus_per_run", "time_per_run",
               "max_parallel", "slurm_arg", "attach")


def _with(*names):
    """Decorate a command with the options ``names`` of :data:`_OPTIONS`."""
    def decorate(f):
        for name in reversed(names):
            f = _OPTIONS[name](f)
        return f
    return decorate


def _invocation(command, params):
    """``(args, profile, targets, out)`` of one command: its options over :data:`_DEFAULTS`,
    checked (:func:`_check_args`) before any work."""
    args = SimpleNamespace(**{**_DEFAULTS, **params, "command": command})
    args.slurm_arg = list(args.slurm_arg)
    return (args, *_check_args(args))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Regenerate every figure and table of Li et al. (CVPR 2019)."""


@cli.command("list")
@_with("targets", "profile", "seeds", "backend")
def list_command(**params):
    """List the profiles and the targets with their training runs."""
    _, profile, targets, _ = _invocation("list", params)
    return cmd_list(profile, targets)


@cli.command("plan")
@_with("targets", "profile", "seeds", "backend")
def plan_command(**params):
    """Print the plan's runs, epochs and cost."""
    _, profile, targets, _ = _invocation("plan", params)
    return cmd_plan(profile, targets)


@cli.command("run")
@_with(*RUN_OPTIONS)
def run_command(**params):
    """Train the runs of the targets (cached runs are kept) and build the targets."""
    args, profile, targets, out = _invocation("run", params)
    _set_backend_environment(profile)
    return cmd_run(profile, targets, out, args)


@cli.command("report")
@_with(*RUN_OPTIONS)
def report_command(**params):
    """Write the report of the built targets (takes the options of run, so that one command
    line serves both; those of training are not used)."""
    _, profile, targets, out = _invocation("report", params)
    return cmd_report(profile, targets, out)


@cli.command("publish")
@_with("profile", "out", "seeds", "backend", "dest")
def publish_command(**params):
    """Publish the finished run records to docs/results/<profile>/."""
    args, profile, _, out = _invocation("publish", params)
    return cmd_publish(profile, out, args.dest)


@cli.command("power")
@_with("profile", "seeds")
def power_command(**params):
    """Print the power of the primary claims at the profile's seeds (from the pilot's records)."""
    _, profile, _, _ = _invocation("power", params)
    return cmd_power(profile)


@cli.command("bundle")
@click.option("--profile", type=click.Choice(list(PROFILES)), default="gpu", show_default=True,
              help="profile to bundle")
@click.option("--out", required=True, help="the bundle's folder (new, empty or an old bundle)")
@click.option("--python-version", default="3.12", show_default=True,
              help="CPython version of the target machine's wheels ('here' for this "
                   "interpreter's)")
@click.option("--wheel-cache", default=None,
              help="where downloaded wheels are kept (default $XDG_CACHE_HOME/varshift/wheels, "
                   "else ~/.cache/varshift/wheels)")
@click.option("--offline", is_flag=True,
              help="never run pip download: every wheel must be in the cache")
@click.option("--data-dir", default=None, help="where the data set's files are")
@click.option("--minutes", type=click.FloatRange(1, 600), default=None,
              help="run.sh's default wall-clock budget in minutes")
@click.option("--jobs", type=click.IntRange(1, MAX_JOBS), default=None,
              help="run.sh's default worker processes (default: the profile's)")
def bundle_command(**params):
    """Write a folder that runs a profile on a bare GPU machine (JAX, no TensorFlow, no
    network)."""
    from reproduce import bundle

    try:
        return bundle.main(**params)
    except bundle.BundleError as err:
        raise _Exit(str(err), err.code) from None


COMMANDS = tuple(cli.commands)


def _install_signal_handlers():
    """Ctrl-C and ``kill`` both stop cleanly (workers terminated, finished runs kept), also when
    started in the background by a shell that ignores SIGINT; a closed terminal (SIGHUP) too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, _interrupt)


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _install_signal_handlers()
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        if not argv:  # no command: one line naming the commands (TARGET is optional)
            raise _Exit(f"no command given; usage: python -m reproduce {{{','.join(COMMANDS)}}} "
                        "[TARGET ...] [options] (see `python -m reproduce --help`)")
        code = cli.main(args=argv, prog_name="python -m reproduce", standalone_mode=False)
        return code or 0
    except click.exceptions.Exit as done:  # --help
        return done.exit_code
    except click.UsageError as err:  # one line instead of usage + message
        command = err.ctx.command_path if err.ctx is not None else "python -m reproduce"
        print(f"reproduce: error: {err.format_message()} (see `{command} --help`)",
              file=sys.stderr)
        return USAGE_ERROR
    except _Exit as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return err.code
    except (KeyboardInterrupt, click.Abort):
        print("reproduce: interrupted", file=sys.stderr)
        return INTERRUPTED
    except OSError as err:  # the machine's fault (disk full, permissions): the cause, one line
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"reproduce: error: {err.strerror or err}{where}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
