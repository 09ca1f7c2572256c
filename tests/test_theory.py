"""varshift.theory against worked values (ours: the paper gives formulas only) and Monte Carlo."""

import numpy as np
import pytest

from varshift import theory

N_MC = 2_000_000  # Monte Carlo sample size: relative error of a variance ~ sqrt(2/N) ~ 0.1%


# --- worked values (ours, from the reference page; the paper gives formulas only) ------------

def test_eq7_eq8_worked_values():
    # (p, c, v) = (0.8, 5, 4): Var_train = 11.25, shift = 0.35556  (rate = 1 - p = 0.2)
    assert theory.dropout_train_variance(5.0, 4.0, 0.2) == pytest.approx(11.25)
    assert theory.shift_ratio(5.0, 4.0, 0.2) == pytest.approx(0.355556, abs=1e-6)
    # (p, c, v) = (0.5, 1, 1): Var_train = 3, shift = 1/3
    assert theory.dropout_train_variance(1.0, 1.0, 0.5) == pytest.approx(3.0)
    assert theory.shift_ratio(1.0, 1.0, 0.5) == pytest.approx(1 / 3)


def test_zero_mean_shift_equals_retain_probability():
    rates = np.array([0.0, 0.1, 0.3, 0.5, 0.7])
    np.testing.assert_allclose(theory.shift_ratio(0.0, 2.5, rates), 1 - rates)


def test_eq14_worked_value_and_limits():
    # (p, c, v, rho, d cos^2) = (0.5, 0, 1, 0.5, 10) -> 5.5 / 6.5
    assert theory.shift_ratio_linear(0.0, 1.0, 0.5, 0.5, 10.0) == pytest.approx(5.5 / 6.5)
    # rho = 0 collapses to case (a), whatever d cos^2
    for dc in (0.5, 3.0, 50.0):
        assert theory.shift_ratio_linear(1.0, 2.0, 0.3, 0.0, dc) == pytest.approx(
            theory.shift_ratio(1.0, 2.0, 0.3))
    # the shift tends to 1 as the layer gets wide
    wide = theory.shift_ratio_linear(0.0, 1.0, 0.5, 0.5, np.array([1.0, 10.0, 100.0, 1e6]))
    assert np.all(np.diff(wide) > 0) and wide[-1] == pytest.approx(1.0, abs=1e-5)


def test_eq15_worked_values():
    betas = np.array([0.1, 0.2, 0.3, 0.5])
    expected = np.array([0.996678, 0.986842, 0.970874, 0.923077])
    np.testing.assert_allclose(theory.uout_shift_ratio(0.0, 1.0, betas), expected, atol=1e-6)
    np.testing.assert_allclose(3 / (3 + betas**2), expected, atol=1e-6)


def test_uout_matched_rate_gives_equal_training_variance():
    beta = np.array([0.1, 0.5, 1.0])
    rate = theory.uout_matched_rate(beta)
    np.testing.assert_allclose(theory.dropout_train_variance(2.0, 3.0, rate),
                               theory.uout_train_variance(2.0, 3.0, beta))


def test_broadcasting_over_a_grid():
    means = np.array([0.0, 1.0, 5.0])[:, None, None]
    var = np.array([1.0, 4.0])[None, :, None]
    rates = np.array([0.1, 0.5])[None, None, :]
    out = theory.shift_ratio(means, var, rates)
    assert out.shape == (3, 2, 2)
    assert out[2, 1, 0] == pytest.approx(theory.shift_ratio(5.0, 4.0, 0.1))


def test_constant_unit_has_no_shift():
    assert theory.shift_ratio(0.0, 0.0, 0.5) == 1.0
    assert theory.uout_shift_ratio(0.0, 0.0, 0.5) == 1.0


def test_variance_ratio_is_the_division_every_shift_ends_with():
    assert theory.variance_ratio(4.0, 11.25) == pytest.approx(4.0 / 11.25)
    assert theory.variance_ratio(0.0, 0.0) == 1.0  # a constant unit
    out = theory.variance_ratio(np.array([1.0, 0.0, 2.0]), np.array([2.0, 0.0, 8.0]))
    assert out.tolist() == [0.5, 1.0, 0.25]
    assert theory.shift_ratio(5.0, 4.0, 0.2) == pytest.approx(theory.variance_ratio(
        4.0, theory.dropout_train_variance(5.0, 4.0, 0.2)), rel=1e-14)


def test_uout_and_gaussian_training_variances_use_the_noise_registry():
    from varshift.noise import NOISES

    assert theory.uout_train_variance(2.0, 3.0, 0.6) == pytest.approx(
        theory.noise_train_variance(2.0, 3.0, 0.6**2 / 3.0))
    assert float(NOISES["gaussian_dropout"].noise_var(0.2)) == pytest.approx(0.25)
    assert theory.gaussian_dropout_train_variance(1.0, 1.0, 0.2) == pytest.approx(
        theory.dropout_train_variance(1.0, 1.0, 0.2))


# --- Monte Carlo, written independently of the formulas ----------------------------------------

@pytest.mark.parametrize(("c", "v", "rate"), [(5.0, 4.0, 0.2), (1.0, 1.0, 0.5), (-2.0, 0.5, 0.7)])
def test_case_a_monte_carlo(rng, c, v, rate):
    x = rng.normal(c, np.sqrt(v), N_MC)
    keep = rng.random(N_MC) >= rate  # a ~ Bernoulli(1 - rate)
    train = np.where(keep, x / (1 - rate), 0.0)  # inverted dropout, training mode
    assert train.var() == pytest.approx(theory.dropout_train_variance(c, v, rate), rel=0.01)
    assert x.var() / train.var() == pytest.approx(theory.shift_ratio(c, v, rate), rel=0.01)


@pytest.mark.parametrize(("c", "rho", "rate"), [(0.0, 0.5, 0.5), (1.0, 0.3, 0.3), (0.5, 0.8, 0.1)])
def test_case_b_monte_carlo_with_correlated_inputs(rng, c, rho, rate):
    d, n, v = 16, 400_000, 1.5
    # inputs with common mean c, variance v and pairwise correlation rho:
    # x_i = c + sqrt(v) (sqrt(rho) z + sqrt(1 - rho) e_i)
    z = rng.standard_normal((n, 1))
    e = rng.standard_normal((n, d))
    x = c + np.sqrt(v) * (np.sqrt(rho) * z + np.sqrt(1 - rho) * e)
    w = rng.normal(0.3, 1.0, d)  # a real weight vector, not aligned with the all-ones vector
    keep = rng.random((n, d)) >= rate
    y_train = (np.where(keep, x / (1 - rate), 0.0)) @ w
    y_test = x @ w
    measured = y_test.var() / y_train.var()
    d_cos2 = d * theory.cos2_theta(w[:, None])[0]
    assert measured == pytest.approx(theory.shift_ratio_linear(c, v, rate, rho, d_cos2), rel=0.02)


def test_cos2_theta_matches_the_angle_to_the_ones_vector(rng):
    kernel = rng.normal(0.1, 1.0, (3, 3, 4, 5))  # Conv2D: (kh, kw, c_in, c_out)
    assert theory.fan_in(kernel) == 36
    cos2 = theory.cos2_theta(kernel)
    for unit in range(5):
        w = kernel[..., unit].ravel()
        ones = np.ones_like(w)
        angle = np.dot(w, ones) / (np.linalg.norm(w) * np.linalg.norm(ones))
        assert cos2[unit] == pytest.approx(angle**2)
    assert theory.cos2_theta(np.ones((7, 2))) == pytest.approx([1.0, 1.0])
    assert np.isnan(theory.cos2_theta(np.zeros((4, 1)))[0])


@pytest.mark.parametrize(("c", "v", "beta"), [(0.0, 1.0, 0.5), (3.0, 2.0, 0.3), (1.0, 0.5, 1.0)])
def test_uout_monte_carlo(rng, c, v, beta):
    x = rng.normal(c, np.sqrt(v), N_MC)
    train = x + x * rng.uniform(-beta, beta, N_MC)
    assert train.var() == pytest.approx(theory.uout_train_variance(c, v, beta), rel=0.01)
    assert x.var() / train.var() == pytest.approx(theory.uout_shift_ratio(c, v, beta), rel=0.01)


@pytest.mark.parametrize(("c", "v", "rate"), [(0.0, 1.0, 0.5), (2.0, 1.0, 0.2)])
def test_gaussian_dropout_monte_carlo(rng, c, v, rate):
    x = rng.normal(c, np.sqrt(v), N_MC)
    train = x * rng.normal(1.0, np.sqrt(rate / (1 - rate)), N_MC)  # Keras GaussianDropout
    assert x.var() / train.var() == pytest.approx(
        theory.gaussian_dropout_shift_ratio(c, v, rate), rel=0.01)


def test_restore_inverts_eq7():
    c = np.array([0.0, 1.0, 5.0, -3.0])
    v = np.array([1.0, 2.0, 4.0, 0.25])
    for rate in (0.1, 0.2, 0.5, 0.9):
        stored = theory.dropout_train_variance(c, v, rate)
        np.testing.assert_allclose(theory.restore_moving_variance(c, stored, rate), v, rtol=1e-9)


def test_keras_expected_moving_variance_models_the_biased_batch_variance(rng):
    m, sigma2 = 32, 11.25
    batches = rng.normal(0.0, np.sqrt(sigma2), (200_000, m))
    biased = batches.var(axis=1)  # what Keras 3 BatchNormalization feeds its moving average
    assert biased.mean() == pytest.approx(
        theory.keras_expected_moving_variance(sigma2, m), rel=0.005)
    assert theory.keras_expected_moving_variance(sigma2, m) == pytest.approx(sigma2 * 31 / 32)
    # before convergence the initial value 1.0 still weighs 0.99**steps
    assert theory.keras_expected_moving_variance(sigma2, m, steps=100) == pytest.approx(
        0.99**100 + (1 - 0.99**100) * sigma2 * 31 / 32)


# --- input validation ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: theory.shift_ratio(0.0, 1.0, 1.0), r"`rate` must be in \[0.0, 1.0\).*rate=1.0"),
        (lambda: theory.shift_ratio(0.0, 1.0, -0.1), r"`rate`.*rate=-0.1"),
        (lambda: theory.shift_ratio(0.0, -1.0, 0.5), r"`var` must be a variance.*var=-1.0"),
        (lambda: theory.shift_ratio(np.nan, 1.0, 0.5), r"`mean` must be finite"),
        (lambda: theory.uout_shift_ratio(0.0, 1.0, 1.5), r"`beta` must be in \[0.0, 1.0\].*beta=1.5"),
        (lambda: theory.shift_ratio_linear(0.0, 1.0, 0.5, 2.0, 3.0), r"`rho`.*rho=2.0"),
        (lambda: theory.shift_ratio_linear(0.0, 1.0, 0.5, 0.5, -3.0), r"`d_cos2`.*d_cos2=-3.0"),
        (lambda: theory.cos2_theta(np.ones(5)), r"`kernel`.*shape \(5,\)"),
        (lambda: theory.keras_expected_moving_variance(1.0, 1), r"`batch_size`.*>= 2.*batch_size=1"),
        (lambda: theory.shift_ratio(0.0, 1.0, [0.1, 1.2]), r"`rate`.*\[0.1 1.2\]"),
    ],
)
def test_validation_errors_name_argument_and_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match=r"`mean` must be a real number.*'five'"):
        theory.shift_ratio("five", 1.0, 0.5)
