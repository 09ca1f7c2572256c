"""The regime search: its runs never read test images, its designs pair each run with its
4x-longer twin, its cost model and rule, and its resumable CSV."""

import pytest

from reproduce import regime_selection as rs
from varshift.train import RunConfig


def _row(net, size, n, b, e, val, fit, cpu, placement="none", acc=99.0):
    return {"run": rs.run_key(net, size, n, b, e, placement, 0.5 if placement != "none" else 0),
            "stage": 1, "net": net, "size": size, "size_keywords": "", "params": 1,
            "n_train": n, "n_validation": rs.VALIDATION, "epochs": e, "batch_size": b,
            "lr": rs.LR_PER_32 * b / 32, "warmup_epochs": e / 8, "placement": placement,
            "rate": 0.5 if placement != "none" else 0.0, "seed": 0, "validation_error": val,
            "train_error_inference": fit, "train_acc_train_mode": acc, "cpu_s": cpu,
            "wall_s": cpu, "train_wall_s": cpu}


def test_every_run_holds_out_training_images_and_scales_its_recipe():
    for stage in rs.ORDER.values():
        for spec in stage:
            cfg = RunConfig.from_any(rs.config_for(*spec))
            size, recipe, _ = cfg.resolved()
            net, _, n_train, batch, epochs, _, _ = spec
            assert cfg.validation == rs.VALIDATION and cfg.subset["n_train"] == n_train + rs.VALIDATION
            assert cfg.subset["n_test"] == 1 and cfg.train_eval_samples is None
            assert recipe.lr == pytest.approx(0.05 * batch / 32)  # 0.05 at quick's batch 32
            assert recipe.warmup_epochs == pytest.approx(epochs / 8)
            assert recipe.schedule == "cosine" and cfg.threads == 1


def test_designs_pair_runs_with_their_4x_twin_and_apply_the_target():
    rows = [_row("preresnet", "small", 1000, 32, 10, 20.0, 3.0, 30.0),
            _row("preresnet", "small", 1000, 32, 40, 19.0, 0.0, 120.0),
            _row("wrn", "small", 1000, 32, 10, 25.0, 8.0, 14.0),
            _row("wrn", "small", 1000, 32, 40, 21.0, 0.0, 44.0),
            _row("wrn", "small", 1000, 32, 20, 22.0, 1.0, 24.0),  # no 80-epoch twin: no design
            _row("preresnet", "small", 1000, 32, 10, 60.0, 40.0, 33.0, placement="a", acc=70.0)]
    ds = {d["run"]: d for d in rs.designs(rows)}
    assert set(ds) == {rows[0]["run"], rows[2]["run"]}
    p, w = ds[rows[0]["run"]], ds[rows[2]["run"]]
    assert p["meets"] and p["gap"] == pytest.approx(1.0) and p["shortfall"] == 0
    assert p["train_cpu_s"] == pytest.approx((120 - 30) / 30 * 10)  # slope x epochs
    assert p["a_validation_error"] == 60.0 and p["a_train_acc_train_mode"] == 70.0
    assert not w["meets"] and w["shortfall"] == pytest.approx((8 - 5) + (4 - 2))
    assert rs.noise_cost(rows) == pytest.approx(33 / 30)
    best, every = rs.select(rows)
    assert len(every) == 1 and best["shortfall"] == pytest.approx(5.0)  # the closest plan


def test_plan_cost_and_rule():
    # 10 seeds x 5 settings, 4 of them noisy at 1.1x, 15% outside training, 10% secondary
    assert rs.plan_core_seconds((20.0, 10.0), 1.1) == pytest.approx(
        10 * 5 * 30 * (1 + 4 * 1.1) / 5 / 0.85 * 1.1)
    cheap = [_row("preresnet", "s", 1000, 32, 5, 22.0, 4.0, 10.0),
             _row("preresnet", "s", 1000, 32, 20, 21.0, 1.0, 40.0),
             _row("wrn", "s", 1000, 32, 5, 20.0, 4.0, 5.0), _row("wrn", "s", 1000, 32, 20, 19.0, 1.0, 20.0)]
    better_but_costly = [_row("preresnet", "s", 4000, 32, 50, 12.0, 0.0, 500.0),
                         _row("preresnet", "s", 4000, 32, 200, 12.0, 0.0, 2000.0),
                         _row("wrn", "s", 4000, 32, 50, 11.0, 0.0, 250.0),
                         _row("wrn", "s", 4000, 32, 200, 11.0, 0.0, 1000.0)]
    best, every = rs.select(cheap + better_but_costly)
    assert len(every) == 2 and best["n_train"] == 1000 and best["meets"] and best["fits"]
    assert rs.select(better_but_costly)[0] is None  # nothing fits
    confirm = rs.confirm_plan(better_but_costly)  # the longer profile: meets, whatever it costs
    assert confirm["meets"] and not confirm["fits"]
    assert rs.wall_minutes(rs.BUDGET_CORE_S) == pytest.approx(30.0)  # the budget is 30 min
    assert rs.wall_minutes(confirm["core_s"]) > 30.0


def test_main_resumes_skipping_finished_runs(tmp_path, monkeypatch, capsys):
    spec_a, spec_b = ("wrn", "small", 1000, 32, 1, "none", 0.0), ("wrn", "small", 1000, 32, 4, "none", 0.0)
    monkeypatch.setattr(rs, "ORDER", {1: [spec_a, spec_b]})
    calls = []

    def fake(spec, out, stage, data_dir):
        calls.append(spec)
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted during the second run
        return _row(*spec[:5], 20.0, 1.0, 5.0)

    csv_path = tmp_path / "sel.csv"
    with pytest.raises(KeyboardInterrupt):
        rs.main(["--csv", str(csv_path), "--out", str(tmp_path)], run=fake)
    assert [r["run"] for r in rs.read_rows(csv_path)] == [rs.run_key(*spec_a)]
    calls.clear()
    rs.main(["--csv", str(csv_path), "--out", str(tmp_path)],
            run=lambda spec, out, stage, data_dir: calls.append(spec) or _row(*spec[:5], 19.0, 0.5, 20.0))
    assert calls == [spec_b]  # the finished run is not repeated
    assert len(rs.read_rows(csv_path)) == 2 and "wrn-small-n1000-b32-e1-none0" in capsys.readouterr().out


def test_one_tiny_real_run_is_scored_on_held_out_training_images(tmp_path, monkeypatch):
    monkeypatch.setattr(rs, "VALIDATION", 100)
    monkeypatch.setitem(rs.SIZES["wrn"], "tiny", {"depth": 10, "widen_factor": 1, "width": 4})
    row = rs.run_one(("wrn", "tiny", 300, 32, 1, "none", 0.0), str(tmp_path), data="digits")
    assert row["n_train"] == 300 and row["n_validation"] == 100 and row["params"] > 0
    assert 0 <= row["validation_error"] <= 100 and row["cpu_s"] > 0


def test_committed_search_is_the_listed_runs_on_validation_images():
    rows = rs.read_rows(rs.CSV_PATH)
    listed = {rs.run_key(*spec): stage for stage, specs in rs.ORDER.items() for spec in specs}
    assert {r["run"]: int(r["stage"]) for r in rows} == listed  # every listed run, nothing else
    assert all(int(r["n_validation"]) == rs.VALIDATION for r in rows)
    best, _ = rs.select(rows)
    assert best is not None and best["fits"]
