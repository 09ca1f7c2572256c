"""audit: every (BN, noise) pair, its case, and d / cos^2 from the weights."""

import logging

import numpy as np
import pytest
from conftest import to_numpy

import varshift
from varshift import theory

COLUMNS = ["bn_layer", "noise_layer", "noise_kind", "param", "param_value", "case", "d",
           "mean_cos2"]


def _pairs(df):
    return [tuple(r) for r in df[["bn_layer", "noise_layer", "noise_kind", "case"]].values]


def test_every_noise_kind_and_case(keras):
    from varshift.layers import Uout

    layers = keras.layers
    inputs = keras.Input((8, 8, 4))
    x = layers.SpatialDropout2D(0.1, name="sd")(inputs)
    x = layers.Conv2D(6, 3, padding="same", name="conv_b")(x)  # sd -> conv -> bn1: case b
    x = layers.BatchNormalization(name="bn1")(x)
    skip = layers.GaussianDropout(0.2, name="gd")(x)
    y = layers.Conv2D(6, 1, name="c1")(skip)
    y = layers.ReLU()(y)
    y = layers.Conv2D(6, 1, name="c2")(y)
    y = layers.Add(name="add")([y, skip])  # gd -> add -> bn2: a merge, no closed form
    y = layers.BatchNormalization(name="bn2")(y)
    z = layers.AlphaDropout(0.1, name="ad")(y)
    z = layers.Conv2D(6, 1, name="c3")(z)
    z = layers.Conv2D(6, 1, name="c4")(z)  # ad -> c3 -> c4 -> bn3: deeper
    z = Uout(0.3, name="uout")(z)  # uout -> bn3 through an activation: case a
    z = layers.Activation("relu")(z)
    z = layers.BatchNormalization(name="bn3")(z)
    z = layers.Flatten()(z)
    z = layers.Dropout(0.5, name="after_all_bn")(z)  # no BN after it: not reported
    outputs = layers.Dense(2)(z)
    model = keras.Model(inputs, outputs)

    df = varshift.audit(model)
    assert set(COLUMNS) <= set(df.columns)
    assert _pairs(df) == [
        ("bn1", "sd", "spatial_dropout", "b"),
        ("bn2", "gd", "gaussian_dropout", "merge"),
        ("bn3", "ad", "alpha_dropout", "deeper"),
        ("bn3", "uout", "uout", "a"),
    ]
    assert df["param_value"].tolist() == pytest.approx([0.1, 0.2, 0.1, 0.3])
    kernel = to_numpy(model.get_layer("conv_b").kernel)
    b = df.iloc[0]
    assert b["d"] == theory.fan_in(kernel) == 3 * 3 * 4
    assert b["mean_cos2"] == pytest.approx(float(np.mean(theory.cos2_theta(kernel))), rel=1e-9)
    assert b["d_cos2"] == pytest.approx(b["d"] * b["mean_cos2"])
    assert b["weight_layer"] == "conv_b"
    assert np.isnan(df["d"][1:]).all() and np.isnan(df["mean_cos2"][1:]).all()
    assert df["route"][1] == "gd -> add -> bn2"
    assert [t if isinstance(t, str) else None for t in df["through"]] == [None, "add", None, None]
    assert df["channels"].tolist() == ["all"] * 4
    assert df["noise_var"].tolist()[1] == pytest.approx(0.2 / 0.8)
    assert df["noise_var"].tolist()[3] == pytest.approx(0.3**2 / 3)


def test_cos2_follows_the_weights(keras):
    from varshift.models import dropout_dense_bn_model

    model = dropout_dense_bn_model(10, 3, 0.5, compile=False)
    kernel = np.ones((10, 3), "float32")
    kernel[:, 1] = np.linspace(-1.0, 1.0, 10)  # sums to zero: cos^2 = 0
    model.get_layer("dense").kernel.assign(kernel)
    row = varshift.audit(model).iloc[0]
    assert row["case"] == "b" and row["d"] == 10
    assert row["mean_cos2"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)


def test_nested_models_and_custom_layers(keras):
    from varshift.layers import Uout

    layers = keras.layers

    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.noise = layers.Dropout(0.3, name="block_drop")
            self.bn = layers.BatchNormalization(name="block_bn")

        def call(self, x, training=None):
            return self.bn(self.noise(x, training=training) * 2.0, training=training)

    inner = keras.Sequential([keras.Input((5,)), Uout(0.2, name="inner_uout"),
                              layers.Dense(5, name="inner_dense"),
                              layers.BatchNormalization(name="inner_bn")], name="inner")
    inputs = keras.Input((5,))
    h = layers.Dropout(0.4, name="outer_drop")(inputs)
    h = inner(h)  # outer_drop -> inner_uout -> inner_dense -> inner_bn
    nested_only = keras.Model(inputs, h)
    df = varshift.audit(nested_only)  # Keras' own graph, every backend
    assert _pairs(df) == [("inner_bn", "outer_drop", "dropout", "b"),
                          ("inner_bn", "inner_uout", "uout", "b")]
    assert set(df["method"]) == {"keras-graph"}
    h = Block(name="block")(h)
    model = keras.Model(inputs, h)
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(ValueError, match="custom layer.*'block'.*KERAS_BACKEND=tensorflow"):
            varshift.audit(model)
        pytest.skip("raw operations inside custom layers are traced on TensorFlow only")
    df = varshift.audit(model)
    assert set(df["method"]) == {"tf-trace"}
    assert _pairs(df) == [
        ("inner_bn", "outer_drop", "dropout", "b"),
        ("inner_bn", "inner_uout", "uout", "b"),
        ("block_bn", "block_drop", "dropout", "a"),
    ]
    assert df["bn_path"].tolist() == ["inner/inner_bn", "inner/inner_bn", "block/block_bn"]
    assert df["noise_path"].tolist()[1] == "inner/inner_uout"
    assert df["d"].tolist()[:2] == [5, 5]


def test_no_noise_is_an_empty_frame_with_a_message_no_bn_an_error(keras, caplog):
    from varshift.models import bn_model, dropout_model

    with pytest.raises(ValueError, match="no BatchNormalization"):  # docs/api.md, Input contract
        varshift.audit(dropout_model(3, 0.5))
    with caplog.at_level(logging.WARNING, logger="varshift.diagnostics"):
        no_noise = varshift.audit(bn_model(3))
    assert no_noise.empty and set(COLUMNS) <= set(no_noise.columns)
    assert "no noise layer" in no_noise.attrs["message"] and "no noise layer" in caplog.text

    inputs = keras.Input((3,))
    h = keras.layers.BatchNormalization()(inputs)
    only_after = keras.Model(inputs, keras.layers.Dropout(0.5)(h))
    df = varshift.audit(only_after)
    assert df.empty and "after the last BN" in df.attrs["message"]


def test_audit_does_not_change_the_model(keras):
    from varshift.models import dropout_bn_model

    model = dropout_bn_model(4, 0.5)
    before = [w.copy() for w in model.get_weights()]
    varshift.audit(model)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert "call" not in model.get_layer("bn").__dict__  # the recording wrapper is gone


def test_elementwise_layers_with_weights_keep_case_a(keras):
    layers = keras.layers
    inputs = keras.Input((4,))
    h = layers.Dropout(0.5, name="drop")(inputs)
    h = layers.PReLU(name="prelu")(h)  # has weights, but acts per element
    h = layers.BatchNormalization(name="bn")(h)
    df = varshift.audit(keras.Model(inputs, h))
    assert df[["case", "n_weight_layers", "route"]].values.tolist() == [
        ["a", 0, "drop -> prelu -> bn"]]


def _merge_pool_concat_model(keras):
    layers = keras.layers
    inputs = keras.Input((8, 8, 4))
    a = layers.Dropout(0.5, name="drop_a")(inputs)
    a = layers.AveragePooling2D(2, name="avgpool")(a)
    bn_pool = layers.BatchNormalization(name="bn_pool")(a)  # drop_a -> avgpool -> bn: pool
    b = layers.Dropout(0.5, name="drop_b")(bn_pool)
    b = layers.Conv2D(4, 3, padding="same", name="conv_b")(b)
    b = layers.Add(name="residual")([b, bn_pool])
    bn_add = layers.BatchNormalization(name="bn_add")(b)  # PreResNet dropout-(b): merge
    c = layers.Dropout(0.3, name="drop_c")(bn_add)
    c = layers.Conv2D(6, 1, name="conv_c")(c)
    d = layers.Conv2D(2, 1, name="conv_d")(bn_add)
    cat = layers.Concatenate(name="cat")([d, c])  # DenseNet: channels 2..7 carry drop_c
    bn_cat = layers.BatchNormalization(name="bn_cat")(cat)
    e = layers.Dropout(0.2, name="drop_e")(bn_cat)
    e = layers.MaxPooling2D(2, name="maxpool")(layers.Conv2D(3, 1, name="conv_e")(e))
    out = layers.BatchNormalization(name="bn_max")(e)  # one weight layer, then max pooling
    return keras.Model(inputs, out)


def test_merge_pool_and_concatenate_are_labelled(keras):
    df = varshift.audit(_merge_pool_concat_model(keras)).set_index("bn_layer")
    rows = [[bn, r.noise_layer, r.case, r.through if isinstance(r.through, str) else None,
             r.channels] for bn, r in df.iterrows()]
    assert rows == [
        ["bn_pool", "drop_a", "pool", "avgpool", "all"],
        ["bn_add", "drop_b", "merge", "residual", "all"],
        ["bn_cat", "drop_c", "b", None, "2:8 of 8"],
        ["bn_max", "drop_e", "pool", "maxpool", "all"],
    ]
    # no closed form behind a merge or pooling layer; Concatenate keeps case (b)'s d
    assert np.isnan(df.loc[["bn_pool", "bn_add", "bn_max"], "d"]).all()
    assert df.loc["bn_cat", "d"] == 4 and df.loc["bn_cat", "weight_layer"] == "conv_c"


def test_correct_direct_skips_merge_and_pool(keras):
    df = varshift.correct_direct(_merge_pool_concat_model(keras), inplace=False)
    reasons = dict(zip(df["bn_layer"], df["reason"], strict=True))
    assert "pooling layer (avgpool)" in reasons["bn_pool"]
    assert "merge layer (residual)" in reasons["bn_add"]
    assert (df["action"] == "skipped").all()


def test_shared_bn_layer_is_reported_with_its_reason(keras):
    from varshift.bnstats import shared_bn_layers

    layers = keras.layers
    inputs = keras.Input((6,))
    bn = layers.BatchNormalization(name="shared_bn")
    a = bn(layers.Dropout(0.5, name="drop")(inputs))  # first call: behind the dropout
    b = bn(layers.Dense(6, name="dense")(a))  # second call: behind a Dense
    model = keras.Model(inputs, b)
    df = varshift.audit(model)
    # the second call's input passes the first call (a normalisation) before any noise: one row
    assert df["bn_layer"].tolist() == ["shared_bn"] and df["case"].tolist() == ["a"]
    assert all("called 2 times" in reason for reason in df["shared"])
    assert shared_bn_layers(model) == {"shared_bn"}
    from varshift.models import dropout_bn_model

    assert shared_bn_layers(dropout_bn_model(4, 0.5)) == set()
    assert varshift.audit(dropout_bn_model(4, 0.5))["shared"].isna().all()
