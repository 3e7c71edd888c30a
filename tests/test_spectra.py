"""ntklit.spectra: log-singular values of matrix products, checked against the direct SVD,
closed forms and products with a known spectrum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import ntklit  # noqa: F401  (applies compat)
from ntklit import init, nets, spectra

jax.config.update("jax_enable_x64", True)
EPS = float(jnp.finfo(jnp.float64).eps)


def _gauss(key, L, n):
    return jax.random.normal(key, (L, n, n), jnp.float64) / np.sqrt(n)


@pytest.mark.parametrize("n,L", [(16, 3), (15, 2), (8, 1)])
def test_matches_direct_svd_at_small_depth(n, L):
    F = _gauss(jax.random.key(n + L), L, n)
    ls, info = spectra.log_singular_values(F, return_info=True)
    ref = np.linalg.svd(np.asarray(spectra.product(F)), compute_uv=False)
    assert bool(info["converged"])
    np.testing.assert_allclose(np.exp(np.asarray(ls)), ref, rtol=1e-10)


def test_sum_is_log_abs_det():
    F = _gauss(jax.random.key(1), 40, 12)
    ls = spectra.log_singular_values(F)
    logdet = sum(np.linalg.slogdet(np.asarray(f))[1] for f in F)
    assert abs(float(ls.sum()) - logdet) < 1e-10 * abs(logdet)


def test_orthogonal_product_is_exactly_zero():
    keys = jax.random.split(jax.random.key(2), 50)
    F = jnp.stack([init.haar_orthogonal(k, 10, jnp.float64) for k in keys])
    ls = spectra.log_singular_values(F)
    assert float(jnp.max(jnp.abs(ls))) < 100 * EPS


@pytest.mark.parametrize("sweeps", [1, 3])
def test_deep_product_with_known_spectrum(sweeps):
    # F_l = U_l diag(e^{a_l}) U_{l-1}^T: the product's log-singular values are sum_l a_l
    n, L = 12, 120
    U = jnp.stack(
        [
            init.haar_orthogonal(k, n, jnp.float64)
            for k in jax.random.split(jax.random.key(3), L + 1)
        ]
    )
    a = 0.5 * jax.random.normal(jax.random.key(4), (L, n)) - 0.1 * jnp.arange(n)[None, :]
    F = jnp.stack([U[l + 1] @ jnp.diag(jnp.exp(a[l])) @ U[l].T for l in range(L)])
    exact = -np.sort(-np.asarray(a.sum(0)))
    assert exact[0] - exact[-1] > 100  # e^100: far beyond a direct SVD's reach
    ls, info = spectra.log_singular_values(F, sweeps=sweeps, return_info=True)
    assert bool(info["converged"])
    np.testing.assert_allclose(np.asarray(ls), exact, rtol=0, atol=1e-10)


def test_gaussian_expected_log_det():
    # |det G|^2 = prod_i chi^2_{n-i+1} / n (Bartlett), E ln chi^2_k = psi(k/2) + ln 2
    n, L, m = 8, 6, 400
    F = _gauss(jax.random.key(5), m * L, n).reshape(m, L, n, n)
    s = np.asarray(jax.jit(jax.vmap(spectra.log_singular_values))(F)).sum(1)
    exact = (
        L * 0.5 * sum(special.digamma((n - i + 1) / 2) + np.log(2 / n) for i in range(1, n + 1))
    )
    assert abs(s.mean() - exact) < 4 * s.std(ddof=1) / np.sqrt(m)


@pytest.mark.parametrize(
    "act,W,b", [("tanh", 1.1, 0.1), ("relu", 1.4, 0.0), ("erf", 1.2, 0.05), ("linear", 1.0, 0.0)]
)
def test_fcn_factors_multiply_to_the_jacobian(act, W, b):
    init_fn, apply_fn, _ = nets.fcn(3, 8, out_dim=8, activation=act, W_std=W, b_std=b)
    p = jax.tree_util.tree_map(
        lambda v: v.astype(jnp.float64), init_fn(jax.random.key(6), (1, 8))[1]
    )
    x = jax.random.normal(jax.random.key(7), (8,), jnp.float64)
    F = spectra.fcn_jacobian_factors(p, x, activation=act, W_std=W, b_std=b)
    J = jax.jacrev(lambda v: apply_fn(p, v[None])[0])(x)
    assert F.shape == (4, 8, 8)
    np.testing.assert_allclose(np.asarray(spectra.product(F)), np.asarray(J), atol=1e-13)


@pytest.mark.parametrize("init_name", nets.INITS)
@pytest.mark.parametrize("act,W,b", [("tanh", 1.05**0.5, 0.1), ("relu", 1.4, 0.0)])
def test_fcn_factors_standard_parameterization(init_name, act, W, b):
    """Standard parameterization (the scale in the weights, chapter 6's networks): the factors
    multiply to the autodiff Jacobian, and the log-singular values match its direct SVD."""
    depth, n = 3, 16
    init_fn, apply_fn, _ = nets.fcn(
        depth,
        n,
        out_dim=n,
        activation=act,
        W_std=W,
        b_std=b,
        init=init_name,
        parameterization="standard",
    )
    p = jax.tree_util.tree_map(
        lambda v: v.astype(jnp.float64), init_fn(jax.random.key(9), (1, n))[1]
    )
    x = jax.random.normal(jax.random.key(10), (n,), jnp.float64)
    F = spectra.fcn_jacobian_factors(
        p, x, activation=act, W_std=W, b_std=b, parameterization="standard"
    )
    J = jax.jacrev(lambda v: apply_fn(p, v[None])[0])(x)
    assert F.shape == (depth + 1, n, n)
    np.testing.assert_allclose(np.asarray(spectra.product(F)), np.asarray(J), atol=1e-13)
    s = np.linalg.svd(np.asarray(J), compute_uv=False)
    ls = np.asarray(spectra.log_singular_values(F))
    # ReLU zeroes whole units, so J may be rank deficient: its zero singular values come out as
    # rounding noise from both methods; compare the values the SVD resolves, bound the rest
    big = s > 1e-8 * s[0]
    assert big.sum() >= n // 4
    np.testing.assert_allclose(ls[big], np.log(s[big]), atol=1e-10)
    assert np.all(ls[~big] < np.log(1e-12 * s[0]))
    # the NTK-parameterization factors of the same weights differ by sigma_w / sqrt(n) per layer
    F_ntk = spectra.fcn_jacobian_factors(p, x, activation=act, W_std=W, b_std=b)
    assert not np.allclose(np.asarray(F_ntk), np.asarray(F))


def test_bad_inputs_raise():
    F = _gauss(jax.random.key(8), 2, 4)
    with pytest.raises(ValueError, match="factors"):
        spectra.log_singular_values(jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="factors"):
        spectra.log_singular_values(jnp.zeros((2, 3, 3), jnp.int32))
    with pytest.raises(ValueError, match="sweeps"):
        spectra.log_singular_values(F, sweeps=2)
    with pytest.raises(ValueError, match="sweeps"):
        spectra.log_singular_values(F, sweeps=0)
    with pytest.raises(ValueError, match="tol"):
        spectra.log_singular_values(F, tol=-1.0)
    with pytest.raises(ValueError, match="max_jacobi_sweeps"):
        spectra.log_singular_values(F, max_jacobi_sweeps=0)
    init_fn = nets.fcn(1, 4, out_dim=4)[0]
    p = init_fn(jax.random.key(0), (1, 4))[1]
    with pytest.raises(ValueError, match="activation"):
        spectra.fcn_jacobian_factors(p, jnp.ones(4), activation="gelu", W_std=1.0)
    with pytest.raises(ValueError, match="x must have shape"):
        spectra.fcn_jacobian_factors(p, jnp.ones(5), activation="relu", W_std=1.0)
    with pytest.raises(ValueError, match="W_std"):
        spectra.fcn_jacobian_factors(p, jnp.ones(4), activation="relu", W_std=0.0)
    with pytest.raises(ValueError, match="parameterization"):
        spectra.fcn_jacobian_factors(
            p, jnp.ones(4), activation="relu", W_std=1.0, parameterization="mup"
        )
