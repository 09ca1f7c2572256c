"""``python -m reproduce bundle`` and the ``gpu`` profile: the bundle writer (with a fake wheel
cache and fake data, so nothing is downloaded), its size guard and argument checks, run.sh's
syntax, and the profile's plan and H200 cost estimate."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import pytest

from reproduce import bundle, cost, profiles
from reproduce.__main__ import main
from reproduce.budget import budget_note
from reproduce.registry import TARGETS, plan
from varshift.data.fashion_mnist import FASHION_FILES


@pytest.fixture
def fake_cache(tmp_path):
    """A wheel cache holding a (tiny, fake) wheel of every package of ``bundle.WHEELS``."""
    cache = tmp_path / "cache"
    folder = bundle._target_cache(cache, "3.12")
    folder.mkdir(parents=True)
    for name, version in bundle.WHEELS.items():
        (folder / f"{bundle._norm(name)}-{version}-py3-none-any.whl").write_bytes(
            name.encode() * 100)
    return cache


@pytest.fixture
def fake_data(tmp_path):
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for name in FASHION_FILES.values():
        (folder / name).write_bytes(b"idx" + name.encode())
    return folder


def _write(tmp_path, cache, data, **kw):
    return bundle.write_bundle(profiles.get_profile("gpu"), tmp_path / "out", cache=cache,
                               download=False, data_dir=data, **kw)


def test_bundle_holds_wheels_sources_data_and_run_sh(tmp_path, fake_cache, fake_data):
    manifest = _write(tmp_path, fake_cache, fake_data, minutes=8, jobs=6)
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "wheels").iterdir()) == sorted(manifest["wheels"])
    assert len(manifest["wheels"]) == len(bundle.WHEELS)
    assert {n.split("-")[0] for n in manifest["wheels"]} >= {"keras", "namex", "optree"}
    for name in FASHION_FILES.values():
        assert (out / "data" / name).read_bytes() == (fake_data / name).read_bytes()
        assert manifest["data"][name]["bytes"] == (fake_data / name).stat().st_size
    assert (out / "src" / "varshift" / "__init__.py").is_file()
    assert (out / "src" / "reproduce" / "bundle.py").is_file()
    assert (out / "src" / "reproduce" / "data" / "throughput.csv").is_file()
    assert not list((out / "src").rglob("__pycache__"))
    on_disk = json.loads((out / "bundle.json").read_text())
    assert on_disk == manifest and manifest["profile"] == "gpu" and manifest["jobs"] == 6
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert manifest["bytes"] == total - (out / "bundle.json").stat().st_size
    for name, info in manifest["wheels"].items():
        assert info["sha256"] == bundle._sha256(out / "wheels" / name)
    run_sh = (out / "run.sh").read_text()
    assert (out / "run.sh").stat().st_mode & stat.S_IXUSR
    assert "KERAS_BACKEND=jax" in run_sh and "reproduce run" in run_sh
    assert 'MINUTES="${MINUTES:-8}"' in run_sh and 'JOBS="${JOBS:-6}"' in run_sh
    assert "train fig5 table3\ntrain\n" in run_sh  # the key runs first, then the whole plan
    assert '--data-dir "$HERE/data"' in run_sh and "varshift-$PROFILE-records.tar.gz" in run_sh
    readme = (out / "README.txt").read_text()
    assert "profile 'gpu'" in readme and "varshift-gpu-records.tar.gz" in readme
    assert budget_note(profiles.get_profile("gpu")) in readme
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(out / "run.sh")], check=False).returncode == 0


def test_smoke_bundle_carries_no_data(tmp_path, fake_cache):
    manifest = bundle.write_bundle(profiles.get_profile("smoke"), tmp_path / "out",
                                   cache=fake_cache, download=False)
    assert manifest["data"] == {} and not (tmp_path / "out" / "data").exists()
    assert "--data-dir" not in (tmp_path / "out" / "run.sh").read_text()


def test_size_guard_fails_in_one_line_and_writes_nothing(tmp_path, fake_cache, fake_data):
    with pytest.raises(bundle.BundleError, match=r"is \d+\.\d MiB, over the 0\.001 MiB limit") as err:
        _write(tmp_path, fake_cache, fake_data, limit_mib=0.001)
    assert "\n" not in str(err.value) and err.value.code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "fmnist"]  # no out, no temp


def test_an_earlier_bundle_is_replaced_a_foreign_folder_is_not(tmp_path, fake_cache, fake_data):
    _write(tmp_path, fake_cache, fake_data)
    (tmp_path / "out" / "stale.txt").write_text("old")
    _write(tmp_path, fake_cache, fake_data)
    assert not (tmp_path / "out" / "stale.txt").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(bundle.BundleError, match="not an empty folder") as err:
        bundle.write_bundle(profiles.get_profile("gpu"), other, cache=fake_cache,
                            download=False, data_dir=fake_data)
    assert err.value.code == 2 and (other / "notes.txt").read_text() == "keep"


def test_missing_wheel_offline_names_it(tmp_path, fake_cache, fake_data):
    next(bundle._target_cache(fake_cache, "3.12").glob("optree-*")).unlink()
    with pytest.raises(bundle.BundleError, match=r"no wheel of optree==0\.20\.0 for CPython 3\.12"):
        _write(tmp_path, fake_cache, fake_data)
    assert not (tmp_path / "out").exists()


def test_profile_without_a_carried_data_set_is_refused(tmp_path, fake_cache):
    with pytest.raises(bundle.BundleError, match="needs cifar10"):
        bundle.write_bundle(profiles.get_profile("paper"), tmp_path / "out", cache=fake_cache,
                            download=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["--profile", "nope"], "'--profile': 'nope' is not one of"),
    (["--python-version", "three"], "--python-version must look like 3.12"),
    (["--minutes", "0"], "'--minutes': 0.0 is not in the range 1<=x<=600"),
    (["--jobs", "0"], "'--jobs': 0 is not in the range 1<=x<=1024"),
    (["--bogus"], "No such option '--bogus'"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, fake_cache, capsys, args, expected):
    rc = main(["bundle", "--out", str(tmp_path / "out"), "--offline", "--wheel-cache",
               str(fake_cache), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and expected in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_prints_the_size(tmp_path, fake_cache, fake_data, capsys):
    rc = main(["bundle", "--profile", "gpu", "--out", str(tmp_path / "b"), "--offline",
               "--wheel-cache", str(fake_cache), "--data-dir", str(fake_data)])
    out = capsys.readouterr().out
    assert rc == 0 and "MiB (limit 60 MiB)" in out and "12 wheels for CPython 3.12" in out


# ------------------------------------------------------------------------ the gpu profile
def test_gpu_profile_key_runs_and_plan():
    gpu = profiles.get_profile("gpu")
    key = plan(gpu, profiles.KEY_TARGETS)
    settings = {(s.config["placement"], s.config["rate"]) for s in key}
    assert settings == {("none", 0.0), ("a", 0.5), ("b", 0.5)}
    assert len(key) == len(profiles.NETWORKS) * 3 * 5
    for spec in key:
        c = spec.config
        assert c["data"] == "fashion_mnist" and "subset" not in c  # all 60,000 / 10,000
        assert c["size"] == profiles.GPU_SIZES[c["net"]]
        assert c["overrides"]["epochs"] == profiles.GPU_EPOCHS


def test_the_gpu_note_quotes_its_plan_and_the_h200_model():
    gpu = profiles.get_profile("gpu")
    key = cost.gpu_plan_minutes(plan(gpu, profiles.KEY_TARGETS), gpu.jobs)
    assert 7.0 <= key <= 9.0  # "about 8 minutes" of one H200, the size's design goal
    note = budget_note(gpu)
    assert "{" not in note and "}" not in note and "ESTIMATES" in note
    assert f"{key:.1f} min" in note and f"({len(plan(gpu, TARGETS))} runs)" in note
    whole = cost.gpu_plan_minutes(plan(gpu, TARGETS), gpu.jobs)
    assert f"at {whole:.0f} min" in note


def test_plan_of_the_gpu_profile_shows_the_h200_rows(capsys):
    gpu = profiles.get_profile("gpu")
    assert main(["plan", "--profile", "gpu"]) == 0
    out = capsys.readouterr().out
    for net in gpu.networks:
        row = cost.gpu_throughput_row(net, profiles.GPU_SIZES[net], 64 if net == "densenet_bc"
                                      else 128)
        assert f"{row['seconds_per_epoch']:g} s/epoch on NVIDIA H200 (estimate)" in out
    assert "ESTIMATE (throughput not measured)" in out


def test_cost_model_scales_with_images_and_inference_is_cheaper():
    one = cost.gpu_epoch_seconds("wrn", "gpu", 12800, 128)
    assert cost.gpu_epoch_seconds("wrn", "gpu", 25600, 128) == pytest.approx(2 * one)
    assert cost.gpu_epoch_seconds("wrn", "gpu", 12800, 128, training=False) == pytest.approx(one / 3)
    # fewer, larger steps cost less (the per-step kernel launches)
    assert cost.gpu_epoch_seconds("wrn", "gpu", 12800, 256) < one


def test_network_facts_are_counted_from_the_built_network(keras, monkeypatch):
    from varshift import nets

    # a plain stack: every multiply-accumulate and conv output counted by hand
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = keras.layers.Conv2D(6, 3, strides=2, padding="same")(h)
    out = keras.layers.Dense(10)(keras.layers.Flatten()(h))
    model = keras.Model(inputs, out)

    monkeypatch.setattr(nets, "build", lambda net, classes, input_shape=None, **size: model)
    macs, acts, layers = cost.count_network("stack", {})
    assert layers == 2
    assert acts == 28 * 28 * 4 + 14 * 14 * 6
    assert macs == 28 * 28 * 4 * 9 * 1 + 14 * 14 * 6 * 9 * 4 + 14 * 14 * 6 * 10
    monkeypatch.undo()
    # a real network: twice the width, about four times the multiply-accumulates
    narrow = cost.network_facts("wrn", {"depth": 10, "widen_factor": 2, "width": 8})
    wide = cost.network_facts("wrn", {"depth": 10, "widen_factor": 4, "width": 8})
    assert wide[2] == narrow[2] and 3.0 < wide[0] / narrow[0] <= 4.0
