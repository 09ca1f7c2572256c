"""varshift.train: recipes, the PyTorch-form optimiser, the record, resume, and the shift."""

import dataclasses
import json
import os

import numpy as np
import pytest

from varshift import nets

train = pytest.importorskip("varshift.train")


def test_recipes_are_the_reference_defaults_and_overridable():
    r = train.RECIPES
    assert (r["preresnet"].epochs, r["preresnet"].lr_drops, r["preresnet"].weight_decay) == (
        164, (81, 122), 1e-4)
    assert (r["wrn"].epochs, r["wrn"].lr_drops, r["wrn"].drop_factor, r["wrn"].weight_decay) == (
        200, (60, 120, 160), 0.2, 5e-4)
    assert r["densenet_bc"].batch_size == 64 and r["resnext29"].batch_size == 128
    assert set(r) == set(nets.NAMES) == set(train.CPU_RECIPES)
    wrn = r["wrn"]
    assert [wrn.lr_at(e) for e in (0, 59, 60, 119, 120, 160)] == pytest.approx(
        [0.1, 0.1, 0.02, 0.02, 0.004, 0.0008])
    assert train.recipe_for("wrn", "cpu", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="epochs_typo"):
        train.recipe_for("wrn", epochs_typo=3)
    cfg = train.RunConfig.from_any({"net": "wrn", "size": "small", "epochs": 2, "lr": 0.01})
    size, recipe, augment = cfg.resolved()
    assert size == nets.SMALL_SIZES["wrn"] and (recipe.epochs, recipe.lr) == (2, 0.01)
    assert augment is True  # CIFAR's default
    with pytest.raises(ValueError, match="colour"):
        train.RunConfig.from_any({"net": "wrn", "colour": "red"})


def test_coupled_sgd_is_pytorch_sgd_with_weight_decay(keras):
    # PyTorch: g += wd * w; b = mu * b + g; w -= lr * b  (also across a learning-rate drop)
    w0 = np.array([1.0, -2.0, 0.5], dtype="float32")
    grads = [np.array([0.3, -0.1, 0.2]), np.array([-0.5, 0.4, 0.1]), np.array([0.2, 0.2, -0.3])]
    lrs = [0.1, 0.1, 0.01]
    mu, wd = 0.9, 5e-4
    var = keras.Variable(w0)
    opt = train.CoupledSGD(learning_rate=0.1, momentum=mu, l2=wd)
    w, b = w0.astype(np.float64), np.zeros(3)
    for g, lr in zip(grads, lrs, strict=True):
        opt.learning_rate = lr
        opt.apply_gradients([(keras.ops.convert_to_tensor(g.astype("float32")), var)])
        gg = g + wd * w
        b = mu * b + gg
        w = w - lr * b
        np.testing.assert_allclose(keras.ops.convert_to_numpy(var), w, rtol=1e-6)


def test_cosine_schedule_warms_up_linearly_then_follows_a_half_cosine(keras):
    from varshift.train.optim import WarmupCosine

    r = train.Recipe(epochs=4, batch_size=32, lr=0.1, schedule="cosine", warmup_epochs=0.5)
    spe = 10  # steps per epoch: W = 5 warm-up steps of T = 40
    lrs = [r.lr_at_step(s, spe) for s in range(40)]
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5] == pytest.approx(0.1)  # the peak, then a half cosine to zero
    assert lrs[5 + 35 // 2] == pytest.approx(0.05 * (1 + np.cos(np.pi * 17 / 35)))
    assert all(a > b for a, b in zip(lrs[5:], lrs[6:], strict=False)) and 0 < lrs[-1] < 1e-3
    assert r.lr_at(2, spe) == pytest.approx(lrs[20])  # an epoch's first step
    sched = WarmupCosine(0.1, r.warmup_steps(spe), 40)  # the optimiser's copy, per step
    np.testing.assert_allclose([float(sched(s)) for s in range(40)], lrs, rtol=1e-5)
    assert WarmupCosine.from_config(sched.get_config()).get_config() == sched.get_config()
    # "step" is as before: the paper's recipes do not change
    assert train.recipe_for("preresnet").schedule == "step"
    with pytest.raises(ValueError, match="schedule"):
        train.Recipe(epochs=2, batch_size=8, schedule="linear")
    with pytest.raises(ValueError, match="warmup_epochs"):
        train.Recipe(epochs=2, batch_size=8, schedule="cosine", warmup_epochs=2)


def test_validation_split_holds_out_training_images_and_never_the_test_set(keras):
    from varshift import data as vdata
    from varshift.train import trainer

    (x, y), (xt, _), _ = vdata.load("digits", seed=0)
    cfg = train.RunConfig(data="digits", validation=200)
    d = trainer.prepare_data(cfg, False)
    assert (len(d.x_train), len(d.x_test)) == (len(x) - 200, 200)
    assert d.info["n_test"] == 200 and d.info["validation"]["n_validation"] == 200
    seen = {im.tobytes() for im in x}
    assert all(im.tobytes() in seen for im in d.x_test)  # held-out training images
    assert not {im.tobytes() for im in d.x_train} & {im.tobytes() for im in d.x_test}
    assert np.bincount(d.y_test).tolist() == [20] * 10  # class-stratified
    assert not {im.tobytes() for im in xt} & {im.tobytes() for im in d.x_test} - seen


def _context(cfg, d, params):
    from varshift import data as vdata

    recipe = cfg.resolved()[1]
    test_ds = vdata.make_dataset(d.x_test, d.y_test, batch_size=cfg.eval_batch_size,
                                 training=False, mean=d.mean, std=d.std)
    return train.EvaluationContext(cfg, recipe, params, d.x_train, d.y_train, d.x_test, d.y_test,
                                   d.mean, d.std, d.augment, d.info, test_ds)


def test_fig6_control_is_shift_free_and_leaves_the_trained_model_untouched(keras):
    """Fig. 6's hook: the training-mode calls restore BN's state (Keras 3 moves it on any
    training call), the control's moving statistics are the noise-free re-estimate, and both
    get the same dropout draw (in training mode BN uses batch statistics, so they agree)."""
    from reproduce.evaluations import fig6 as fig6_hook
    from varshift import data as vdata
    from varshift.diagnostics import recalibrate_bn
    from varshift.train import trainer

    cfg = train.RunConfig(net="wrn", size="small", data="digits", placement="a", rate=0.5)
    d = trainer.prepare_data(cfg, False)
    model = nets.build("wrn", 10, "a", "dropout", 0.5, input_shape=d.x_train.shape[1:], seed=0,
                       **nets.SMALL_SIZES["wrn"])
    train.compile_model(model, train.recipe_for("wrn", "cpu"))
    model.fit(vdata.make_dataset(d.x_train, d.y_train, batch_size=64, training=True,
                                 augment=False, mean=d.mean, std=d.std), epochs=1, shuffle=False,
              verbose=0)
    before = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    context = _context(dataclasses.replace(cfg, seed=3), d, {"images": 128, "logits": 4})
    fig6 = fig6_hook(model, context)["fig6"]
    control = context.work_copy(model)  # the hook's control, reset: recalibrate it again
    recalibrate_bn(control, context.images(fig6["image_indices"]), mode="sequential",
                   batch_size=128, inplace=True)
    for b, a in zip(before, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), b)
    idx = np.asarray(fig6["image_indices"])
    xb = keras.ops.convert_to_numpy(next(iter(vdata.make_dataset(
        d.x_train[idx], d.y_train[idx], batch_size=128, training=False, mean=d.mean,
        std=d.std)))[0])
    fresh = recalibrate_bn(model, xb, mode="sequential", batch_size=128)
    bn = [layer for layer in control.layers if isinstance(layer, keras.layers.BatchNormalization)]
    ref = {layer.name: layer for layer in fresh.layers}
    for layer in bn:  # the shared work copy gives a fresh copy's noise-free statistics
        for v, w in zip(layer.non_trainable_variables, ref[layer.name].non_trainable_variables,
                        strict=True):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(v),
                                       keras.ops.convert_to_numpy(w), rtol=1e-6)
    # shifted: the model's stored variance of the case-(a) layers is not the noise-free one
    assert any(not np.allclose(keras.ops.convert_to_numpy(a.moving_variance),
                               keras.ops.convert_to_numpy(b.moving_variance), rtol=0.05)
               for a, b in zip([ly for ly in model.layers if ly.name in ref and
                                isinstance(ly, keras.layers.BatchNormalization)], bn,
                               strict=True))
    assert fig6["n_images"] == 128 and len(fig6["labels"]) == 128
    assert set(fig6["pred"]) == {"shifted_train", "shifted_inference", "control_train",
                                 "control_inference"}
    assert fig6["pred"]["shifted_train"] == fig6["pred"]["control_train"]  # the same draw
    assert np.asarray(fig6["logits"]["shifted_train"]).shape == (4, 10)
    assert set(fig6["logits"]) == {"shifted_train", "shifted_inference"}
    assert fig6 == fig6_hook(model, context)["fig6"]


def _cfg(**kw):
    base = {"net": "wrn", "size": "small", "data": "digits", "recipe": "cpu", "epochs": 3,
            "schedule": "cosine", "warmup_epochs": 0.5, "placement": "b", "rate": 0.3, "seed": 5,
            "train_eval_samples": 300, "stats_samples": 300, "eval_batch_size": 128,
            "save_model": True, "evaluations": {"adjust_bn": {"samples": 400}, "cos2": {}}}
    base.update(kw)
    return base


def _run(config, **kwargs):
    from reproduce.evaluations import train as run_with_hooks

    return run_with_hooks(config, **kwargs)


def test_run_writes_one_record_and_resumes_exactly(keras, tmp_path, monkeypatch):
    full_dir = os.path.join(tmp_path, "full")
    rec = _run(_cfg(), out_dir=full_dir, progress=False, checkpoint_seconds=0)
    with open(os.path.join(full_dir, "record.json")) as fh:
        assert json.load(fh) == json.loads(json.dumps(rec))  # JSON-serialisable, written
    assert set(rec) >= {"config", "data", "history", "final", "versions", "wall_time", "seed"}
    assert rec["data"]["source"] == "sklearn bundled" and rec["config"]["net"] == "wrn"
    assert [h["epoch"] for h in rec["history"]] == [1, 2, 3]
    recipe = train.RunConfig.from_any(_cfg()).resolved()[1]
    steps = -(-rec["data"]["n_train"] // recipe.batch_size)
    assert [h["lr"] for h in rec["history"]] == pytest.approx(
        [recipe.lr_at_step(e * steps, steps) for e in range(3)])  # per step: resumed exactly
    assert 0 <= rec["final"]["train_error_inference"] <= 100 and "fig6" not in rec["final"]
    for h in rec["history"]:
        assert set(h) == {"epoch", "loss", "train_acc_train_mode", "train_acc_inference_mode",
                          "train_acc_train_mode_fixed", "lr", "seconds"}
        assert 0 <= h["train_acc_inference_mode"] <= 1
        assert 0 <= h["train_acc_train_mode_fixed"] <= 1
    final = rec["final"]
    assert (final["stats_samples"], final["adjust_samples"]) == (300, 400)  # 4 batches of 128
    assert final["test_error"] < 50  # it learns (10 classes: chance is 90% error)
    for key in ("test_error_adjust_sequential", "test_error_adjust_one_pass",
                "test_error_adjust_one_pass_noise"):
        assert 0 <= final[key] <= 100
    model = keras.saving.load_model(os.path.join(full_dir, "model.keras"))
    assert [r["bn_layer"] for r in final["shift"]] == [
        layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {"moving_var", "real_var", "ratio"} <= set(final["shift"][0])
    weight_layers = [layer for layer in model.layers
                     if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert [c["layer"] for c in final["cos2"]] == [layer.name for layer in weight_layers]
    c = final["cos2"][1]
    assert c["mean_d_cos2"] == pytest.approx(c["d"] * c["mean_cos2"])
    # Adjust BN on the hooks' shared work copy gives what a fresh copy of the model gives
    from reproduce.evaluations import ADJUST_MODES
    from varshift.diagnostics import recalibrate_bn
    from varshift.train import trainer

    cfg = train.RunConfig.from_any(_cfg())
    d = trainer.prepare_data(cfg, cfg.resolved()[2])
    context = _context(cfg, d, {})
    x = np.concatenate([keras.ops.convert_to_numpy(b[0]) for b in context.training_sample(400)[1]])
    for name, kwargs in ADJUST_MODES.items():
        fresh = recalibrate_bn(model, x, batch_size=400 if name == "sequential" else 128, **kwargs)
        train.compile_model(fresh, cfg.resolved()[1])
        assert context.test_error(fresh) == final[f"test_error_adjust_{name}"], name

    # a finished run is returned from its record, not retrained
    again = _run(_cfg(), out_dir=full_dir, progress=False)
    assert again == json.loads(json.dumps(rec))

    # interrupt after epoch 2 (the progress file is written), then resume: same numbers
    part_dir = os.path.join(tmp_path, "part")
    from varshift.train import folder  # the run folder writes progress.json

    real_write = folder.atomic_write_json

    def interrupt_after_two(path, obj):
        real_write(path, obj)
        if path.endswith("progress.json") and len(obj["history"]) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(folder, "atomic_write_json", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        _run(_cfg(), out_dir=part_dir, progress=False, checkpoint_seconds=0)
    monkeypatch.setattr(folder, "atomic_write_json", real_write)
    assert not os.path.exists(os.path.join(part_dir, "record.json"))
    with open(os.path.join(part_dir, "progress.json")) as fh:
        state = json.load(fh)
    assert len(state["history"]) == 2 and state["checkpoint"] == "checkpoint_2.keras"
    assert os.path.isfile(os.path.join(part_dir, "checkpoint_2.keras"))
    resumed = _run(_cfg(), out_dir=part_dir, progress=False, checkpoint_seconds=0)

    def strip(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert strip(resumed["history"]) == strip(rec["history"])
    assert resumed["final"]["test_error"] == rec["final"]["test_error"]
    assert resumed["deterministic"] is True  # CPU
    assert not [f for f in os.listdir(part_dir) if f.startswith("checkpoint")]
    with pytest.raises(ValueError, match="different config"):
        _run(_cfg(rate=0.2), out_dir=part_dir, progress=False)


def test_placement_a_shifts_the_deeper_bn_layers_and_none_does_not(keras):
    """Small PreResNet on the bundled digits, dropout-(a) 0.5 vs no dropout (paper Fig. 4)."""
    common = {"net": "preresnet", "size": "small", "data": "digits", "recipe": "cpu",
              "epochs": 6, "lr_drops": [4, 5], "seed": 0, "train_eval_samples": None,
              "stats_samples": None}
    a = _run({**common, "placement": "a", "rate": 0.5, "evaluations": {"adjust_bn": {}}},
             progress=False)
    none = train.run({**common, "placement": "none"}, progress=False)

    ratios_a = {r["bn_layer"]: r["ratio"] for r in a["final"]["shift"]}
    ratios_none = [r["ratio"] for r in none["final"]["shift"]]
    case_a = [name for name in ratios_a if name.endswith("_bn3")]  # noise right before them
    assert len(case_a) == 6
    # case (a): p = 0.5 gives Var_train >= 2 Var_test, the stored variance is about 2x too large
    assert all(ratios_a[name] > 1.5 for name in case_a)
    # deeper layers without noise right in front inherit a shift, larger than without dropout
    names = list(ratios_a)
    deeper = [n for n in names[len(names) // 2:] if not n.endswith("_bn3")]
    ratios_none_by = {r["bn_layer"]: r["ratio"] for r in none["final"]["shift"]}
    assert np.mean([ratios_a[n] for n in deeper]) > np.mean([ratios_none_by[n] for n in deeper])
    # without dropout the stored statistics match inference up to the EMA's sampling noise
    # (BN momentum 0.9 averages about 10 batches of 64 images)
    assert np.median(ratios_none) < 1.05 and max(ratios_none) < 1.25
    # Table 3 direction: re-estimating BN on the training data does not raise dropout-(a)'s
    # test error (on 8x8 digits after 6 epochs the two can be one test image apart)
    one_image = 100.0 / a["data"]["n_test"]
    assert a["final"]["test_error_adjust_sequential"] <= a["final"]["test_error"] + one_image
    # the step schedule, as before: 0.05, divided by 10 after 4 and after 5 epochs
    assert [h["lr"] for h in a["history"]] == pytest.approx([0.05] * 4 + [0.005, 0.0005])
    # Fig. 5 quantities are recorded per epoch (see the report for their ordering at this size)
    assert all("train_acc_inference_mode" in h for h in a["history"])


def test_placement_a_inference_mode_accuracy_falls_below_training_mode(keras):
    """Paper Fig. 5 on real images: dropout-(a) 0.5, the training data scored both ways.

    Needs Fashion-MNIST offline (``apt-get install dataset-fashion-mnist`` or Keras' cache). On
    the 8x8 digits a 6-block network's inference-mode accuracy stays above its noisy
    training-mode accuracy, so the bundled digits cannot show this gap at test size.
    """
    from varshift.data.fashion_mnist import find_fashion_mnist

    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not available offline (apt-get install dataset-fashion-mnist)")
    rec = train.run({"net": "preresnet", "size": "small", "data": "fashion_mnist",
                     "recipe": "cpu", "epochs": 4, "lr_drops": [3], "placement": "a",
                     "rate": 0.5, "subset": {"n_train": 2000}, "train_eval_samples": 500,
                     "stats_samples": 300, "seed": 0}, progress=False)
    assert rec["data"]["n_train"] == 2000 and rec["data"]["subset"]["n_train"] == 2000
    for h in rec["history"][-2:]:
        assert h["train_acc_inference_mode"] < h["train_acc_train_mode"], h
    # the shift behind it: case-(a) layers' stored variance far above the inference variance
    assert min(r["ratio"] for r in rec["final"]["shift"] if r["bn_layer"].endswith("_bn3")) > 1.5


def test_training_mode_accuracy_is_the_eager_one_and_leaves_the_training_as_it_was(keras):
    """Fig. 5's training-mode accuracy (noise on, BN on batch statistics), compiled, predicts
    what eager training-mode calls predict with the same noise draws, and must not move BN's
    moving statistics or the noise seeds: the run's training is the same with or without it."""
    from varshift.models import dropout_bn_model
    from varshift.train.evaluation import training_mode_predictor

    model = dropout_bn_model(4, 0.5, seed=0, compile=False)
    head = keras.Sequential([keras.Input((4,)), model, keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(3.0, 2.0, (256, 4)).astype("float32")
    before = [keras.ops.convert_to_numpy(v) for v in head.non_trainable_variables]
    predict = training_mode_predictor(head)
    with train.frozen_state(head):
        train.reseed_noise(head, 1, 7)
        compiled = [np.asarray(predict(x[i:i + 64])) for i in range(0, 256, 48)]
    with train.frozen_state(head):
        train.reseed_noise(head, 1, 7)
        eager = [np.argmax(keras.ops.convert_to_numpy(head(x[i:i + 64], training=True)), -1)
                 for i in range(0, 256, 48)]
    assert any(v.size > 1 for v in before)  # BN's moving mean/variance are among them
    for b, a in zip(before, head.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), b)
    for c, e in zip(compiled, eager, strict=True):  # 64 and a last batch of 16, one trace
        np.testing.assert_array_equal(c, e)
    assert len({tuple(c) for c in compiled}) > 1

    base = {"net": "wrn", "size": "small", "data": "digits", "recipe": "cpu", "epochs": 2,
            "placement": "a", "rate": 0.5, "seed": 2, "train_eval_samples": 200,
            "stats_samples": 200, "eval_batch_size": 128}
    on = train.run({**base, "epoch_eval": True}, progress=False)
    off = train.run({**base, "epoch_eval": False}, progress=False)
    assert [h["loss"] for h in on["history"]] == [h["loss"] for h in off["history"]]
    assert on["final"]["test_error"] == off["final"]["test_error"]
    assert all(0 < h["train_acc_train_mode_fixed"] < 1 for h in on["history"])


def test_evaluation_hooks_are_named_in_the_config_and_add_to_final(keras, tmp_path):
    base = {"net": "wrn", "size": "small", "data": "digits", "recipe": "cpu", "epochs": 1,
            "seed": 1, "train_eval_samples": 100, "stats_samples": 100, "epoch_eval": False}
    seen = []

    def first(model, context):
        seen.append(("first", dict(context.params), context.seed))
        return {"n_params": model.count_params()}

    def second(model, context):
        seen.append(("second", dict(context.params), len(context.x_train)))
        return {"test_error_again": context.test_error(model)}

    config = {**base, "evaluations": {"second": {}, "first": {"k": 3}}}
    out = tmp_path / "run"
    for hooks, message in (({"first": first}, r"missing \['second'\]"),
                           ({"first": first, "second": second, "third": first},
                            r"not in the config \['third'\]"),
                           ({"first": first, "second": 3}, "callable")):
        with pytest.raises((ValueError, TypeError), match=message):
            train.run(config, evaluations=hooks, out_dir=out, progress=False)
    assert not out.exists()  # checked before any work
    rec = train.run(config, evaluations={"first": first, "second": second}, progress=False)
    assert rec["config"]["evaluations"] == {"second": {}, "first": {"k": 3}}
    assert [s[0] for s in seen] == ["first", "second"]  # in the order of their names
    assert seen[0][1:] == ({"k": 3}, 1)
    assert rec["final"]["test_error_again"] == rec["final"]["test_error"]
    assert rec["final"]["n_params"] > 0
    with pytest.raises(ValueError, match="test_error"):
        train.run({**base, "evaluations": {"bad": {}}},
                  evaluations={"bad": lambda m, c: {"test_error": 0.0}}, progress=False)
    with pytest.raises(ValueError, match="JSON"):
        train.RunConfig.from_any({**base, "evaluations": {"x": {"f": first}}}).resolved()


_BUSY_THREADS = """
import glob, sys
enforce = sys.argv[1] == "1"
if enforce:
    from varshift.train.trainer import apply_threads
    apply_threads(1, "jax")
import jax, jax.numpy as jnp

def per_thread_cpu():
    out = {}
    for path in glob.glob("/proc/self/task/*/stat"):
        fields = open(path).read().rsplit(")", 1)[1].split()
        out[path.split("/")[4]] = int(fields[11]) + int(fields[12])
    return out

x, w = jnp.ones((128, 28, 28, 32)), jnp.full((3, 3, 32, 64), 0.01)
loss = lambda w: jnp.sum(jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) ** 2)
step = jax.jit(jax.grad(loss))
step(w).block_until_ready()
before = per_thread_cpu()
for _ in range(20):
    step(w).block_until_ready()
used = sorted((t - before.get(k, 0) for k, t in per_thread_cpu().items()), reverse=True)
print(sum(1 for t in used if t > 0.1 * sum(used)))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads Linux's per-thread CPU time")
def test_threads_1_keeps_a_jax_step_on_one_thread():
    """``threads=1`` on JAX: the CPU time of a jitted training step is spent on one thread
    (without it, XLA's CPU client spreads a step over a pool of one thread per core)."""
    import subprocess
    import sys

    pytest.importorskip("jax")
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC", "XLA_FLAGS")}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                         env.get("PYTHONPATH", "")])
    env["KERAS_BACKEND"] = "jax"

    def busy(enforce):
        res = subprocess.run([sys.executable, "-c", _BUSY_THREADS, enforce], env=env,
                             capture_output=True, text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stderr[-2000:]
        return int(res.stdout.split()[-1])

    assert busy("1") == 1
    if len(os.sched_getaffinity(0)) >= 2:
        assert busy("0") >= 2  # the default: more than one thread works on a step
