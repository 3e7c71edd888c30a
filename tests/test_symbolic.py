"""Tests of ntklit.symbolic: exact moments, propagation, duals (exact where possible)."""

import numpy as np
import pytest
import sympy as sp
from scipy.special import erf

from ntklit import symbolic as S

n = S.n


def test_pairings_and_partitions_counts():
    assert [len(S.pairings(m)) for m in (0, 2, 4, 6)] == [1, 1, 3, 15]
    assert [len(S.set_partitions(m)) for m in (1, 2, 3, 4)] == [1, 2, 5, 15]  # Bell numbers
    assert len(S.index_patterns(4)) == 225
    assert len(S.index_patterns(4, max_blocks=2)) == 64


def test_weingarten_degree4_closed_form():
    _, Wg = S.weingarten_orthogonal(4)
    diag = (n + 1) / (n * (n - 1) * (n + 2))
    off = -1 / (n * (n - 1) * (n + 2))
    for i in range(3):
        for j in range(3):
            assert sp.simplify(Wg[i, j] - (diag if i == j else off)) == 0


def test_known_orthogonal_moments():
    assert S.orthogonal_moment((0, 0), (0, 0)) == 1 / n
    assert S.orthogonal_moment((0, 1), (0, 1)) == 0
    assert sp.simplify(S.orthogonal_moment((0,) * 4, (0,) * 4) - 3 / (n * (n + 2))) == 0
    assert (
        sp.simplify(
            S.orthogonal_moment((0, 0, 1, 1), (0, 0, 1, 1)) - (n + 1) / (n * (n - 1) * (n + 2))
        )
        == 0
    )
    assert (
        sp.simplify(S.orthogonal_moment((0, 0, 1, 1), (0, 1, 0, 1)) + 1 / (n * (n - 1) * (n + 2)))
        == 0
    )
    assert S.orthogonal_moment((0, 0, 0), (0, 0, 0)) == 0


def test_gaussian_moments_isserlis():
    assert S.gaussian_moment((0,) * 4, (0,) * 4) == 3 / n**2
    assert S.gaussian_moment((0, 0, 1, 1), (0, 0, 1, 1)) == 1 / n**2
    assert S.gaussian_moment((0, 0, 1, 1), (0, 1, 0, 1)) == 0
    assert S.gaussian_moment((0, 0), (0, 0), 4) == sp.Rational(1, 4)


def test_second_moments_equal_every_n():
    for r, c in S.index_patterns(2):
        assert sp.simplify(S.orthogonal_moment(r, c) - S.gaussian_moment(r, c)) == 0


def test_o2_exact_integration_all_tuples():
    # every index tuple in {0,1}^4 x {0,1}^4, not only canonical patterns
    import itertools

    for rows in itertools.product((0, 1), repeat=4):
        for cols in itertools.product((0, 1), repeat=4):
            assert S.o2_moment(rows, cols) == S.orthogonal_moment(rows, cols, 2)


def test_o3_exact_integration_some_patterns():
    for r, c in [
        ((0, 0, 0, 0), (0, 0, 0, 0)),
        ((0, 0, 1, 1), (0, 1, 0, 1)),
        ((0, 0, 1, 1), (2, 2, 1, 1)),
        ((0, 1, 2, 0), (0, 0, 0, 0)),
    ]:
        assert S.o3_moment(r, c) == S.orthogonal_moment(r, c, 3)
    assert S.o3_moment((0, 0), (1, 1)) == sp.Rational(1, 3)


def test_monte_carlo_within_3_se():
    mean, se = S.monte_carlo_moment((0, 0, 1, 1), (0, 1, 0, 1), 6, 4000, seed=1)
    exact = float(S.orthogonal_moment((0, 0, 1, 1), (0, 1, 0, 1), 6))
    assert abs(mean - exact) < 3 * se


def test_moment_table_orders():
    rows = S.moment_table(4)
    assert len(rows) == 16
    lead = {r["name"]: r["relative_order"] for r in rows}
    assert lead["O_{11} O_{11} O_{11} O_{11}"] == -6 / n
    assert lead["O_{11} O_{11} O_{22} O_{22}"] == 2 / n**2
    assert lead["O_{11} O_{12} O_{21} O_{22}"] == -1 / n
    for r in rows:  # every difference vanishes faster than the n^-2 scale
        assert sp.limit(r["difference"] * n**2, n, sp.oo) == 0
    ser = S.relative_difference_series(3 / (n * (n + 2)), 3 / n**2)
    assert sp.simplify(ser - (-2 / n + 4 / n**2)) == 0


def test_contracted_moment_matches_explicit_n2():
    # E[sum_i (O phi)_i (O phi')_i]^2 = (phi.phi')^2 exactly for orthogonal at n = 2
    expr = S.contracted_moment("orthogonal", ("i", "i", "k", "k"), ("x", "y", "x", "y"), n_value=2)
    assert sp.simplify(expr - 4 * S.dot("x", "y") ** 2) == 0  # W = sqrt(2) O: factor 2^2


def test_layer_statistics():
    g, o = S.layer_statistics("gaussian"), S.layer_statistics("orthogonal")
    assert sp.simplify(g["cov_same"] - o["cov_same"]) == 0
    assert g["cov_diff"] == 0 and o["cov_diff"] == 0
    assert o["var_sum_uu"] == 0 and g["excess_kurtosis"] == 0
    assert sp.simplify(o["excess_kurtosis"] + 6 / (n + 2)) == 0
    rho = sp.symbols("rho_xx rho_xy rho_yy", positive=True)
    sub = {S.dot("x", "x"): n * rho[0], S.dot("x", "y"): n * rho[1], S.dot("y", "y"): n * rho[2]}
    for st in (g, o):
        lim = sp.limit(n * st["var_qhat"].subs(sub), n, sp.oo)
        assert lim.is_finite and sp.simplify(lim) != 0
        assert sp.limit(st["var_qhat"].subs(sub), n, sp.oo) == 0


@pytest.mark.parametrize("act", ["relu", "erf"])
def test_duals_against_numerical_integration(act):
    fk, fd = S.lambdify_duals(act)
    if act == "relu":
        f, df, method = (lambda x: np.maximum(x, 0)), (lambda x: (x > 0) * 1.0), "quad"
    else:
        f = erf
        df, method = (lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x)), "hermite"
    for q in [(1.0, 1.0, 0.3), (2.0, 0.5, -0.8)]:
        assert abs(fk(*q) - S.gaussian_expectation_numeric(f, f, *q, method=method)) < 1e-10
        assert abs(fd(*q) - S.gaussian_expectation_numeric(df, df, *q, method=method)) < 1e-10


def test_relu_lambdified_duals_finite_at_parallel_inputs():
    k, kd = S.lambdify_duals("relu")
    assert k(2.0, 2.0, 2.0 + 1e-15) == pytest.approx(1.0, rel=1e-15)  # E[relu(u)^2] = q/2
    assert kd(2.0, 3.0, -np.sqrt(6.0)) == 0.0 and kd(1.0, 1.0, 1.0) == 0.5


def test_erf_dual_derivative_is_kdot():
    d = S.erf_duals()
    assert sp.simplify(sp.diff(d["k"], S.q12) - d["kdot"]) == 0
    assert d["k"].subs(S.q12, 0) == 0


def test_relu_dual_derivative_is_kdot():
    d = S.relu_duals()  # Price's theorem: d k / d q12 = kdot
    assert sp.simplify(sp.diff(d["k"], S.q12) - d["kdot"]) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: S.pairings(3),
        lambda: S.set_partitions(0),
        lambda: S.weingarten_orthogonal(6),
        lambda: S.orthogonal_moment((0, 1), (0,)),
        lambda: S.orthogonal_moment((0, 0, 0, 0, 0, 0), (0,) * 6),
        lambda: S.orthogonal_moment((0, 0, 0, 0), (0, 0, 0, 0), 1),
        lambda: S.orthogonal_moment((0, 0), (0, 0), -2),
        lambda: S.o2_moment((0, 2), (0, 0)),
        lambda: S.o3_moment((0,), (0,)),
        lambda: S.monte_carlo_moment((0, 0), (0, 0), 1, 10),
        lambda: S.contracted_moment("uniform", ("i", "i"), ("x", "y")),
        lambda: S.contracted_moment("gaussian", ("i", "i"), ("x",)),
        lambda: S.layer_statistics("haar"),
        lambda: S.duals("tanh"),
        lambda: S.gaussian_expectation_numeric(np.tanh, np.tanh, 1.0, 1.0, 2.0),
        lambda: S.gaussian_expectation_numeric(np.tanh, np.tanh, 1.0, 1.0, 0.5, method="mc"),
    ],
)
def test_bad_inputs(call):
    with pytest.raises(ValueError):
        call()
