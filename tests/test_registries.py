"""The registries: every network entry builds and is read by everyone; every noise kind's s^2
matches a Monte Carlo estimate of its own layer; seeds and subsets come from one place."""

import re

import numpy as np
import pytest

from varshift import nets, noise, seeds, train
from varshift.nets import NETWORKS
from varshift.noise import NOISES


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("placement", ["a", "b", "after_bn"])
def test_every_network_entry_builds_small_with_each_placement(keras, name, placement):
    entry = NETWORKS[name]
    model = nets.build(name, placement=placement, rate=0.3, input_shape=(16, 16, 3), seed=0,
                       **entry.small_size)
    assert model.output_shape == (None, 10)
    noisy = [layer for layer in model.layers if layer.name.endswith("_noise")]
    assert noisy and all(type(layer).__name__ == "Dropout" and layer.rate == 0.3 for layer in noisy)
    if placement == "after_bn":
        assert [layer.name for layer in noisy] == ["head_noise"]
    assert nets.bn_count(model) > 0


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_entry_is_complete_and_read_by_train_and_reproduce(name):
    from reproduce import cost, plotting, profiles

    entry = NETWORKS[name]
    assert callable(entry.builder_function())
    assert nets.DEFAULT_SIZES[name] == entry.paper_size and nets.SMALL_SIZES[name] == entry.small_size
    for kind, recipe in (("paper", entry.paper_recipe), ("cpu", entry.cpu_recipe)):
        assert train.recipe_for(name, kind) == recipe
        assert all(0 < t < recipe.epochs for t in recipe.lr_drops)
    assert train.RECIPES[name] == entry.paper_recipe and train.CPU_RECIPES[name] == entry.cpu_recipe
    assert profiles.PAPER_NAMES[name] == entry.paper_name
    assert re.fullmatch(r"#[0-9a-f]{6}", plotting.NET_COLORS[name])
    assert 0 < cost.relative_cost(name) < float("inf")


def test_registry_order_is_everyone_s_order():
    from reproduce import profiles

    assert nets.NAMES == profiles.NETWORKS == tuple(NETWORKS)
    assert len({n.paper_name for n in NETWORKS.values()}) == len(NETWORKS)


def test_plan_order_puts_cheap_networks_first():
    from reproduce import plan
    from reproduce.cost import relative_cost
    from reproduce.profiles import get_profile

    specs = [plan.run_spec(get_profile("smoke"), net) for net in NETWORKS]
    ordered = [s.config["net"] for s in sorted(specs, key=plan.priority)]
    assert ordered == sorted(NETWORKS, key=relative_cost)


def _layer(kind, value):
    if kind.factory is not None:
        return kind.make(value, seed=3)
    return kind.classes()[0](value, seed=3)


@pytest.mark.parametrize("name", [n for n, k in NOISES.items() if k.multiplicative])
@pytest.mark.parametrize("value", [0.3])
def test_registry_noise_variance_matches_monte_carlo_of_the_layer(keras, name, value):
    kind = NOISES[name]
    layer = _layer(kind, value)
    assert noise.kind_of(layer) is kind and kind.value_of(layer) == pytest.approx(value)
    x = np.ones((50_000, 2, 8), dtype="float32")  # 800k factors m (spatial: 400k independent)
    m = keras.ops.convert_to_numpy(layer(x, training=True)).astype("float64")
    se = np.sqrt(2.0 / 400_000)  # relative standard error of a variance, Gaussian-like tails
    assert m.mean() == pytest.approx(1.0, abs=0.01)
    assert m.var() == pytest.approx(float(kind.noise_var(value)), rel=10 * se + 0.01)
    assert noise.noise_variance(name, value) == pytest.approx(float(kind.noise_var(value)))


def test_non_multiplicative_kinds_have_no_noise_variance(keras):
    for name in ("alpha_dropout", "gaussian_noise"):
        assert not NOISES[name].multiplicative and np.isnan(noise.noise_variance(name, 0.3))
    assert noise.kind_of(keras.layers.Dense(2)) is None
    with pytest.raises(ValueError, match="noise='bernoulli'"):
        noise.get("bernoulli")


@pytest.mark.parametrize("name", noise.buildable())
def test_every_buildable_noise_is_placed_with_its_own_parameter(keras, name):
    kind = NOISES[name]
    model = nets.small("wrn", placement="b", noise=name, seed=0, **{kind.param: 0.2})
    noisy = [layer for layer in model.layers if layer.name.endswith("_noise")]
    assert noisy and all(noise.kind_of(layer) is kind for layer in noisy)
    assert [kind.value_of(layer) for layer in noisy] == pytest.approx([0.2] * len(noisy))
    other = "beta" if kind.param == "rate" else "rate"
    with pytest.raises(ValueError, match=f"Argument `{other}` is not a parameter"):
        nets.small("wrn", placement="b", noise=name, **{other: 0.2})


def test_run_config_and_run_spec_call_uout_s_parameter_beta():
    from reproduce import plan
    from reproduce.profiles import get_profile

    cfg = train.RunConfig(net="wrn", placement="b", noise="uout", beta=0.5)
    assert cfg.noise_value == 0.5 and cfg.to_dict()["beta"] == 0.5
    with pytest.raises(ValueError, match="Argument `rate` is not a parameter of noise='uout'"):
        train.RunConfig(net="wrn", placement="b", noise="uout", rate=0.5).resolved()
    spec = plan.run_spec(get_profile("smoke"), "wrn", "b", noise="uout", beta=0.5)
    assert spec.config["beta"] == 0.5 and "rate" not in spec.config
    assert plan.noise_value(spec.config) == 0.5 and " uout 0.5 " in spec.label
    # dropout keys do not change: the config holds `rate` only
    assert "beta" not in plan.run_spec(get_profile("smoke"), "wrn", "a", 0.5).config


def test_derive_seed_is_one_table_and_keeps_the_historical_streams():
    assert seeds.derive_seed(3, "epoch_data", 2) == 3 * 100003 + 2
    assert seeds.derive_seed(3, "stats_data") == 3 * 100003 + 99991
    assert seeds.derive_seed(5, "noise_layer", 7) == (5 * 1000003 + 7) % (2**31 - 1)
    assert seeds.derive_seed(4, "shuffle") == [4, 0x5EED]
    draws = {p: tuple(seeds.rng(1, p).integers(0, 2**31, 4)) for p in seeds.PURPOSES}
    assert len(set(draws.values())) == len(draws)  # every purpose its own stream
    assert draws["shuffle"] == tuple(seeds.rng(1, "shuffle").integers(0, 2**31, 4))
    with pytest.raises(ValueError, match="purpose='weights'"):
        seeds.derive_seed(0, "weights")


def test_load_subset_is_one_mechanism_for_every_data_set():
    from varshift import data

    (x, y), (xt, yt), info = data.load("digits", subset={"n_train": 200, "n_test": 50})
    assert (len(x), len(xt)) == (200, 50) and (info["n_train"], info["n_test"]) == (200, 50)
    assert np.bincount(y).tolist() == [20] * 10 and np.bincount(yt).tolist() == [5] * 10
    assert info["subset"]["of_n_train"] > 200
    (x2, _), _, _ = data.load("digits", seed=0, subset={"n_train": 200, "n_test": 50})
    np.testing.assert_array_equal(x, x2)
    (xs, ys), _, _ = data.load("synthetic", subset={"n_train": 100}, n_train=300, n_test=40)
    assert len(xs) == 100
    with pytest.raises(ValueError, match="Argument `subset`"):
        data.load("digits", subset={"train": 10})
