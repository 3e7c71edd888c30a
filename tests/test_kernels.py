"""Tests of ntklit.kernels: neural-tangents vs independent numpy recursions, order/chaos."""

import jax
import numpy as np
import pytest

import ntklit  # noqa: F401  (applies compat)
from ntklit import kernels as K
from ntklit import nets

jax.config.update("jax_enable_x64", True)

# float64. NNGP and off-diagonal NTK entries agree to ~1e-15. On the NTK diagonal
# neural-tangents' ReLU angle arctan2(sqrt(q1 q2 - q12^2), q12) is ~sqrt(k eps), k <= 8,
# instead of 0, so each ReLU layer may add a relative error sqrt(8 eps)/pi ~ 1.3e-8 there.
RTOL = 1e-8
EPS = np.finfo(np.float64).eps


def _check_kernels(ref, ours, depth):
    (rn, rt), (on, ot) = ref, ours
    assert rn.dtype == np.float64 and rt.dtype == np.float64
    off = ~np.eye(rt.shape[0], dtype=bool)
    assert _rel(on, rn) < RTOL
    assert np.max(np.abs(ot - rt)[off]) / np.max(np.abs(rt)) < RTOL
    diag_rel = np.abs(np.diag(ot) - np.diag(rt)) / np.abs(np.diag(rt))
    assert np.max(diag_rel) < max(RTOL, depth * np.sqrt(8 * EPS) / np.pi)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((5, 4))


@pytest.mark.parametrize("act", ["relu", "erf", "linear"])
@pytest.mark.parametrize("depth", [1, 4])
def test_fcn_closed_form_matches_neural_tangents(x, act, depth):
    nt_k = K.infinite_width_kernels(x, depth=depth, activation=act, W_std=1.4, b_std=0.3)
    np_k = K.fcn_kernels(x, depth=depth, activation=act, W_std=1.4, b_std=0.3)
    _check_kernels(nt_k, np_k, depth)


def test_fcn_closed_form_detects_wrong_depth(x):
    a = K.infinite_width_kernels(x, depth=3, activation="relu", W_std=1.4, b_std=0.3)[1]
    b = K.fcn_kernels(x, depth=2, activation="relu", W_std=1.4, b_std=0.3)[1]
    assert _rel(a, b) > 1e-3


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_cnn_closed_form_matches_neural_tangents(act):
    xi = np.random.default_rng(1).standard_normal((3, 5, 5, 2))
    nt_k = K.infinite_width_kernels(
        xi, architecture="cnn", depth=2, activation=act, W_std=1.3, b_std=0.2
    )
    np_k = K.cnn_kernels(xi, depth=2, activation=act, W_std=1.3, b_std=0.2)
    _check_kernels(nt_k, np_k, 2)


def test_same_kernel_for_both_inits(x):
    kg = nets.fcn(2, 8, init="gaussian")[2](x, None, "ntk")
    ko = nets.fcn(2, 8, init="orthogonal")[2](x, None, "ntk")
    np.testing.assert_array_equal(np.asarray(kg), np.asarray(ko))


def test_batched_equals_unbatched(x):
    x6 = np.concatenate([x, x[:1]])
    a = K.infinite_width_kernels(x6, depth=2, batch_size=3)
    b = K.infinite_width_kernels(x6, depth=2)
    assert _rel(a[0], b[0]) < 1e-12
    assert _rel(a[1], b[1]) < 2 * np.sqrt(8 * EPS) / np.pi  # duplicate inputs: c = 1 (see RTOL)


def test_hermite_dual_converges_for_erf():
    q = (np.array([0.7, 1.5]), np.array([1.2, 0.4]), np.array([0.5, -0.3]))
    from scipy.special import erf

    k, kd = K.hermite_dual(erf, lambda t: 2 / np.sqrt(np.pi) * np.exp(-t * t), *q, deg=80)
    ke, kde = K.erf_dual(*q)
    np.testing.assert_allclose(k, ke, rtol=1e-12)
    np.testing.assert_allclose(kd, kde, rtol=1e-12)


def test_tanh_numerical_kernel_accuracy(x):
    xs = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(x.shape[1])  # q^1 = 0.85
    a = K.infinite_width_kernels(xs, depth=2, activation="tanh", W_std=0.9, b_std=0.1)
    ref = K.fcn_kernels(xs, depth=2, activation="tanh", W_std=0.9, b_std=0.1)
    ref2 = K.fcn_kernels(
        xs,
        depth=2,
        dual=lambda *q: K.hermite_dual(np.tanh, lambda t: 1 - np.tanh(t) ** 2, *q, deg=300),
        W_std=0.9,
        b_std=0.1,
    )
    assert _rel(ref[1], ref2[1]) < 1e-12  # the reference has converged
    assert _rel(a[0], ref[0]) < 1e-6 and _rel(a[1], ref[1]) < 1e-5


def test_relu_critical_line_and_depth_scale():
    assert abs(K.critical_weight_variance("relu", 0.1) - 2.0) < 1e-10
    assert abs(K.chi_1("relu", 1.5, 0.1) - 0.75) < 1e-14
    assert abs(K.depth_scale("relu", 1.5, 0.1) + 1 / np.log(0.75)) < 1e-12


def test_tanh_critical_line_and_depth_scale():
    w_c = K.critical_weight_variance("tanh", 0.05, tanh_deg=120)
    assert abs(K.chi_1("tanh", w_c, 0.05, tanh_deg=120) - 1) < 1e-9
    assert 1.0 < w_c < 2.0
    # b_var = 0: q* = 0 for W_var <= 1 and chi_1 = W_var, so the critical point is exactly 1
    assert abs(K.critical_weight_variance("tanh", 0.0, bracket=(0.5, 1.5)) - 1.0) < 1e-6
    # depth scale predicts the decay of |c_l - c*| (ordered phase, c* = 1)
    w, b = 1.3, 0.05
    xi = K.depth_scale("tanh", w, b, tanh_deg=120)
    cs = K.correlation_iterates("tanh", w, b, 0.9, 60, tanh_deg=120)
    rate = np.log((1 - cs[60]) / (1 - cs[40])) / 20
    assert abs(-1 / rate - xi) / xi < 0.02


def test_angular_inputs_and_condition_number():
    xa = K.angular_inputs(np.array([0.0, np.pi / 3]), dim=3)
    np.testing.assert_allclose(np.sum(xa**2, 1) / 3, 1.0)
    np.testing.assert_allclose(xa[0] @ xa[1] / 3, 0.5)
    assert abs(K.condition_number(np.diag([1.0, 4.0])) - 4.0) < 1e-14
    assert K.condition_number(np.zeros((2, 2))) == float("inf")


def test_kernel_regression_matches_direct_solve(x):
    y = np.random.default_rng(2).standard_normal((5, 2))
    xt = np.random.default_rng(3).standard_normal((3, 4))
    kfn = nets.fcn(2, 1)[2]
    pred = K.kernel_regression(kfn, x, y, xt, get="ntk", diag_reg=1e-3)
    ktt = np.asarray(kfn(x, None, "ntk"))
    kst = np.asarray(kfn(xt, x, "ntk"))
    reg = 1e-3 * np.trace(ktt) / ktt.shape[0]
    direct = kst @ np.linalg.solve(ktt + reg * np.eye(5), y)
    assert _rel(pred, direct) < 1e-9


@pytest.mark.parametrize(
    "call",
    [
        lambda: K.infinite_width_kernels(np.zeros((2, 3)), architecture="rnn"),
        lambda: K.infinite_width_kernels(np.zeros((2, 3)), depth=0),
        lambda: K.infinite_width_kernels(np.zeros((2, 3)), architecture="cnn"),
        lambda: K.fcn_kernels(np.zeros((2, 3)), activation="gelu"),
        lambda: K.fcn_kernels(np.zeros((2, 3)), W_std=0.0),
        lambda: K.fcn_kernels(np.zeros((2, 3)), b_std=-1.0),
        lambda: K.fcn_kernels(np.zeros((2, 3)), np.zeros((2, 4))),
        lambda: K.cnn_kernels(np.zeros((2, 3, 3, 1)), filter_shape=(3,)),
        lambda: K.cnn_kernels(np.zeros((2, 3))),
        lambda: K.hermite_dual(np.tanh, np.tanh, 1.0, 1.0, 0.5, deg=1),
        lambda: K.angular_inputs(np.zeros(3), dim=1),
        lambda: K.condition_number(np.zeros((2, 3))),
        lambda: K.q_fixed_point("sigmoid", 1.0, 0.1),
        lambda: K.chi_1("tanh", -1.0, 0.1),
        lambda: K.critical_weight_variance("tanh", 0.05, bracket=(0.1, 0.2)),
        lambda: K.correlation_iterates("tanh", 1.0, 0.1, 1.5, 3),
        lambda: K.kernel_regression(
            lambda *a: None, np.zeros((2, 3)), np.zeros((2, 1)), np.zeros((1, 3)), get="gp"
        ),
        lambda: K.kernel_regression(
            lambda *a: None, np.zeros((2, 3)), np.zeros(2), np.zeros((1, 3))
        ),
    ],
)
def test_bad_inputs(call):
    with pytest.raises(ValueError):
        call()
