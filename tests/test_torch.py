"""varshift.torch: audit, measure_shift and recalibrate_bn on PyTorch models, against the peers
(``torch.optim.swa_utils.update_bn``), hand-written case lists for torchvision networks, and
numpy's pooled moments."""

import copy
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import varshift.torch as vt  # noqa: E402

torch.set_num_threads(1)


class SmallCNN(nn.Module):
    """Dropout -> BN in three places: case a (bn1), b through a conv (bn2, d = 8 x 3 x 3),
    b through a Linear (bn3, d = 16 x 4)."""

    def __init__(self, rate=0.5, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.drop1 = nn.Dropout(rate)
        self.bn1 = nn.BatchNorm2d(8)
        self.drop2 = nn.Dropout2d(rate / 2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.drop3 = nn.Dropout(rate)
        self.fc1 = nn.Linear(16 * 4, 32)
        self.bn3 = nn.BatchNorm1d(32)
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.drop1(F.relu(self.conv1(x)))))
        x = F.relu(self.bn2(self.conv2(self.drop2(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 2), 1)
        return self.head(F.relu(self.bn3(self.fc1(self.drop3(x)))))


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits as (train x, train y, test x, test y) tensors."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="module")
def trained(digits):
    """SmallCNN trained for 8 epochs on digits (seeded, CPU, about 2 s)."""
    x, y, _, _ = digits
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(8):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
    return model.eval()


def _error(model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) != y).float().mean())


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ measure_shift

def test_measure_shift_is_the_unbiased_pooled_variance_of_the_input(digits):
    torch.manual_seed(1)
    model = SmallCNN().eval()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.running_var.uniform_(0.5, 2.0)
            bn.running_mean.normal_()
    x = digits[0][:300]
    df = vt.measure_shift(model, x, batch_size=64, per_channel=True)
    # the input of bn2, by hand: pooled over samples x 8 x 8 positions, divide by N - 1
    with torch.no_grad():
        h = F.relu(model.bn1(model.drop1(F.relu(model.conv1(x)))))
        inp = model.conv2(model.drop2(h)).double()
    values = inp.permute(1, 0, 2, 3).reshape(16, -1).numpy()
    row = df.set_index("bn_layer").loc["bn2"]
    assert row["count"] == 300 * 8 * 8
    np.testing.assert_allclose(row["real_var_channels"], values.var(axis=1, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(row["real_mean_channels"], values.mean(axis=1), rtol=1e-5, atol=1e-7)
    assert row["moving_var"] == pytest.approx(float(model.bn2.running_var.double().mean()))
    assert list(df["bn_layer"]) == ["bn1", "bn2", "bn3"]
    assert "unbiased" in df.attrs["estimator"]


def test_measure_shift_does_not_depend_on_batching_and_changes_nothing(trained, digits):
    before = _state(trained)
    x = digits[0][:500]
    a = vt.measure_shift(trained, x, batch_size=500)
    b = vt.measure_shift(trained, [x[i:i + 37] for i in range(0, 500, 37)])
    np.testing.assert_allclose(a["real_var"], b["real_var"], rtol=1e-6)
    assert _same_state(before, _state(trained)) and not trained.training


def test_dropout_before_bn_leaves_a_shift_that_recalibration_removes(trained, digits):
    x, _, xt, yt = digits
    before = vt.measure_shift(trained, x)
    assert before.set_index("bn_layer").loc["bn1", "ratio"] > 1.05  # rate 0.5, case (a)
    fixed = vt.recalibrate_bn(trained, x, mode="sequential")
    after = vt.measure_shift(fixed, x)
    np.testing.assert_allclose(after["ratio"], 1.0, atol=0.01)
    np.testing.assert_allclose(after["ratio"], 1.0, atol=1e-4)  # sequential is exact
    assert _error(fixed, xt, yt) < _error(trained, xt, yt)


def test_one_pass_brings_the_shift_within_one_percent(trained, digits):
    x, _, xt, yt = digits
    fixed = vt.recalibrate_bn(trained, x, batch_size=700)
    after = vt.measure_shift(fixed, x)
    assert (after["ratio"] < 1.01).all(), after[["bn_layer", "ratio"]]
    assert _error(fixed, xt, yt) < _error(trained, xt, yt)


# ----------------------------------------------------------------------------- recalibrate_bn

def test_noise_true_stores_what_update_bn_stores(trained, digits):
    from torch.optim.swa_utils import update_bn

    x = digits[0][:400]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=400)
    peer = copy.deepcopy(trained)
    torch.manual_seed(7)
    update_bn(loader, peer)
    ours = vt.recalibrate_bn(trained, loader, noise=True, seed=7)
    for name in ("bn1", "bn2", "bn3"):
        a, b = getattr(ours, name), getattr(peer, name)
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-5, atol=1e-6)
    # and the shift stays: dropout was on
    assert vt.measure_shift(ours, x).set_index("bn_layer").loc["bn1", "ratio"] > 1.05


def test_noise_true_with_batches_gives_update_bns_means(trained, digits):
    from torch.optim.swa_utils import update_bn

    x = digits[0][:400]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=100)
    peer = copy.deepcopy(trained)
    torch.manual_seed(3)
    update_bn(loader, peer)
    ours = vt.recalibrate_bn(trained, loader, noise=True, seed=3)
    # equal batches: the pooled mean is the mean of the batch means (update_bn's average)
    torch.testing.assert_close(ours.bn1.running_mean, peer.bn1.running_mean, rtol=1e-5, atol=1e-6)
    # pooled variance = within-batch + between-batch: at least update_bn's (m-1)/m-scaled one
    m = 100 * 8 * 8
    assert bool((ours.bn1.running_var >= peer.bn1.running_var * (m - 1) / m - 1e-6).all())


def test_one_pass_on_one_bn_is_exact_pooling_whatever_the_batching(rng):
    net = nn.Sequential(nn.Linear(5, 3), nn.Dropout(0.3), nn.BatchNorm1d(3))
    x = torch.tensor(rng.normal(2.0, 3.0, (257, 5)), dtype=torch.float32)
    a = vt.recalibrate_bn(net, x, batch_size=10)
    b = vt.recalibrate_bn(net, x, batch_size=257)
    with torch.no_grad():
        h = net[0](x).double().numpy()
    np.testing.assert_allclose(a[2].running_mean.numpy(), h.mean(0), rtol=1e-5)
    np.testing.assert_allclose(a[2].running_var.numpy(), h.var(0, ddof=1), rtol=1e-5)
    torch.testing.assert_close(a[2].running_var, b[2].running_var, rtol=1e-6, atol=0)


def test_copy_by_default_inplace_returns_a_handle_that_restores(trained, digits):
    x = digits[0][:200]
    before = _state(trained)
    copy_ = vt.recalibrate_bn(trained, x)
    assert copy_ is not trained and _same_state(before, _state(trained))
    handle = vt.recalibrate_bn(trained, x, inplace=True)
    assert isinstance(handle, vt.StatsHandle) and handle.model is trained
    torch.testing.assert_close(trained.bn2.running_var, copy_.bn2.running_var)
    assert trained.bn1.num_batches_tracked == before["bn1.num_batches_tracked"]
    handle.remove()
    assert _same_state(before, _state(trained))
    with vt.recalibrate_bn(trained, x, inplace=True, mode="sequential"):
        assert not torch.equal(trained.bn3.running_var, before["bn3.running_var"])
    assert _same_state(before, _state(trained)) and not trained.training


def test_forward_fn_for_dict_batches_and_max_samples(trained, digits):
    x = digits[0][:300]
    dicts = [{"image": x[i:i + 50], "id": i} for i in range(0, 300, 50)]
    a = vt.recalibrate_bn(trained, dicts, forward_fn=lambda m, b: m(b["image"]), max_samples=120,
                          mode="sequential")
    b = vt.recalibrate_bn(trained, x[:120], mode="sequential", batch_size=50)
    torch.testing.assert_close(a.bn3.running_var, b.bn3.running_var, rtol=1e-6, atol=1e-7)


def test_channels_last_and_float64_models(trained, digits):
    x = digits[0][:200]
    ref = vt.recalibrate_bn(trained, x, mode="sequential")
    cl = copy.deepcopy(trained).to(memory_format=torch.channels_last)
    got = vt.recalibrate_bn(cl, x, mode="sequential")
    assert got.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got.bn2.running_var, ref.bn2.running_var, rtol=1e-5, atol=1e-6)
    f64 = vt.recalibrate_bn(copy.deepcopy(trained).double(), x, mode="sequential")
    assert f64.bn2.running_var.dtype == torch.float64
    torch.testing.assert_close(f64.bn2.running_var.float(), ref.bn2.running_var, rtol=1e-4,
                               atol=1e-6)


def test_sync_lazy_and_wrapped_batchnorm():
    x = torch.randn(32, 3, 6, 6)
    torch.manual_seed(0)
    sync = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.SyncBatchNorm(4))
    lazy = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.LazyBatchNorm2d())
    with pytest.raises(ValueError, match="uninitialised lazy"):
        vt.measure_shift(lazy, x)
    lazy(x)  # materialises BatchNorm2d(4)
    lazy.load_state_dict(sync.state_dict())
    a = vt.recalibrate_bn(sync, x, mode="sequential")
    b = vt.recalibrate_bn(nn.DataParallel(lazy), x, mode="sequential")
    torch.testing.assert_close(a[2].running_var, b[2].running_var)
    assert vt.audit(nn.DataParallel(sync), x[:2])["case"].tolist() == ["a"]


# ------------------------------------------------------------------------------------- audit

def _cases(df):
    return sorted((r.bn_layer, r.noise_layer, r.case, None if np.isnan(r.d) else int(r.d))
                  for r in df.itertuples())


def test_audit_small_cnn_cases_and_cos2(trained):
    df = vt.audit(trained, torch.zeros(2, 1, 8, 8))
    assert _cases(df) == [("bn1", "drop1", "a", None), ("bn2", "drop2", "b", 72),
                          ("bn3", "drop3", "b", 64)]
    w = trained.conv2.weight.detach().double().reshape(16, -1).numpy()
    cos2 = w.sum(1) ** 2 / (w.shape[1] * (w ** 2).sum(1))
    row = df.set_index("bn_layer").loc["bn2"]
    assert row["mean_cos2"] == pytest.approx(cos2.mean(), rel=1e-9)
    assert row["weight_layer"] == "conv2" and row["method"] == "torch.fx"
    assert row["noise_kind"] == "spatial_dropout" and row["param_value"] == pytest.approx(0.25)
    assert df.set_index("bn_layer").loc["bn1", "noise_var"] == pytest.approx(1.0)  # rate/(1-rate)


class FunctionalDropout(nn.Module):
    """``F.dropout`` in forward, before a BN (case a) and before a Linear -> BN (case b)."""

    def __init__(self, branchy=False):
        super().__init__()
        self.fc = nn.Linear(6, 4)
        self.bn = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 4)
        self.bn_out = nn.BatchNorm1d(4)
        self.branchy = branchy

    def forward(self, x):
        if self.branchy and float(x.abs().sum()) < 0:  # data-dependent: fx cannot trace it
            return x
        h = self.bn(F.dropout(self.fc(x), 0.2, self.training))
        return self.bn_out(self.out(F.dropout(torch.relu(h), p=0.4, training=self.training)))


@pytest.mark.parametrize("branchy, method", [(False, "torch.fx"), (True, "recorded")])
def test_audit_functional_dropout_fx_and_recorded(branchy, method):
    model = FunctionalDropout(branchy)
    before = _state(model)
    df = vt.audit(model, torch.randn(3, 6))
    assert _cases(df) == [("bn", "dropout", "a", None), ("bn_out", "dropout_1", "b", 4)]
    assert set(df["method"]) == {method} and sorted(df["param_value"]) == [0.2, 0.4]
    assert _same_state(before, _state(model)) and model.training


def _wrap(parent, attr, *modules):
    setattr(parent, attr, nn.Sequential(*modules))


def test_audit_torchvision_resnet18():
    tv = pytest.importorskip("torchvision")
    m = tv.models.resnet18(weights=None)
    _wrap(m.layer1[0], "conv2", nn.Dropout2d(0.1), m.layer1[0].conv2)
    _wrap(m.layer2[0], "conv1", m.layer2[0].conv1, nn.Dropout(0.3))
    _wrap(m.layer3[0], "relu", nn.ReLU(inplace=True), nn.Dropout(0.1))
    df = vt.audit(m, torch.randn(1, 3, 64, 64))
    assert _cases(df) == sorted([
        ("layer1.0.bn2", "layer1.0.conv2.0", "b", 64 * 9),
        ("layer2.0.bn1", "layer2.0.conv1.1", "a", None),
        ("layer3.0.bn2", "layer3.0.relu.1", "b", 256 * 9),  # the block's first relu call
        ("layer3.1.bn1", "layer3.0.relu.1", "b", 256 * 9),  # its second, after the add
        ("layer4.0.bn1", "layer3.0.relu.1", "merge", None),  # through layer3.1's add
        ("layer4.0.downsample.1", "layer3.0.relu.1", "merge", None),
    ])


def test_audit_torchvision_mobilenet_and_efficientnet():
    tv = pytest.importorskip("torchvision")
    m = tv.models.mobilenet_v3_small(weights=None)
    dw = m.features[1].block[0]
    _wrap(dw, "0", nn.Dropout(0.2), dw[0])  # before a 3x3 depthwise conv: d = 9
    ex = m.features[2].block[0]
    _wrap(ex, "0", ex[0], nn.Dropout(0.2))  # expand conv -> dropout -> BN
    df = vt.audit(m, torch.randn(1, 3, 64, 64))
    assert _cases(df) == [("features.1.block.0.1", "features.1.block.0.0.0", "b", 9),
                          ("features.2.block.0.1", "features.2.block.0.0.1", "a", None)]
    e = tv.models.efficientnet_b0(weights=None)
    blk = e.features[1][0].block
    _wrap(blk, "1", nn.Dropout(0.2), blk[1])  # before squeeze-excitation: scale * x, a merge
    dw = e.features[2][0].block[1]
    _wrap(dw, "0", nn.Dropout(0.2), dw[0])
    df = vt.audit(e, torch.randn(1, 3, 64, 64))
    assert _cases(df) == [("features.1.0.block.2.1", "features.1.0.block.1.0", "merge", None),
                          ("features.2.0.block.1.1", "features.2.0.block.1.0.0", "b", 9)]


def test_audit_concat_names_the_noisy_channels():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 1)
            self.drop, self.bn = nn.Dropout(0.5), nn.BatchNorm2d(10)

        def forward(self, x):
            return self.bn(torch.cat([self.a(x), self.drop(self.b(x))], dim=1))

    df = vt.audit(Cat(), torch.randn(2, 3, 5, 5))
    assert df[["case", "channels"]].values.tolist() == [["a", "4:10 of 10"]]


def test_audit_without_dropout_is_an_empty_frame_with_a_message():
    df = vt.audit(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)), torch.randn(2, 3))
    assert df.empty and "no dropout" in df.attrs["message"]
    df = vt.audit(nn.Sequential(nn.BatchNorm1d(3), nn.Dropout(0.5)), torch.randn(2, 3))
    assert df.empty and "upstream" in df.attrs["message"]


def test_audit_columns_are_the_keras_audits():
    pytest.importorskip("keras")
    from varshift.diagnostics.audit import AUDIT_COLUMNS

    assert vt.audit.__module__ == "varshift.torch.audit"
    from varshift.torch.audit import AUDIT_COLUMNS as TORCH_COLUMNS

    assert TORCH_COLUMNS == AUDIT_COLUMNS


# --------------------------------------------------------------------------------- bad input

def _bad_calls(model, x):
    return [
        (vt.audit, ("not a model", x), {}, TypeError, "`model`"),
        (vt.audit, (nn.Linear(3, 3), x), {}, ValueError, "no BatchNorm"),
        (vt.audit, (model, "x"), {}, TypeError, "`example_inputs`"),
        (vt.audit, (model, torch.zeros(2, 5, 8, 8)), {}, ValueError, "`example_inputs`"),
        (vt.audit, (FunctionalDropout(branchy=True), torch.zeros(2, 5)), {}, ValueError,
         "cannot be audited"),
        (vt.measure_shift, (model, None), {}, TypeError, "`data`"),
        (vt.measure_shift, (model, x[:0]), {}, ValueError, "`data`"),
        (vt.measure_shift, (model, x), {"batch_size": 0}, ValueError, "`batch_size`"),
        (vt.measure_shift, (model, x), {"per_channel": "yes"}, TypeError, "`per_channel`"),
        (vt.measure_shift, (model, np.array([["a"]])), {}, TypeError, "`data`"),
        (vt.recalibrate_bn, (model, x), {"mode": "simultaneous"}, ValueError, "`mode`"),
        (vt.recalibrate_bn, (model, x), {"mode": "sequential", "noise": True}, ValueError,
         "`noise`"),
        (vt.recalibrate_bn, (model, x), {"inplace": 1}, TypeError, "`inplace`"),
        (vt.recalibrate_bn, (model, x), {"max_samples": -1}, ValueError, "`max_samples`"),
        (vt.recalibrate_bn, (model, x), {"forward_fn": 3}, TypeError, "`forward_fn`"),
        (vt.recalibrate_bn, (model, (i for i in [x])), {}, TypeError, "`data`"),
        (vt.recalibrate_bn, (model, torch.zeros(4, 2, 8, 8)), {"inplace": True}, ValueError,
         "`data`"),
        (vt.recalibrate_bn, (model, [{"x": x}]), {"inplace": True}, TypeError, "forward_fn"),
    ]


def test_bad_input_is_one_line_naming_the_argument_and_the_model_is_untouched(trained, digits):
    x = digits[0][:64]
    before = _state(trained)
    for fn, args, kwargs, error, needle in _bad_calls(trained, x):
        with pytest.raises(error) as info:
            fn(*args, **kwargs)
        text = str(info.value)
        assert needle in text and "\n" not in text, (fn.__name__, kwargs, text)
        assert _same_state(before, _state(trained)) and not trained.training


def test_nan_in_a_later_batch_leaves_the_model_as_it_was(trained, digits):
    x = digits[0][:128].clone()
    x[100, 0, 3, 3] = float("nan")
    before = _state(trained)
    for mode in ("one_pass", "sequential"):
        with pytest.raises(ValueError, match="`data` must be finite"):
            vt.recalibrate_bn(trained, x, mode=mode, inplace=True, batch_size=32)
        assert _same_state(before, _state(trained))


def test_import_varshift_torch_loads_no_keras():
    code = ("import sys, varshift; assert 'torch' not in sys.modules; import varshift.torch; "
            "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
