"""Tests of ntklit.empirical: the FCN fast path against neural-tangents, the conditional NNGP
against Monte Carlo over the readout, ensembles against a loop over seeds, statistics, bad input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntklit  # noqa: F401  (applies the compat patches)
from ntklit import empirical as E
from ntklit import nets

from neural_tangents import stax

jax.config.update("jax_enable_x64", True)


def _stax_fcn(depth, width, act, W_std, b_std, out_dim, parameterization="ntk"):
    layers = []
    for _ in range(depth):
        layers += [
            stax.Dense(width, W_std=W_std, b_std=b_std, parameterization=parameterization),
            nets.activation_layer(act),
        ]
    layers.append(stax.Dense(out_dim, W_std=W_std, b_std=b_std, parameterization=parameterization))
    return stax.serial(*layers)


def _inputs(n1=5, n2=4, d=6):
    x1 = jax.random.normal(jax.random.key(1), (n1, d), dtype=jnp.float64)
    x2 = jax.random.normal(jax.random.key(2), (n2, d), dtype=jnp.float64)
    return x1, x2


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize(
    "act,depth,b_std,out_dim",
    [
        ("relu", 1, 0.1, 1),
        ("relu", 3, None, 2),
        ("erf", 2, 0.5, 1),
        ("erf", 1, None, 3),
        ("tanh", 2, 0.2, 2),
        ("linear", 3, 0.3, 1),
        ("relu", 0, 0.2, 2),
    ],
)
def test_fcn_fast_path_matches_jacobian_contraction(act, depth, b_std, out_dim):
    init_fn, apply_fn, _ = _stax_fcn(depth, 9, act, 1.4, b_std, out_dim)
    _, params = init_fn(jax.random.key(0), (-1, 6))
    x1, x2 = _inputs()
    # (x2, trace) variants: every case with x2 given and traced; the untraced and x2=None
    # paths in the cases with several outputs (where tracing matters).
    variants = [(x2, True)] + ([(None, False), (x2, False)] if out_dim > 1 else [(None, True)])
    for xx, trace in variants:
        ref = E.ntk(apply_fn, params, x1, xx, trace_outputs=trace)
        fast = E.fcn_kernels(
            params, x1, xx, activation=act, W_std=1.4, b_std=b_std, trace_outputs=trace
        )
        assert fast.ntk.shape == ref.shape
        assert _rel(fast.ntk, ref) < 1e-6
        nngp = E.nngp(apply_fn, params, x1, xx, trace_outputs=trace)
        assert _rel(fast.nngp, nngp) < 1e-6


def test_fcn_fast_path_standard_parameterization_and_nets():
    init_fn, apply_fn, _ = _stax_fcn(2, 7, "relu", 1.3, 0.2, 1, "standard")
    _, params = init_fn(jax.random.key(3), (-1, 6))
    x1, x2 = _inputs()
    ref = E.ntk(apply_fn, params, x1, x2)
    fast = E.fcn_ntk(params, x1, x2, W_std=1.3, b_std=0.2, parameterization="standard")
    assert _rel(fast, ref) < 1e-6
    # ntklit.nets networks, orthogonal init, against a second NT implementation
    init_fn, apply_fn, _ = nets.fcn(
        2, 8, activation="erf", W_std=1.5, b_std=0.1, init="orthogonal"
    )
    _, params = init_fn(jax.random.key(4), (-1, 6))
    ref = E.ntk(apply_fn, params, x1, x2, implementation="ntk_vector_products")
    assert _rel(E.fcn_ntk(params, x1, x2, activation="erf", W_std=1.5, b_std=0.1), ref) < 1e-6


def test_fcn_ntk_layer_sum_closed_form_one_hidden_layer():
    """Independent closed form for Dense-ReLU-Dense with scalar output, written out by hand."""
    n0, n, sw, sb = 6, 11, 1.5, 0.1
    k = jax.random.split(jax.random.key(7), 4)
    W1, b1 = jax.random.normal(k[0], (n0, n)), jax.random.normal(k[1], (1, n))
    W2, b2 = jax.random.normal(k[2], (n, 1)), jax.random.normal(k[3], (1, 1))
    x1, x2 = _inputs()
    x1, x2 = np.asarray(x1), np.asarray(x2)
    W1, b1, W2 = np.asarray(W1), np.asarray(b1), np.asarray(W2)
    h1, h2 = sw / np.sqrt(n0) * x1 @ W1 + sb * b1, sw / np.sqrt(n0) * x2 @ W1 + sb * b1
    a1, a2 = np.maximum(h1, 0), np.maximum(h2, 0)
    d1 = sw / np.sqrt(n) * W2[:, 0] * (h1 > 0)  # df/dh1, (N1, n)
    d2 = sw / np.sqrt(n) * W2[:, 0] * (h2 > 0)
    theta = (sw**2 / n0 * x1 @ x2.T + sb**2) * (d1 @ d2.T) + sw**2 / n * a1 @ a2.T + sb**2
    nngp = sw**2 / n * a1 @ a2.T + sb**2
    K = E.fcn_kernels([(W1, b1), (W2, b2)], x1, x2, W_std=sw, b_std=sb)
    np.testing.assert_allclose(K.ntk, theta, rtol=1e-10)
    np.testing.assert_allclose(K.nngp, nngp, rtol=1e-10)


def test_conditional_nngp_is_mean_over_readout():
    """Monte Carlo over the readout layer: E[f f^T] -> conditional NNGP (tolerance from S)."""
    init_fn, apply_fn, _ = _stax_fcn(1, 10, "relu", 1.5, 0.1, 1)
    _, params = init_fn(jax.random.key(0), (-1, 6))
    x1, _ = _inputs()
    S = 4000
    ks = jax.random.split(jax.random.key(9), S)

    def ff(k):
        kw, kb = jax.random.split(k)
        W = jax.random.normal(kw, params[2][0].shape)
        b = jax.random.normal(kb, params[2][1].shape)
        f = apply_fn([params[0], params[1], (W, b)], x1)
        return f @ f.T

    samples = np.asarray(jax.vmap(ff)(ks))
    mc, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(S)
    cond = np.asarray(E.nngp(apply_fn, params, x1))
    assert np.all(np.abs(mc - cond) < 5 * se + 1e-12)
    # 'output' readout is exactly f f^T of this network
    f = apply_fn(params, x1)
    np.testing.assert_allclose(E.nngp(apply_fn, params, x1, readout="output"), f @ f.T, rtol=1e-12)


def test_cnn_kernels_two_implementations_and_gap_features():
    init_fn, apply_fn, _ = nets.cnn(2, 4, W_std=1.5, b_std=0.1, init="orthogonal")
    x = jax.random.normal(jax.random.key(5), (3, 5, 5, 1), dtype=jnp.float64)
    _, params = init_fn(jax.random.key(6), x.shape)
    jc = E.ntk(apply_fn, params, x, implementation="jacobian_contraction")
    nvp = E.ntk(apply_fn, params, x, implementation=2)
    assert jc.shape == (3, 3)
    assert _rel(nvp, jc) < 1e-9
    # conditional NNGP = (W_std^2 / C) <GAP features> + b_std^2, features via apply_fn truncated
    _, feat_fn, _ = stax.serial(
        stax.Conv(4, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.Conv(4, (3, 3), padding="SAME", W_std=1.5, b_std=0.1),
        stax.Relu(),
        stax.GlobalAvgPool(),
    )
    phi = feat_fn(params[:5], x)
    expect = 1.5**2 / 4 * phi @ phi.T + 0.1**2
    np.testing.assert_allclose(E.nngp(apply_fn, params, x), expect, rtol=1e-10)


@pytest.mark.parametrize(
    "depth,act,b_std,readout,padding,init,conv,out_dim,shape,fs",
    [
        (2, "relu", 0.1, "gap", "SAME", "gaussian", "orthogonal", 1, (3, 5, 5, 2), (3, 3)),
        (2, "erf", 0.0, "flatten", "VALID", "orthogonal", "orthogonal", 2, (3, 6, 5, 1), (3, 3)),
        (1, "tanh", 0.3, "gap", "CIRCULAR", "orthogonal", "delta", 3, (2, 4, 5, 2), (3, 3)),
        (0, "relu", 0.2, "gap", "SAME", "gaussian", "orthogonal", 2, (3, 4, 4, 2), (3, 3)),
        (2, "linear", 0.2, "flatten", "SAME", "gaussian", "orthogonal", 1, (2, 4, 3, 1), (2, 3)),
        (2, "relu", 0.1, "gap", "CIRCULAR", "gaussian", "orthogonal", 2, (2, 7, 2), (4,)),
    ],
)
def test_cnn_fast_path_matches_jacobian_contraction(
    depth, act, b_std, readout, padding, init, conv, out_dim, shape, fs
):
    """Every entry of the CNN fast path (NTK and conditional NNGP, traced and not, x2 given or
    not) against neural-tangents' Jacobian contraction: paddings, readouts, the three CNN
    ensembles of chapter 4, no conv layer, a 1-D CNN and even filters."""
    init_fn, apply_fn, _ = nets.cnn(
        depth,
        3,
        filter_shape=fs,
        activation=act,
        W_std=1.3,
        b_std=b_std,
        readout=readout,
        padding=padding,
        init=init,
        conv=conv,
        out_dim=out_dim,
    )
    x = jax.random.normal(jax.random.key(1), shape, dtype=jnp.float64)
    x2 = jax.random.normal(jax.random.key(2), (4,) + shape[1:], dtype=jnp.float64)
    _, params = init_fn(jax.random.key(0), x.shape)
    for xx, trace in ((None, True), (x2, True), (x2, False)):
        ref = E.ntk(apply_fn, params, x, xx, trace_outputs=trace)
        K = E.cnn_kernels(
            params,
            x,
            xx,
            activation=act,
            W_std=1.3,
            b_std=b_std,
            readout=readout,
            padding=padding,
            trace_outputs=trace,
        )
        assert K.ntk.shape == ref.shape
        assert _rel(K.ntk, ref) < 1e-10
        assert _rel(K.nngp, E.nngp(apply_fn, params, x, xx, trace_outputs=trace)) < 1e-10


def test_cnn_ensemble_and_sweep_match_single_networks():
    """cnn_ensemble_kernels draws the networks of ensemble() and gives each one's cnn_kernels;
    width_sweep(cnn=...) equals the Jacobian-contraction sweep."""
    x = jax.random.normal(jax.random.key(3), (3, 4, 4, 1), dtype=jnp.float64)
    init_fn, apply_fn, _ = nets.cnn(2, 4, W_std=1.5, b_std=0.1, init="orthogonal")
    K = E.cnn_ensemble_kernels(
        init_fn, jax.random.key(4), x, n_samples=3, W_std=1.5, b_std=0.1, chunk_size=2
    )
    ref = E.ensemble_kernels(init_fn, apply_fn, jax.random.key(4), x, n_samples=3)
    assert K.ntk.shape == (3, 3, 3)
    assert _rel(K.ntk, ref.ntk) < 1e-10 and _rel(K.nngp, ref.nngp) < 1e-10

    def build(c, init):
        return nets.cnn(
            1,
            c,
            W_std=1.5,
            b_std=0.1,
            init="gaussian" if init == "gaussian" else "orthogonal",
            conv="delta" if init == "delta" else "orthogonal",
        )

    kw = dict(n_samples=2, inits=("gaussian", "delta"), progress=False)
    fast = E.width_sweep(build, [2, 5], x, jax.random.key(5), cnn=dict(W_std=1.5, b_std=0.1), **kw)
    slow = E.width_sweep(build, [2, 5], x, jax.random.key(5), **kw)
    for init in ("gaussian", "delta"):
        assert _rel(fast.ntk[init], slow.ntk[init]) < 1e-10
        np.testing.assert_allclose(fast.ntk_ref[init], slow.ntk_ref[init])


def test_cnn_fast_path_memory_is_independent_of_the_parameter_count():
    """The compiled program of chapter 4's widest CNN (4096 channels, 16 images, float32) needs
    temporaries below twice its parameters (measured 1.3x), far below the 9.7 GB Jacobian of
    the 3 x 3 layer that a Jacobian contraction holds."""
    c, n = 4096, 16
    init_fn, _, _ = nets.cnn(2, c, W_std=1.5, b_std=0.1)
    params = jax.eval_shape(lambda k: init_fn(k, (n, 8, 8, 1))[1], jax.random.key(0))
    params = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, jnp.float32), params)
    x = jax.ShapeDtypeStruct((n, 8, 8, 1), jnp.float32)
    convs, ro = E.cnn_layers(params)
    fn = jax.jit(
        lambda cv, r, x1: E._cnn_kernels_jit(
            cv,
            r,
            x1,
            x1,
            phi=E.ACTIVATIONS["relu"],
            W_std=1.5,
            b_std=0.1,
            readout_mode="gap",
            padding="SAME",
            trace_outputs=True,
            same=True,
        )
    )
    temp = fn.lower(convs, ro, x).compile().memory_analysis().temp_size_in_bytes
    param_bytes = sum(s.size * 4 for s in jax.tree_util.tree_leaves(params))
    assert temp < 2 * param_bytes
    assert temp < n * 9 * c * c * 4 / 10


def test_ensemble_matches_loop_and_chunking():
    init_fn, apply_fn, _ = nets.fcn(1, 16, W_std=1.5, b_std=0.1, init="orthogonal")
    x1, x2 = _inputs()
    key = jax.random.key(11)
    ens = E.fcn_ensemble_kernels(
        init_fn, key, x1, x2, n_samples=5, W_std=1.5, b_std=0.1, chunk_size=2
    )
    assert ens.ntk.shape == (5, 5, 4) and ens.nngp.shape == (5, 5, 4)
    for i, k in enumerate(jax.random.split(key, 5)):
        _, p = init_fn(k, (-1, 6))
        loop = E.fcn_kernels(p, x1, x2, W_std=1.5, b_std=0.1)
        np.testing.assert_allclose(ens.ntk[i], loop.ntk, rtol=1e-10)
        np.testing.assert_allclose(ens.nngp[i], loop.nngp, rtol=1e-10)
    gen = E.ensemble_kernels(
        init_fn, apply_fn, key, x1, x2, n_samples=5, chunk_size=5, init_mode="map"
    )
    np.testing.assert_allclose(gen.ntk, ens.ntk, rtol=1e-8)
    np.testing.assert_allclose(gen.nngp, ens.nngp, rtol=1e-8)
    # distinct networks: samples differ
    assert float(jnp.std(ens.ntk[:, 0, 0])) > 0


def test_ensemble_init_modes_draw_the_same_networks():
    """'vmap', 'map' and 'loop' draw the networks of the same keys (Gaussian: all three;
    orthogonal: 'map' and 'loop', bit for bit, since both run one unbatched QR per layer)."""
    x1, _ = _inputs()
    key = jax.random.key(3)
    gauss = nets.fcn(2, 8, W_std=1.5, b_std=0.1)[0]
    out = {
        m: E.fcn_ensemble_kernels(
            gauss, key, x1, n_samples=6, chunk_size=4, init_mode=m, W_std=1.5, b_std=0.1
        ).ntk
        for m in ("vmap", "map", "loop")
    }
    np.testing.assert_allclose(out["vmap"], out["loop"], rtol=1e-10)
    np.testing.assert_allclose(out["map"], out["loop"], rtol=1e-10)
    orth = nets.fcn(2, 8, W_std=1.5, b_std=0.1, init="orthogonal")[0]
    a, b = (
        E.fcn_ensemble_kernels(
            orth, key, x1, n_samples=6, chunk_size=4, init_mode=m, W_std=1.5, b_std=0.1
        ).ntk
        for m in ("map", "loop")
    )
    np.testing.assert_allclose(a, b, rtol=1e-10)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the deadlock is a CPU (jaxlib) one")
def test_vmapped_qr_init_on_cpu_fails_fast_and_auto_uses_map():
    """Regression: init_mode='vmap' with an orthogonal (QR) init deadlocked on CPU (batched
    LAPACK calls of two layers blocking every thread of XLA's intra-op pool). It must raise
    before any work (n_samples=4 and width 8 would not even deadlock if it ran), and 'auto'
    must choose 'map' for QR inits and 'vmap' for Gaussian ones."""
    import time

    x1, _ = _inputs()
    orth = nets.fcn(2, 8, W_std=1.5, b_std=0.1, init="orthogonal")[0]
    t = time.perf_counter()
    with pytest.raises(ValueError, match="init_mode.*deadlock"):
        E.fcn_ensemble_kernels(
            orth, jax.random.key(0), x1, n_samples=4, init_mode="vmap", W_std=1.5, b_std=0.1
        )
    assert time.perf_counter() - t < 30
    cnn = nets.cnn(1, 4, init="orthogonal", conv="delta")[0]
    with pytest.raises(ValueError, match="init_mode"):
        E.ensemble(lambda p: 0.0, cnn, jax.random.key(0), (-1, 5, 5, 1), 2, init_mode="vmap")
    assert E._resolve_init_mode("auto", orth, (-1, 6)) == "map"
    assert E._resolve_init_mode("auto", nets.fcn(2, 8)[0], (-1, 6)) == "vmap"
    assert E._resolve_init_mode("loop", orth, (-1, 6)) == "loop"
    big = nets.fcn(1, 256)[0]  # 1024 * 256 + 256 weights >= MAP_ABOVE_PARAMS
    assert E._resolve_init_mode("auto", big, (-1, 1024)) == "map"
    assert E._resolve_init_mode("vmap", big, (-1, 1024)) == "vmap"


def test_ensemble_mean_is_analytic_for_one_hidden_layer():
    """For one hidden layer with Gaussian weights, E[empirical NTK/NNGP] equals the analytic
    kernel exactly; check within 5 standard errors (S = 300 networks)."""
    init_fn, _, kernel_fn = nets.fcn(1, 32, W_std=1.5, b_std=0.1)
    x1, _ = _inputs(n1=4)
    S = 300
    ens = E.fcn_ensemble_kernels(init_fn, jax.random.key(2), x1, n_samples=S, W_std=1.5, b_std=0.1)
    ref = kernel_fn(x1, None, ("nngp", "ntk"))
    for samples, r in ((ens.ntk, ref.ntk), (ens.nngp, ref.nngp)):
        st = E.fluctuation_stats(samples)
        se = np.sqrt(st.var / S)
        assert np.all(np.abs(st.mean - np.asarray(r)) < 5 * se + 1e-12)


def test_fluctuation_stats_and_relative_error():
    rng = np.random.default_rng(0)
    s = rng.normal(2.0, 0.5, size=(50, 3, 3))
    st = E.fluctuation_stats(s)
    np.testing.assert_allclose(st.mean, s.mean(0))
    np.testing.assert_allclose(st.var, s.var(0, ddof=1))
    np.testing.assert_allclose(st.normalized, s.var(0, ddof=1) / s.mean(0) ** 2)
    assert st.n_samples == 50
    st1 = E.fluctuation_stats(np.moveaxis(s, 0, -1), axis=-1)
    np.testing.assert_allclose(st1.var, st.var)
    ref = np.eye(3)
    assert E.relative_frobenius_error(2 * ref, ref) == pytest.approx(1.0)
    errs = E.relative_frobenius_error(np.stack([ref, 3 * ref]), ref)
    np.testing.assert_allclose(errs, [0.0, 2.0])


def test_width_sweep_shapes_and_errors():
    x1, _ = _inputs(n1=4)
    sw = E.width_sweep(
        lambda w, init: nets.fcn(1, w, W_std=1.5, b_std=0.1, init=init),
        [4, 8],
        x1,
        jax.random.key(0),
        n_samples=2,
        progress=False,
        fcn=dict(W_std=1.5, b_std=0.1),
    )
    assert sw.ntk["orthogonal"].shape == (2, 2, 4, 4)
    e = sw.errors("ntk")
    assert e["gaussian"].shape == (2, 2) and np.all(e["gaussian"] > 0)
    np.testing.assert_allclose(
        e["orthogonal"][1, 0],
        np.linalg.norm(sw.ntk["orthogonal"][1, 0] - sw.ntk_ref["orthogonal"])
        / np.linalg.norm(sw.ntk_ref["gaussian"]),
    )


def test_bad_inputs():
    init_fn, apply_fn, _ = _stax_fcn(1, 5, "relu", 1.0, 0.1, 1)
    _, params = init_fn(jax.random.key(0), (-1, 6))
    x1, _ = _inputs()
    with pytest.raises(ValueError, match="x2"):
        E.ntk(apply_fn, params, x1, jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="x2"):
        E.fcn_kernels(params, x1, jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="x1"):
        E.fcn_kernels(params, jnp.ones((3, 5)))
    with pytest.raises(ValueError, match="x1"):
        E.ntk(apply_fn, params, jnp.ones((6,)))
    with pytest.raises(ValueError, match="implementation"):
        E.ntk(apply_fn, params, x1, implementation="fastest")
    with pytest.raises(ValueError, match="activation"):
        E.fcn_kernels(params, x1, activation="softplus")
    with pytest.raises(ValueError, match="parameterization"):
        E.fcn_kernels(params, x1, parameterization="mup")
    with pytest.raises(ValueError, match="W_std"):
        E.fcn_kernels(params, x1, W_std=0.0)
    with pytest.raises(ValueError, match="readout"):
        E.nngp(apply_fn, params, x1, readout="mean")
    with pytest.raises(ValueError, match="n_in"):
        E.fcn_kernels([(jnp.ones((6, 5)), None), (jnp.ones((4, 1)), None)], x1)
    with pytest.raises(ValueError, match="positive"):
        E.fcn_kernels([(jnp.ones((6, 0)), None), (jnp.ones((0, 1)), None)], x1)
    with pytest.raises(ValueError, match="n_samples"):
        E.fcn_ensemble_kernels(init_fn, jax.random.key(0), x1, n_samples=0)
    with pytest.raises(ValueError, match="init_mode"):
        E.fcn_ensemble_kernels(init_fn, jax.random.key(0), x1, n_samples=2, init_mode="pmap")
    with pytest.raises(ValueError, match="key"):
        E.fcn_ensemble_kernels(init_fn, 0, x1, n_samples=2)
    with pytest.raises(ValueError, match="chunk_size"):
        E.ensemble_kernels(init_fn, apply_fn, jax.random.key(0), x1, n_samples=2, chunk_size=-1)
    with pytest.raises(ValueError, match="widths"):
        E.width_sweep(lambda w, i: nets.fcn(1, w), [8, 0], x1, jax.random.key(0), n_samples=2)
    with pytest.raises(ValueError, match="widths"):
        E.width_sweep(lambda w, i: nets.fcn(1, w), [], x1, jax.random.key(0), n_samples=2)
    with pytest.raises(ValueError, match="at least 2"):
        E.fluctuation_stats(np.ones((1, 3, 3)))
    with pytest.raises(ValueError, match="K_ref"):
        E.relative_frobenius_error(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="Dense readout"):
        E.cnn_kernels([(jnp.ones((3, 3, 1, 2)), None)], jnp.ones((2, 4, 4, 1)))
    with pytest.raises(ValueError, match="padding"):
        E.cnn_kernels(params, jnp.ones((2, 4, 4, 1)), padding="REFLECT")
    with pytest.raises(ValueError, match="readout"):
        E.cnn_kernels(params, jnp.ones((2, 4, 4, 1)), readout="max")
    with pytest.raises(ValueError, match="c_in"):
        E.cnn_kernels(
            [
                (jnp.ones((3, 3, 1, 2)), None),
                (jnp.ones((3, 3, 3, 2)), None),
                (jnp.ones((2, 1)), None),
            ],
            jnp.ones((2, 4, 4, 1)),
        )
    with pytest.raises(ValueError, match="first Conv kernel"):
        E.cnn_kernels(
            [(jnp.ones((3, 3, 2, 2)), None), (jnp.ones((2, 1)), None)], jnp.ones((2, 4, 4, 1))
        )
    with pytest.raises(ValueError, match="at most one"):
        E.width_sweep(
            lambda w, i: nets.fcn(1, w), [8], x1, jax.random.key(0), n_samples=2, fcn={}, cnn={}
        )
    with pytest.raises(ValueError, match="kind"):
        E.Sweep(np.array([1]), ("gaussian",), {}, {}, {}, {}).errors("cov")
