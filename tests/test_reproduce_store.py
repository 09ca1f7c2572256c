"""The run store survives damage, and ``python -m reproduce run`` fails early and in one line.

Records are validated when read (schema, key, checksum): a torn, emptied or hand-edited
``record.json`` is named, moved aside and retrained, and ``report`` refuses the stale results
built from it. One ``run`` per ``--out`` (a lock naming its holder; a killed holder's lock is
free). SIGHUP stops like SIGTERM. ``--executor slurm`` without submitit, ``--out ''``
and a full disk are named before (or instead of) anything else.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce import executors, lock
from reproduce.__main__ import main
from reproduce.executors import execute_plan
from reproduce.lock import OutLock
from reproduce.manifest import write_manifest
from reproduce.plan import default_backend, run_spec
from reproduce.profiles import get_profile
from reproduce.registry import plan
from reproduce.store import DamagedRecord, RunStore, record_checksum

ROOT = Path(__file__).resolve().parents[1]


class FakeTrainer:
    """Stands in for ``varshift.train.run``; ``error`` is raised instead of training."""

    def __init__(self, error=None):
        self.calls, self.error, self.checkpoint_seconds = [], error, []

    def __call__(self, config, *, evaluations=None, out_dir=None, progress=True, resume=True,
                 checkpoint_seconds=60.0):
        self.calls.append(config["net"])
        self.checkpoint_seconds.append(checkpoint_seconds)
        if self.error is not None:
            raise self.error
        return {"config": config, "final": {"test_error": 10.0}, "history": [{"loss": 1.0}]}


@pytest.fixture
def fake(monkeypatch):
    from varshift import train

    trainer = FakeTrainer()
    monkeypatch.setattr(train, "run", trainer)
    return trainer


def _spec(net="wrn"):
    return run_spec(get_profile("smoke"), net, "a", 0.5)


def _damage(path, how):
    text = path.read_text(encoding="utf-8")
    if how == "truncated":
        path.write_text(text[: len(text) // 2], encoding="utf-8")
    elif how == "empty_object":
        path.write_text("{}", encoding="utf-8")
    elif how == "hand_edited":
        rec = json.loads(text)
        rec["record"]["final"]["test_error"] = 1.0
        path.write_text(json.dumps(rec), encoding="utf-8")
    elif how == "no_checksum":
        rec = json.loads(text)
        del rec["checksum"]
        path.write_text(json.dumps(rec), encoding="utf-8")


DAMAGE = ["truncated", "empty_object", "hand_edited", "no_checksum"]


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_record_is_named_moved_aside_and_retrained(how, tmp_path, fake, capsys):
    spec = _spec()
    execute_plan([spec], tmp_path)
    store = RunStore(tmp_path)
    assert store.status(spec.key) == ("done", None) and len(fake.calls) == 1
    _damage(store.record_path(spec.key), how)
    state, reason = store.status(spec.key)
    assert state == "damaged" and reason
    assert store.find(spec) is None and "damaged" in store.why_missing(spec)
    with pytest.raises(DamagedRecord, match="damaged"):
        store.load(spec.key)
    messages = []
    execute_plan([spec], tmp_path, on_damaged=messages.append)
    assert len(fake.calls) == 2  # trained again
    assert len(messages) == 1 and spec.label in messages[0] and "moved aside" in messages[0]
    assert len(store.damaged_files(spec.key)) == 1  # kept for inspection
    assert store.status(spec.key) == ("done", None)
    execute_plan([spec], tmp_path)
    assert len(fake.calls) == 2  # intact now: cached


def test_an_intact_record_round_trips_its_checksum(tmp_path, fake):
    spec = _spec()
    execute_plan([spec], tmp_path)
    rec = RunStore(tmp_path).load(spec.key)
    assert rec["checksum"] == record_checksum(rec)
    assert rec["config"]["threads"] == 1 and rec["config"]["backend"] == default_backend()


def test_manifest_and_targets_name_a_damaged_record_without_a_traceback(tmp_path, fake):
    from reproduce.registry import Context

    profile = get_profile("smoke")
    spec = _spec()
    execute_plan([spec], tmp_path)
    _damage(RunStore(tmp_path).record_path(spec.key), "truncated")
    manifest = write_manifest(tmp_path, profile, targets=[], specs=[spec],
                              store=RunStore(tmp_path), started=0.0, wall_time_s=1.0)
    assert spec.key not in manifest["runs"]
    with pytest.raises(RuntimeError, match="damaged record"):
        Context(profile, tmp_path, "table4").record(spec)


def test_report_refuses_results_built_on_a_damaged_record(tmp_path, fake, capsys):
    profile = get_profile("smoke")
    specs = plan(profile, ["table4"])
    execute_plan(specs, tmp_path)
    (tmp_path / "table4").mkdir()
    (tmp_path / "table4" / "result.json").write_text(json.dumps({"target": "table4", "verdicts": []}))
    _damage(RunStore(tmp_path).record_path(specs[0].key), "empty_object")
    code = main(["report", "table4", "--profile", "smoke", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "damaged" in err and specs[0].key in err
    # moved aside by a `run` that then failed to retrain: still refused
    RunStore(tmp_path).quarantine(specs[0].key)
    assert main(["report", "table4", "--profile", "smoke", "--out", str(tmp_path)]) == 2
    assert "moved aside" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- the lock
def test_a_second_run_on_the_same_out_names_the_holder_and_exits_2(tmp_path, capsys):
    with OutLock(tmp_path):
        holder = json.loads((tmp_path / ".lock.holder").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        code = main(["run", "eq8", "--profile", "smoke", "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1
        assert f"pid {os.getpid()}" in err and socket.gethostname() in err
        assert holder["started_at"] in err
    assert not (tmp_path / ".lock.holder").exists()  # released
    with OutLock(tmp_path):  # and free again
        pass


_HOLD = ("import sys, time\n"
         "from reproduce.lock import OutLock\n"
         "held = OutLock(sys.argv[1]).acquire()\n"
         "print('held', flush=True)\n"
         "time.sleep(600)\n")


def test_a_killed_holder_does_not_block_the_next_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(lock.LockHeld, match=f"pid {proc.pid} "):  # a live holder is named
            OutLock(tmp_path).acquire()
    finally:
        proc.kill()  # no clean-up: the operating system frees the lock with the process
        proc.wait()
    assert json.loads((tmp_path / ".lock.holder").read_text())["pid"] == proc.pid
    with OutLock(tmp_path) as taken:
        assert taken.owner()["pid"] == os.getpid()


# ------------------------------------------------------------------- early, one-line errors
def test_slurm_without_submitit_fails_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    out = tmp_path / "out"
    assert main(["run", "--profile", "smoke", "--executor", "slurm", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "submitit" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--profile", "smoke", "--out", ""]) == 2
    err = capsys.readouterr().err.strip()
    assert "--out" in err and "''" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_named_as_the_cause(tmp_path, monkeypatch, capsys):
    from varshift import train

    monkeypatch.setattr(train, "run", FakeTrainer(OSError(28, "No space left on device")))
    code = main(["run", "table4", "--profile", "smoke", "--jobs", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "table4 not built: its run" in err and "No space left on device" in err
    assert "has not been trained" not in err
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "No space left on device" in manifest["failures"]["table4"]


def test_backend_is_in_every_key_and_in_the_manifest(tmp_path, fake):
    import dataclasses

    profile = dataclasses.replace(get_profile("smoke"), backend="jax")
    specs = plan(profile, ["table4"])
    assert {s.config["backend"] for s in specs} == {"jax"}
    # The comparison names its backend: under KERAS_BACKEND=jax the profile's default is jax too.
    tf_specs = plan(dataclasses.replace(profile, backend="tensorflow"), ["table4"])
    assert {s.config["backend"] for s in tf_specs} == {"tensorflow"}
    assert not {s.key for s in specs} & {s.key for s in tf_specs}
    manifest = write_manifest(tmp_path, profile, targets=[], specs=specs,
                              store=RunStore(tmp_path), started=0.0, wall_time_s=1.0)
    assert manifest["backend"] == "jax" and manifest["threads"] == 1
    assert manifest["platform"]["tensorflow_build"] == {}


def test_checkpoint_interval_comes_from_the_environment_and_is_checked(tmp_path, fake,
                                                                       monkeypatch, capsys):
    spec = _spec()
    monkeypatch.setenv("VARSHIFT_CHECKPOINT_S", "0")
    executors.train_one(spec.config, spec.key, tmp_path / "runs", None, False)
    monkeypatch.delenv("VARSHIFT_CHECKPOINT_S")
    executors.train_one(spec.config, spec.key, tmp_path / "other" / "runs", None, False)
    assert fake.checkpoint_seconds == [0.0, executors.CHECKPOINT_S]
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("VARSHIFT_CHECKPOINT_S", bad)
        assert main(["run", "--profile", "smoke", "--out", str(tmp_path / "cli")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"received {bad!r}" in err
        assert "VARSHIFT_CHECKPOINT_S" in err
    assert not (tmp_path / "cli").exists()  # refused before any work


def test_a_backend_that_is_not_installed_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    assert main(["run", "--profile", "smoke", "--backend", "torch", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--backend torch" in err and len(err.splitlines()) == 1


def _probe_env():
    return (os.environ.get("KERAS_BACKEND"), os.environ.get("XLA_FLAGS"),
            os.environ.get("PJRT_NPROC"), "tensorflow" in sys.modules, "keras" in sys.modules)


def test_workers_get_the_backend_before_anything_imports_keras():
    env = executors.worker_environment({"backend": "jax", "threads": 1})
    pool = executors.local_pool(1, [], env)
    try:
        backend, xla, nproc, tf_loaded, keras_loaded = pool.submit(_probe_env).result(timeout=120)
    finally:
        pool.shutdown()
    assert backend == "jax" and xla.split() == ["--xla_cpu_multi_thread_eigen=false"]
    assert nproc == "1"
    assert not tf_loaded and not keras_loaded


def _import_keras():
    loaded = "keras" in sys.modules
    import varshift

    varshift.load_keras()
    return os.getpid(), loaded


def test_a_worker_imports_the_backend_once_for_all_its_runs():
    pool = executors.local_pool(1, [], executors.worker_environment({"threads": 1}))
    try:
        first, second = (pool.submit(_import_keras).result(timeout=300) for _ in range(2))
    finally:
        pool.shutdown()
    assert first[0] == second[0] and (first[1], second[1]) == (False, True)


def test_the_thread_flags_are_merged_into_the_users_xla_flags(monkeypatch):
    from varshift.train.config import merge_xla_flags, parse_xla_flags

    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=true")
    env = executors.worker_environment({"backend": "jax", "threads": 1})
    assert parse_xla_flags(env["XLA_FLAGS"]) == {"xla_dump_to": "/tmp/x",
                                                 "xla_cpu_multi_thread_eigen": "false"}
    assert (env["PJRT_NPROC"], env["NPROC"]) == ("1", "1")
    assert merge_xla_flags("--a --b=2", {"b": "3"}) == "--a=true --b=3"
    # XLA reads a value not starting with -- as a file name and stops at a later bare token
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    with pytest.raises(ValueError, match="intra_op_parallelism_threads=1"):
        executors.worker_environment({"backend": "jax", "threads": 1})


def test_the_parent_of_a_jax_run_does_not_import_tensorflow(tmp_path):
    """With the runs' environment set in the parent (``worker_environment``, as ``python -m
    reproduce run`` does before anything imports Keras), planning and the manifest import no
    TensorFlow."""
    code = (
        "import os, sys, dataclasses\n"
        "from reproduce.executors import worker_environment\n"
        "from reproduce.manifest import write_manifest\n"
        "from reproduce.profiles import get_profile\n"
        "from reproduce.registry import TARGETS, plan\n"
        "from reproduce.store import RunStore\n"
        "p = dataclasses.replace(get_profile('smoke'), backend='jax')\n"
        "os.environ.update(worker_environment({'backend': p.backend, 'threads': p.threads}))\n"
        "specs = plan(p, TARGETS)\n"
        f"write_manifest({str(tmp_path)!r}, p, targets=[], specs=specs, store=RunStore({str(tmp_path)!r}),"
        " started=0.0, wall_time_s=0.0)\n"
        "print(os.environ['KERAS_BACKEND'], 'tensorflow' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["jax", "False"]


# ---------------------------------------------------------------------------------- SIGHUP
def _children(pid):
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sighup_stops_the_workers_keeps_records_and_writes_the_manifest(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "reproduce", "run", "table4", "--profile",
                             "smoke", "--jobs", "2", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list((out / "runs").glob("*/work")):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.5)
        workers = _children(proc.pid)
        assert workers, "no worker process started"
        assert (out / ".lock").is_file()
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["interrupted"] is True
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.5)
    assert not any(_alive(w) for w in workers)  # no orphans
    assert not (out / ".lock.holder").exists()  # released: the next run takes the lock
    with OutLock(out):
        pass
