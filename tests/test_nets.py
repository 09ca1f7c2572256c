"""The paper's four CIFAR networks: sizes, BN counts, placements, training and saving."""

import os

import numpy as np
import pytest

from varshift import nets

NOISE_TYPES = {"dropout": "Dropout", "gaussian": "GaussianDropout", "uout": "Uout"}


def _noise_layers(model):
    return [layer for layer in model.layers if layer.name.endswith("_noise")]


def _next_layers(model, layer):
    """Layers that consume ``layer``'s output in the functional graph."""
    out = layer.output
    return [other for other in model.layers
            if any(t is out for t in (other.input if isinstance(other.input, list)
                                      else [other.input]))]


# (name, placement, noise): every architecture, every noise kind (Uout included), every placement
SMALL_CASES = [
    ("preresnet", "a", "uout"),
    ("resnext29", "b", "dropout"),
    ("wrn", "b", "gaussian"),
    ("densenet_bc", "after_bn", "uout"),
]


@pytest.mark.parametrize(("name", "placement", "noise"), SMALL_CASES)
def test_small_net_trains_one_epoch_and_round_trips_keras_file(keras, tmp_path, name, placement,
                                                               noise):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, size=64)
    strength = {"beta": 0.3} if noise == "uout" else {"rate": 0.3}  # Uout's parameter is beta
    model = nets.small(name, placement=placement, noise=noise, input_shape=(16, 16, 3), seed=1,
                       **strength)
    assert 5_000 < nets.trainable_params(model) < 100_000  # "a few 10k parameters"
    kinds = {type(layer).__name__ for layer in _noise_layers(model)}
    assert kinds == {NOISE_TYPES[noise]}
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(after, before, strict=True))

    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    if noise == "uout":
        rates = {layer.beta for layer in loaded.layers if layer.name.endswith("_noise")}
        assert rates == {0.3}


def test_full_size_parameter_and_bn_counts_match_table2(keras):
    # Table 2 parameter counts (CIFAR-10) and Fig. 4 BN-layer counts
    expected = {
        "preresnet": (1.70e6, 163),
        "resnext29": (34.43e6, 31),
        "wrn": (36.48e6, 25),
        "densenet_bc": (0.77e6, 99),
    }
    for name, (params, bns) in expected.items():
        model = nets.build(name)
        assert nets.bn_count(model) == bns, name
        assert abs(nets.trainable_params(model) - params) / params < 0.01, name
        assert model.output_shape == (None, 10)
        del model
        keras.backend.clear_session()
    # PreResNet-110, the basic-block network the paper's text names: 6 x 18 + 1 BN layers
    model = nets.build("preresnet", depth=110)
    assert nets.bn_count(model) == 109
    assert abs(nets.trainable_params(model) - 1.73e6) / 1.73e6 < 0.01


def test_cifar100_head_and_input_shape(keras):
    model = nets.small("wrn", num_classes=100, input_shape=(28, 28, 1))
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 100)
    assert model.get_layer("fc").dtype == "float32"


@pytest.mark.parametrize("name", nets.NAMES)
def test_placements_put_one_noise_layer_per_block_where_the_paper_says(keras, name):
    none = nets.small(name)
    assert _noise_layers(none) == []
    blocks = {layer.name.split("_")[0] for layer in none.layers
              if layer.name.startswith("block")}
    for placement, follows in (("a", keras.layers.BatchNormalization),
                               ("b", keras.layers.Conv2D)):
        model = nets.small(name, placement=placement, rate=0.5, seed=0)
        noise = _noise_layers(model)
        # one noise layer per block, named after it: block{i}_noise
        assert sorted(layer.name for layer in noise) == sorted(f"{b}_noise" for b in blocks)
        for layer in noise:
            (nxt,) = _next_layers(model, layer)
            assert isinstance(nxt, follows), (placement, layer.name, nxt.name)
            # the noise sits in front of the block's LAST BN (a) / LAST conv (b)
            block = layer.name.split("_")[0]
            own = [lay.name for lay in model.layers if lay.name.startswith(block + "_")
                   and isinstance(lay, follows) and "shortcut" not in lay.name]
            assert nxt.name == own[-1]
        assert nets.bn_count(model) == nets.bn_count(none)
        assert nets.trainable_params(model) == nets.trainable_params(none)
    head = nets.small(name, placement="after_bn", rate=0.2)
    (noise,) = _noise_layers(head)
    assert noise.name == "head_noise"
    assert _next_layers(head, noise)[0].name == "fc"


@pytest.mark.parametrize("name", nets.NAMES)
def test_audit_reports_placement_a_as_case_a_and_b_as_case_b(keras, name):
    diagnostics = pytest.importorskip("varshift.diagnostics")
    for placement in ("a", "b"):
        model = nets.small(name, placement=placement, rate=0.5, seed=0)
        report = diagnostics.audit(model)
        names = {layer.name for layer in _noise_layers(model)}
        assert set(report["noise_layer"]) == names  # every block's noise layer is found
        for noise_name, rows in report.groupby("noise_layer"):
            # the BN the noise feeds first (fewest weight layers between) is case `placement`,
            # or, where a (b) dropout sits before a block's last convolution (PreResNet, WRN),
            # "merge": it reaches the next block's BN only through the residual Add
            nearest = rows[rows["n_weight_layers"] == rows["n_weight_layers"].min()]
            cases = set(nearest["case"])
            assert cases <= {placement, "merge"} and cases, (noise_name, list(nearest["bn_layer"]))
            merged = nearest[nearest["case"] == "merge"]
            assert all(name.endswith("_add") for name in merged["through"]), noise_name
            if placement == "a":
                assert list(rows["case"]) == ["a"]
            else:
                assert "a" not in set(rows["case"])


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="name"):
        nets.build("resnet50")
    with pytest.raises(ValueError, match="placement"):
        nets.small("wrn", placement="c")
    with pytest.raises(ValueError, match="noise"):
        nets.small("wrn", placement="a", noise="bernoulli")
    with pytest.raises(ValueError, match="rate"):
        nets.small("wrn", placement="a", rate=1.0)
    with pytest.raises(ValueError, match="depth"):
        nets.build("wrn", depth=27)
    with pytest.raises(ValueError, match="size keyword"):
        nets.build("densenet_bc", widen_factor=3)
