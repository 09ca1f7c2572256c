"""Every profile judges every claim: each training target of each profile is built from
synthetic run records (the pilot's published records as templates, errors set per setting and
seed), and the report decides the claims (no "not tested" from a missing margin); a report
whose records name another claims file is exploratory throughout."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest

from reproduce import report
from reproduce.claims import EMPIRICAL, PRIMARY, UNTESTED, claims_hash
from reproduce.profiles import PAPER_NAMES, PROFILES, get_profile
from reproduce.registry import TARGETS, build_target, plan
from reproduce.runs import RunStore, noise_value

PILOT = Path(__file__).resolve().parents[1] / "docs" / "results" / "pilot" / "runs"
THEORY = ("eq8", "eq14", "eq15")
#: targets that build the networks at initialisation (Keras): paper-size networks are too slow
#: for a unit test, so they are built at the profiles with small networks only
INIT_BUILDS = ("fig3", "table1")
#: error factor per setting over the network's no-dropout error (dropout-(a) grows with rate)
FACTOR = {"none": 1.0, "b": 1.25, "after_bn": 1.0, "uout": 1.0}


#: the training images the synthetic Adjust BN runs read
ADJUST_IMAGES = 77


def _templates():
    out = {}
    for path in sorted(PILOT.glob("*/record.json")):
        rec = json.loads(path.read_text())
        c = rec["config"]
        kind = "uout" if c["noise"] == "uout" else c["placement"]
        out.setdefault(kind, rec)
        if rec["record"]["final"].get("fig6"):
            out["fig6"] = rec
    return out


def _records(root, profile, targets, claims_sha=None):
    """Synthetic intact records of every run ``targets`` plan at ``profile``."""
    templates = _templates()
    store = RunStore(root)
    rng = np.random.default_rng(0)
    for spec in plan(profile, targets):
        c = spec.config
        kind = "uout" if c["noise"] == "uout" else c["placement"]
        tpl = templates["fig6" if c.get("fig6") else kind]
        inner = copy.deepcopy(tpl["record"])
        base = 20.0 + rng.normal(0, 0.3)
        rate = noise_value(c)
        factor = 1.0 + 2.0 * rate if kind == "a" else FACTOR[kind]
        err = base * factor * (1.0 + rng.normal(0, 0.01))
        final = inner["final"]
        final["test_error"] = err
        final["test_error_adjust_sequential"] = base + 0.3 * (err - base)
        final["test_error_adjust_one_pass"] = final["test_error_adjust_sequential"]
        final["test_error_adjust_one_pass_noise"] = err
        if "adjust_samples" in final:
            final["adjust_samples"] = ADJUST_IMAGES  # unlike stats_samples: the text must say it
        for row in final.get("shift", []):
            row["real_var"] = float(row["real_var"]) * (1.0 + rng.normal(0, 0.005))
        inner["config"] = {**inner.get("config", {}), "seed": c["seed"], "net": c["net"]}
        wrapped = {"key": spec.key, "config": c, "wall_time_s": 1.0, "record": inner,
                   "claims_sha256": claims_sha or claims_hash()}
        store.write(spec.key, wrapped)


def _training_targets(profile):
    small = profile.size == "small"
    return [t for t in TARGETS if t not in THEORY and (small or t not in INIT_BUILDS)]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_target_of_every_profile_decides_its_claims(tmp_path, name):
    profile = get_profile(name)
    profile = profile.with_seeds(min(profile.seeds, 3))  # every setting, fewer seeds: faster
    targets = _training_targets(profile)
    _records(tmp_path, profile, targets)
    for t in targets:
        build_target(t, profile, tmp_path)
    rows = report.write_report(tmp_path, profile, targets, pilot=[])
    claims = [r for r in rows if r.get("family") in EMPIRICAL]
    assert claims and {r["family"] for r in claims} == set(EMPIRICAL)
    assert not [r for r in rows if "margin" in str(r.get("evidence", "")).lower()
                and r["verdict"] == UNTESTED]
    primary = {r["id"] for r in claims if r["family"] == PRIMARY}
    assert primary == {"p1_shift", "p2_error", "p3_b_less", "p4_adjust", "p5_after_bn",
                       "p6_uout"}
    if name == "smoke":  # one seed of tiny networks: nothing is decided, by design
        assert all(r["verdict"] == UNTESTED for r in rows)
        return
    assert all(r["verdict"] != UNTESTED for r in claims), [r["id"] for r in claims
                                                            if r["verdict"] == UNTESTED]
    # the synthetic effects are large: the primary family decides every claim
    decided = {r["id"]: r["verdict"] for r in claims if r["family"] == PRIMARY}
    assert decided["p2_error"] == "holds" and decided["p3_b_less"] == "holds", decided
    assert decided["p4_adjust"] == "holds", decided
    text = (tmp_path / "report.md").read_text()
    assert text.index("## Primary claims") < text.index("## Secondary claims")
    assert f"re-estimated from {ADJUST_IMAGES} training images" in text
    for net in profile.networks if name != "paper" else ():  # each network's own epochs
        epochs = {**profile.recipe, **profile.net_recipe.get(net, {})}["epochs"]
        assert f"{PAPER_NAMES[net]} (" in text and f"; {epochs} epochs)" in text


def test_a_report_on_records_of_another_claims_file_is_exploratory(tmp_path):
    profile = get_profile("quick")
    targets = ["fig4"]
    _records(tmp_path, profile, targets, claims_sha="0" * 64)
    build_target("fig4", profile, tmp_path)
    rows = report.write_report(tmp_path, profile, targets, pilot=[])
    assert rows and all(r["design"] == "exploratory" for r in rows if r["family"] in EMPIRICAL)
    text = (tmp_path / "report.md").read_text()
    assert "**Design: exploratory.**" in text and "another claims file" in text
    # the same records under this claims file: the primary family is confirmatory
    _records(tmp_path, profile, targets)
    rows = report.write_report(tmp_path, profile, targets, pilot=[])
    assert {r["design"] for r in rows if r["family"] == PRIMARY} == {"confirmatory"}
    assert {r["design"] for r in rows if r["family"] == "secondary"} == {"exploratory"}
    assert "**Design: confirmatory.**" in (tmp_path / "report.md").read_text()


def test_the_pilot_profile_plans_the_published_records():
    """The pilot is judged from its published records: every run it plans is there."""
    profile = get_profile("pilot")
    keys = {s.key for s in plan(profile, TARGETS)}
    assert keys and keys <= {p.name for p in PILOT.iterdir()}
    assert profile.seed_list() == [0, 1, 2, 3, 4]


def test_the_confirmatory_quick_uses_fresh_seeds_and_unread_images():
    quick, pilot = get_profile("quick"), get_profile("pilot")
    assert not set(quick.seed_list()) & set(pilot.seed_list())
    assert quick.subset["train_draw"] == "per_seed"
    assert quick.subset["test_exclude"] == {"n_test": pilot.subset["n_test"], "seed": 0}
    seeds = {s.config["seed"] for s in plan(quick, TARGETS)}
    assert seeds == set(quick.seed_list()) and min(seeds) >= 100


def test_quick_has_the_seeds_its_power_analysis_asks_for():
    from reproduce.power import pilot_rows, power_table

    quick = get_profile("quick")
    table = power_table(pilot_rows(), quick.seeds)
    assert len(table) == 6
    assert quick.seeds >= max(r["seeds_needed"] for r in table)
    assert all(r["power"] >= 0.8 for r in table)
    assert all(math.isfinite(r["sd"]) and r["n"] == 5 for r in table)


def test_every_record_names_the_claims_file(tmp_path, monkeypatch):
    from reproduce.runs import execute_plan, run_spec
    from varshift import train

    def fake(config, **kwargs):
        return {"config": config, "final": {"test_error": 10.0}, "history": []}

    monkeypatch.setattr(train, "run", fake)
    spec = run_spec(get_profile("smoke"), "wrn", "a", 0.5)
    execute_plan([spec], tmp_path, jobs=1)
    assert RunStore(tmp_path).load(spec.key)["claims_sha256"] == claims_hash()


def test_the_quick_report_shows_the_pilot_apart_and_power_prints(tmp_path, capsys):
    from reproduce.__main__ import main

    profile = get_profile("quick").with_seeds(3)
    _records(tmp_path, profile, ["fig4"])
    build_target("fig4", profile, tmp_path)
    report.write_report(tmp_path, profile, ["fig4"])  # the pilot read from docs/results/pilot
    text = (tmp_path / "report.md").read_text()
    heads = ["## Primary claims (confirmatory)", "## Secondary claims (exploratory)",
             "## The pilot's verdicts under the new design (exploratory)", "## Summary"]
    assert [text.index(h) for h in heads] == sorted(text.index(h) for h in heads)
    pilot = text[text.index(heads[2]):text.index(heads[3])]
    assert pilot.count("| **") == 6  # the pilot's six primary verdicts
    assert "Power at this profile's 3 seeds" in text and "paper profile's 5 seeds" in text
    assert main(["power", "--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert all(cid in out for cid in ("p1_shift", "p4_adjust", "p6_uout"))
    assert "Tables 4 and 6 (p5_after_bn, p6_uout) ran on WRN only" in out


def test_the_trainer_accepts_quick_s_subset():
    from varshift.data.subset import check_subset

    check_subset(get_profile("quick").subset)
