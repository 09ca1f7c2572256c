"""``python -m reproduce`` and its run store: every input checked before any work, in one line.

Grouped by kind: the SLURM job script, submitit's result pickle, the environment and usage
errors, the files ``report`` and ``publish`` read, the free-space probe, interrupts, the
trainer's checkpoints and the statistics the store writes.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from reproduce import slurm
from reproduce.__main__ import main
from reproduce.executors import execute_plan
from reproduce.lock import OutLock
from reproduce.plan import run_spec
from reproduce.profiles import get_profile
from reproduce.store import BadStatistic, RunStore

ROOT = Path(__file__).resolve().parents[1]


def _call(capsys, *argv):
    """``main(argv)``: exit status and stderr's lines."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.strip().splitlines()


def _spec(net="preresnet", seed=0):
    return run_spec(get_profile("smoke"), net, "a", 0.5, seed=seed)


# ------------------------------------------------------------------------- SLURM job script
CONTROL = ["\n", "\r", "\x00", "\x1b", "\t", "\x7f"]


@pytest.mark.parametrize("char", CONTROL, ids=[repr(c) for c in CONTROL])
@pytest.mark.parametrize("where", ["--partition", "key", "value"])
def test_control_characters_never_reach_the_job_script(where, char, tmp_path, capsys):
    out = tmp_path / "out"
    payload = f"debug{char}touch {tmp_path / 'pwned'} #"
    option = {"--partition": ["--partition", payload],
              "key": ["--slurm-arg", f"acc{char}ount=abc"],
              "value": ["--slurm-arg", f"account={payload}"]}[where]
    code, err = _call(capsys, "run", "--profile", "smoke", "--executor", "slurm", *option,
                      "--out", out)
    assert code == 2 and len(err) == 1, err
    assert "control characters" in err[0] and repr(char)[1:-1] in err[0]
    assert not out.exists()


def test_an_out_folder_with_a_newline_is_refused_for_slurm(tmp_path, capsys):
    out = tmp_path / "a\nb"
    code, err = _call(capsys, "run", "--profile", "smoke", "--executor", "slurm", "--out", out)
    assert code == 2 and len(err) == 1 and "--out" in err[0] and not out.exists()


@pytest.mark.parametrize("options", [{"partition": "gpu\nhostname"},
                                     {"extra": {"account": "a\rb"}},
                                     {"extra": {"acc ount": "a"}}])
def test_slurm_options_refuse_what_would_break_the_script(options):
    with pytest.raises(ValueError, match="--partition|--slurm-arg"):
        slurm.SlurmOptions(**options)


def test_plain_slurm_options_are_kept():
    options = slurm.SlurmOptions(partition="gpu-a100", extra={"account": "abc", "qos": "high"})
    assert options.partition == "gpu-a100" and options.extra == {"account": "abc", "qos": "high"}
    assert slurm.parse_slurm_args(["cpus-per-task=8", "--mail-user=a@b.c"]) == {
        "cpus_per_task": "8", "mail_user": "a@b.c"}


@pytest.mark.parametrize("text", ['{"abc": {"task": 4', '["42_0"]', '{"abc": {"label": "x"}}'],
                         ids=["torn", "a list", "no task"])
def test_a_torn_queue_is_named_before_anything_is_submitted(text, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(slurm, "_check_available", lambda: None)  # as on a login node
    queue = tmp_path / "slurm" / "queue.json"
    queue.parent.mkdir()
    queue.write_text(text)
    code, err = _call(capsys, "run", "--profile", "smoke", "--executor", "slurm", "--out", tmp_path)
    assert code == 2 and len(err) == 1 and str(queue) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slurm"]  # no lock, runs or manifest


# ------------------------------------------------------------------ submitit's result pickle
class _Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _failed_task(tmp_path, monkeypatch, payload):
    spec = _spec()
    queue = slurm._Queue(tmp_path)
    queue.entries[spec.key] = {"task": "42_0", "label": spec.label, "submitted_at": "t"}
    queue.save()
    queue.logs.mkdir(parents=True)
    (queue.logs / "42_0_0_result.pkl").write_bytes(payload)
    monkeypatch.setattr(slurm, "active_tasks", lambda: {})  # the task has ended
    failures = {}
    slurm.wait([spec], tmp_path, failures=failures)
    return failures[spec.label]


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_malicious_result_pickle_is_never_run(protocol, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(("error", _Call(os.system, f"touch {marker}")), protocol=protocol)
    message = _failed_task(tmp_path, monkeypatch, payload)
    assert not marker.exists()
    assert "42_0" in message and "ended without a record" in message and "\n" not in message


def test_the_error_of_a_result_pickle_is_its_last_line(tmp_path, monkeypatch):
    payload = pickle.dumps(("error", "Traceback ...\n  File x\nValueError: boom\x1b[2J\n"))
    message = _failed_task(tmp_path, monkeypatch, payload)
    assert "ValueError: boom?[2J" in message  # the terminal escape is not passed through


# ------------------------------------------------------------- environment and usage errors
@pytest.mark.parametrize(("name", "value"), [
    ("VARSHIFT_SLURM_POLL_S", "soon"), ("VARSHIFT_SLURM_POLL_S", "0"),
    ("VARSHIFT_SLURM_POLL_S", "-5"), ("VARSHIFT_SLURM_POLL_S", "nan"),
    ("VARSHIFT_SLURM_POLL_S", "inf"), ("VARSHIFT_CHECKPOINT_S", "later"),
    ("VARSHIFT_CHECKPOINT_S", "-1"), ("KERAS_BACKEND", "nonsense"), ("KERAS_BACKEND", "numpy"),
])
@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_bad_environment_variable_is_refused_before_any_work(name, value, command, tmp_path,
                                                                monkeypatch, capsys):
    monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    where = ["--out", out] if command == "run" else []  # plan writes nothing anywhere
    code, err = _call(capsys, command, "--profile", "smoke", *where)
    assert code == 2 and len(err) == 1, err
    assert name in err[0] and repr(value) in err[0]
    assert not out.exists()


def test_the_poll_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("VARSHIFT_SLURM_POLL_S", "0.5")
    assert slurm.poll_seconds() == 0.5
    monkeypatch.delenv("VARSHIFT_SLURM_POLL_S")
    assert slurm.poll_seconds() == slurm.POLL_S


USAGE = {
    "no command": ([], "no command given; usage: python -m reproduce"),
    "unknown command": (["fly"], "No such command 'fly'"),
    "seeds 10**12": (["plan", "--seeds", 10**12], "'--seeds': 1000000000000 is not in the range 1<=x<=1000"),
    "seeds 0": (["plan", "--seeds", 0], "'--seeds': 0 is not in the range 1<=x<=1000"),
    "seeds text": (["plan", "--seeds", "five"], "--seeds"),
    "jobs 10**9": (["run", "--jobs", 10**9], "'--jobs': 1000000000 is not in the range 1<=x<=1024"),
    "unknown profile": (["plan", "--profile", "huge"], "huge"),
    "unknown target": (["plan", "fig99"], "fig99"),
    "empty out": (["run", "--out", " "], "--out"),
    "bad gpus": (["run", "--gpus", "0,x"], "--gpus"),
    "bad time": (["run", "--executor", "slurm", "--time-per-run", "soon"], "--time-per-run"),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_errors_are_one_line_and_exit_2(case, capsys):
    argv, needle = USAGE[case]
    start = time.monotonic()
    code, err = _call(capsys, *argv)
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert time.monotonic() - start < 60  # refused, not planned


def test_the_command_line_itself_exits_2_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for argv in ([], ["plan", "--seeds", str(10**12)]):
        proc = subprocess.run([sys.executable, "-m", "reproduce", *argv], check=False, cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------- files report reads
REPORT_FILES = ("report.md", "verdicts.csv", "checks.csv", "forest.png", "forest.svg")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A folder holding a really built theory target (eq8) and a manifest, as `run` writes."""
    from reproduce.manifest import write_manifest
    from reproduce.registry import build_target

    out = tmp_path_factory.mktemp("built")
    profile = get_profile("smoke")
    build_target("eq8", profile, out)
    write_manifest(out, profile, targets=["eq8"], specs=[], store=RunStore(out), started=0.0,
                   wall_time_s=1.0)
    return out


def _damage(out, case):
    result, manifest = out / "eq8" / "result.json", out / "manifest.json"
    res = json.loads(result.read_text())
    if case == "torn manifest":
        manifest.write_text(manifest.read_text()[:40])
        return manifest
    if case == "manifest not an object":
        manifest.write_text("[1, 2]")
        return manifest
    if case == "manifest runs not an object":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "runs": 5}))
        return manifest
    if case == "torn result":
        result.write_text(result.read_text()[:100])
        return result
    if case == "result without title":
        del res["title"]
    elif case == "result not an object":
        res = "eq8"
    elif case == "verdicts not a list":
        res["verdicts"] = {"a": 1}
    elif case == "verdict of an unknown kind":
        res["verdicts"][0]["verdict"] = "proven"
    elif case == "effect as text":
        res["verdicts"][0]["effect"] = "big"
    elif case == "torn provenance":
        (out / "provenance.json").write_text("{")
        return out / "provenance.json"
    result.write_text(json.dumps(res))
    return result


DAMAGE = ["torn manifest", "manifest not an object", "manifest runs not an object",
          "torn result", "result without title", "result not an object", "verdicts not a list",
          "verdict of an unknown kind", "effect as text", "torn provenance"]


@pytest.mark.parametrize("case", DAMAGE)
def test_report_checks_every_file_before_writing_anything(case, built, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(built, out)
    bad = _damage(out, case)
    code, err = _call(capsys, "report", "eq8", "--profile", "smoke", "--out", out)
    assert code == 2 and len(err) == 1, err
    assert str(bad) in err[0]
    assert not any((out / name).exists() for name in REPORT_FILES)


def test_report_on_intact_files_writes_everything(built, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(built, out)
    code, _ = _call(capsys, "report", "eq8", "--profile", "smoke", "--out", out)
    assert code == 0 and all((out / name).is_file() for name in REPORT_FILES)


@pytest.mark.parametrize("old", ["{", "[]", '{"runs": 5, "targets": "fig4"}',
                                 '{"runs": {"k": 3}, "targets": [1, "fig4"]}'],
                         ids=["torn", "a list", "wrong types", "wrong entries"])
def test_run_writes_its_manifest_over_a_malformed_one(old, tmp_path):
    from reproduce.manifest import write_manifest

    (tmp_path / "manifest.json").write_text(old)
    manifest = write_manifest(tmp_path, get_profile("smoke"), targets=["eq8"], specs=[],
                              store=RunStore(tmp_path), started=0.0, wall_time_s=1.0)
    assert manifest["runs"] == {} and manifest["targets"] in (["eq8"], ["eq8", "fig4"])
    assert json.loads((tmp_path / "manifest.json").read_text())["targets"] == manifest["targets"]


# ---------------------------------------------------------------------------------- publish
def _publishable(root):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_publish import _fake_store

    _fake_store(root)


@pytest.mark.parametrize("where", ["profile folder", "dest"])
def test_publish_onto_a_regular_file_changes_nothing(where, tmp_path, capsys):
    src, dest = tmp_path / "src", tmp_path / "dest"
    _publishable(src)
    dest.mkdir()
    target = dest / "quick" if where == "profile folder" else dest / "file"
    target.write_text("mine\n")
    code, err = _call(capsys, "publish", "--profile", "quick", "--out", src, "--dest",
                      dest if where == "profile folder" else target)
    assert code != 0 and len(err) == 1 and str(target) in err[0] and "is a file" in err[0]
    assert target.read_text() == "mine\n"
    assert sorted(p.name for p in dest.iterdir()) == [target.name]  # no stray .quick-old


def test_publish_replaces_a_published_folder_without_leftovers(tmp_path, capsys):
    src, dest = tmp_path / "src", tmp_path / "dest"
    _publishable(src)
    assert _call(capsys, "publish", "--profile", "quick", "--out", src, "--dest", dest)[0] == 0
    (dest / ".quick-old").write_text("left by a killed publish\n")
    assert _call(capsys, "publish", "--profile", "quick", "--out", src, "--dest", dest)[0] == 0
    assert sorted(p.name for p in dest.iterdir()) == ["quick"]


@pytest.mark.parametrize("text", ["{", "[]"])
def test_publish_names_a_torn_manifest(text, tmp_path, capsys):
    src = tmp_path / "src"
    _publishable(src)
    (src / "manifest.json").write_text(text)
    code, err = _call(capsys, "publish", "--profile", "quick", "--out", src, "--dest",
                      tmp_path / "dest")
    assert code != 0 and len(err) == 1 and str(src / "manifest.json") in err[0]
    assert not (tmp_path / "dest").exists()


# --------------------------------------------------------------------------- free-space probe
def test_a_short_write_in_the_free_space_probe_is_caught(tmp_path):
    """A file size limit makes the probe's write short without an error: it must be noticed."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (500 * 1024, 500 * 1024))
        from reproduce.__main__ import main
        sys.exit(main(["run", "table4", "--profile", "smoke", "--out", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert "no room for" in err[0] and "stored 512000" in err[0]
    assert not (out / "runs").exists() and not (out / ".lock").exists()


# -------------------------------------------------------------------------------- interrupts
_DRIVER = """
import os, sys, time
from pathlib import Path

from varshift import train


def _slow(config, *, out_dir=None, **kwargs):  # stands in for training, in every worker
    Path(out_dir, "started").write_text("1")
    time.sleep(600)


train.run = _slow

if __name__ == "__main__":
    from reproduce.__main__ import main

    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_ctrl_c_still_leave_a_manifest(tmp_path):
    driver, out = tmp_path / "driver.py", tmp_path / "out"
    driver.write_text(_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, str(driver), "run", "table4", "--profile", "smoke",
                             "--jobs", "2", "--out", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list((out / "runs").glob("*/work/started")):
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    # 130 from main(); or, when the second Ctrl-C lands after main() returned, while the
    # interpreter shuts down with the default SIGINT disposition restored, killed by it
    assert proc.returncode in (130, -signal.SIGINT), err[-2000:]
    assert "Traceback" not in err and "reproduce: interrupted" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["interrupted"] is True
    assert not (out / ".lock.holder").exists()  # released: the next run takes the lock
    with OutLock(out):
        pass


# ------------------------------------------------------------------ checkpoints of the trainer
def _progress(root, spec, checkpoint_bytes, name="checkpoint_1.keras"):
    """The trainer's folder of ``spec`` with a progress.json naming ``name`` (``checkpoint_bytes``
    written there unless ``None``)."""
    from varshift import train

    work = RunStore(root).run_dir(spec.key) / "work"
    work.mkdir(parents=True)
    config = train.RunConfig.from_any({**spec.config, "data_dir": None}).to_dict()
    if checkpoint_bytes is not None:
        (work / "checkpoint_1.keras").write_bytes(checkpoint_bytes)
    (work / "progress.json").write_text(json.dumps(
        {"config": config, "history": [{"epoch": 1, "loss": 1.0}], "checkpoint": name,
         "wall_time": 1.0}))
    return work


def _keras_file():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
        archive.writestr("model.weights.h5", b"weights" * 100)
    return buf.getvalue()


GARBAGE = {"empty": (b"", "checkpoint_1.keras"),
           "text": (b"not a zip file", "checkpoint_1.keras"),
           "torn zip": (_keras_file()[:-40], "checkpoint_1.keras"),
           "zip without weights": (b"PK\x05\x06" + bytes(18), "checkpoint_1.keras"),
           "missing": (None, "checkpoint_1.keras"),
           "a path outside": (_keras_file(), "../../../elsewhere.keras")}


class _Recorder:
    """Stands in for ``varshift.train.run``; records whether it was asked to resume."""

    def __init__(self):
        self.resume = []

    def __call__(self, config, *, resume=True, **kwargs):
        self.resume.append(resume)
        return {"config": config, "final": {"test_error": 10.0}, "history": [{"loss": 0.5}]}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_a_garbage_checkpoint_is_not_resumed_from(kind, tmp_path, monkeypatch):
    from varshift import train

    recorder = _Recorder()
    monkeypatch.setattr(train, "run", recorder)
    spec = _spec()
    _progress(tmp_path, spec, *GARBAGE[kind])
    execute_plan([spec], tmp_path)
    assert recorder.resume == [False]
    assert RunStore(tmp_path).load(spec.key)["resumed_from_epoch"] == 0


def test_an_intact_checkpoint_is_resumed_from(tmp_path, monkeypatch):
    from varshift import train

    recorder = _Recorder()
    monkeypatch.setattr(train, "run", recorder)
    spec = _spec()
    _progress(tmp_path, spec, _keras_file())
    execute_plan([spec], tmp_path)
    assert recorder.resume == [True]
    assert RunStore(tmp_path).load(spec.key)["resumed_from_epoch"] == 1


@pytest.mark.slow
def test_a_torn_checkpoint_restarts_a_real_run(tmp_path):
    """The trainer really trains: a progress.json naming a torn checkpoint restarts the run
    from scratch instead of failing on every invocation."""
    spec = _spec()
    _progress(tmp_path, spec, _keras_file()[:-40])
    script = textwrap.dedent(f"""
        from reproduce.profiles import get_profile
        from reproduce.executors import execute_plan
        from reproduce.plan import run_spec
        failures = {{}}
        execute_plan([run_spec(get_profile("smoke"), "preresnet", "a", 0.5)], {str(tmp_path)!r},
                     failures=failures)
        assert not failures, failures
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = RunStore(tmp_path).load(spec.key)
    assert record["resumed_from_epoch"] == 0 and len(record["record"]["history"]) == 1
    assert record["record"]["history"][0]["loss"] != 1.0  # trained, not the progress' epoch


# ------------------------------------------------------------------- statistics in the store
class _Trainer:
    """Stands in for ``varshift.train.run``: returns ``final`` and ``history`` as given."""

    def __init__(self, final, history):
        self.final, self.history = final, history

    def __call__(self, config, **kwargs):
        return {"config": config, "final": self.final, "history": self.history}


def _shift_row(**values):
    row = {"bn_layer": "block1_bn1", "moving_var": 1.2, "real_var": 1.0, "shift": 0.83,
           "ratio": 1.2, "mean_ratio": math.nan}
    return {**row, **values}


BAD_STATISTICS = {
    "moving_var 0": ({"shift": [_shift_row(moving_var=0.0)]}, [], "moving_var"),
    "real_var negative": ({"shift": [_shift_row(real_var=-1e-3)]}, [], "real_var"),
    "ratio infinite": ({"shift": [_shift_row(ratio=math.inf)]}, [], "ratio"),
    "shift NaN": ({"shift": [_shift_row(shift=math.nan)]}, [], "shift"),
    "shift missing value": ({"shift": [_shift_row(moving_var=None)]}, [], "moving_var"),
    "test error NaN": ({"test_error": math.nan}, [], "final.test_error"),
    "loss infinite": ({"test_error": 10.0}, [{"loss": 1.0}, {"loss": math.inf}],
                      "history[1].loss"),
}


@pytest.mark.parametrize("case", list(BAD_STATISTICS))
def test_no_impossible_statistic_is_ever_stored(case, tmp_path, monkeypatch):
    from varshift import train

    final, history, name = BAD_STATISTICS[case]
    monkeypatch.setattr(train, "run", _Trainer(final, history))
    spec, failures = _spec(), {}
    execute_plan([spec], tmp_path, failures=failures)
    message = failures[spec.label]
    assert name in message and "not stored" in message and "\n" not in message
    assert not RunStore(tmp_path).record_path(spec.key).exists()
    with pytest.raises(BadStatistic):
        RunStore(tmp_path).write(spec.key, {"key": spec.key, "config": spec.config,
                                            "record": {"final": final, "history": history}})


def test_true_statistics_are_stored_and_undefined_ratios_as_null(tmp_path, monkeypatch):
    from varshift import train

    monkeypatch.setattr(train, "run", _Trainer({"test_error": 0.0, "shift": [_shift_row()]},
                                               [{"loss": 0.5}]))
    spec = _spec()
    execute_plan([spec], tmp_path)
    row = RunStore(tmp_path).load(spec.key)["record"]["final"]["shift"][0]
    assert row["moving_var"] == 1.2 and row["mean_ratio"] is None
