"""Executors of the reproduction: GPU slots of the local pool, the SLURM array's bookkeeping.

No GPU and no SLURM are needed: the GPU slots are checked inside the spawned workers (the
environment they see before TensorFlow is imported), and the SLURM executor's decisions
(what to submit, what failed) are checked against a stand-in for ``squeue`` and ``sbatch``.
The real SLURM run is ``nox -s cluster-check``.
"""

import json
import os
import pickle
import sys
import zipfile
from multiprocessing import get_context

import pytest
from conftest import needs_tensorflow

from reproduce import executors, slurm
from reproduce.__main__ import main
from reproduce.plan import run_spec
from reproduce.profiles import get_profile
from reproduce.store import RunStore


def _probe(barrier):
    """Runs in a pool worker: what it was given, before anything imports TensorFlow."""
    barrier.wait(timeout=60)  # two tasks at once: they cannot share a worker
    return (os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"),
            os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH"), "tensorflow" in sys.modules)


def test_gpu_slots_round_robin():
    assert executors.gpu_slots(2, ["0", "1"]) == ["0", "1"]
    assert executors.gpu_slots(4, ["2", "5"]) == ["2", "5", "2", "5"]
    assert executors.gpu_slots(3, []) is None


def test_each_worker_owns_one_gpu_before_tensorflow_is_imported():
    manager = get_context("spawn").Manager()
    try:
        barrier = manager.Barrier(2)
        pool = executors.local_pool(2, ["3", "7"])
        try:
            got = [f.result(timeout=120) for f in [pool.submit(_probe, barrier) for _ in range(2)]]
        finally:
            pool.shutdown()
    finally:
        manager.shutdown()
    assert len({pid for pid, *_ in got}) == 2
    assert sorted(dev for _, dev, _, _ in got) == ["3", "7"]
    assert all(growth == "true" and not tf_loaded for _, _, growth, tf_loaded in got)


@needs_tensorflow
def test_cpu_only_workers_are_left_alone(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    manager = get_context("spawn").Manager()
    try:
        barrier = manager.Barrier(1)
        pool = executors.local_pool(2, [])
        try:
            _, dev, growth, _ = pool.submit(_probe, barrier).result(timeout=120)
        finally:
            pool.shutdown()
    finally:
        manager.shutdown()
    assert dev is None and growth is None


def test_detect_gpus_respects_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert executors.detect_gpus() == ["1", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert executors.detect_gpus() == []


def _spec(seed=0, **kw):
    return run_spec(get_profile("smoke"), "preresnet", "a", 0.5, seed=seed, **kw)


def test_resume_is_decided_from_the_stored_config(tmp_path):
    from varshift import train

    spec = _spec()
    trainer = dict(spec.config)
    assert executors.resume_state(tmp_path, trainer) == (True, 0)  # nothing yet
    current = train.RunConfig.from_any(trainer).to_dict()
    (tmp_path / "progress.json").write_text(json.dumps(
        {"config": current, "history": [{}, {}], "checkpoint": "checkpoint_2.keras"}))
    assert executors.resume_state(tmp_path, trainer) == (False, 0)  # its checkpoint is missing
    with zipfile.ZipFile(tmp_path / "checkpoint_2.keras", "w") as archive:  # a whole .keras file
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"weights")
    assert executors.resume_state(tmp_path, trainer) == (True, 2)
    (tmp_path / "progress.json").write_text(json.dumps(
        {"config": {**current, "seed": 99}, "history": [{}], "checkpoint": "c.keras"}))
    assert executors.resume_state(tmp_path, trainer) == (False, 0)  # another trainer's folder


class FakeSlurm:
    """Stands in for ``sbatch`` (``submit``) and ``squeue`` (``active_tasks``)."""

    def __init__(self, monkeypatch):
        self.next_id, self.active, self.submitted = 100, {}, []
        monkeypatch.setattr(slurm, "_check_available", lambda: None)
        monkeypatch.setattr(slurm, "active_tasks", lambda: dict(self.active))
        monkeypatch.setattr(slurm, "submit", self.submit)
        monkeypatch.setattr(slurm, "wait", lambda specs, out, **kw: {"done": 0, "failed": 0})

    def submit(self, specs, out_dir, options, *, data_dir=None, job_name="x"):
        queue = slurm._Queue(out_dir)
        for i, spec in enumerate(specs):
            task = f"{self.next_id}_{i}"
            queue.entries[spec.key] = {"task": task, "label": spec.label, "submitted_at": "t"}
            self.active[task] = "PENDING"
        queue.save()
        self.next_id += 1
        self.submitted.append([s.key for s in specs])
        return [queue.entries[s.key]["task"] for s in specs]


def _write_record(out, spec):
    RunStore(out).write(spec.key, {"key": spec.key, "config": spec.config,
                                   "record": {"final": {}, "history": []}})


def test_slurm_never_submits_a_run_twice(tmp_path, monkeypatch):
    fake = FakeSlurm(monkeypatch)
    specs = [_spec(seed) for seed in range(4)]
    _write_record(tmp_path, specs[0])  # cached before anything is submitted
    options = slurm.SlurmOptions(gpus_per_run=0)
    slurm.execute_slurm(specs, tmp_path, options)
    assert fake.submitted == [[s.key for s in specs[1:]]]  # one array, the cached run left out
    slurm.execute_slurm(specs, tmp_path, options)  # all queued: nothing new
    _write_record(tmp_path, specs[1])
    fake.active.pop(slurm._Queue(tmp_path).entries[specs[1].key]["task"])  # it finished
    slurm.execute_slurm(specs, tmp_path, options)  # cached or still queued: nothing new
    assert len(fake.submitted) == 1
    fake.active.pop(slurm._Queue(tmp_path).entries[specs[2].key]["task"])  # ended, no record
    slurm.execute_slurm(specs, tmp_path, options)
    assert fake.submitted[1:] == [[specs[2].key]]  # only the failed one goes again
    cached, queued, todo = slurm.partition_specs(specs, RunStore(tmp_path),
                                                 slurm._Queue(tmp_path).entries, fake.active)
    assert ([len(cached), len(queued), len(todo)]) == [2, 2, 0]


def test_attach_submits_nothing(tmp_path, monkeypatch):
    fake = FakeSlurm(monkeypatch)
    failures = {}
    slurm.execute_slurm([_spec()], tmp_path, slurm.SlurmOptions(), attach=True,
                        failures=failures)
    assert fake.submitted == [] and list(failures.values()) == ["not queued (--attach submits nothing)"]


def test_failed_task_is_reported_with_its_log_and_the_others_go_on(tmp_path, monkeypatch):
    specs = [_spec(0), _spec(1)]
    queue = slurm._Queue(tmp_path)
    for i, spec in enumerate(specs):
        queue.entries[spec.key] = {"task": f"42_{i}", "label": spec.label, "submitted_at": "t"}
    queue.save()
    queue.logs.mkdir(parents=True)
    with open(queue.logs / "42_1_0_result.pkl", "wb") as fh:
        pickle.dump(("error", "Traceback (most recent call last):\n  ...\nValueError: boom\n"), fh)
    _write_record(tmp_path, specs[0])
    monkeypatch.setattr(slurm, "active_tasks", lambda: {})  # both tasks have ended
    failures, done = {}, []
    counts = slurm.wait(specs, tmp_path, failures=failures,
                        on_done=lambda spec, wall, cached: done.append(spec.key))
    assert counts == {"done": 1, "failed": 1} and sorted(done) == sorted(s.key for s in specs)
    message = failures[specs[1].label]
    assert "42_1" in message and "ValueError: boom" in message
    assert message.endswith(str(queue.logs / "42_1_0_log.err"))


@pytest.mark.parametrize(("text", "minutes"), [("24:00:00", 1440), ("1-00:00:30", 1441),
                                               ("90", 90), ("00:00:01", 1)])
def test_parse_time(text, minutes):
    assert slurm.parse_time(text) == minutes


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--gpus", "a,b"], "--gpus must be GPU ids"),
    (["run", "--executor", "slurm", "--time-per-run", "1h"], "--time-per-run must be"),
    (["run", "--executor", "slurm", "--slurm-arg", "account"], "--slurm-arg must be KEY=VALUE"),
    (["run", "--executor", "slurm", "--max-parallel", "0"], "'--max-parallel': 0 is not in the range x>=1"),
    (["run", "--executor", "slurm", "--slurm-arg", "cpus-per-task=x"], "cpus-per-task"),
    (["run", "--executor", "slurm", "--force"], "--force is not supported"),
])
def test_bad_executor_options_are_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert main([*args, "--profile", "smoke", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_plan_prints_runs_epochs_and_marked_gpu_hour_estimate(capsys):
    from reproduce.cost import plan_cost, throughput_table
    from reproduce.registry import TARGETS, plan

    assert main(["plan", "--profile", "paper"]) == 0
    out = capsys.readouterr().out
    specs = plan(get_profile("paper"), list(TARGETS))
    groups = plan_cost(specs)
    table = throughput_table()
    hours = sum(g["epochs"] * table[(net, "paper")]["seconds_per_epoch"]
                for (net, _), g in groups.items()) / 3600
    epochs = sum(g["epochs"] for g in groups.values())
    assert groups[("wrn", "cifar10")]["epochs"] == groups[("wrn", "cifar10")]["runs"] * 200
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert total[1:4] == [str(len(specs)), str(epochs), f"{hours:,.0f}"]
    assert "ESTIMATE" in out and "V100" in out


@needs_tensorflow
def test_manifest_records_host_device_and_tensorflow_build(tmp_path, monkeypatch):
    import socket

    import tensorflow as tf

    from reproduce.manifest import write_manifest
    from varshift import train


    def fake_run(config, evaluations=None, out_dir=None, progress=False, resume=True,
                 checkpoint_seconds=60.0):
        return {"config": config, "final": {"test_error": 1.0}, "history": []}

    monkeypatch.setattr(train, "run", fake_run)
    spec = _spec()
    executors.execute_plan([spec], tmp_path)
    manifest = write_manifest(tmp_path, get_profile("smoke"), targets=[], specs=[spec],
                              store=RunStore(tmp_path), started=0.0, wall_time_s=1.0,
                              executor="local")
    where = manifest["runs"][spec.key]["where"]
    gpus = tf.config.list_physical_devices("GPU")
    assert where["host"] == socket.gethostname()
    assert (where["device"] == "CPU") == (not gpus)
    assert manifest["executor"] == "local"
    build = manifest["platform"]["tensorflow_build"]
    assert build["is_cuda_build"] == tf.sysconfig.get_build_info()["is_cuda_build"]
    assert isinstance(manifest["platform"]["gpus"], list)


def test_ctrl_c_leaves_the_jobs_and_says_how_to_attach_or_cancel(tmp_path, monkeypatch, capsys):
    fake = FakeSlurm(monkeypatch)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(slurm, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        slurm.execute_slurm([_spec(0), _spec(1)], tmp_path, slurm.SlurmOptions())
    out = capsys.readouterr().err
    assert fake.active == {"100_0": "PENDING", "100_1": "PENDING"}  # nothing cancelled
    assert "--attach" in out and "scancel 100" in out


def test_one_explicit_gpu_still_gets_its_own_worker(tmp_path, monkeypatch):
    seen = []

    class Stop(Exception):
        pass

    def pool(jobs, gpus, env=None):
        seen.append((jobs, gpus))
        raise Stop

    monkeypatch.setattr(executors, "local_pool", pool)
    with pytest.raises(Stop):
        executors.execute_plan([_spec()], tmp_path, jobs=1, gpus=["5"])
    assert seen == [(1, ["5"])]  # CUDA_VISIBLE_DEVICES=5 in a worker, not this process
