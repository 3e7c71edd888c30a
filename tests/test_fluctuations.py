"""Tests of ntklit.fluctuations: exactness against per-network references, laws, effective
theory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import ntklit  # noqa: F401  (applies the neural-tangents compat patches)
from ntklit import fluctuations as fl
from ntklit import nets

import neural_tangents as nt

jax.config.update("jax_enable_x64", True)

ACT = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0), "linear": lambda z: z}


def _inputs(p=2, n0=5, seed=1):
    return jax.random.normal(jax.random.key(seed), (p, n0), jnp.float64)


@pytest.mark.parametrize(
    "init,activation,b_std",
    [
        ("gaussian", "tanh", 0.0),
        ("orthogonal", "tanh", 0.0),
        ("gaussian", "relu", 0.4),
        ("orthogonal", "relu", 0.4),
    ],
)
def test_ensemble_equals_per_network_loop_and_neural_tangents(init, activation, b_std):
    key, x = jax.random.key(7), _inputs()
    W_std, n, depth = 1.3, 6, 4
    ens = fl.ensemble(
        key,
        x,
        depth=depth,
        width=n,
        n_networks=5,
        activation=activation,
        W_std=W_std,
        b_std=b_std,
        init=init,
        ntk_depths=(1, 3, 4),
        chunk_size=2,
    )
    assert ens.q.shape == (depth, 5, 2, 2) and ens.ntk.shape == (3, 5, 2, 2)
    # neither chunking nor redrawing the weights in the backward pass changes any network
    other = fl.ensemble(
        key,
        x,
        depth=depth,
        width=n,
        n_networks=5,
        activation=activation,
        W_std=W_std,
        b_std=b_std,
        init=init,
        ntk_depths=(1, 3, 4),
        chunk_size=5,
        store_weights=False,
    )
    np.testing.assert_allclose(other.q, ens.q, rtol=1e-12)
    np.testing.assert_allclose(other.ntk, ens.ntk, rtol=1e-12)
    for b in (0, 3, 4):
        # plain numpy loop over layers for the preactivation Grams
        ws = fl.network_weights(
            key, b, depth=depth, width=n, n_in=5, init=init, dtype=jnp.float64, bias=b_std > 0
        )
        a = np.asarray(x).T
        acts = []
        for l, (W, bb) in enumerate(ws):
            z = W_std / np.sqrt(a.shape[0]) * np.asarray(W) @ a + b_std * np.asarray(bb)[:, None]
            np.testing.assert_allclose(ens.q[l, b], z.T @ z / n, rtol=1e-12, atol=1e-12)
            a = ACT[activation](z)
            acts.append(a)
        # the NTK against neural-tangents' Jacobian-contraction NTK of the same stax network
        for s, D in enumerate(ens.ntk_depths):
            if b != 3:
                continue
            ws = fl.network_weights(
                key,
                b,
                depth=D,
                width=n,
                n_in=5,
                readout_depth=D,
                init=init,
                dtype=jnp.float64,
                bias=b_std > 0,
            )
            # the networks of ntklit.nets (chapter 7 trains them) with this network's weights
            init_fn, apply_fn, _ = nets.fcn(
                D, n, activation=activation, W_std=W_std, b_std=b_std, out_dim=1
            )
            _, params = init_fn(jax.random.key(0), x.shape)
            it = iter(ws)
            new = []
            for p in params:
                if p == ():
                    new.append(p)
                    continue
                W, bb = next(it)
                new.append((W.T, bb) if b_std > 0 else (W.T, p[1]))
            ref = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0)(x, None, new)
            np.testing.assert_allclose(
                ens.ntk[s, b], np.asarray(ref)[:, :, 0, 0], rtol=1e-10, atol=1e-12
            )
            aD = acts[D - 1]
            np.testing.assert_allclose(
                ens.nngp[s, b], W_std**2 / n * aD.T @ aD + b_std**2, rtol=1e-12
            )


def test_raw_and_typed_keys_give_the_same_networks():
    x = _inputs()
    kw = dict(depth=2, width=3, n_networks=2, ntk_depths=(2,), init="orthogonal")
    a = fl.ensemble(jax.random.key(4), x, **kw)
    b = fl.ensemble(jax.random.PRNGKey(4), x, **kw)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.ntk, b.ntk)
    assert not np.array_equal(a.q, fl.ensemble(jax.random.key(5), x, **kw).q)


@pytest.mark.parametrize("init", fl.INITS)
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_nets_fcn_is_the_ensembles_network(init, activation):
    # chapter 7 trains ntklit.nets.fcn(b_std=0): it must be the network of the ensembles
    # (same parameter shapes, NTK parameterization, activation, no bias parameters) with the
    # same weight law (checked in the next test)
    depth, n, n0, out, W_std = 3, 6, 5, 4, 1.3
    init_fn, apply_fn, _ = nets.fcn(
        depth, n, activation=activation, W_std=W_std, b_std=0.0, out_dim=out, init=init
    )
    x = _inputs(p=3, n0=n0)
    _, params = init_fn(jax.random.key(2), x.shape)
    dense = [p for p in params if p != ()]
    assert [p[0].shape for p in dense] == [(n0, n)] + [(n, n)] * (depth - 1) + [(n, out)]
    assert all(np.size(p[1]) == 0 or p[1] is None for p in dense)  # b_std=0: no bias params
    # nets.fcn's apply_fn is the ensembles' forward pass (numpy) for the same weights
    a = np.asarray(x).T
    for W, _ in dense:
        z = W_std / np.sqrt(a.shape[0]) * np.asarray(W).T @ a
        a = ACT[activation](z)
    np.testing.assert_allclose(np.asarray(apply_fn(params, x)), z.T, rtol=1e-12)


@pytest.mark.parametrize("n_in,n_out", [(5, 8), (8, 5)])
def test_nets_fcn_weights_have_the_law_of_sample_weight(n_in, n_out):
    B = 400
    draws = {}
    for init in fl.INITS:
        init_fn = nets.fcn(1, n_out, activation="tanh", init=init, out_dim=3)[0]
        w = np.stack(
            [np.asarray(init_fn(jax.random.key(s), (1, n_in))[1][0][0]).T for s in range(B)]
        )  # (B, n_out, n_in)
        r = np.stack(
            [
                np.asarray(
                    fl.sample_weight(jax.random.key(10**4 + s), (n_out, n_in), init, jnp.float64)
                )
                for s in range(B)
            ]
        )
        draws[init] = (w, r)
    m = max(n_in, n_out)
    for w in draws["orthogonal"]:
        # scaled semi-orthogonal, exactly: W^T W = m I (tall) or W W^T = m I (wide)
        g = np.einsum("bij,bik->bjk", w, w) if n_out >= n_in else np.einsum("bji,bki->bjk", w, w)
        np.testing.assert_allclose(
            g, np.broadcast_to(m * np.eye(min(n_in, n_out)), g.shape), atol=1e-9
        )
    for init in fl.INITS:
        w, r = draws[init]
        # same entry law: second and fourth moments of the entries agree within sampling error
        for k in (2, 4):
            a, b = (w**k).reshape(B, -1).mean(1), (r**k).reshape(B, -1).mean(1)
            se = np.sqrt(a.var() / B + b.var() / B) + 1e-15
            assert abs(a.mean() - b.mean()) < 5 * se, (init, k, a.mean(), b.mean(), se)
    # and the test can tell the two laws apart: Gaussian Grams are not multiples of I
    wg = draws["gaussian"][0]
    g = np.einsum("bij,bik->bjk", wg, wg) if n_out >= n_in else np.einsum("bji,bki->bjk", wg, wg)
    assert np.abs(g - m * np.eye(min(n_in, n_out))).max() > 1.0
    # and the 4th entry moment separates them (Gaussian 3, orthogonal 3 m / (m + 2))
    f4 = {i: (draws[i][0] ** 4).mean() for i in fl.INITS}
    assert f4["gaussian"] - f4["orthogonal"] > 0.3


def test_q_ensemble_does_not_depend_on_chunk_size():
    key, x = jax.random.key(3), _inputs(p=1)
    c = fl.q_ensemble(key, x, depth=3, width=4, n_networks=7, chunk_size=2)
    d = fl.q_ensemble(key, x, depth=3, width=4, n_networks=7, chunk_size=7)
    np.testing.assert_allclose(c, d, rtol=1e-12)


@pytest.mark.parametrize("n_in,n_out", [(5, 8), (8, 5), (6, 6)])
def test_sample_weight_orthogonal_is_scaled_semi_orthogonal(n_in, n_out):
    W = np.asarray(fl.sample_weight(jax.random.key(0), (n_out, n_in), "orthogonal", jnp.float64))
    m = max(n_in, n_out)
    gram = W.T @ W if n_out >= n_in else W @ W.T
    np.testing.assert_allclose(gram, m * np.eye(min(n_in, n_out)), atol=1e-12)


@pytest.mark.parametrize("method,p", [("matrix", 2), ("conditional", 2), ("conditional", 1)])
def test_orthogonal_linear_network_preserves_norms_exactly(method, p):
    n, depth, W_std = 8, 6, 1.7
    x = _inputs(p=p, n0=n)
    key = jax.random.key(11)
    if method == "matrix":
        q = fl.ensemble(
            key,
            x,
            depth=depth,
            width=n,
            n_networks=4,
            activation="linear",
            W_std=W_std,
            init="orthogonal",
        ).q
    else:
        q = fl.q_ensemble(
            key,
            x,
            depth=depth,
            width=n,
            n_networks=4,
            activation="linear",
            W_std=W_std,
            init="orthogonal",
        )
    xg = np.asarray(x @ x.T) / n
    for l in range(depth):
        # the whole Gram (norms and angles) is preserved: q^(l) = W_std^(2l) x x^T / n_0
        np.testing.assert_allclose(
            q[l], np.broadcast_to(W_std ** (2 * l + 2) * xg, q[l].shape), rtol=1e-12
        )
    # and the Gaussian linear network does not preserve them
    qg = fl.q_ensemble(
        key,
        x,
        depth=depth,
        width=n,
        n_networks=4,
        activation="linear",
        W_std=W_std,
        init="gaussian",
    )
    assert np.abs(qg[-1, :, 0, 0] / (W_std ** (2 * depth) * xg[0, 0]) - 1).max() > 1e-3


def _nvar_se(q, n, n_boot=200):
    est = n * fl.normalized_variance(q)
    reps = fl.bootstrap(lambda s: n * fl.normalized_variance(s), q, n_boot=n_boot, seed=1)
    return est, reps.std()


@pytest.mark.parametrize("method", ["matrix", "conditional"])
def test_gaussian_linear_network_matches_chi_square_closed_form(method):
    # q^(L) = q^(0) prod_l chi2_n / n exactly, so n Var[q]/E[q]^2 = n((1 + 2/n)^L - 1)
    n, depth, B = 6, 4, 3000 if method == "conditional" else 1500
    x = _inputs(p=1, n0=n)
    key = jax.random.key(5)
    if method == "matrix":
        q = fl.ensemble(key, x, depth=depth, width=n, n_networks=B, activation="linear").q
    else:
        q = fl.q_ensemble(key, x, depth=depth, width=n, n_networks=B, activation="linear")
    q = q[:, :, 0, 0]
    np.testing.assert_allclose(q.mean(axis=1) / q[0].mean(), 1.0, atol=0.1)
    for l in (0, depth - 1):
        est, se = _nvar_se(q[l], n)
        exact = n * ((1 + 2 / n) ** (l + 1) - 1)
        assert abs(est - exact) < 5 * se, (l, est, exact, se)
        assert se < 0.1 * exact  # the test is decisive at this ensemble size


@pytest.mark.parametrize("init,p", [("gaussian", 2), ("orthogonal", 2), ("orthogonal", 1)])
def test_conditional_sampler_has_the_law_of_the_matrix_ensemble(init, p):
    n, depth, B = 6, 5, 2000
    x = _inputs(p=p, n0=4)
    a = fl.ensemble(
        jax.random.key(1),
        x,
        depth=depth,
        width=n,
        n_networks=B,
        init=init,
        activation="tanh",
        b_std=0.3,
    ).q
    b = fl.q_ensemble(
        jax.random.key(2),
        x,
        depth=depth,
        width=n,
        n_networks=B,
        init=init,
        activation="tanh",
        b_std=0.3,
    )
    for l in (0, 2, depth - 1):
        for i, j in ((0, 0), (0, p - 1)):
            sa, sb = a[l, :, i, j], b[l, :, i, j]
            se = np.sqrt(sa.var() / B + sb.var() / B)
            assert abs(sa.mean() - sb.mean()) < 5 * se
        ea, se_a = _nvar_se(a[l, :, 0, 0], n)
        eb, se_b = _nvar_se(b[l, :, 0, 0], n)
        assert abs(ea - eb) < 5 * np.hypot(se_a, se_b), (l, ea, eb)


def test_conditional_sampler_differs_between_inits():
    # a test that can fail: orthogonal and Gaussian tanh networks have different q laws
    x = _inputs(p=1, n0=16)
    qg = fl.q_ensemble(jax.random.key(0), x, depth=8, width=16, n_networks=1000)[:, :, 0, 0]
    qo = fl.q_ensemble(
        jax.random.key(0), x, depth=8, width=16, n_networks=1000, init="orthogonal"
    )[:, :, 0, 0]
    assert 16 * fl.normalized_variance(qg[-1]) > 10 * 16 * fl.normalized_variance(qo[-1])


# ----------------------------------------------------------------------------- effective theory


def _quad_moments(activation, K):
    phi = ACT[activation]
    dens = lambda z, k: np.exp(-z * z / (2 * k)) / np.sqrt(2 * np.pi * k)  # noqa: E731

    def m(f, k):
        return integrate.quad(
            lambda z: f(z) * dens(z, k),
            -np.inf,
            np.inf,
            epsabs=1e-13,
            epsrel=1e-12,
            limit=200,
        )[0]

    m2 = m(lambda z: phi(z) ** 2, K)
    m4 = m(lambda z: phi(z) ** 4, K)
    h = 1e-4 * K
    dm2 = (m(lambda z: phi(z) ** 2, K + h) - m(lambda z: phi(z) ** 2, K - h)) / (2 * h)
    return m2, m4, dm2


@pytest.mark.parametrize("activation", fl.ACTIVATIONS)
@pytest.mark.parametrize("K", [0.03, 0.5, 1.0, 3.0])
def test_gaussian_moments_against_adaptive_quadrature_and_finite_differences(activation, K):
    got = fl.gaussian_moments(activation, K)
    ref = _quad_moments(activation, K)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)


def test_kernel_recursion_against_independent_loop():
    depth = 12
    for activation, W_std, b_std in (
        ("tanh", 1.0, 0.0),
        ("tanh", 1.2, 0.3),
        ("relu", 2**0.5, 0.0),
    ):
        K, V = fl.kernel_recursion(activation, depth, W_std=W_std, b_std=b_std, K1=0.8)
        k, v = 0.8, 0.0
        for l in range(depth):
            np.testing.assert_allclose([K[l], V[l]], [k, v], rtol=1e-6, atol=1e-12)
            m2, m4, dm2 = _quad_moments(activation, k)
            k, v = b_std**2 + W_std**2 * m2, W_std**4 * (m4 - m2**2) + (W_std**2 * dm2) ** 2 * v


def test_closed_forms_and_asymptotic_slopes():
    L = np.arange(1, 41)
    # linear and ReLU at criticality: V/K^2 = s (l - 1) exactly, s = 2 and 5
    for activation, W_std in (("linear", 1.0), ("relu", 2**0.5)):
        pred = fl.q_variance_prediction(activation, 40, W_std=W_std)
        np.testing.assert_allclose(
            pred, 2 + fl.ASYMPTOTIC_SLOPES[activation] * (L - 1), rtol=1e-12
        )
    # tanh (K* = 0 class): K ~ 1/(2l) and the local slope of V/K^2 tends to 2/3
    K, V = fl.kernel_recursion("tanh", 4000)
    np.testing.assert_allclose(K[-1] * 2 * 4000, 1.0, rtol=0.01)
    r = V / K**2
    slope = fl.fit_slope(np.arange(2000, 4001), r[1999:])
    np.testing.assert_allclose(slope, 2 / 3, rtol=0.01)
    assert abs(fl.fit_slope(np.arange(2, 10), r[1:9]) - 2 / 3) > 0.03  # pre-asymptotic


def test_statistics_helpers():
    rng = np.random.default_rng(0)
    s = rng.normal(2.0, 0.5, size=(4000, 3))
    np.testing.assert_allclose(fl.normalized_variance(s), 0.0625, rtol=0.1)
    np.testing.assert_allclose(fl.fit_slope([1, 2, 3, 4], [1, 3, 5, 7]), 2.0)
    reps = fl.bootstrap(lambda a: a.mean(axis=0), s, n_boot=300, seed=0)
    assert reps.shape == (300, 3)
    np.testing.assert_allclose(reps.std(axis=0), 0.5 / np.sqrt(4000), rtol=0.2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(init="haar"), "init"),
        (dict(activation="erf"), "activation"),
        (dict(depth=0), "depth"),
        (dict(width=2.5), "width"),
        (dict(n_networks=1), "n_networks"),
        (dict(W_std=0.0), "W_std"),
        (dict(b_std=-1.0), "b_std"),
        (dict(ntk_depths=(0,)), "ntk_depths"),
        (dict(ntk_depths=(4,)), "ntk_depths"),
        (dict(ntk_depths=(2, 2)), "ntk_depths"),
        (dict(ntk_depths="12"), "ntk_depths"),
        (dict(ntk_depths=(1.0,)), "ntk_depths"),
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    args = dict(depth=3, width=4, n_networks=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fl.ensemble(jax.random.key(0), _inputs(), **args)


def test_bad_inputs_raise_elsewhere():
    with pytest.raises(ValueError, match="key"):
        fl.ensemble(0, _inputs(), depth=2, width=4, n_networks=2)
    with pytest.raises(ValueError, match="x must"):
        fl.ensemble(jax.random.key(0), np.ones(3), depth=2, width=4, n_networks=2)
    with pytest.raises(ValueError, match="P <= width"):
        fl.q_ensemble(jax.random.key(0), _inputs(p=5), depth=2, width=4, n_networks=2)
    with pytest.raises(ValueError, match="init"):
        fl.q_ensemble(jax.random.key(0), _inputs(), depth=2, width=4, n_networks=2, init="delta")
    with pytest.raises(ValueError, match="activation"):
        fl.kernel_recursion("gelu", 3)
    with pytest.raises(ValueError, match="K1"):
        fl.kernel_recursion("tanh", 3, K1=0.0)
    with pytest.raises(ValueError, match="K"):
        fl.gaussian_moments("tanh", -1.0)
    with pytest.raises(ValueError, match="deg"):
        fl.gaussian_moments("tanh", 1.0, deg=0)
    with pytest.raises(ValueError, match="init"):
        fl.sample_weight(jax.random.key(0), (3, 2), "haar")
    with pytest.raises(ValueError, match="shape"):
        fl.sample_weight(jax.random.key(0), (3, 0))
    with pytest.raises(ValueError, match="index"):
        fl.network_weights(jax.random.key(0), -1, depth=2, width=3, n_in=2)
    with pytest.raises(ValueError, match="key"):
        fl.q_ensemble(np.zeros(2, np.int32), _inputs(), depth=2, width=4, n_networks=2)
    with pytest.raises(ValueError, match="samples"):
        fl.normalized_variance(np.ones(1))
    with pytest.raises(ValueError, match="n_boot"):
        fl.bootstrap(np.mean, np.ones(4), n_boot=1)
    with pytest.raises(ValueError, match="same length"):
        fl.fit_slope([1, 2], [1])
