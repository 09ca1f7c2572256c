"""Adding a network, a target or a claim is one file and one registry entry, as
``docs/developers.md`` says: a copy of the packages gets a fifth network
(``varshift/nets/tiny.py`` and its ``Network`` entry), a new target
(``reproduce/targets/dummy.py`` and its ``TARGETS`` entry) judging a new claim (its entry in
``claims.toml``), and ``python -m reproduce`` plans every profile and runs the smoke profile
on them end to end (restricted, for time, to the new network, one seed and a few hundred
images).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_tensorflow

ROOT = Path(__file__).resolve().parents[1]

NETWORK_FILE = '''"""Tiny: a stem and one pre-activation residual block (the developers' guide's example)."""

from __future__ import annotations

from varshift import load_keras
from varshift.nets import Builder


def check_size(width=4, **_):
    if width < 1:
        raise ValueError(f"Argument `width` must be >= 1; received width={width!r}.")


def tiny(num_classes=10, placement="none", noise="dropout", rate=0.0, *,
         input_shape=(32, 32, 3), seed=None, width=4, name=None, **builder_kwargs):
    keras = load_keras()
    check_size(width=width)
    b = Builder(placement, noise, rate, seed, **builder_kwargs)
    inputs = keras.Input(input_shape, name="image")
    x = b.conv(inputs, width, 3, "conv1")
    out = b.conv(b.relu(b.bn(x, "block1_bn1"), "block1_relu1"), width, 3, "block1_conv1")
    out = b.maybe_noise(out, "a", "block1")
    out = b.relu(b.bn(out, "block1_bn2"), "block1_relu2")
    out = b.maybe_noise(out, "b", "block1")
    out = b.conv(out, width, 3, "block1_conv2")
    x = keras.layers.Add(name="block1_add")([x, out])
    x = b.relu(b.bn(x, "final_bn"), "final_relu")
    return keras.Model(inputs, b.head(x, num_classes), name=name or "tiny")
'''

NETWORK_ENTRY = '''
NETWORKS["tiny"] = replace(
    NETWORKS["wrn"], name="tiny", builder="varshift.nets.tiny:tiny", paper_name="Tiny",
    paper_size={"width": 16}, small_size={"width": 4})
'''

TARGET_FILE = '''"""Dummy: the no-dropout networks' test error, judged against chance."""

from __future__ import annotations

import pandas as pd

from reproduce.claims import get_claim, judge
from reproduce.markdown import md_table
from reproduce.targets import baseline_specs, test_error

TITLE = "Dummy: the no-dropout test error of every network"
ARTEFACTS = ("errors.csv",)


def runs(profile):
    return baseline_specs(profile, profile.networks)


def build(ctx):
    rows = [{"net": s.config["net"], "seed": s.config["seed"],
             "test_error": test_error(ctx.record(s)["final"])} for s in runs(ctx.profile)]
    table = pd.DataFrame(rows)
    table.to_csv(ctx.dir / "errors.csv", index=False)
    verdicts = [judge(get_claim("dummy_below_chance", ctx.profile, network=net),
                      dict(zip(rows.seed, rows.test_error)), "no-dropout runs", test=False)
                for net, rows in table.groupby("net")]
    return {"verdicts": verdicts, "markdown": md_table(table)}
'''

CLAIM_ENTRY = '''
[dummy_below_chance]
family = "secondary"
source = "ours"
text = "{network}: the no-dropout test error is below chance"
effect = "error"
effect_is = "test error of the no-dropout run (%)"
scope = "network"
direction = "below"
unit = "pp"
margin = { default = 90.0 }
rationale = "ten classes: guessing errs on 90% of the images"
'''

#: the smoke profile on the new network only, one seed and a few hundred images (test scaffolding,
#: not part of adding a network: every profile takes a registered network by itself)
PROFILE_ENTRY = '''
PROFILES["tiny-smoke"] = replace(PROFILES["smoke"], name="tiny-smoke", networks=("tiny",),
                                 table_networks=("tiny",), subset={"n_train": 300, "n_test": 200})
'''


def _insert_once(path, anchor, text):
    source = path.read_text(encoding="utf-8")
    assert source.count(anchor) == 1, f"{path.name}: expected one {anchor!r}"
    path.write_text(source.replace(anchor, text), encoding="utf-8")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A copy of ``varshift/`` and ``reproduce/`` with the tiny network and the dummy target."""
    root = tmp_path_factory.mktemp("repo")
    for package in ("varshift", "reproduce"):
        shutil.copytree(ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (root / "varshift" / "nets" / "tiny.py").write_text(NETWORK_FILE, encoding="utf-8")
    registry = root / "varshift" / "nets" / "registry.py"
    registry.write_text(registry.read_text(encoding="utf-8") + "\n\nfrom dataclasses import "
                        "replace  # noqa: E402\n" + NETWORK_ENTRY, encoding="utf-8")
    (root / "reproduce" / "targets" / "dummy.py").write_text(TARGET_FILE, encoding="utf-8")
    _insert_once(root / "reproduce" / "registry.py", '"table6")', '"table6", "dummy")')
    claims = root / "reproduce" / "claims.toml"
    claims.write_text(claims.read_text(encoding="utf-8") + CLAIM_ENTRY, encoding="utf-8")
    profiles = root / "reproduce" / "profiles.py"
    profiles.write_text(profiles.read_text(encoding="utf-8") + PROFILE_ENTRY, encoding="utf-8")
    return root


def _reproduce(tree, *args, timeout=900):
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "reproduce", *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_every_profile_plans_the_new_network_and_target(tree):
    for profile in ("smoke", "quick", "paper", "gpu"):
        done = _reproduce(tree, "list", "--profile", profile)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "dummy" in done.stdout and "Dummy: the no-dropout" in done.stdout
    done = _reproduce(tree, "plan", "--profile", "smoke")
    assert done.returncode == 0 and "tiny" in done.stdout, done.stderr[-2000:]


#: every target that trains the profile's networks (the theory targets train nothing), and the
#: new one
TRAINING_TARGETS = ("fig1", "fig3", "fig4", "fig5", "fig6", "table1", "table3", "table4", "table6",
                    "dummy")


@needs_tensorflow
def test_the_smoke_profile_runs_end_to_end_on_them(tree, tmp_path):
    out = tmp_path / "out"
    done = _reproduce(tree, "run", *TRAINING_TARGETS, "--profile", "tiny-smoke", "--jobs", "1",
                      "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    results = {p.parent.name for p in out.glob("*/result.json")}
    assert results == set(TRAINING_TARGETS)
    verdict = json.loads((out / "dummy" / "result.json").read_text())["verdicts"][0]
    assert verdict["id"] == "dummy_below_chance" and verdict["claim"].startswith("tiny: ")
    errors = (out / "dummy" / "errors.csv").read_text().splitlines()
    assert errors[0] == "net,seed,test_error" and errors[1].startswith("tiny,0,")
    assert 0.0 <= float(errors[1].split(",")[2]) <= 100.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["config"]["net"] for r in manifest["runs"].values()} == {"tiny"}
    done = _reproduce(tree, "report", *TRAINING_TARGETS, "--profile", "tiny-smoke", "--out",
                      str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Tiny" in (out / "report.md").read_text()
