"""Tests of ntklit.init: exact properties, a statistical Haar test, orthogonalize_params."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import ntklit  # noqa: F401  (applies compat)
from ntklit import init

from neural_tangents import stax

jax.config.update("jax_enable_x64", True)

KEY = jax.random.key(0)
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-12}


def _haar_batch(n, n_samples, seed=0, **kw):
    keys = jax.random.split(jax.random.key(seed), n_samples)
    return np.asarray(jax.vmap(lambda k: init.haar_orthogonal(k, n, jnp.float64, **kw))(keys))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("n", [1, 2, 5, 33])
def test_haar_is_orthogonal(n, dtype):
    q = init.haar_orthogonal(KEY, n, dtype)
    assert q.shape == (n, n) and q.dtype == dtype
    np.testing.assert_allclose(np.asarray(q.T @ q, np.float64), np.eye(n), atol=TOL[dtype] * n)


def test_haar_both_determinants_appear():
    qs = _haar_batch(4, 400)
    det = np.linalg.det(qs)
    np.testing.assert_allclose(np.abs(det), 1.0, atol=1e-10)
    frac = np.mean(det > 0)
    # Binomial(400, 1/2): standard error 0.025, accept +-5 SE.
    assert 0.375 < frac < 0.625, frac


def test_raw_qr_is_not_haar():
    """Without the sign correction (LAPACK Householder convention), det Q = (-1)^(n-1) and
    Q_11 < 0 always; the corrected sampler mixes both."""
    for n in (2, 3):
        raw = _haar_batch(n, 200, sign_correction=False)
        assert np.all(np.sign(np.linalg.det(raw)) == (-1) ** (n - 1))
        assert np.all(raw[:, 0, 0] < 0)
        fixed = _haar_batch(n, 200)
        assert 0.3 < np.mean(fixed[:, 0, 0] < 0) < 0.7


def _moments(o):
    n = o.shape[-1]
    est = {
        "O11^2": (o[:, 0, 0] ** 2, 1 / n),
        "O11^4": (o[:, 0, 0] ** 4, 3 / (n * (n + 2))),
        "O11^2 O12^2": (o[:, 0, 0] ** 2 * o[:, 0, 1] ** 2, 1 / (n * (n + 2))),
        "O11^2 O22^2": (o[:, 0, 0] ** 2 * o[:, 1, 1] ** 2, (n + 1) / ((n - 1) * n * (n + 2))),
        "O11 O12 O21 O22": (
            o[:, 0, 0] * o[:, 0, 1] * o[:, 1, 0] * o[:, 1, 1],
            -1 / ((n - 1) * n * (n + 2)),
        ),
    }
    return {
        k: (v.mean(), v.std(ddof=1) / math.sqrt(v.size), exact) for k, (v, exact) in est.items()
    }


@pytest.mark.parametrize("n", [2, 3, 6])
def test_haar_moments_statistical(n):
    """Fixed seed; 5 SE per moment (15 comparisons: false-alarm probability < 1e-5)."""
    for name, (m, se, exact) in _moments(_haar_batch(n, 20000, seed=n)).items():
        assert abs(m - exact) < 5 * se, (n, name, m, exact, se)


def test_haar_first_entry_distribution():
    """O_11^2 of a Haar matrix of O(n) is Beta(1/2, (n-1)/2) (a coordinate of a uniform unit
    vector); KS test at a fixed seed. The raw QR output fails the symmetric test on O_11."""
    n = 5
    o = _haar_batch(n, 4000, seed=11)
    p = scipy.stats.kstest(o[:, 0, 0] ** 2, scipy.stats.beta(0.5, (n - 1) / 2).cdf).pvalue
    assert p > 1e-4, p
    # symmetric law: O_11 and -O_11 have the same distribution
    assert scipy.stats.ks_2samp(o[:2000, 0, 0], -o[2000:, 0, 0]).pvalue > 1e-4
    raw = _haar_batch(n, 4000, seed=11, sign_correction=False)
    assert scipy.stats.ks_2samp(raw[:2000, 0, 0], -raw[2000:, 0, 0]).pvalue < 1e-10


def test_haar_moments_detect_gaussian():
    """The statistical test has power: Gaussian N(0, 1/n) entries fail it at n = 2."""
    n = 2
    g = np.asarray(jax.random.normal(jax.random.key(3), (20000, n, n))) / math.sqrt(n)
    m, se, exact = _moments(g)["O11^4"]  # Gaussian: 3/n^2 = 0.75 vs Haar 3/8
    assert abs(m - exact) > 10 * se


@pytest.mark.parametrize("shape", [(3, 7), (7, 3), (5, 5), (1, 4), (4, 1)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_orthogonal_scaling(shape, dtype):
    n_in, n_out = shape
    w = np.asarray(init.orthogonal(KEY, shape, dtype), np.float64)
    assert w.shape == shape and init.orthogonal(KEY, shape, dtype).dtype == dtype
    m = max(shape)
    gram = w @ w.T if n_in <= n_out else w.T @ w
    np.testing.assert_allclose(gram, m * np.eye(min(shape)), atol=TOL[dtype] * m * 10)
    # unit mean-square entries exactly: ||W||_F^2 = n_in n_out
    np.testing.assert_allclose(np.sum(w**2), n_in * n_out, rtol=TOL[dtype] * 10)


def test_orthogonal_dense_preserves_norm():
    """NTK Dense with orthogonal W, n_in <= n_out: ||z||^2 = W_std^2 n_out/n_in ||x||^2 for
    every x; the Gaussian layer has this only in expectation (checked by Monte Carlo)."""
    n_in, n_out, W_std = 6, 10, 1.7
    _, apply_fn, _ = stax.Dense(n_out, W_std=W_std)
    x = jax.random.normal(jax.random.key(1), (4, n_in), jnp.float64)
    w = init.orthogonal(KEY, (n_in, n_out), jnp.float64)
    z = apply_fn((w, None), x)
    target = W_std**2 * n_out / n_in * np.sum(np.asarray(x) ** 2, axis=1)
    np.testing.assert_allclose(np.sum(np.asarray(z) ** 2, axis=1), target, rtol=1e-12)
    ws = jax.random.normal(jax.random.key(2), (4000, n_in, n_out), jnp.float64)
    zg = np.asarray(jax.vmap(lambda w: apply_fn((w, None), x))(ws))
    sq = np.sum(zg**2, axis=2)
    assert np.all(np.abs(sq.mean(0) - target) < 5 * sq.std(0) / math.sqrt(4000))


def test_delta_orthogonal_structure():
    shape = (3, 5, 4, 6)
    w = np.asarray(init.delta_orthogonal(KEY, shape, jnp.float64))
    assert w.shape == shape
    mask = np.zeros(shape[:2], bool)
    mask[1, 2] = True
    assert np.all(w[~mask] == 0)
    centre = w[1, 2]
    k = 15
    np.testing.assert_allclose(
        centre, math.sqrt(k) * np.asarray(init.orthogonal(KEY, (4, 6), jnp.float64)), rtol=1e-12
    )
    np.testing.assert_allclose(centre @ centre.T, k * 6 * np.eye(4), atol=1e-10)
    np.testing.assert_allclose(np.sum(w**2), k * 4 * 6, rtol=1e-12)
    # other spatial dimensions
    assert init.delta_orthogonal(KEY, (3, 2, 2)).shape == (3, 2, 2)
    w3 = np.asarray(init.delta_orthogonal(KEY, (3, 3, 3, 2, 2)))
    assert np.count_nonzero(np.abs(w3).sum(axis=(3, 4))) == 1 and np.abs(w3[1, 1, 1]).sum() > 0


def test_delta_orthogonal_conv_preserves_norm():
    """Conv(NTK): with c_in <= c_out, ||z_p||^2 = W_std^2 c_out/c_in ||x_p||^2 at every pixel;
    for a spatially constant input that is the Gaussian layer's expectation (Monte Carlo)."""
    c_in, c_out, W_std = 3, 5, 1.3
    _, apply_fn, _ = stax.Conv(c_out, (3, 3), padding="SAME", W_std=W_std)
    x = jax.random.normal(jax.random.key(4), (2, 6, 6, c_in), jnp.float64)
    w = init.delta_orthogonal(KEY, (3, 3, c_in, c_out), jnp.float64)
    z = np.asarray(apply_fn((w, None), x))
    np.testing.assert_allclose(
        np.sum(z**2, -1), W_std**2 * c_out / c_in * np.sum(np.asarray(x) ** 2, -1), rtol=1e-12
    )
    xc = jnp.ones((1, 5, 5, c_in), jnp.float64) * jnp.array([0.3, -1.0, 2.0])
    ws = jax.random.normal(jax.random.key(5), (3000, 3, 3, c_in, c_out), jnp.float64)
    sq = np.sum(np.asarray(jax.vmap(lambda w: apply_fn((w, None), xc))(ws))[:, 0, 2, 2] ** 2, -1)
    target = W_std**2 * c_out / c_in * float(jnp.sum(xc[0, 0, 0] ** 2))
    zd = apply_fn((w, None), xc)[0, 2, 2]
    np.testing.assert_allclose(float(jnp.sum(zd**2)), target, rtol=1e-12)
    assert abs(sq.mean() - target) < 5 * sq.std() / math.sqrt(sq.size)


def test_gaussian():
    g = init.gaussian(KEY, (200, 300), jnp.float64)
    assert g.shape == (200, 300) and g.dtype == jnp.float64
    g = np.asarray(g)
    assert abs(g.mean()) < 5 / math.sqrt(g.size)
    assert abs(g.var() - 1) < 5 * math.sqrt(2 / g.size)


def test_deterministic():
    a = init.orthogonal(KEY, (4, 9))
    np.testing.assert_array_equal(a, init.orthogonal(KEY, (4, 9)))
    assert not np.allclose(a, init.orthogonal(jax.random.key(1), (4, 9)))


# ------------------------------------------------------------------------ orthogonalize_params


def _check_dense(w, b_old, b_new):
    w = np.asarray(w, np.float64)
    m = max(w.shape)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(gram, m * np.eye(min(w.shape)), atol=1e-3 * m)
    if b_old is None:
        assert b_new is None
    else:
        np.testing.assert_array_equal(b_old, b_new)


def test_orthogonalize_dense_net():
    init_fn, _, _ = stax.serial(
        stax.Dense(8, b_std=0.1), stax.Relu(), stax.Dense(16), stax.Erf(), stax.Dense(3, b_std=0.2)
    )
    _, p = init_fn(KEY, (2, 5))
    q = init.orthogonalize_params(jax.random.key(9), p)
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(q)
    for lp, lq in zip(p, q):
        if lp == ():
            assert lq == ()
            continue
        assert lq[0].shape == lp[0].shape and lq[0].dtype == lp[0].dtype
        _check_dense(lq[0], lp[1], lq[1])
    q2 = init.orthogonalize_params(jax.random.key(9), p)
    jax.tree_util.tree_map(np.testing.assert_array_equal, q, q2)
    q3 = init.orthogonalize_params(jax.random.key(10), p)
    assert not np.allclose(q[0][0], q3[0][0])
    # different layers get different matrices
    assert not np.allclose(np.asarray(q[2][0])[:5, :8], np.asarray(q[0][0]))


def test_orthogonalize_conv_and_mixed_net():
    init_fn, _, _ = stax.serial(
        stax.Conv(4, (3, 3), padding="SAME", b_std=0.1),
        stax.Relu(),
        stax.FanOut(2),
        stax.parallel(stax.Conv(6, (3, 3), padding="SAME"), stax.serial(stax.Identity())),
        stax.parallel(stax.Relu(), stax.Conv(6, (1, 1))),
        stax.FanInSum(),
        stax.AvgPool((2, 2)),
        stax.Flatten(),
        stax.Dense(7, b_std=0.3),
        stax.LayerNorm(),
        stax.Dense(2),
    )
    _, p = init_fn(KEY, (2, 6, 6, 3))
    q = init.orthogonalize_params(jax.random.key(1), p)
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(q)
    leaves_p = jax.tree_util.tree_leaves(p)
    leaves_q = jax.tree_util.tree_leaves(q)
    n_conv = n_dense = 0
    for a, b in zip(leaves_p, leaves_q):
        assert a.shape == b.shape
        b = np.asarray(b, np.float64)
        if a.ndim == 4 and a.shape[0] > 1 and a.shape[:3] != (1, 1, 1):  # 3x3 conv kernel
            n_conv += 1
            k = 9
            assert np.count_nonzero(np.abs(b).sum(axis=(2, 3))) == 1
            c = b[1, 1]
            gram = c @ c.T if c.shape[0] <= c.shape[1] else c.T @ c
            np.testing.assert_allclose(gram, k * max(c.shape) * np.eye(min(c.shape)), atol=1e-3)
        elif a.ndim == 2 and a.shape[0] > 1:
            n_dense += 1
            _check_dense(b, None, None)
        else:  # biases and the 1x1 conv (delta of a 1x1 kernel is orthogonal)
            pass
    assert n_conv == 2 and n_dense == 2
    # biases untouched
    np.testing.assert_array_equal(p[0][1], q[0][1])


def test_orthogonalize_conv_orthogonal_mode():
    init_fn, _, _ = stax.serial(stax.Conv(20, (3, 3)), stax.Relu(), stax.Conv(4, (3, 3)))
    _, p = init_fn(KEY, (1, 8, 8, 2))
    q = init.orthogonalize_params(KEY, p, conv="orthogonal")
    for w in (q[0][0], q[2][0]):
        m = np.asarray(w, np.float64).reshape(-1, w.shape[-1])
        gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
        np.testing.assert_allclose(gram, max(m.shape) * np.eye(min(m.shape)), atol=1e-3 * 72)


def test_orthogonalize_standard_parameterization():
    W_std = 1.5
    init_fn, apply_fn, _ = stax.serial(
        stax.Dense(12, W_std=W_std, parameterization="standard"),
        stax.Relu(),
        stax.Dense(3, W_std=W_std, parameterization="standard"),
    )
    _, p = init_fn(KEY, (2, 6))
    q = init.orthogonalize_params(KEY, p, parameterization="standard", W_std=W_std)
    w = np.asarray(q[0][0], np.float64) / (W_std / math.sqrt(6))
    _check_dense(w, None, None)
    w = np.asarray(q[2][0], np.float64) / (W_std / math.sqrt(12))
    _check_dense(w, None, None)


def test_orthogonalize_rejects_unknown_leaves():
    with pytest.raises(ValueError, match=r"cannot classify.*shape \(2, 3, 4\).*Supported"):
        init.orthogonalize_params(KEY, [(), jnp.ones((2, 3, 4))])
    with pytest.raises(ValueError, match="cannot classify"):  # a LayerNorm-style scale vector
        init.orthogonalize_params(KEY, [(jnp.ones((3, 4)), None), (jnp.ones(4),)])
    with pytest.raises(ValueError, match="cannot classify"):  # W with a bias of the wrong size
        init.orthogonalize_params(KEY, [(jnp.ones((3, 4)), jnp.ones((1, 5)))])
    with pytest.raises(ValueError, match="cannot classify"):
        init.orthogonalize_params(KEY, ["weights"])
    with pytest.raises(ValueError, match="conv must be one of"):
        init.orthogonalize_params(KEY, [], conv="gaussian")
    with pytest.raises(ValueError, match="parameterization must be one of"):
        init.orthogonalize_params(KEY, [], parameterization="mup")


# ------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize("n", [0, -3, 2.5, "4", True])
def test_haar_bad_n(n):
    with pytest.raises(ValueError, match="n must be a positive int"):
        init.haar_orthogonal(KEY, n)


@pytest.mark.parametrize("fn", [init.orthogonal, init.delta_orthogonal, init.gaussian])
@pytest.mark.parametrize("shape", [(3, 0), (-1, 4), 5, "ab", (2.0, 3)])
def test_bad_shapes(fn, shape):
    if fn is init.delta_orthogonal and isinstance(shape, tuple) and len(shape) == 2:
        shape = (3,) + shape
    with pytest.raises(ValueError, match="shape"):
        fn(KEY, shape)


def test_bad_ndim_and_dtype_and_key():
    with pytest.raises(ValueError, match="exactly 2"):
        init.orthogonal(KEY, (3, 4, 5))
    with pytest.raises(ValueError, match="at least 3"):
        init.delta_orthogonal(KEY, (3, 4))
    with pytest.raises(ValueError, match="dtype must be a floating"):
        init.orthogonal(KEY, (3, 4), jnp.int32)
    with pytest.raises(ValueError, match="key must be a JAX PRNG key"):
        init.haar_orthogonal(0, 3)
