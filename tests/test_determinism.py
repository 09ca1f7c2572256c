"""Same seed, same numbers on any machine: the records do not depend on the cores or ``--jobs``.

The thread count of a run's kernels is its config's ``threads`` (fixed by the profile, part of
the key), never ``cpu_count // jobs``. The same two smoke runs are trained in fresh processes
with 1 visible core (``taskset``) in this process, with 2 cores in two worker processes, and with
``os.cpu_count()`` pretending 8 cores; every number of their records must be identical.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_tensorflow

from reproduce.plan import run_key, run_spec
from reproduce.profiles import get_profile
from reproduce.store import RunStore

#: these tests pin TensorFlow's thread pools (JAX: its XLA flags, not tested here)
pytestmark = needs_tensorflow

ROOT = Path(__file__).resolve().parents[1]

#: fields that say when, where and how long, not what was computed
VOLATILE = {"wall_time_s", "finished_at", "where", "resumed_from_epoch", "checksum", "wall_time",
            "seconds", "versions"}

SCRIPT = """
import os, sys
fake = int(sys.argv[3])
if fake:  # pretend a bigger machine: nothing may read it
    os.cpu_count = lambda: fake
    os.sched_getaffinity = lambda pid: set(range(fake))
from reproduce.profiles import get_profile
from reproduce.executors import execute_plan
from reproduce.plan import run_spec
p = get_profile("smoke")
specs = [run_spec(p, "wrn", "a", 0.5, adjust=False), run_spec(p, "wrn")]
execute_plan(specs, sys.argv[1], jobs=int(sys.argv[2]))
"""


def _specs():
    p = get_profile("smoke")
    return [run_spec(p, "wrn", "a", 0.5, adjust=False), run_spec(p, "wrn")]


def _leaves(obj, prefix=""):
    """``{path: value}`` of every number and string of a record, volatile fields left out."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k not in VOLATILE:
                out.update(_leaves(v, f"{prefix}/{k}"))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_leaves(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def count_differences(a, b):
    """How many values of two records differ (a value present in only one counts too)."""
    la, lb = _leaves(a), _leaves(b)
    return sum(la.get(k) != lb.get(k) for k in set(la) | set(lb))


def test_count_differences_sees_a_changed_value():
    rec = {"record": {"final": {"test_error": 10.0}, "history": [{"loss": 1.0, "seconds": 3}]}}
    other = json.loads(json.dumps(rec))
    other["record"]["history"][0]["seconds"] = 9  # timing: ignored
    assert count_differences(rec, other) == 0
    other["record"]["final"]["test_error"] = 10.000001
    assert count_differences(rec, other) == 1


def test_the_key_and_threads_do_not_depend_on_the_machine(monkeypatch):
    before = [(s.key, s.config["threads"], s.config["backend"]) for s in _specs()]
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert [(s.key, s.config["threads"], s.config["backend"]) for s in _specs()] == before
    assert before[0][1:] == (get_profile("smoke").threads, "tensorflow")
    spec = _specs()[0]
    for field, value in (("threads", 2), ("backend", "jax")):
        assert run_key({**spec.config, field: value}) != spec.key  # part of the key


def _train(out, jobs, cores=None, fake_cpus=0):
    cmd = [sys.executable, "-c", SCRIPT, str(out), str(jobs), str(fake_cpus)]
    if cores is not None:
        cmd = ["taskset", "-c", cores, *cmd]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):  # conftest's: not here
        env.pop(name, None)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    store = RunStore(out)
    return [store.load(s.key) for s in _specs()]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2,
                    reason="needs taskset and 2 cores")
def test_records_are_identical_on_1_2_and_8_cores_and_any_jobs(tmp_path):
    one = _train(tmp_path / "one", jobs=1, cores="0")  # 1 core, in-process
    two = _train(tmp_path / "two", jobs=2, cores="0,1")  # 2 cores, 2 workers
    eight = _train(tmp_path / "eight", jobs=2, fake_cpus=8)  # "8 cores", 2 workers
    for a, b, c in zip(one, two, eight, strict=True):
        values = len(_leaves(a))
        assert values > 50 and all(math.isfinite(v) for v in _leaves(a["record"]["final"]).values()
                                   if isinstance(v, float))
        assert count_differences(a, b) == 0, "1 core / jobs 1 vs 2 cores / jobs 2"
        assert count_differences(a, c) == 0, "1 core / jobs 1 vs 8 cores / jobs 2"
        assert a["record"]["deterministic"] is True
        assert a["config"]["threads"] == 1


def test_a_thread_count_that_cannot_be_applied_is_refused_not_ignored():
    code = (
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1  # TensorFlow starts with its machine-sized default pools\n"
        "from varshift.train.trainer import apply_threads\n"
        "for args in ((1,), (None, 'jax')):\n"
        "    try:\n"
        "        apply_threads(*args)\n"
        "        print('applied')\n"
        "    except RuntimeError as err:\n"
        "        print('refused', len(str(err).splitlines()))\n"
        "apply_threads(None)\n"
        "print('none ok')\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split("\n")[:3] == ["refused 1", "refused 1", "none ok"]
