"""``python -m reproduce publish`` and the docs' use of the published run records.

Fast tests use a store of fabricated records (every run of the ``quick`` plan, with the
``work/`` folders a real run leaves) to check what ``publish`` refuses and copies, and which
results the pages choose. The slow test trains the two smoke runs of Fig. 1, publishes them and
rebuilds the pages' outputs from the published records alone.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reproduce.__main__ import main
from reproduce.plan import run_key
from reproduce.profiles import get_profile
from reproduce.registry import TARGETS, plan
from reproduce.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))


def _fake_store(root, profile_name="quick", *, skip_target=None, skip_runs=0, failures=None):
    """A reproduction folder as ``run`` leaves it, with fabricated (not trained) records."""
    profile = get_profile(profile_name)
    store = RunStore(root)
    specs = plan(profile, TARGETS)
    for spec in specs[skip_runs:]:
        folder = store.run_dir(spec.key)
        (folder / "work").mkdir(parents=True)
        (folder / "work" / "model.keras").write_bytes(b"not published")
        (folder / "work" / "checkpoint.weights.h5").write_bytes(b"not published")
        record = {"key": spec.key, "config": spec.config, "wall_time_s": 2.5,
                  "finished_at": "2026-01-01T00:00:00Z",
                  "record": {"history": {"loss": [1.0, 0.5]}, "final": {"test_error": 0.25}}}
        record["record"]["history"] = [{"loss": 1.0}, {"loss": 0.5}]
        store.write(spec.key, record)
    targets = [t for t in TARGETS if t != skip_target]
    for name in targets:
        (root / name).mkdir(parents=True)
        (root / name / "result.json").write_text(json.dumps({"target": name, "verdicts": []}))
    manifest = {"profile": profile_name, "targets": targets, "failures": failures or {},
                "interrupted": False, "started_at": "2026-01-01T00:00:00Z", "wall_time_s": 1800.0,
                "total_run_time_s": 3600.0, "git": {"commit": "0" * 40, "dirty": False},
                "platform": {"machine": "x86_64", "system": "Linux", "processor": ""},
                "versions": {"varshift": "0.1.0"}}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return specs


def _publish(capsys, src, dest, profile="quick"):
    code = main(["publish", "--profile", profile, "--out", str(src), "--dest", str(dest)])
    return code, capsys.readouterr().err.strip()


def test_publish_refuses_the_smoke_profile_in_one_line(tmp_path, capsys):
    (tmp_path / "smoke").mkdir()
    code, err = _publish(capsys, tmp_path / "smoke", tmp_path / "pub", "smoke")
    assert code == 2
    assert len(err.splitlines()) == 1 and "'smoke'" in err and "not evidence" in err
    assert not (tmp_path / "pub").exists()


def test_publish_names_a_missing_target_and_writes_nothing(tmp_path, capsys):
    _fake_store(tmp_path / "quick", skip_target="fig4")
    code, err = _publish(capsys, tmp_path / "quick", tmp_path / "pub")
    assert code == 1
    assert len(err.splitlines()) == 1 and "missing target(s) fig4" in err
    assert not (tmp_path / "pub" / "quick").exists()


def test_publish_names_runs_without_record_and_failures(tmp_path, capsys):
    specs = _fake_store(tmp_path / "quick", skip_runs=1, failures={"run wrn a 0.5": "boom"})
    code, err = _publish(capsys, tmp_path / "quick", tmp_path / "pub")
    assert code == 1 and len(err.splitlines()) == 1
    assert "1 run(s) without a record" in err and specs[0].label in err
    assert "failed: run wrn a 0.5" in err


def test_publish_copies_records_and_manifest_only_with_provenance(tmp_path, capsys):
    specs = _fake_store(tmp_path / "quick")
    code, err = _publish(capsys, tmp_path / "quick", tmp_path / "pub")
    assert code == 0, err
    dest = tmp_path / "pub" / "quick"
    files = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert files == {"manifest.json", "provenance.json",
                     *(f"runs/{s.key}/record.json" for s in specs)}  # no work/, no models
    for spec in specs:
        assert (dest / "runs" / spec.key / "record.json").read_bytes() == \
            (tmp_path / "quick" / "runs" / spec.key / "record.json").read_bytes()
    prov = json.loads((dest / "provenance.json").read_text())
    assert prov["commit"] == "0" * 40 and prov["runs"] == len(specs)
    assert prov["wall_time_s"] == 1800.0 and prov["machine"]["system"] == "Linux"
    assert prov["varshift_version"] == "0.1.0" and prov["published_at"]
    # publishing again replaces the folder (no stale files, no temporary folders left)
    (dest / "stale.txt").write_text("old")
    assert _publish(capsys, tmp_path / "quick", tmp_path / "pub")[0] == 0
    assert not (dest / "stale.txt").exists()
    assert sorted(p.name for p in (tmp_path / "pub").iterdir()) == ["quick"]


def published_folders():
    return sorted(p for p in (ROOT / "docs" / "results").glob("*") if p.is_dir()) \
        if (ROOT / "docs" / "results").is_dir() else []


@pytest.mark.parametrize("folder", published_folders() or [None], ids=lambda p: getattr(p, "name", "none"))
def test_published_records_in_the_repository_are_complete_and_readable(folder):
    if folder is None:
        pytest.skip("no records published in docs/results yet")
    prov = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert prov["profile"] == folder.name  # a renamed profile keeps its manifest as written
    assert manifest["profile"] in (folder.name, prov.get("renamed_from"))
    assert prov["commit"] and prov["started_at"] and prov["wall_time_s"] is not None
    records = sorted((folder / "runs").glob("*/record.json"))
    assert len(records) == prov["runs"] > 0
    assert {p.relative_to(folder).parts[0] for p in folder.rglob("*") if p.is_file()} <= \
        {"runs", "manifest.json", "provenance.json"}
    assert not list(folder.rglob("work"))  # never checkpoints or models
    for path in records:
        rec = json.loads(path.read_text(encoding="utf-8"))
        assert rec["key"] == path.parent.name == run_key(rec["config"])
        assert rec["record"]  # the trainer's history and final statistics


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    out = {name: tmp_path / name for name in ("results", "published", "stage")}
    for name, env in (("results", "VARSHIFT_RESULTS"), ("published", "VARSHIFT_PUBLISHED"),
                      ("stage", "VARSHIFT_STAGE")):
        monkeypatch.setenv(env, str(out[name]))
    return out


def _mark(folder, provenance=False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"profile": folder.name}))
    if provenance:
        (folder / "provenance.json").write_text(json.dumps({"commit": "abc"}))


def test_pages_prefer_local_then_published_paper_then_quick_then_smoke(dirs):
    import shown_results

    def choice():
        c = shown_results.choose()
        return c.origin, c.profile, c.folder

    assert choice() == ("smoke", "smoke", dirs["results"] / "smoke")  # nothing: smoke
    _mark(dirs["published"] / "quick")  # no provenance.json: not a published folder
    assert choice()[0] == "smoke"
    _mark(dirs["published"] / "quick", provenance=True)
    assert choice() == ("published", "quick", dirs["stage"] / "quick")
    _mark(dirs["published"] / "paper", provenance=True)
    assert choice() == ("published", "paper", dirs["stage"] / "paper")
    _mark(dirs["results"] / "smoke")  # a local smoke run does not beat published records
    assert choice()[0] == "published"
    _mark(dirs["results"] / "quick")
    assert choice() == ("local", "quick", dirs["results"] / "quick")
    _mark(dirs["results"] / "paper")
    assert choice() == ("local", "paper", dirs["results"] / "paper")


def test_page_warns_when_the_records_do_not_cover_the_current_plan(dirs):
    pytest.importorskip("myst_nb")
    import shown_results
    import vsdocs

    _mark(dirs["published"] / "quick", provenance=True)
    staged = dirs["stage"] / "quick"
    _mark(staged)
    for target, runs, used in (("fig4", 12, 3), ("fig5", 8, 8), ("fig1", 2, 0)):
        (staged / target).mkdir()
        (staged / target / "result.json").write_text(json.dumps(
            {"runs": runs, "runs_used": used, "verdicts": [{"verdict": "holds"}]}))
    (staged / shown_results.STAMP).write_text(shown_results._stamp(dirs["published"] / "quick"))
    choice = shown_results.choose()
    assert "only 3 of them" in vsdocs._mismatch("fig4", choice)
    assert "not rebuilt here" in vsdocs._mismatch("fig1", choice)
    assert vsdocs._mismatch("fig5", choice) == ""
    local = shown_results.Shown("quick", "local", staged, staged)
    assert vsdocs._mismatch("fig4", local) == ""  # a developer's own run is shown as it is


@pytest.mark.slow
def test_build_step_regenerates_the_pages_from_published_records(dirs, tmp_path):
    """Train Fig. 1's two smoke runs, publish their records, rebuild everything from them."""
    import shown_results

    src = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "reproduce", "run", "fig1", "--profile", "smoke",
                    "--out", str(src)], cwd=ROOT, check=True, capture_output=True)
    published = dirs["published"] / "quick"  # folder name only; the rebuild below uses smoke
    for record in src.glob("runs/*/record.json"):
        (published / "runs" / record.parent.name).mkdir(parents=True)
        shutil.copy2(record, published / "runs" / record.parent.name / "record.json")
    shutil.copy2(src / "manifest.json", published / "manifest.json")
    (published / "provenance.json").write_text(json.dumps({"profile": "smoke", "commit": "abc"}))
    choice = shown_results.Shown("smoke", "published", dirs["stage"] / "smoke", published)
    folder = shown_results.stage(choice, log=lambda msg: None)
    fig1 = json.loads((folder / "fig1" / "result.json").read_text())
    assert fig1["runs"] == fig1["runs_used"] == 2
    own = json.loads((src / "fig1" / "result.json").read_text())  # built where it was trained
    assert [(v["claim"], v["verdict"], v["evidence"]) for v in fig1["verdicts"]] == \
        [(v["claim"], v["verdict"], v["evidence"]) for v in own["verdicts"]]
    assert (folder / "fig1" / "table.csv").read_bytes() == (src / "fig1" / "table.csv").read_bytes()
    for name in fig1["artefacts"]:
        assert (folder / "fig1" / name).is_file()
    # the theory targets run at build time; targets short of records say so, nothing is invented
    assert (folder / "eq8" / "result.json").is_file()
    fig4 = json.loads((folder / "fig4" / "result.json").read_text())  # shares 2 runs with fig1
    assert fig4["runs_used"] == 2 < fig4["runs"]
    # each verdict says it rests on 2 of the runs, or (no compared setting cached: the claims
    # statistics refuse unpaired seeds) the target is "not tested" and says why
    assert all(f"partial: 2 of {fig4['runs']} runs" in v["evidence"]
               or (v["verdict"] == "not tested" and v["evidence"].startswith("partial build: "))
               for v in fig4["verdicts"])
    assert (folder / "report.md").is_file() and (folder / "verdicts.csv").is_file()
    assert (folder / "manifest.json").read_bytes() == (published / "manifest.json").read_bytes()
    assert not list(folder.glob("runs/*/work"))  # nothing was trained
    # a second build with nothing changed does not rebuild
    stamp = (folder / "build-manifest.json").stat().st_mtime_ns
    shown_results.stage(choice, log=lambda msg: None)
    assert (folder / "build-manifest.json").stat().st_mtime_ns == stamp
