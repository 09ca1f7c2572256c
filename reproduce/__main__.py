"""``python -m reproduce list | plan | run [TARGET ...] | report | publish | power``: every artefact
of the paper.

``power --profile P`` prints each primary claim's power at P's seeds and the seeds it needs for
80%, at the effect and spread of the pilot's published records (:mod:`reproduce.power`).

``bundle --profile gpu --out DIR`` writes a folder that runs a profile on a bare GPU machine
(see :mod:`reproduce.bundle` and ``python -m reproduce bundle --help``).

Options (before or after the command): ``--profile smoke|quick|paper`` (default quick),
``--out DIR`` (default ``results/<profile>/``), ``--jobs N``, ``--gpus 0,1``, ``--seeds K``,
``--data-dir DIR``, ``--force``, ``--backend tensorflow|jax|torch`` (default: the profile's,
else ``KERAS_BACKEND``, else tensorflow; part of every run's key), ``--dest DIR`` (``publish``: default
``docs/results``); on a
SLURM cluster ``--executor slurm`` with ``--partition``, ``--gpus-per-run``, ``--time-per-run``,
``--max-parallel``, ``--slurm-arg KEY=VALUE``, ``--attach``. Errors in the arguments print one
line and exit with status 2; a failed target (or ``publish`` of an incomplete reproduction)
exits with status 1; Ctrl-C (or SIGTERM, or SIGHUP: a closed terminal) stops the workers,
keeps every finished run, writes the manifest (a second Ctrl-C waits until it is written) and
exits with status 130. One ``run`` at a time per ``--out`` (``<out>/.lock``): a second one names
the holder and exits with status 2. Before any work: ``KERAS_BACKEND``, ``VARSHIFT_CHECKPOINT_S``
and ``VARSHIFT_SLURM_POLL_S`` are checked, ``--seeds`` is at most :data:`MAX_SEEDS` and
``--jobs`` at most :data:`MAX_JOBS`, and ``run`` writes, syncs and measures 1 MiB in ``--out``
(a full disk is named, not met later by the runs).
"""

from __future__ import annotations

import argparse
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise _Exit(f"{message} (see `python -m reproduce --help`)")


def _parser():
    p = _Parser(prog="python -m reproduce",
                description="Regenerate every figure and table of Li et al. (CVPR 2019).")
    p.add_argument("command", choices=("list", "plan", "run", "report", "publish", "power"),
                   help="list the targets, print the plan's cost, run (train + build) them, "
                        "write the report, publish the finished run records to "
                        "docs/results/<profile>/, or print the power of the primary claims at "
                        "the profile's seeds (from the pilot's records)")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help=f"targets (default: all): {', '.join(TARGETS)}")
    p.add_argument("--profile", default="quick", help="smoke | quick (default) | paper")
    p.add_argument("--out", default=None, help="output folder (default results/<profile>/)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel training processes (default: the profile's, 2 for smoke/quick)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (profile default)")
    p.add_argument("--data-dir", default=None, help="where the data sets are (or go)")
    p.add_argument("--force", action="store_true", help="retrain cached runs, rebuild everything")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="Keras backend of the runs (default: the profile's, else $KERAS_BACKEND, "
                        "else tensorflow); "
                        "recorded in the manifest and in every run's key")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: build the targets from the runs cached so far "
                        "(verdicts say how many runs they rest on)")
    _executor_arguments(p)
    p.add_argument("--dest", default=None,
                   help="publish: folder of published profiles (default docs/results)")
    return p


def _executor_arguments(p):
    g = p.add_argument_group("where the runs train")
    g.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local worker processes (default) or one SLURM job array (submitit)")
    g.add_argument("--gpus", default=None,
                   help="local: GPU ids, one worker each, e.g. 0,1,2,3 (default: every GPU "
                        "visible, shared round-robin by --jobs workers)")
    g.add_argument("--partition", default=None, help="slurm: partition (default: the cluster's)")
    g.add_argument("--gpus-per-run", type=int, default=1, help="slurm: GPUs per task (default 1)")
    g.add_argument("--time-per-run", default="24:00:00",
                   help="slurm: time limit of one task, [D-]HH:MM:SS (a longer run requeues "
                        "and resumes); default 24:00:00")
    g.add_argument("--max-parallel", type=int, default=64,
                   help="slurm: array tasks running at once (default 64)")
    g.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="slurm: any further sbatch option, e.g. account=abc, cpus-per-task=8")
    g.add_argument("--attach", action="store_true",
                   help="slurm: submit nothing, follow the runs queued by an earlier `run`")


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
    if args.gpus_per_run < 0:
        raise _Exit(f"--gpus-per-run must be 0 or more; received {args.gpus_per_run}")
    if args.max_parallel < 1:
        raise _Exit(f"--max-parallel must be a positive integer; received {args.max_parallel}")
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
    try:
        profile = get_profile(args.profile)
    except KeyError as err:
        raise _Exit(err.args[0]) from None
    if args.seeds is not None:
        if not 1 <= args.seeds <= MAX_SEEDS:
            raise _Exit(f"--seeds must be a positive integer of at most {MAX_SEEDS}; "
                        f"received {args.seeds}")
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
    if args.jobs is None:
        args.jobs = len(args.gpu_ids) if args.gpu_ids else profile.jobs
    if not 1 <= args.jobs <= MAX_JOBS:
        raise _Exit(f"--jobs must be a positive integer of at most {MAX_JOBS}; received "
                    f"{args.jobs}")
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        raise _Exit(f"unknown target {unknown[0]!r}; expected one of: {', '.join(TARGETS)}")
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
    from reproduce.cost import format_cost

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


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Ctrl-C and `kill` both stop cleanly (workers terminated, finished runs kept), also when
    # started in the background by a shell that ignores SIGINT
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        if hasattr(signal, "SIGHUP"):  # a closed terminal: stop like Ctrl-C, keep what finished
            signal.signal(signal.SIGHUP, _interrupt)
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if not argv:  # no command: one line naming the commands (TARGET is optional)
            raise _Exit("no command given; usage: python -m reproduce "
                        "{list,plan,run,report,publish,bundle} [TARGET ...] [options] "
                        "(see `python -m reproduce --help`)")
        if argv[0] == "bundle":  # its own options: reproduce.bundle
            from reproduce import bundle

            try:
                return bundle.main(argv[1:])
            except bundle.BundleError as err:
                raise _Exit(str(err), err.code) from None
        args = _parser().parse_intermixed_args(argv)
        profile, targets, out = _check_args(args)
        if args.command == "list":
            return cmd_list(profile, targets)
        if args.command == "plan":
            return cmd_plan(profile, targets)
        if args.command == "run":
            _set_backend_environment(profile)
            return cmd_run(profile, targets, out, args)
        if args.command == "publish":
            return cmd_publish(profile, out, args.dest)
        if args.command == "power":
            return cmd_power(profile)
        return cmd_report(profile, targets, out)
    except _Exit as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("reproduce: interrupted", file=sys.stderr)
        return INTERRUPTED
    except OSError as err:  # the machine's fault (disk full, permissions): the cause, one line
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"reproduce: error: {err.strerror or err}{where}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
