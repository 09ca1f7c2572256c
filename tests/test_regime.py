"""The regime of quick: its recipe chosen on validation images, and its converged reference."""

import csv

import pytest

from reproduce import converged, profiles, recipe_selection
from reproduce.plan import run_spec
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
