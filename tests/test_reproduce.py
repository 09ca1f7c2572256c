"""Tests of the reproduction package: registry, run cache, atomic writes, CLI errors, paper data.

The full smoke profile (every target, real training) runs in CI through
``nox -s reproduce -- --profile smoke``, not here; these tests run one cheap theory target end
to end and exercise the run cache with a fake trainer (a function with ``varshift.train.run``'s
signature that writes nothing itself), so that caching, ``--force`` and interrupts are checked
in milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reproduce import cost, profiles, registry
from reproduce.budget import budget_note
from reproduce.executors import execute_plan
from reproduce.plan import noise_value, run_key, run_spec
from reproduce.registry import TARGETS, get_target, plan
from reproduce.store import RunStore
from varshift.files import atomic_path, atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
SHARED_PAPER = ROOT.parent / "shared" / "paper"
THEORY = {"eq8", "eq14", "eq15"}


def _cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "reproduce", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=env, timeout=120, check=False)


# ---------------------------------------------------------------------------------- registry
@pytest.mark.parametrize("profile_name", sorted(profiles.PROFILES))
def test_every_target_declares_its_runs(profile_name):
    profile = profiles.get_profile(profile_name)
    for name in TARGETS:
        module = get_target(name)
        assert module.TITLE and module.ARTEFACTS, name
        assert callable(module.build), name
        specs = module.runs(profile)
        if name in THEORY:
            assert specs == [], name
        else:
            assert specs, f"{name} needs training runs at {profile_name}"
        for spec in specs:
            assert spec.key == run_key(spec.config)
            assert spec.config["data"] in profile.data
            assert spec.config["seed"] in profile.seed_list()


def test_shared_runs_are_planned_once():
    profile = profiles.get_profile("quick")
    fig4 = plan(profile, ["fig4"])
    shared = plan(profile, ["fig1", "fig4", "fig5", "table3"])
    assert {s.key for s in shared} == {s.key for s in fig4}  # fig1/5, table3 read fig4's runs
    keys = [s.key for s in plan(profile, TARGETS)]
    assert len(keys) == len(set(keys))
    # Fig. 6 reads its outputs from the records of the first network's dropout-(a) 0.5 runs,
    # the same runs Fig. 4 and Table 3 read (no saved model, no twin run)
    everything = plan(profile, TARGETS)
    fig6 = [s for s in everything if "fig6" in s.config["evaluations"]]
    assert len(fig6) == profile.seeds
    assert {s.key for s in fig6} <= {s.key for s in fig4}
    assert all(s.config["net"] == profile.networks[0] and s.config["placement"] == "a"
               and not s.config["save_model"] for s in fig6)


def test_run_key_ignores_data_dir_but_not_the_config():
    profile = profiles.get_profile("smoke")
    spec = run_spec(profile, "wrn", "a", 0.5)
    assert run_key({**spec.config, "data_dir": "/elsewhere"}) == spec.key
    assert run_spec(profile, "wrn", "a", 0.3).key != spec.key
    assert run_spec(profile, "wrn", "a", 0.5, seed=1).key != spec.key
    assert run_spec(profile, "wrn", "none", 0.0).key == run_spec(profile, "wrn", "b", 0.0).key


def test_registry_speaks_the_verdicts_of_reproduce_claims():
    from reproduce import claims

    assert registry.VERDICTS == claims.VERDICTS
    assert registry.UNTESTED == "not tested"


def _cpu_minutes(profile):
    """The wall minutes of ``profile``'s plan, summed here run by run from the CPU model."""
    seconds = sum(cost.run_seconds(s.config) for s in plan(profile, TARGETS))
    return (seconds / profile.jobs + profiles.QUICK_FIXED_S) / 60.0


@pytest.mark.parametrize("name", ["quick", "pilot"])
def test_a_cpu_budget_note_quotes_its_plan_and_the_cpu_model(name):
    profile = profiles.get_profile(name)
    note = budget_note(profile)
    assert "{" not in note and "}" not in note
    assert f"{len(plan(profile, TARGETS))} runs" in note
    assert f"about {_cpu_minutes(profile):.0f} min on a 2-core machine" in note


def test_the_cpu_model_adds_what_a_run_does():
    quick = profiles.get_profile("quick")
    spec = next(s for s in plan(quick, TARGETS) if s.config["net"] == "wrn"
                and "adjust_bn" in s.config["evaluations"] and s.config["epoch_eval"])
    c, unit = spec.config, cost.RUN_COST["wrn"]
    n_train, epochs = quick.subset["n_train"], c["overrides"]["epochs"]
    plain = {**c, "epoch_eval": False, "evaluations": {"cos2": {}}}
    assert cost.run_seconds(plain) == pytest.approx(
        unit["overhead"] + unit["train"] * n_train * epochs / 1000
        + unit["test"] * (quick.subset["n_test"] - 1000) / 1000)
    with_eval = {**plain, "epoch_eval": True}
    assert cost.run_seconds(with_eval) - cost.run_seconds(plain) == pytest.approx(
        unit["epoch_eval"] * 2 * epochs * quick.eval_samples / 1000)
    # twice the images, about twice the training time; the plan's order follows the model
    doubled = {**plain, "subset": {**c["subset"], "n_train": 2 * n_train}}
    assert cost.run_seconds(doubled) - cost.run_seconds(plain) == pytest.approx(
        unit["train"] * n_train * epochs / 1000)
    assert cost.relative_cost("wrn") == 1.0 < cost.relative_cost("preresnet")
    assert cost.relative_cost("not-a-network") == float("inf")
    # compared settings share their seeds: every quick setting gets every seed
    specs = plan(quick, TARGETS)
    seeds = {}
    for s in specs:
        c = s.config
        seeds.setdefault((c["net"], c["placement"], c["noise"], noise_value(c)), set()).add(c["seed"])
    assert all(v == set(quick.seed_list()) for v in seeds.values()), seeds
    # per-epoch evaluation only where Fig. 5 reads it
    def unsaved(spec):  # Fig. 6 saves some of Fig. 5's runs: the same run
        return run_key({**spec.config, "save_model": False})

    fig5 = {unsaved(s) for s in plan(quick, ["fig5"])}
    assert all(s.config["epoch_eval"] == (unsaved(s) in fig5) for s in specs)


def test_quick_fits_its_budget():
    assert _cpu_minutes(profiles.get_profile("quick")) <= 27.0  # <= 30 with margin


# ------------------------------------------------------------------------- cache, atomicity
class FakeTrainer:
    """Stands in for ``varshift.train.run``: counts calls, can raise like a Ctrl-C."""

    def __init__(self, interrupt_on=None):
        self.calls = []
        self.interrupt_on = interrupt_on

    def __call__(self, config, *, evaluations=None, out_dir=None, progress=True, resume=True,
                 checkpoint_seconds=60.0):
        self.calls.append(config["net"])
        if config["net"] == self.interrupt_on:
            raise KeyboardInterrupt
        return {"config": config, "final": {"test_error": 10.0}, "history": []}


@pytest.fixture
def fake_trainer(monkeypatch):
    from varshift import train

    fake = FakeTrainer()
    monkeypatch.setattr(train, "run", fake)
    return fake


def _specs():
    profile = profiles.get_profile("smoke")
    return [run_spec(profile, net, "a", 0.5) for net in ("preresnet", "wrn", "densenet_bc")]


def test_second_run_skips_cached_and_force_redoes(tmp_path, fake_trainer):
    specs = _specs()
    seen = []
    execute_plan(specs, tmp_path, on_done=lambda s, w, cached: seen.append(cached))
    assert len(fake_trainer.calls) == 3 and seen == [False] * 3
    store = RunStore(tmp_path)
    rec = store.load(specs[0].key)
    assert rec["key"] == specs[0].key and rec["config"] == specs[0].config
    assert rec["record"]["final"]["test_error"] == 10.0
    seen.clear()
    execute_plan(specs, tmp_path, on_done=lambda s, w, cached: seen.append(cached))
    assert len(fake_trainer.calls) == 3 and seen == [True] * 3
    execute_plan(specs[:1], tmp_path, force=True)
    assert len(fake_trainer.calls) == 4


def test_interrupted_run_leaves_no_record_and_keeps_finished_ones(tmp_path, monkeypatch):
    from varshift import train

    monkeypatch.setattr(train, "run", FakeTrainer(interrupt_on="wrn"))
    specs = _specs()
    with pytest.raises(KeyboardInterrupt):
        execute_plan(specs, tmp_path)
    store = RunStore(tmp_path)
    assert store.done(specs[0].key)  # finished before the interrupt: kept
    assert not store.done(specs[1].key)  # interrupted: no record
    assert not store.done(specs[2].key)  # never started
    leftovers = [p for p in store.root.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]
    assert leftovers == []
    fake = FakeTrainer()
    monkeypatch.setattr(train, "run", fake)
    execute_plan(specs, tmp_path)
    assert fake.calls == ["wrn", "densenet_bc"]  # resumes with the unfinished runs only


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path):
    path = tmp_path / "table.csv"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        Path(tmp).write_text("half a fi")
        raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


# -------------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize("args, message", [
    (["run", "fig99", "--profile", "smoke"], "'fig99' is not one of 'eq8', 'eq14'"),
    (["run", "--profile", "huge"], "'--profile': 'huge' is not one of 'smoke', 'quick'"),
    (["run", "--seeds", "0"], "'--seeds': 0 is not in the range 1<=x<=1000"),
    (["frobnicate"], "No such command 'frobnicate'"),
])
def test_cli_errors_are_one_line(args, message, tmp_path):
    res = _cli(*args, "--out", str(tmp_path / "out"))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert message in lines[0] and "Traceback" not in res.stderr


def test_cli_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    res = _cli("run", "eq8", "--profile", "smoke", "--out", str(blocker / "results"))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write to --out" in lines[0], res.stderr


def test_cli_list_names_every_target():
    res = _cli("list", "--profile", "smoke")
    assert res.returncode == 0, res.stderr
    for name in TARGETS:
        assert f"  {name} " in res.stdout


# ------------------------------------------------------------------------ end to end (theory)
def test_theory_target_end_to_end(tmp_path, capsys):
    from reproduce.__main__ import main

    out = tmp_path / "smoke"
    assert main(["run", "eq8", "--profile", "smoke", "--out", str(out)]) == 0
    for artefact in get_target("eq8").ARTEFACTS:
        assert (out / "eq8" / artefact).stat().st_size > 0
    table = pd.read_csv(out / "eq8" / "table.csv")
    # the worked example (the seed notebook's setting, ours), from the formula column
    row = table[(table["mean"] == 5) & (table["var"] == 4) & (table.rate == 0.2)].iloc[0]
    assert row.var_train_formula == pytest.approx(11.25)
    assert row.shift_formula == pytest.approx(0.355556, abs=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and "numpy" in manifest["versions"]
    assert manifest["targets"] == ["eq8"]
    assert main(["report", "eq8", "--profile", "smoke", "--out", str(out)]) == 0
    from reproduce.report import CHECK_COLUMNS, VERDICT_COLUMNS

    verdicts = pd.read_csv(out / "verdicts.csv")  # the findings: none from a theory target
    assert tuple(verdicts.columns) == VERDICT_COLUMNS and len(verdicts) == 0
    assert {"family", "source", "p_holm", "agree"} <= set(VERDICT_COLUMNS)
    checks = pd.read_csv(out / "checks.csv")  # the theory checks, apart
    assert tuple(checks.columns) == CHECK_COLUMNS and len(checks) == 5
    assert (checks.family == "theory check").all() and checks.id.str.startswith("eq8_").all()
    assert (checks.verdict == "not tested").all(), checks  # smoke decides nothing
    assert (checks.n > 1).all() and (checks.ci_low <= checks.ci_high).all()
    report = (out / "report.md").read_text()
    assert "## eq8" in report and "figure.png" in report and "forest.png" in report
    assert '<a id="eq8"></a>' in report and "](#eq8)" in report  # rows link to the section
    for ext in ("png", "svg"):
        assert (out / f"forest.{ext}").stat().st_size > 0
    assert "eq8" in capsys.readouterr().out


def test_theory_claims_resolve_what_they_claim(tmp_path):
    """At quick-like sample sizes the Eq. 8 claims are decided, and they hold: in particular
    the (m-1)/m check tells 31/32 from 1 (its interval excludes the 1/(2m) margin)."""
    from dataclasses import replace

    from reproduce.targets import eq8

    profile = replace(profiles.get_profile("quick"), mc_samples=200_000, keras_samples=20_000)
    df, worked = eq8.compute(profile)
    rows = eq8.claims(df, profile, worked)
    assert [r["verdict"] for r in rows] == ["holds"] * len(rows), rows
    stored = rows[1]
    assert stored["ci_low"] > 0.5 / 32 and stored["effect"] == pytest.approx(1 / 32, abs=0.01)


# --------------------------------------------------------------------------------- paper data
COPIES = {"paper_results.csv": "paper_tables.csv",
          "paper_table1_cos.csv": "paper_table1_cos.csv",
          "paper_fig4_bars_approx.csv": "paper_fig4_bars_approx.csv"}


@pytest.mark.parametrize("copy, original", sorted(COPIES.items()))
def test_paper_data_carries_its_source(copy, original):
    path = ROOT / "reproduce" / "data" / copy
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Source:") and original in first
    df = pd.read_csv(path, comment="#")
    assert (df["source"] == original).all()


@pytest.mark.skipif(not SHARED_PAPER.is_dir(), reason="shared/paper sources not on this machine")
@pytest.mark.parametrize("copy, original", sorted(COPIES.items()))
def test_paper_data_matches_the_shared_sources(copy, original):
    ours = pd.read_csv(ROOT / "reproduce" / "data" / copy, comment="#").drop(columns="source")
    theirs = pd.read_csv(SHARED_PAPER / original, comment="#")
    pd.testing.assert_frame_equal(ours, theirs)


def test_subset_is_stratified_and_deterministic():
    import numpy as np

    from varshift.data import subset_indices

    y = np.repeat(np.arange(10), 100)
    a = subset_indices(y, 200, 0)
    assert len(a) == 200 and np.all(np.bincount(y[a]) == 20)
    assert np.array_equal(a, subset_indices(y, 200, 0))


def test_missing_cifar_in_paper_profile_is_one_line(tmp_path, monkeypatch, capsys):
    from reproduce.__main__ import main
    from varshift import data

    def absent(name, data_dir=None, seed=0, **kwargs):
        raise FileNotFoundError(f"{name} not found offline: put it in {data_dir}\nsecond line")

    monkeypatch.setattr(data, "load", absent)
    code = main(["run", "fig4", "--profile", "paper", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert "needs cifar10" in err[0] and "not found offline" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_partial_build_without_runs_is_not_tested(tmp_path):
    profile = profiles.get_profile("smoke")
    with pytest.raises(RuntimeError, match="has not been trained"):
        registry.build_target("table4", profile, tmp_path)
    result = registry.build_target("table4", profile, tmp_path, partial=True)
    assert result["runs_used"] == 0 and result["runs"] == len(get_target("table4").runs(profile))
    assert [v["verdict"] for v in result["verdicts"]] == [registry.UNTESTED]
    assert json.loads((tmp_path / "table4" / "result.json").read_text())["runs_used"] == 0
