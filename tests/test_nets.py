"""Tests of ntklit.nets: shapes, orthogonal parameters, kernels of both inits, bad inputs."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntklit  # noqa: F401  (applies compat)
from ntklit import nets

jax.config.update("jax_enable_x64", True)

KEY = jax.random.key(0)


def _is_semi_orthogonal(w, tol=1e-8):
    w = np.asarray(w, np.float64)
    m = max(w.shape)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return np.allclose(gram, m * np.eye(min(w.shape)), atol=tol * m)


@pytest.mark.parametrize("activation", nets.ACTIVATIONS)
@pytest.mark.parametrize("init", nets.INITS)
def test_fcn_shapes(activation, init):
    init_fn, apply_fn, kernel_fn = nets.fcn(
        2, 16, activation=activation, b_std=0.1, out_dim=3, init=init
    )
    x = jax.random.normal(KEY, (4, 5))
    out_shape, params = init_fn(KEY, x.shape)
    assert out_shape == (4, 3)
    assert apply_fn(params, x).shape == (4, 3)
    k = kernel_fn(x, None, ("nngp", "ntk"))
    assert k.nngp.shape == (4, 4) and k.ntk.shape == (4, 4)


def test_fcn_depth_zero_is_linear_readout():
    init_fn, apply_fn, kernel_fn = nets.fcn(0, 7, out_dim=2, W_std=1.5, init="orthogonal")
    x = jax.random.normal(KEY, (3, 4), jnp.float64)
    _, params = init_fn(KEY, x.shape)
    assert len(params) == 1 and params[0][0].shape == (4, 2)
    np.testing.assert_allclose(apply_fn(params, x), 1.5 / 2 * x @ params[0][0], rtol=1e-12)
    np.testing.assert_allclose(kernel_fn(x, None, "nngp"), 1.5**2 * x @ x.T / 4, rtol=1e-12)


@pytest.mark.parametrize("readout", nets.READOUTS)
@pytest.mark.parametrize("padding", nets.PADDINGS)
def test_cnn_shapes(readout, padding):
    x = jax.random.normal(KEY, (2, 6, 6, 3))
    for init, conv in [
        ("gaussian", "orthogonal"),
        ("orthogonal", "orthogonal"),
        ("orthogonal", "delta"),
    ]:
        if conv == "delta" and padding == "VALID":
            continue
        init_fn, apply_fn, kernel_fn = nets.cnn(
            2, 8, readout=readout, padding=padding, out_dim=4, init=init, conv=conv, b_std=0.1
        )
        out_shape, params = init_fn(KEY, x.shape)
        assert out_shape == (2, 4)
        assert apply_fn(params, x).shape == (2, 4)
        assert kernel_fn(x, None, "ntk").shape == (2, 2)


def test_kernel_fn_same_for_both_inits():
    x = jax.random.normal(KEY, (5, 6), jnp.float64)
    for act in nets.ACTIVATIONS:
        kg = nets.fcn(3, 32, activation=act, b_std=0.2, init="gaussian")[2](
            x, None, ("nngp", "ntk")
        )
        ko = nets.fcn(3, 32, activation=act, b_std=0.2, init="orthogonal")[2](
            x, None, ("nngp", "ntk")
        )
        np.testing.assert_array_equal(kg.nngp, ko.nngp)
        np.testing.assert_array_equal(kg.ntk, ko.ntk)
    xi = jax.random.normal(KEY, (3, 5, 5, 2), jnp.float64)
    kg = nets.cnn(2, 8, init="gaussian")[2](xi, None, "ntk")
    ko = nets.cnn(2, 8, init="orthogonal")[2](xi, None, "ntk")
    np.testing.assert_array_equal(kg, ko)


def _mc_nngp(init_fn, apply_fn, x, n_samples, seed=0):
    """Monte Carlo E[f(x) f(x)^T / out_dim] over seeds, its mean and standard error."""
    # Parameters are drawn by an eager vmap: a jitted program containing the batched QR of
    # the orthogonal init was seen to hang this process at exit (jax 0.10.2, CPU).
    keys = jax.random.split(jax.random.key(seed), n_samples)
    params = jax.vmap(lambda k: init_fn(k, x.shape)[1])(keys)

    def one(p):
        f = apply_fn(p, x)
        return f @ f.T / f.shape[1]

    ks = np.asarray(jax.jit(jax.vmap(one))(params))
    return ks.mean(0), ks.std(0, ddof=1) / math.sqrt(n_samples)


def test_orthogonal_fcn_nngp_matches_kernel_fn():
    """The orthogonal network's output covariance at width 96 matches the analytic NNGP
    (finite-width bias O(1/width): allowance 3/width relative; statistical: 4 SE)."""
    width, n = 96, 48
    x = jax.random.normal(jax.random.key(1), (3, 8), jnp.float64)
    init_fn, apply_fn, kernel_fn = nets.fcn(
        2, width, activation="relu", b_std=0.3, out_dim=32, init="orthogonal"
    )
    k = np.asarray(kernel_fn(x, None, "nngp"))
    m, se = _mc_nngp(init_fn, apply_fn, x, n)
    assert np.all(np.abs(m - k) < 4 * se + 3 / width * np.abs(k)), (m - k) / se


def test_cnn_kernels_orthogonal_vs_delta():
    """im2col-orthogonal CNN -> the Gaussian 3x3 kernel; delta-orthogonal -> the 1x1 kernel
    that nets.cnn returns for it, measurably different from the 3x3 one."""
    ch, n = 32, 40
    x = jax.random.normal(jax.random.key(2), (3, 4, 4, 2), jnp.float64)
    kw = dict(activation="relu", readout="flatten", out_dim=16, padding="SAME")
    init_o, apply_o, kfn_o = nets.cnn(1, ch, init="orthogonal", conv="orthogonal", **kw)
    init_d, apply_d, kfn_d = nets.cnn(1, ch, init="orthogonal", conv="delta", **kw)
    k33 = np.asarray(kfn_o(x, None, "nngp"))
    k11 = np.asarray(kfn_d(x, None, "nngp"))
    np.testing.assert_array_equal(k33, np.asarray(nets.cnn(1, ch, **kw)[2](x, None, "nngp")))
    tol = lambda se, k: 4 * se + 3 / ch * np.abs(k)  # noqa: E731
    m, se = _mc_nngp(init_o, apply_o, x, n)
    assert np.all(np.abs(m - k33) < tol(se, k33)), (m - k33) / se
    m, se = _mc_nngp(init_d, apply_d, x, n)
    assert np.all(np.abs(m - k11) < tol(se, k11)), (m - k11) / se
    # the two kernels are genuinely different (which is why conv="delta" returns k11)
    assert np.max(np.abs(k11 - k33) / np.abs(k33)) > 0.1


def test_delta_cnn_is_a_1x1_cnn():
    """Exactly: a delta-orthogonal 3x3 layer (SAME) = a 1x1 layer whose kernel is the centre
    tap divided by sqrt(9), so the delta network has the 1x1 network's kernel_fn."""
    x = jax.random.normal(jax.random.key(4), (2, 5, 5, 3), jnp.float64)
    kw = dict(activation="erf", b_std=0.2, W_std=1.4, out_dim=2, padding="SAME")
    init_d, apply_d, kfn_d = nets.cnn(2, 6, init="orthogonal", conv="delta", **kw)
    _, apply_1, kfn_1 = nets.cnn(2, 6, filter_shape=(1, 1), **kw)
    _, p = init_d(KEY, x.shape)
    p1 = [
        (layer[0][1:2, 1:2] / 3.0, layer[1]) if layer != () and layer[0].ndim == 4 else layer
        for layer in p
    ]
    np.testing.assert_allclose(apply_d(p, x), apply_1(p1, x), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(kfn_d(x, None, "ntk"), kfn_1(x, None, "ntk"))


def test_tanh_quadrature_accuracy():
    """Default Gauss-Hermite degree vs a degree-150 rule, depth 3, q <= 1 (float64)."""
    x = jax.random.normal(jax.random.key(3), (4, 6), jnp.float64)
    x = x / jnp.linalg.norm(x, axis=1, keepdims=True) * math.sqrt(6)  # q = 1 in layer 1
    k = nets.fcn(3, 8, activation="tanh", b_std=0.1)[2](x, None, ("nngp", "ntk"))
    r = nets.fcn(3, 8, activation="tanh", b_std=0.1, tanh_deg=150)[2](x, None, ("nngp", "ntk"))
    for a, b in ((k.nngp, r.nngp), (k.ntk, r.ntk)):
        assert float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) < 1e-5
    # neural-tangents' suggested degree 25 is measurably worse here
    k25 = nets.fcn(3, 8, activation="tanh", b_std=0.1, tanh_deg=25)[2](x, None, "ntk")
    assert float(jnp.max(jnp.abs(k25 - r.ntk)) / jnp.max(jnp.abs(r.ntk))) > 1e-5


def test_orthogonal_params_are_orthogonal():
    x_shape = (2, 10)
    _, pg = nets.fcn(3, 24, b_std=0.5, out_dim=4, init="gaussian")[0](KEY, x_shape)
    _, po = nets.fcn(3, 24, b_std=0.5, out_dim=4, init="orthogonal")[0](KEY, x_shape)
    _, po2 = nets.fcn(3, 24, b_std=0.5, out_dim=4, init="orthogonal")[0](KEY, x_shape)
    dense = [i for i, p in enumerate(po) if p != ()]
    assert len(dense) == 4
    for i in dense:
        assert _is_semi_orthogonal(po[i][0], 1e-5)
        assert not _is_semi_orthogonal(pg[i][0], 1e-2)
        np.testing.assert_array_equal(po[i][1], pg[i][1])  # biases as in the Gaussian init
        np.testing.assert_array_equal(po[i][0], po2[i][0])  # deterministic in the key
    # CNN: delta and im2col kernels
    _, pc = nets.cnn(2, 6, init="orthogonal", conv="delta")[0](KEY, (1, 5, 5, 3))
    w = np.asarray(pc[0][0])
    assert np.count_nonzero(np.abs(w).sum(axis=(2, 3))) == 1
    assert _is_semi_orthogonal(w[1, 1] / 3, 1e-5)
    _, pc = nets.cnn(2, 6, init="orthogonal")[0](KEY, (1, 5, 5, 3))
    assert _is_semi_orthogonal(np.asarray(pc[2][0]).reshape(-1, 6), 1e-5)


def test_orthogonal_linear_net_is_isometry():
    """Square linear orthogonal net, W_std = 1, b = 0: ||f(x)|| = ||x|| exactly."""
    init_fn, apply_fn, _ = nets.fcn(5, 12, activation="linear", out_dim=12, init="orthogonal")
    x = jax.random.normal(KEY, (3, 12), jnp.float64)
    _, p = init_fn(KEY, x.shape)
    np.testing.assert_allclose(
        jnp.linalg.norm(apply_fn(p, x), axis=1), jnp.linalg.norm(x, axis=1), rtol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=-1), "depth must be an int >= 0"),
        (dict(depth=1.5), "depth must be an int"),
        (dict(width=0), "width must be a positive int"),
        (dict(activation="sigmoid"), "activation must be one of"),
        (dict(init="he"), "init must be one of"),
        (dict(W_std=0.0), "W_std must be a positive"),
        (dict(b_std=-0.1), "b_std must be a non-negative"),
        (dict(out_dim=0), "out_dim must be a positive int"),
        (dict(parameterization="mup"), "parameterization must be one of"),
        (dict(tanh_deg=0), "tanh_deg must be a positive int"),
    ],
)
def test_fcn_bad_inputs(kwargs, match):
    args = dict(depth=2, width=8)
    args.update(kwargs)
    depth, width = args.pop("depth"), args.pop("width")
    with pytest.raises(ValueError, match=match):
        nets.fcn(depth, width, **args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(channels=0), "channels must be a positive int"),
        (dict(filter_shape=3), "filter_shape must be a non-empty tuple"),
        (dict(filter_shape=(3, 0)), r"filter_shape\[1\] must be a positive int"),
        (dict(readout="max"), "readout must be one of"),
        (dict(padding="same"), "padding must be one of"),
        (dict(conv="gaussian"), "conv must be one of"),
        (dict(init="orthogonal", conv="delta", padding="VALID"), "needs padding"),
        (dict(init="orthogonal", conv="delta", filter_shape=(2, 2)), "odd filter sizes"),
        (dict(activation="gelu"), "activation must be one of"),
    ],
)
def test_cnn_bad_inputs(kwargs, match):
    args = dict(depth=2, channels=8)
    args.update(kwargs)
    depth, channels = args.pop("depth"), args.pop("channels")
    with pytest.raises(ValueError, match=match):
        nets.cnn(depth, channels, **args)
