"""``python -m reproduce list | run [TARGET ...] | report``: every artefact of the paper.

Options (before or after the command): ``--profile smoke|quick|paper`` (default quick),
``--out DIR`` (default ``results/<profile>/``), ``--jobs N``, ``--seeds K``, ``--data-dir DIR``,
``--force``. Errors in the arguments print one line and exit with status 2; a failed target
exits with status 1; Ctrl-C exits with status 130 and keeps every finished run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from reproduce.profiles import PROFILES, get_profile
from reproduce.registry import TARGETS, build_target, get_target, plan

USAGE_ERROR, FAILED, INTERRUPTED = 2, 1, 130
BUNDLED_DATA = {"digits", "synthetic"}  # shipped with scikit-learn / generated: nothing to find


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
    p.add_argument("command", choices=("list", "run", "report"),
                   help="list the targets, run (train + build) them, or write the report")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help=f"targets (default: all): {', '.join(TARGETS)}")
    p.add_argument("--profile", default="quick", help="smoke | quick (default) | paper")
    p.add_argument("--out", default=None, help="output folder (default results/<profile>/)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel training processes (default: the profile's, 2 for smoke/quick)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (profile default)")
    p.add_argument("--data-dir", default=None, help="where the data sets are (or go)")
    p.add_argument("--force", action="store_true", help="retrain cached runs, rebuild everything")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: build the targets from the runs cached so far "
                        "(verdicts say how many runs they rest on)")
    return p


def _check_args(args):
    try:
        profile = get_profile(args.profile)
    except KeyError as err:
        raise _Exit(err.args[0]) from None
    if args.seeds is not None:
        if args.seeds < 1:
            raise _Exit(f"--seeds must be a positive integer; received {args.seeds}")
        profile = profile.with_seeds(args.seeds)
    if args.jobs is None:
        args.jobs = profile.jobs
    if args.jobs < 1:
        raise _Exit(f"--jobs must be a positive integer; received {args.jobs}")
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        raise _Exit(f"unknown target {unknown[0]!r}; expected one of: {', '.join(TARGETS)}")
    targets = [t for t in TARGETS if t in args.targets] if args.targets else list(TARGETS)
    out = Path(args.out) if args.out else Path("results") / profile.name
    return profile, targets, out


def _check_writable(out):
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".write-test-")
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


def cmd_run(profile, targets, out, args):
    from tqdm import tqdm

    from reproduce.manifest import write_manifest
    from reproduce.runs import RunStore, execute_plan

    _check_writable(out)
    start = time.time()
    specs = plan(profile, targets)
    if args.cached_only:
        specs = [s for s in specs if RunStore(out).find(s) is not None]
    if specs and not args.cached_only:  # the theory targets need no data set
        _check_data(profile, args.data_dir)
    store = RunStore(out)
    bar = tqdm(total=len(specs) + len(targets), unit="step", file=sys.stderr, dynamic_ncols=True,
               desc=f"reproduce {profile.name}", smoothing=0.1,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}] {postfix}")
    failures, interrupted = {}, False

    def on_done(spec, wall, cached):
        bar.set_postfix_str(f"{'cached' if cached else f'{wall:.0f}s'}: {spec.label}"[:60])
        bar.update(1)

    try:
        if args.cached_only:
            bar.update(len(specs))
        else:
            run_failures = {}
            execute_plan(specs, out, data_dir=args.data_dir, jobs=args.jobs, force=args.force,
                         on_done=on_done, failures=run_failures)
            for label, message in run_failures.items():
                failures[f"run {label}"] = message
                tqdm.write(f"reproduce: run {label} failed: {message}", file=sys.stderr)
        for name in targets:
            bar.set_postfix_str(f"building {name}")
            try:
                build_target(name, profile, out, data_dir=args.data_dir,
                             partial=args.cached_only)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # one target failing must not hide the others
                failures[name] = f"{type(err).__name__}: {err}".splitlines()[0]
                tqdm.write(f"reproduce: target {name} failed: {failures[name]}", file=sys.stderr)
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        write_manifest(out, profile, targets=[t for t in targets if t not in failures],
                       specs=specs, store=store, started=start, wall_time_s=time.time() - start,
                       interrupted=interrupted, failures=failures, jobs=args.jobs)
    if interrupted:
        done = sum(store.done(s.key) for s in specs)
        print(f"reproduce: interrupted; {done}/{len(specs)} finished runs kept in {out / 'runs'}; "
              "run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
    built = [t for t in targets if t not in failures]
    print(f"reproduce: {len(built)}/{len(targets)} targets built in {out} "
          f"({time.time() - start:.0f} s)", file=sys.stderr)
    return FAILED if failures else 0


def cmd_report(profile, targets, out):
    from reproduce.report import write_report

    if not any((out / t / "result.json").is_file() for t in targets):  # it would test nothing
        run = " ".join(["python -m reproduce run", *(targets if len(targets) < len(TARGETS) else []),
                        f"--profile {profile.name}",
                        *([] if out == Path("results") / profile.name else [f"--out {out}"])])
        raise _Exit(f"no results in {str(out)!r} to report on; `{run}` writes them")
    _check_writable(out)
    rows = write_report(out, profile, targets)
    width = max(len(r["target"]) for r in rows)
    for r in rows:
        print(f"{r['target']:<{width}}  {r['verdict']:<26}  {r['claim']}")
    print(f"report: {out / 'report.md'}", file=sys.stderr)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Ctrl-C and `kill` both stop cleanly (workers terminated, finished runs kept), also when
    # started in the background by a shell that ignores SIGINT
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if not argv:  # no command: the help, not "TARGET is required" (it is optional)
            _parser().print_help(sys.stderr)
            return USAGE_ERROR
        args = _parser().parse_intermixed_args(argv)
        profile, targets, out = _check_args(args)
        if args.command == "list":
            return cmd_list(profile, targets)
        if args.command == "run":
            return cmd_run(profile, targets, out, args)
        return cmd_report(profile, targets, out)
    except _Exit as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("reproduce: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
