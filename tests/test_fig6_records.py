"""Fig. 6 is rebuilt from the run records alone (``final["fig6"]``): no model is loaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reproduce.profiles import get_profile
from reproduce.targets import fig6


def _block(seed, n=64, classes=10, flips=(12, 2)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    pred = {k: labels.copy() for k in fig6.PREDICTIONS}
    pred["shifted_inference"][: flips[0]] = (labels[: flips[0]] + 1) % classes
    pred["control_inference"][: flips[1]] = (labels[: flips[1]] + 1) % classes
    logits = {"shifted_train": rng.normal(size=(16, classes)).tolist(),
              "shifted_inference": rng.normal(size=(16, classes)).tolist()}
    return {"n_images": n, "image_indices": list(range(100, 100 + n)), "labels": labels.tolist(),
            "pred": {k: v.tolist() for k, v in pred.items()}, "logits": logits}


class _Ctx:
    def __init__(self, profile, tmp_path, records):
        self.profile, self.dir, self._records = profile, tmp_path, records
        self.name = "fig6"

    def available(self, specs):
        return list(specs)

    def record(self, spec):
        return self._records[spec.config["seed"]]


def test_fig6_is_built_from_the_records(tmp_path, monkeypatch):
    from reproduce import plan

    seen = []

    def run_spec(*args, fig6=False, **kwargs):  # the trainer's fig6=True runs
        seen.append(fig6)
        return plan.run_spec(*args, **kwargs)

    monkeypatch.setattr(fig6, "run_spec", run_spec)
    profile = get_profile("pilot")  # seeds 0-4: the flip counts below stay under 64
    records = {s: {"final": {"fig6": _block(s, flips=(12 + s, 2))}} for s in profile.seed_list()}
    result = fig6.build(_Ctx(profile, tmp_path, records))
    assert seen and all(seen)
    for artefact in fig6.ARTEFACTS:
        assert (tmp_path / artefact).stat().st_size > 0
    (row,) = result["verdicts"]
    assert row["id"] == "fig6_flips" and row["n"] == len(profile.seed_list())
    # flip rates: (12 + s) / 64 vs 2 / 64, in % of the images
    expected = np.mean([100.0 * (12 + s - 2) / 64 for s in profile.seed_list()])
    assert row["effect"] == pytest.approx(expected) and row["verdict"] == "holds"
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 64 * len(profile.seed_list()) and table.image.min() == 100


def test_a_record_without_fig6_data_says_so():
    with pytest.raises(RuntimeError, match=r"no Fig. 6 data"):
        fig6.fig6_block({"final": {}})
    bad = _block(0)
    bad["pred"]["control_train"] = bad["pred"]["control_train"][:-1]
    with pytest.raises(RuntimeError, match="inconsistent"):
        fig6.fig6_block({"final": {"fig6": bad}})
