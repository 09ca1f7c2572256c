"""The regime of quick: its recipe chosen on validation images, and its converged reference."""

import csv

import pytest

from reproduce import converged, profiles, recipe_selection
from reproduce.runs import run_spec
from varshift.train import RunConfig, recipe_for


def test_recipe_selection_never_evaluates_test_images_and_applies_its_rule():
    for cand in recipe_selection.CANDIDATES:
        for net, placement, rate in recipe_selection.CELLS:
            cfg = RunConfig.from_any(recipe_selection.config_for(cand, net, placement, rate))
            assert cfg.validation == recipe_selection.VALIDATION  # evaluated on held-out images
            cfg.resolved()  # every candidate is a valid recipe
    assert {c for c, _ in recipe_selection.ORDER} == set(recipe_selection.CANDIDATES)
    rows = [{"candidate": c, "net": n, "validation_error": e}
            for c, n, e in [("b32_cosine_e4", "preresnet", 20), ("b32_cosine_e4", "wrn", 18),
                            ("old_b32_step", "preresnet", 22), ("old_b32_step", "wrn", 17),
                            ("b32_cosine_e5", "preresnet", 10), ("b32_cosine_e5", "wrn", 10),
                            ("old_b64_step", "preresnet", 1)]]  # incomplete: not a candidate
    best, means = recipe_selection.select(rows)
    assert best == "b32_cosine_e4"  # e5 is better but does not fit the budget
    assert means["old_b32_step"] == pytest.approx(19.5) and "old_b64_step" not in means


def test_committed_selection_chose_quick_s_recipe():
    with open(recipe_selection.CSV_PATH, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(int(r["n_validation"]) == recipe_selection.VALIDATION for r in rows)
    chosen = [r["candidate"] for r in rows if r["net"] == "mean" and r["selected"] == "True"]
    assert chosen == [recipe_selection.select([r for r in rows if r["net"] != "mean"])[0]]
    overrides = recipe_selection.CANDIDATES[chosen[0]][0]
    quick = profiles.get_profile("quick")
    for net in quick.networks:  # quick trains with the chosen recipe
        ours = RunConfig(net=net, recipe=quick.recipe_kind, overrides=quick.recipe).resolved()[1]
        assert ours == recipe_for(net, "cpu", **overrides)


def test_converged_reference_is_the_pilot_s_baseline_trained_longer():
    quick = profiles.get_profile(converged.PROFILE)
    for net in converged.NETWORKS:
        ref = converged.config_for(net)
        base = run_spec(quick, net, seed=0).config
        for key in ("net", "placement", "data", "subset", "recipe"):
            assert ref[key] == base[key] or (key == "net" and ref[key] == net)
        assert {**ref["overrides"], "epochs": quick.recipe["epochs"]} == base["overrides"]
        assert ref["overrides"]["epochs"] >= 7 * quick.recipe["epochs"]
    assert set(quick.networks) <= set(converged.NETWORKS)  # every quick network has one
    with open(converged.CSV_PATH, newline="") as fh:
        rows = {r["net"]: r for r in csv.DictReader(fh)}
    for net, r in rows.items():
        assert net in converged.NETWORKS and set(converged.COLUMNS) <= set(r)
        assert 0 <= float(r["test_error"]) <= 100 and r["schedule"] == quick.recipe["schedule"]
        assert int(r["n_train"]) == quick.subset["n_train"]


def test_quick_reference_is_quick_s_own_runs_trained_longer():
    from reproduce.registry import TARGETS, plan

    quick = profiles.get_profile("quick")
    planned = {s.key for s in plan(quick, TARGETS)}
    pairs = converged.quick_specs()
    assert len(pairs) == converged.QUICK_SEEDS * len(converged.quick_settings(quick))
    for spec, ref in pairs:
        assert spec.key in planned  # the reference's partner is a run quick trains
        a, b = dict(spec.config), dict(ref.config)
        assert b["overrides"]["epochs"] == converged.FACTOR * a["overrides"]["epochs"]
        assert b["overrides"]["warmup_epochs"] == (converged.FACTOR
                                                   * a["overrides"]["warmup_epochs"])
        assert b["train_eval_samples"] == quick.subset["n_train"]
        same = set(a) - {"overrides", "epoch_eval", "train_eval_samples", "evaluations"}
        assert {k: a[k] for k in same} == {k: b[k] for k in same}
        assert {k: v for k, v in a["overrides"].items() if k not in ("epochs", "warmup_epochs")} \
            == {k: v for k, v in b["overrides"].items() if k not in ("epochs", "warmup_epochs")}


def test_quick_reference_table_gives_the_per_seed_log_ratio(tmp_path):
    import math

    from reproduce.report import REGIME_COLUMNS, regime_lines

    (tmp_path / "fig4").mkdir()
    (tmp_path / "fig4" / "table.csv").write_text(
        ",".join(REGIME_COLUMNS) + "\nwrn,fashion_mnist,0.0,18.0,6.0,2\n")

    quick = profiles.get_profile("quick")
    rows = [{"net": "wrn", "placement": p, "noise": n, "value": v, "seed": s,
             "test_error": te, "quick_test_error": qe, "train_error_inference": 0.0}
            for p, n, v, s, te, qe in [("none", "dropout", 0.0, "100", 10.0, 12.0),
                                       ("none", "dropout", 0.0, "101", 20.0, 24.0),
                                       ("b", "uout", 0.5, "100", 11.0, 15.0),
                                       ("b", "uout", 0.5, "101", 20.0, 20.0)]]
    lines = regime_lines(tmp_path, quick, quick_reference=rows)
    row = next(line for line in lines if "Uout" in line).split("|")
    longer = (math.log(11 / 10) + math.log(20 / 20)) / 2
    short = (math.log(15 / 12) + math.log(20 / 24)) / 2
    assert float(row[7]) == pytest.approx(short, abs=5e-4)
    assert float(row[8]) == pytest.approx(longer, abs=5e-4)
    # quick's (12 + 24) / 2 against (10 + 20) / 2
    assert any("are +3.0 to +3.0 pp from the same networks" in line for line in lines)
