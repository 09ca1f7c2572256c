"""A real one-node SLURM on this machine: the reproduction through ``--executor slurm``.

Run by ``nox -s cluster-check`` (as root, with Debian's ``slurm-wlm`` and ``munge`` installed).
Steps, all in a temporary folder that is removed at the end:

1. start ``munged``, ``slurmctld`` and ``slurmd`` with a one-node configuration of this machine
   (``proctrack/linuxproc``, ``task/none``, ``select/cons_tres``, no ``cgroup.conf``);
2. run the targets ``table4 table6`` of the smoke profile (3 of its 14 training runs: enough
   to fill the array, short enough for CI) locally and through ``--executor slurm``, and check
   that every record is identical (same keys, same numbers; timings and host excepted);
3. a 3-epoch version of one smoke run as a one-task array: once its first epoch checkpoint
   exists, send the task SLURM's preemption signals (``SIGTERM`` then ``USR2``, as
   ``scancel --signal`` does at preemption); check the task requeued itself, resumed from its
   checkpoint (``resumed_from_epoch`` >= 1) and gives the numbers of an uninterrupted run
   (trained locally meanwhile);
4. stop the daemons (always, also on failure).

Exit status 0 when every check holds; the first failed check is printed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["table4", "table6"]
# ``checksum`` covers the volatile fields too: each record's checksum is verified on its own
# (``validate_record``) before the rest is compared
VOLATILE = {"wall_time_s", "finished_at", "where", "resumed_from_epoch", "wall_time", "seconds",
            "checksum"}


def log(msg):
    print(f"cluster-check: {msg}", flush=True)


def slurm_conf(tmp, host, cpus):
    return f"""ClusterName=varshiftcheck
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={tmp}/munge.sock,cred_expire=10
CredType=cred/munge
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=check Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """The three daemons, started in ``tmp`` and stopped by their pids."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.host = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "SLURM_CONF": str(self.tmp / "slurm.conf")}
        self.pids = {}

    def start(self):
        for sub in ("state", "spool"):
            (self.tmp / sub).mkdir()
        key = self.tmp / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        (self.tmp / "slurm.conf").write_text(slurm_conf(self.tmp, self.host, os.cpu_count() or 1))
        t = self.tmp
        subprocess.run(["munged", "--force", f"--socket={t}/munge.sock", f"--key-file={key}",
                        f"--pid-file={t}/munged.pid", f"--log-file={t}/munged.log",
                        f"--seed-file={t}/munged.seed"], check=True)
        self._pid("munged")
        subprocess.run(["slurmctld", "-f", str(t / "slurm.conf")], check=True, env=self.env)
        self._pid("slurmctld")
        subprocess.run(["slurmd", "-f", str(t / "slurm.conf")], check=True, env=self.env)
        self._pid("slurmd")
        for _ in range(60):
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, check=False,
                                 env=self.env).stdout.strip()
            if out in ("idle", "mix", "alloc"):
                return
            time.sleep(1)
        raise RuntimeError(f"the node did not come up (sinfo: {out!r}); see {t}/slurmd.log")

    def _pid(self, name):
        path = self.tmp / f"{name}.pid"
        for _ in range(50):
            if path.is_file() and path.read_text().strip():
                self.pids[name] = int(path.read_text().strip())
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start; see {self.tmp}/{name}.log")

    def stop(self):
        subprocess.run(["scancel", "-u", "root"], env=self.env, capture_output=True, check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)


def strip(obj):
    """A record without what legitimately differs between two executions (time, host)."""
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def first_difference(a, b, path="record"):
    """Where two JSON values first differ, as ``record.key[index]...``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return first_difference(x, y, f"{path}[{i}]")
    return f"{path} ({str(a)[:60]!r} vs {str(b)[:60]!r})"


def same_records(a_dir, b_dir, keys):
    from reproduce.store import validate_record

    for key in keys:
        a = json.loads((Path(a_dir) / "runs" / key / "record.json").read_text())
        b = json.loads((Path(b_dir) / "runs" / key / "record.json").read_text())
        for record in (a, b):
            validate_record(record, key)  # intact, and the record of this run
        if strip(a) != strip(b):
            raise AssertionError(f"run {key}: the SLURM record differs from the local one at "
                                 f"{first_difference(strip(a), strip(b))}")
    return len(keys)


def reproduce(args, env):
    cmd = [sys.executable, "-m", "reproduce", "run", *TARGETS, "--profile", "smoke", *args]
    log(" ".join(cmd[1:]))
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def check_same_plan(tmp, env):
    """Step 2: the same plan locally and as a job array; identical records."""
    from reproduce.profiles import get_profile
    from reproduce.registry import plan

    specs = plan(get_profile("smoke"), TARGETS)
    reproduce(["--out", f"{tmp}/local", "--jobs", "2"], env)
    reproduce(["--out", f"{tmp}/slurm", "--executor", "slurm", "--partition", "check",
               "--gpus-per-run", "0", "--time-per-run", "00:10:00",
               "--slurm-arg", "cpus-per-task=1"], env)
    n = same_records(f"{tmp}/local", f"{tmp}/slurm", [s.key for s in specs])
    queue = json.loads(Path(f"{tmp}/slurm/slurm/queue.json").read_text())
    if len({e["task"].split("_")[0] for e in queue.values()}) != 1 or len(queue) != n:
        raise AssertionError(f"expected the {n} runs in one job array; queue.json: {queue}")
    log(f"OK: {n} runs trained as one job array, records identical to the local run")
    before = dict(queue)
    reproduce(["--out", f"{tmp}/slurm", "--executor", "slurm", "--partition", "check"], env)
    if json.loads(Path(f"{tmp}/slurm/slurm/queue.json").read_text()) != before:
        raise AssertionError("a second `run` submitted cached runs again")
    log("OK: a second run with the same arguments submitted nothing")


def check_resume(tmp, env):
    """Step 3: a task preempted after its first epoch requeues and resumes from the checkpoint."""
    from concurrent.futures import ThreadPoolExecutor

    from reproduce import slurm
    from reproduce.executors import execute_plan
    from reproduce.plan import run_spec
    from reproduce.profiles import get_profile

    profile = dataclasses.replace(get_profile("smoke"), recipe={"epochs": 3, "batch_size": 64,
                                                               "lr_drops": [2]})
    spec = run_spec(profile, "wrn", "a", 0.3)  # no Adjust BN: the cheapest final step
    # a checkpoint after every epoch (runs checkpoint at most once a minute by default, and
    # this one is over in less): the task inherits the variable through sbatch
    env = {**env, "VARSHIFT_CHECKPOINT_S": "0"}
    os.environ.update({k: env[k] for k in ("SLURM_CONF", "VARSHIFT_SLURM_POLL_S",
                                           "VARSHIFT_CHECKPOINT_S")})
    options = slurm.SlurmOptions(partition="check", gpus_per_run=0, time_per_run=10,
                                 cpus_per_run=1)
    out = Path(tmp) / "resume"
    [task] = slurm.submit([spec], out, options)
    reference = ThreadPoolExecutor(1)  # the uninterrupted twin, 1 thread as the task
    twin = reference.submit(execute_plan, [spec], Path(tmp) / "uninterrupted", jobs=2)
    progress = out / "runs" / spec.key / "work" / "progress.json"
    deadline = time.time() + 300
    while not progress.is_file() and time.time() < deadline:
        time.sleep(0.5)
    if not progress.is_file():
        raise AssertionError(f"task {task} wrote no checkpoint in 300 s")
    done = len(json.loads(progress.read_text())["history"])
    log(f"preempting task {task} after epoch {done} of 3 (SIGTERM, then USR2)")
    for sig in ("TERM", "USR2"):
        subprocess.run(["scancel", f"--signal={sig}", task], check=True, env=env)
    failures = {}
    slurm.wait([spec], out, failures=failures)
    if failures:
        raise AssertionError(f"the preempted run failed: {failures}")
    rec = json.loads((out / "runs" / spec.key / "record.json").read_text())
    logtext = "".join((out / "slurm" / "logs" / f"{task}_0_log.{ext}").read_text()
                      for ext in ("out", "err"))
    if rec["resumed_from_epoch"] < 1 or "Requeued job" not in logtext:
        raise AssertionError(f"task {task} did not requeue and resume (resumed_from_epoch "
                             f"{rec['resumed_from_epoch']}); see its log")
    log(f"OK: task {task} requeued itself and resumed at epoch {rec['resumed_from_epoch']}")
    twin.result()
    reference.shutdown()
    same_records(out, Path(tmp) / "uninterrupted", [spec.key])
    log("OK: the resumed run's record equals an uninterrupted run's")


def main():
    start = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="varshift-slurm-"))
    tmp.chmod(0o755)
    cluster = Cluster(tmp)
    env = {**cluster.env, "VARSHIFT_SLURM_POLL_S": "2", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT)}
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    sys.path.insert(0, str(ROOT))
    try:
        cluster.start()
        log(f"SLURM up: node {cluster.host}, {os.cpu_count()} CPUs ({time.time() - start:.0f} s)")
        check_same_plan(tmp, env)
        check_resume(tmp, env)
    except Exception as err:
        log(f"FAILED: {type(err).__name__}: {err}")
        for name in ("slurmctld.log", "slurmd.log"):
            path = tmp / name
            if path.is_file():
                log(f"last lines of {name}:\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return 1
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"all checks passed in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
