"""Tests of ntklit.features: exact kernels, feature maps, ridge regression, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ntklit  # noqa: F401  (applies the neural-tangents compat patches)
from ntklit import features as F

jax.config.update("jax_enable_x64", True)


def _inputs(n=6, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _nt_kernel_fn(depth):
    from neural_tangents import stax

    layers = []
    for _ in range(depth):
        layers += [stax.Dense(64, W_std=np.sqrt(2.0), b_std=0.0), stax.Relu()]
    layers += [stax.Dense(1, W_std=np.sqrt(2.0), b_std=0.0)]
    return stax.serial(*layers)[2]


@pytest.mark.parametrize("depth", [1, 3])
def test_relu_ntk_matches_neural_tangents(depth):
    x, y = _inputs(5, 7, 0), _inputs(4, 7, 1)
    expected = np.asarray(_nt_kernel_fn(depth)(x, y, "ntk"))
    got = np.asarray(F.relu_ntk(x, y, depth=depth))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_relu_ntk_closed_form_limits():
    # Theta_L(1) = L + 1 on the diagonal; orthogonal inputs: Sigma_1 = 1/pi, Theta_1 = 1/pi.
    x = np.eye(4) * np.array([1.0, 2.0, 3.0, 4.0])[:, None]
    for depth in (1, 2, 5):
        k = np.asarray(F.relu_ntk(x, depth=depth))
        np.testing.assert_allclose(np.diag(k), 2 * np.sum(x**2, 1) * (depth + 1) / 4, rtol=1e-12)
    k1 = np.asarray(F.relu_ntk(x, depth=1))
    np.testing.assert_allclose(k1[0, 1], 2 * 1 * 2 / 4 / np.pi, rtol=1e-12)
    np.testing.assert_allclose(float(F.kappa0(0.0)), 0.5)
    np.testing.assert_allclose(float(F.kappa1(0.0)), 1 / np.pi)
    np.testing.assert_allclose(float(F.kappa1(1.0)), 1.0)
    np.testing.assert_allclose(float(F.kappa0(-1.0)), 0.0, atol=1e-15)


def test_poly_coefficients_nonnegative_and_accurate():
    t = np.linspace(-1, 1, 2001)
    for degree, tol in ((4, 0.06), (8, 0.035), (16, 0.02)):
        c0, c1 = F.arccos_poly_coefficients(degree)
        assert c0.shape == c1.shape == (degree + 1,)
        assert np.all(c0 >= 0) and np.all(c1 >= 0)
        assert np.max(np.abs(np.polyval(c1[::-1], t) - np.asarray(F.kappa1(t)))) < tol
        assert np.max(np.abs(np.polyval(c0[::-1], t) - np.asarray(F.kappa0(t)))) < 2 * tol
        assert abs(np.sum(c1) - 1.0) < 1e-3  # kernel diagonal kept: p1(1) = kappa1(1) = 1
    x = _inputs(8, 6)
    err8 = F.relative_frobenius_error(
        F.poly_relu_ntk(x, depth=2, degree=8), F.relu_ntk(x, depth=2)
    )
    err2 = F.relative_frobenius_error(
        F.poly_relu_ntk(x, depth=2, degree=2), F.relu_ntk(x, depth=2)
    )
    assert err8 < 0.02 and err8 < err2


@pytest.mark.parametrize(
    "method, powers", [(m, "chain") for m in F.METHODS] + [("sketch", "tree")]
)
def test_feature_map_unbiased_at_depth_one(method, powers):
    """Mean of phi(x) phi(y)^T over independent keys = the kernel within Monte Carlo error.

    At depth 1 every estimator is exactly unbiased (for the sketch: for the polynomial NTK).
    Each entry's mean over R keys is compared with the target at 5 standard errors (estimated
    from the same R draws), so a wrong scale or a biased sketch fails.
    """
    x = _inputs(5, 6, seed=3).astype(np.float32)
    target = (
        F.poly_relu_ntk(x, depth=1, degree=8) if method == "sketch" else F.relu_ntk(x, depth=1)
    )
    target = np.asarray(target)
    reps = 40
    ests = []
    for key in jax.random.split(jax.random.key(11), reps):
        phi = np.asarray(F.feature_map(key, method, 6, 1, 64, powers=powers)(x), dtype=np.float64)
        ests.append(phi @ phi.T)
    ests = np.stack(ests)
    mean, se = ests.mean(0), ests.std(0, ddof=1) / np.sqrt(reps)
    assert np.all(se > 0)
    z = np.abs(mean - target) / se
    assert np.max(z) < 5.0, f"max z-score {np.max(z):.2f}"
    # and a 2x wrong scale would be detected:
    assert np.max(np.abs(mean - 2 * target) / se) > 5.0


@pytest.mark.parametrize("method", F.METHODS)
def test_feature_map_error_decreases_with_dim(method):
    x = _inputs(20, 8, seed=4).astype(np.float32)
    k = F.relu_ntk(x.astype(np.float64), depth=3)
    errs = {}
    for dim in (128, 2048):
        e = []
        for s in range(3):
            phi = F.feature_map(jax.random.key(s), method, 8, 3, dim, block_size=128)(x)
            e.append(F.relative_frobenius_error(phi @ phi.T, k))
        errs[dim] = np.mean(e)
    # m^-1/2 predicts a factor 4 between the two dims; ask for at least 2.
    assert errs[2048] < errs[128] / 2, errs
    # the sketch's TensorSRHTs make it noisier at depth 3 than the random features
    assert errs[2048] < (0.35 if method == "sketch" else 0.2), errs


def _power_estimates(powers, degree, dim, reps, x, seed=0):
    """<z_j(x_a), z_j(x_b)> for every power j and pair (a, b) of rows of x, over reps keys."""
    draw = F._chain_params if powers == "chain" else F._tree_params

    def one(key):
        p = draw(key, x.shape[1], dim, degree)
        zs = F._chain_powers(p, x) if powers == "chain" else F._tree_powers(p, x, degree)
        return jnp.stack([z @ z.T for z in zs])  # (degree, n, n)

    keys = jax.random.split(jax.random.key(seed), reps)
    return np.asarray(jax.jit(jax.vmap(one))(keys), dtype=np.float64)


@pytest.mark.parametrize("powers", F.SKETCH_POWERS)
@pytest.mark.parametrize("degree", [5, 8])
def test_sketched_tensor_powers_unbiased(powers, degree):
    """Every sketched power estimates <x, y>^j without bias (degree 5 pads the PolySketch tree
    with e_1 leaves), and its variance falls like 1/m."""
    x = _inputs(3, 16, seed=5).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    target = (x.astype(np.float64) @ x.T.astype(np.float64))[None] ** np.arange(1, degree + 1)[
        :, None, None
    ]
    reps = 300
    est = _power_estimates(powers, degree, 64, reps, x)
    mean, se = est.mean(0), est.std(0, ddof=1) / np.sqrt(reps)
    np.testing.assert_allclose(mean[0], target[0], rtol=1e-5, atol=1e-6)  # z_1 = x exactly
    z = np.abs(mean[1:] - target[1:]) / se[1:]
    assert np.max(z) < 5.0, f"max z-score {np.max(z):.2f}"
    sd_small = est[:, -1].std(0, ddof=1)
    sd_big = _power_estimates(powers, degree, 256, reps, x, seed=1)[:, -1].std(0, ddof=1)
    ratio = np.median(sd_small / sd_big)  # 1/sqrt(m) predicts 2
    assert 1.6 < ratio < 2.5, ratio


def test_polysketch_tree_against_chain():
    """What ntk_sketch's docstring states, measured at degree 8, m = 256, 400 keys: the chain
    and the PolySketch tree estimate the top power t^8 about equally well, and the tree is
    noisier for t^2 (three TensorSRHT levels, two of them on e_1 leaves, against one)."""
    x = _inputs(2, 32, seed=0).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sd = {
        pw: _power_estimates(pw, 8, 256, 400, x)[:, :, 0, 1].std(0, ddof=1)
        for pw in F.SKETCH_POWERS
    }
    top = sd["tree"][-1] / sd["chain"][-1]
    low = sd["tree"][1] / sd["chain"][1]
    # the s.d. estimates from 400 draws are good to ~4% each
    assert 0.8 < top < 1.25, top
    assert low > 1.25, low


def test_polysketch_tree_shares_subtrees(monkeypatch):
    """Subtrees are computed once for every number of x leaves they hold: at degree 8 the
    tree computes 21 TensorSRHTs (7 all-x nodes, 14 partly-x ones), against 7 x 7 = 49 for
    seven separate trees."""
    calls = []
    real = F._tensor_srht
    monkeypatch.setattr(F, "_tensor_srht", lambda p, a, b: calls.append(1) or real(p, a, b))
    x = jnp.asarray(_inputs(2, 8).astype(np.float32))
    p = F._tree_params(jax.random.key(0), 8, 16, 8)
    assert [len(level) for level in p] == [4, 2, 1]
    zs = F._tree_powers(p, x, 8)
    assert len(zs) == 8 and zs[0] is x and all(z.shape == (2, 16) for z in zs[1:])
    # (level, node, x leaves): level 3: (0, 2..8); level 2: (0, 2..4), (1, 1..4);
    # level 1: (0, 2), (1, 1..2), (2, 1..2), (3, 1..2)
    assert len(calls) == 7 + 7 + 7, len(calls)


def test_determinism_batching_and_zero_input():
    x = _inputs(7, 5).astype(np.float32)
    x[3] = 0.0
    for method in F.METHODS:
        a = F.feature_map(jax.random.key(0), method, 5, 2, 32)
        b = F.feature_map(jax.random.key(0), method, 5, 2, 32)
        c = F.feature_map(jax.random.key(1), method, 5, 2, 32)
        pa = np.asarray(a(x))
        assert pa.shape == (7, 32) and np.all(np.isfinite(pa))
        np.testing.assert_array_equal(pa, np.asarray(b(x)))
        assert not np.allclose(pa, np.asarray(c(x)))
        np.testing.assert_allclose(np.asarray(a(x, batch_size=3)), pa, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(pa[3], 0.0)  # NTK without bias vanishes at x = 0


def test_orthogonal_blocks_are_orthogonal():
    fm = F.ntk_random_features(jax.random.key(0), 6, 1, 40, orthogonal=True)
    w = np.asarray(fm.params[0]["w"], dtype=np.float64)  # (20, 6): blocks of 6 rows
    block = w[:6] / np.linalg.norm(w[:6], axis=1, keepdims=True)
    np.testing.assert_allclose(block @ block.T, np.eye(6), atol=1e-5)
    iid = np.asarray(F.ntk_random_features(jax.random.key(0), 6, 1, 40).params[0]["w"])
    g = iid[:6] / np.linalg.norm(iid[:6], axis=1, keepdims=True)
    assert np.max(np.abs(g @ g.T - np.eye(6))) > 0.05


def test_ridge_primal_equals_dual():
    rng = np.random.default_rng(0)
    phi, phi_val = rng.normal(size=(30, 12)), rng.normal(size=(10, 12))
    labels = rng.integers(0, 3, 30)
    y = np.eye(3)[labels]
    labels_val = rng.integers(0, 3, 10)
    ridges = [1e-3, 1e-1]
    primal = F.ridge_select(phi, y, phi_val, labels_val, ridges)
    dual = F.kernel_ridge_select(phi @ phi.T, y, phi_val @ phi.T, labels_val, ridges)
    np.testing.assert_allclose(primal.val_accuracy, dual.val_accuracy)
    for r in ridges:
        p = F.ridge_select(phi, y, phi_val, labels_val, [r]).predict(phi_val)
        d = F.kernel_ridge_select(phi @ phi.T, y, phi_val @ phi.T, labels_val, [r]).predict(
            phi_val @ phi.T
        )
        np.testing.assert_allclose(p, d, rtol=1e-8, atol=1e-10)
    # a noiseless linear target is recovered exactly as the ridge goes to 0
    w = rng.normal(size=(12, 3))
    fit = F.ridge_select(phi, phi @ w, phi_val, np.argmax(phi_val @ w, 1), [1e-10])
    np.testing.assert_allclose(fit.coef, w, rtol=1e-6, atol=1e-6)
    assert fit.val_accuracy[0] == 1.0


def test_ridge_dual_path_when_fewer_samples_than_features():
    """N < m takes the dual (N x N) solve; it must give the same fit as the kernel solve with
    K = Phi Phi^T and reproduce an exactly representable target as the ridge goes to 0."""
    rng = np.random.default_rng(1)
    phi, phi_val = rng.normal(size=(15, 40)), rng.normal(size=(8, 40))
    labels, labels_val = rng.integers(0, 3, 15), rng.integers(0, 3, 8)
    y = np.eye(3)[labels]
    for r in (1e-3, 1e-1):
        fit = F.ridge_select(phi, y, phi_val, labels_val, [r])
        assert not fit.dual and fit.coef.shape == (40, 3)
        ref = F.kernel_ridge_select(phi @ phi.T, y, phi_val @ phi.T, labels_val, [r])
        np.testing.assert_allclose(
            fit.predict(phi_val), ref.predict(phi_val @ phi.T), rtol=1e-8, atol=1e-10
        )
        # and it equals the primal normal equations (Phi^T Phi + lam I) W = Phi^T Y
        lam = r * np.trace(phi @ phi.T) / 15
        w = np.linalg.solve(phi.T @ phi + lam * np.eye(40), phi.T @ y)
        np.testing.assert_allclose(fit.coef, w, rtol=1e-7, atol=1e-9)
    # interpolation: with N < m a tiny ridge fits the training targets exactly
    fit = F.ridge_select(phi, y, phi_val, labels_val, [1e-12])
    np.testing.assert_allclose(phi @ fit.coef, y, atol=1e-6)


def test_measure():
    out, m = F.measure(lambda: jnp.ones((1000, 1000)).sum())
    assert float(out) == 1e6
    assert m.wall_s > 0 and m.cpu_s >= 0 and m.peak_mem_mb >= 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: F.feature_map(jax.random.key(0), "nystrom", 4, 1, 16), "method must be one of"),
        (lambda: F.feature_map(jax.random.key(0), "sketch", 4, 0, 16), "depth"),
        (lambda: F.feature_map(jax.random.key(0), "sketch", 4, 1.5, 16), "depth"),
        (lambda: F.feature_map(jax.random.key(0), "random_features", 4, 1, 2), "dim"),
        (lambda: F.feature_map(jax.random.key(0), "sketch", 4, 1, 16, degree=0), "degree"),
        (lambda: F.feature_map(jax.random.key(0), "sketch", 4, 1, 16, degree=99), "degree"),
        (lambda: F.feature_map(jax.random.key(0), "sketch", 0, 1, 16), "in_dim"),
        (
            lambda: F.feature_map(jax.random.key(0), "sketch", 4, 1, 16, powers="star"),
            "powers must be one of",
        ),
        (
            lambda: F.ntk_random_features(
                jax.random.key(0), 4, 1, 16, orthogonal=True, block_size=0
            ),
            "block_size",
        ),
        (lambda: F.feature_map(jax.random.key(0), "sketch", 4, 1, 16)(np.ones((3, 5))), "in_dim"),
        (lambda: F.feature_map(jax.random.key(0), "sketch", 4, 1, 16)(np.ones(4)), "2-D"),
        (
            lambda: F.feature_map(jax.random.key(0), "sketch", 4, 1, 16)(
                np.ones((3, 4)), batch_size=0
            ),
            "batch_size",
        ),
        (lambda: F.relu_ntk(np.ones((3, 4)), depth=0), "depth"),
        (lambda: F.feature_map(0, "sketch", 4, 1, 16), "key"),
        (lambda: F.ntk_random_features(np.zeros(3), 4, 1, 16), "key"),
        (
            lambda: F.ridge_select(
                np.ones((3, 2)), np.ones((3, 1)), np.ones((2, 2)), np.ones(2), [-1.0]
            ),
            "ridges",
        ),
        (
            lambda: F.ridge_select(np.ones((3, 2)), np.ones((4, 1)), np.ones((2, 2)), np.ones(2)),
            "y_train",
        ),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("n, batch_size", [(3000, 1024), (300, 1024), (7, 2048)])
def test_compile_prepares_exactly_the_program_a_call_uses(n, batch_size):
    """After FeatureMap.compile(n), a call on n rows compiles nothing new (jit cache size)."""
    fm = F.feature_map(jax.random.key(0), "random_features", 5, 1, 24 + n % 7)
    fm.compile(n, batch_size=batch_size)
    compiled = F._rf_apply._cache_size()
    x = np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32)
    out = fm(x, batch_size=batch_size)
    assert out.shape == (n, fm.dim)
    assert F._rf_apply._cache_size() == compiled
    fm.compile(n + 1, batch_size=batch_size, dtype=jnp.float64)  # another dtype: new program
    assert F._rf_apply._cache_size() == compiled + 1
    with pytest.raises(ValueError, match="n must be"):
        fm.compile(0)


# --------------------------------------------------------------------------- fast primitives


@pytest.mark.parametrize("dim", [1, 2, 8, 128, 256, 2048, 2**15])
def test_fwht_equals_dense_hadamard(dim):
    """The Kronecker-factored transform equals the dense Sylvester-Hadamard product (and, for
    the length that needs three factors, the O(d log d) butterfly)."""
    x = np.random.default_rng(dim).normal(size=(3, dim)).astype(np.float32)
    got = np.asarray(F._fwht(jnp.asarray(x)), dtype=np.float64)
    if dim <= 2048:
        ref = x.astype(np.float64) @ F._hadamard(dim).astype(np.float64)
    else:
        ref, h = x.astype(np.float64), 1
        while h < dim:
            ref = ref.reshape(3, dim // (2 * h), 2, h)
            ref = np.stack([ref[:, :, 0] + ref[:, :, 1], ref[:, :, 0] - ref[:, :, 1]], axis=2)
            h *= 2
        ref = ref.reshape(3, dim)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * np.sqrt(dim))
    h = F._hadamard(min(dim, 256)).astype(np.float64)
    np.testing.assert_array_equal(h @ h.T, h.shape[0] * np.eye(h.shape[0]))  # orthogonal


def test_count_sketch_segment_sum_equals_dense_matrix():
    p = F._count_sketch_params(jax.random.key(2), 300, 64)
    x = np.random.default_rng(0).normal(size=(2, 5, 300))  # any leading axes
    dense = np.zeros((300, 64))
    dense[np.arange(300), np.asarray(p["h"])] = np.asarray(p["s"])
    got = np.asarray(F._count_sketch(p, jnp.asarray(x), 64))
    assert got.shape == (2, 5, 64)
    np.testing.assert_allclose(got, x @ dense, rtol=1e-12, atol=1e-12)


def test_batch_rows_respect_the_element_budget():
    for method, dim in [
        ("sketch", 4096),
        ("sketch", 16384),
        ("random_features", 16384),
        ("random_features", 16),
    ]:
        fm = F.feature_map(jax.random.key(0), method, 5, 1, dim)
        rows = fm.batch_rows()
        width = dim * (fm.degree if method == "sketch" else 2)
        assert rows & (rows - 1) == 0 and 1 <= rows <= 2048
        assert rows * width <= max(F.BATCH_ELEMENTS, width)
        assert rows == 2048 or 2 * rows * width > F.BATCH_ELEMENTS


# --------------------------------------------------------------------------- streamed ridge


def _regression_problem(n=300, d=7, seed=0):
    rng = np.random.default_rng(seed)
    x, x_val = rng.normal(size=(n, d)), rng.normal(size=(60, d))
    labels = rng.integers(0, 3, n)
    return x, np.eye(3)[labels], x_val, rng.integers(0, 3, 60)


@pytest.mark.parametrize("method", F.METHODS)
def test_streaming_normal_equations_equal_direct(method):
    """Phi^T Phi and Phi^T Y accumulated over row blocks (with a padded last block) equal the
    products of the whole feature matrix to 1e-10 (float64)."""
    x, y, _, _ = _regression_problem()
    fm = F.feature_map(jax.random.key(1), method, 7, 2, 48)
    phi = np.asarray(fm(x), dtype=np.float64)
    gram, rhs = F.normal_equations(fm, x, y, batch_size=64)  # 300 = 4 x 64 + 44
    assert gram.shape == (48, 48) and rhs.shape == (48, 3)
    np.testing.assert_array_equal(gram, gram.T)
    np.testing.assert_allclose(gram, phi.T @ phi, rtol=1e-10, atol=1e-10 * np.abs(gram).max())
    np.testing.assert_allclose(rhs, phi.T @ y, rtol=1e-10, atol=1e-10 * np.abs(rhs).max())


@pytest.mark.parametrize("dim", [32, 512])  # N = 300 >= m (primal) and N < m (dual)
def test_ridge_select_streaming_equals_ridge_select(dim):
    x, y, x_val, lab_val = _regression_problem()
    fm = F.feature_map(jax.random.key(3), "random_features", 7, 2, dim)
    ridges = [1e-3, 1e-1]
    direct = F.ridge_select(
        np.asarray(fm(x), np.float64), y, np.asarray(fm(x_val), np.float64), lab_val, ridges
    )
    streamed = F.ridge_select_streaming(fm, x, y, x_val, lab_val, ridges, batch_size=64)
    np.testing.assert_array_equal(streamed.val_accuracy, direct.val_accuracy)
    assert streamed.ridge == direct.ridge and not streamed.dual
    np.testing.assert_allclose(
        streamed.coef, direct.coef, rtol=1e-9, atol=1e-10 * np.abs(direct.coef).max()
    )
    pred = F.predict_features(fm, streamed.coef, x_val, batch_size=16)
    np.testing.assert_allclose(
        pred,
        direct.predict(np.asarray(fm(x_val), np.float64)),
        rtol=1e-9,
        atol=1e-10 * np.abs(pred).max(),
    )


def test_cholesky_ridge_solves_equal_eigendecomposition():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(40, 25))
    gram, rhs = a.T @ a, rng.normal(size=(25, 3))
    lams = np.array([1e-6, 1e-2, 10.0])
    evals, evecs = np.linalg.eigh(gram)
    for lam, w in zip(lams, F._solve_all(gram, rhs, lams)):
        ref = evecs @ ((evecs.T @ rhs) / (evals + lam)[:, None])
        np.testing.assert_allclose(w, ref, rtol=1e-8, atol=1e-10)
    # a matrix that is not positive definite falls back to the eigendecomposition
    indef = np.diag([1.0, -2.0, 3.0])
    (w,) = F._solve_all(indef, np.ones((3, 1)), np.array([0.5]))
    np.testing.assert_allclose((indef + 0.5 * np.eye(3)) @ w, np.ones((3, 1)), atol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda fm: F.normal_equations(fm, np.ones((4, 7)), np.ones((5, 1))), "y must have shape"),
        (lambda fm: F.normal_equations(fm, np.ones((4, 6)), np.ones((4, 1))), "in_dim"),
        (lambda fm: F.predict_features(fm, np.ones((8, 2)), np.ones((3, 7))), "coef must have"),
        (
            lambda fm: F.ridge_select_streaming(
                fm, np.ones((4, 7)), np.ones((4, 1)), np.ones((2, 7)), np.ones(3)
            ),
            "labels_val",
        ),
        (
            lambda fm: F.ridge_select_streaming(
                fm, np.ones((4, 7)), np.ones((4, 1)), np.ones((2, 7)), np.ones(2), [0.0]
            ),
            "ridges",
        ),
        (
            lambda fm: F.normal_equations(fm, np.ones((4, 7)), np.ones((4, 1)), batch_size=0),
            "batch_size",
        ),
    ],
)
def test_streaming_bad_arguments_raise(call, match):
    fm = F.feature_map(jax.random.key(0), "random_features", 7, 1, 16)
    with pytest.raises(ValueError, match=match):
        call(fm)


def test_symmetrize_upper_in_place_by_blocks():
    a = np.random.default_rng(5).normal(size=(37, 37))
    ref = np.triu(a) + np.triu(a, 1).T
    for block in (1, 5, 37, 100):
        b = np.asfortranarray(a.copy())
        assert F._symmetrize_upper(b, block=block) is b
        np.testing.assert_array_equal(b, ref)
