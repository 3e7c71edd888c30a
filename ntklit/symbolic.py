"""Exact (sympy) calculations behind chapter 2: ensemble moments, covariance propagation, duals.

Three groups of results, all exact (rational functions of the width ``n`` or closed forms):

* **Moments of the two weight ensembles.** Entries of a Haar-distributed orthogonal matrix
  :math:`O \\in O(n)` have joint moments given by the orthogonal Weingarten calculus of Collins
  & Śniady (2006, arXiv:math-ph/0402073),

  .. math:: \\mathbb E[O_{i_1 j_1}\\cdots O_{i_{2k} j_{2k}}]
            = \\sum_{p, q \\in P_{2k}} \\delta_p(i)\\, \\delta_q(j)\\, \\mathrm{Wg}^{O}(p, q; n),

  where :math:`P_{2k}` are the pair partitions of :math:`\\{1..2k\\}` and
  :math:`\\mathrm{Wg}^O = G^{-1}` is the inverse of the Gram matrix
  :math:`G_{pq} = n^{\\mathrm{loops}(p \\vee q)}`. Gaussian entries :math:`N(0, 1/n)` follow
  Isserlis' theorem, :math:`\\sum_{p} \\delta_p(i) \\delta_p(j)\\, n^{-k}`.
  :func:`orthogonal_moment`, :func:`gaussian_moment`, :func:`moment_table`, and two exact
  integrations that check them: :func:`o2_moment` (over both components of :math:`O(2)`) and
  :func:`o3_moment` (Euler angles on :math:`SO(3)`, equal to :math:`O(3)` in even degree).
* **Propagation of covariances** through a layer
  :math:`z = \\sigma_w n^{-1/2} W \\phi + \\sigma_b b` with :math:`W = \\sqrt n\\,O` or
  :math:`W_{ij} \\sim N(0, 1)`: :func:`contracted_moment` sums Weingarten terms over
  contracted indices for symbolic ``n``; :func:`layer_statistics` gives the conditional
  covariance (identical for both ensembles at every ``n``) and the fluctuation terms
  (:math:`O(1/n)` for both).
* **Dual activations** :math:`\\hat\\phi(q_1, q_2, q_{12}) = \\mathbb E[\\phi(u)\\phi(v)]`
  derived by sympy: ReLU (arc-cosine kernels of order 1 and 0, Cho & Saul 2009) and erf
  (Williams 1997) with the duals of their derivatives, plus a float64 numerical Gaussian
  integration (:func:`gaussian_expectation_numeric`) that checks them independently.

All functions cache their symbolic work; they return sympy expressions in the symbol
:data:`n` (positive integer) unless a concrete ``n`` is passed.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
import sympy as sp

__all__ = [
    "n",
    "pairings",
    "set_partitions",
    "weingarten_orthogonal",
    "orthogonal_moment",
    "gaussian_moment",
    "index_patterns",
    "moment_table",
    "o2_moment",
    "o3_moment",
    "monte_carlo_moment",
    "relative_difference_series",
    "dot",
    "contracted_moment",
    "layer_statistics",
    "relu_duals",
    "erf_duals",
    "duals",
    "lambdify_duals",
    "gaussian_expectation_numeric",
]

#: The width: a positive integer symbol.
n = sp.Symbol("n", positive=True, integer=True)

_ENSEMBLES = ("gaussian", "orthogonal")
_SUPPORTED_DEGREES = (2, 4)


# ----------------------------------------------------------------------------- combinatorics
@functools.lru_cache(maxsize=None)
def pairings(m: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """All pair partitions (perfect matchings) of ``{0, ..., m-1}``.

    Args:
      m: an even non-negative integer.

    Returns:
      ``(m-1)!!`` pairings, each a tuple of pairs ``(a, b)`` with ``a < b``, in a fixed order.

    Raises:
      ValueError: if ``m`` is negative or odd.
    """
    if not isinstance(m, (int, np.integer)) or m < 0 or m % 2:
        raise ValueError(f"m must be an even non-negative integer, got {m!r}")

    def rec(items):
        if not items:
            return [()]
        a, rest = items[0], items[1:]
        out = []
        for i, b in enumerate(rest):
            for tail in rec(rest[:i] + rest[i + 1 :]):
                out.append(((a, b),) + tail)
        return out

    return tuple(rec(tuple(range(m))))


@functools.lru_cache(maxsize=None)
def set_partitions(m: int) -> tuple[tuple[int, ...], ...]:
    """All set partitions of ``m`` positions as restricted-growth strings.

    A partition is encoded as the tuple of block labels of positions ``0..m-1``, labels
    assigned in order of first appearance, e.g. ``(0, 0, 1, 1)``: positions 0,1 in one block.
    There are Bell(m) of them (15 for m = 4).

    Raises:
      ValueError: if ``m`` is not a positive integer.
    """
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}")
    out = [(0,)]
    for _ in range(m - 1):
        out = [s + (b,) for s in out for b in range(max(s) + 2)]
    return tuple(out)


def _loops(p, q) -> int:
    """Number of connected components of the union of two pairings (the loops of p v q)."""
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in itertools.chain(p, q):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return len({find(x) for pair in p for x in pair})


@functools.lru_cache(maxsize=None)
def weingarten_orthogonal(degree: int) -> tuple[tuple, sp.Matrix]:
    """The orthogonal Weingarten matrix for moments of the given degree, as rational functions.

    :math:`\\mathrm{Wg}^O(n) = G(n)^{-1}`, :math:`G_{pq} = n^{\\mathrm{loops}(p\\vee q)}`
    (Collins & Śniady 2006, arXiv:math-ph/0402073, section 3). The formula holds for
    integer ``n >= degree / 2``.

    Args:
      degree: 2 or 4 (the symbolic inverse for degree 6, a 15x15 matrix, is too slow).

    Returns:
      ``(pairings, Wg)``: the pairings of ``{0..degree-1}`` and the symmetric matrix
      ``Wg[p, q]`` indexed like them, entries rational in :data:`n`.

    Raises:
      ValueError: for an unsupported degree.
    """
    if degree not in _SUPPORTED_DEGREES:
        raise ValueError(f"degree must be one of {_SUPPORTED_DEGREES}, got {degree!r}")
    ps = pairings(degree)
    G = sp.Matrix(len(ps), len(ps), lambda i, j: n ** _loops(ps[i], ps[j]))
    Wg = G.inv(method="LU").applyfunc(lambda e: sp.factor(sp.cancel(e)))
    return ps, Wg


def _check_indices(rows, cols):
    rows, cols = tuple(rows), tuple(cols)
    if len(rows) != len(cols):
        raise ValueError(
            f"rows and cols must have the same length, got {len(rows)} and {len(cols)}"
        )
    if len(rows) == 0:
        raise ValueError("rows and cols must be non-empty")
    return rows, cols


def _delta(pairing, idx) -> bool:
    return all(idx[a] == idx[b] for a, b in pairing)


def _as_n(n_value):
    if n_value is None:
        return n
    if isinstance(n_value, sp.Basic):
        return n_value
    if not isinstance(n_value, (int, np.integer)) or n_value < 1:
        raise ValueError(f"n must be a positive integer or a sympy expression, got {n_value!r}")
    return sp.Integer(int(n_value))


def orthogonal_moment(rows: Sequence, cols: Sequence, n_value=None) -> sp.Expr:
    """Exact :math:`\\mathbb E[O_{r_1 c_1} \\cdots O_{r_m c_m}]` for Haar :math:`O \\in O(n)`.

    Only the equality pattern of the indices matters (any hashables). Odd degree gives 0.

    Args:
      rows: row indices ``(r_1, ..., r_m)``, m in {1, ..., 4}.
      cols: column indices, same length.
      n_value: ``None`` for the symbol :data:`n`, or a positive integer ``>= m/2``.

    Returns:
      A sympy rational function of ``n`` (or a rational number).

    Raises:
      ValueError: for mismatched lengths, degree > 4, or an integer ``n < m/2`` (where the
        Weingarten formula does not apply).
    """
    rows, cols = _check_indices(rows, cols)
    m = len(rows)
    if m > max(_SUPPORTED_DEGREES):
        raise ValueError(f"degree (len(rows)) must be at most {max(_SUPPORTED_DEGREES)}, got {m}")
    nv = _as_n(n_value)
    if m % 2:
        return sp.Integer(0)
    if nv.is_Integer and nv < m // 2:
        raise ValueError(f"n must be >= degree/2 = {m // 2} for the Weingarten formula, got {nv}")
    ps, Wg = weingarten_orthogonal(m)
    total = sp.Integer(0)
    for i, p in enumerate(ps):
        if not _delta(p, rows):
            continue
        for j, q in enumerate(ps):
            if _delta(q, cols):
                total += Wg[i, j]
    return sp.factor(sp.cancel(total.subs(n, nv)))


def gaussian_moment(rows: Sequence, cols: Sequence, n_value=None) -> sp.Expr:
    """Exact :math:`\\mathbb E[W_{r_1 c_1} \\cdots W_{r_m c_m}]` for i.i.d. :math:`N(0, 1/n)`.

    Isserlis' theorem: :math:`\\sum_{p \\in P_m} \\delta_p(r)\\delta_p(c)\\, n^{-m/2}`.

    Args:
      rows, cols: index tuples of equal length (any hashables).
      n_value: ``None`` for the symbol :data:`n`, or a positive integer.

    Raises:
      ValueError: for mismatched or empty index tuples or a non-positive ``n``.
    """
    rows, cols = _check_indices(rows, cols)
    m = len(rows)
    nv = _as_n(n_value)
    if m % 2:
        return sp.Integer(0)
    count = sum(1 for p in pairings(m) if _delta(p, rows) and _delta(p, cols))
    return sp.Integer(count) / nv ** (m // 2)


def index_patterns(degree: int = 4, max_blocks: int | None = None) -> list[tuple[tuple, tuple]]:
    """All (row pattern, column pattern) pairs of a degree, as canonical index tuples.

    Args:
      degree: number of matrix entries in the product (>= 1).
      max_blocks: keep only patterns with at most this many distinct row and column values
        (e.g. 2 for checks at ``n = 2``); ``None`` keeps all.

    Returns:
      ``Bell(degree)**2`` pairs (225 for degree 4) of restricted-growth tuples.
    """
    parts = set_partitions(degree)
    if max_blocks is not None:
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be a positive integer or None, got {max_blocks!r}")
        parts = tuple(p for p in parts if max(p) + 1 <= max_blocks)
    return [(r, c) for r in parts for c in parts]


def _pattern_name(rows, cols) -> str:
    return " ".join(f"O_{{{r + 1}{c + 1}}}" for r, c in zip(rows, cols))


@functools.lru_cache(maxsize=None)
def moment_table(degree: int = 4, nonzero_only: bool = True) -> list[dict]:
    """Orthogonal vs Gaussian moments for every index pattern of a degree.

    Args:
      degree: 2 or 4.
      nonzero_only: drop patterns where both moments vanish.

    Returns:
      One dict per pattern with keys ``rows``, ``cols``, ``name`` (LaTeX product),
      ``orthogonal``, ``gaussian`` (sympy in :data:`n`), ``difference``
      (orthogonal - gaussian, factored) and ``relative_order``: the leading term of
      :math:`n^{\\deg/2}(\\text{orth} - \\text{gauss})` as :math:`n\\to\\infty`, i.e. the
      difference relative to the natural scale :math:`n^{-\\deg/2}` of the moments.
    """
    if degree not in _SUPPORTED_DEGREES:
        raise ValueError(f"degree must be one of {_SUPPORTED_DEGREES}, got {degree!r}")
    out = []
    for r, c in index_patterns(degree):
        eo, eg = orthogonal_moment(r, c), gaussian_moment(r, c)
        if nonzero_only and eo == 0 and eg == 0:
            continue
        diff = sp.factor(sp.cancel(eo - eg))
        rel = sp.factor(sp.cancel(diff * n ** (degree // 2)))
        out.append(
            {
                "rows": r,
                "cols": c,
                "name": _pattern_name(r, c),
                "orthogonal": eo,
                "gaussian": eg,
                "difference": diff,
                "relative_order": _leading_term(rel),
            }
        )
    return out


def _leading_term(expr: sp.Expr) -> sp.Expr:
    """Leading term of a rational function of n as n -> infinity (0 stays 0)."""
    if expr == 0:
        return sp.Integer(0)
    eps = sp.Symbol("epsilon", positive=True)
    coeff, power = sp.cancel(expr.subs(n, 1 / eps)).leadterm(eps)
    return coeff * n ** (-power)


def relative_difference_series(expr_orth: sp.Expr, expr_gauss: sp.Expr, order: int = 3):
    """Series in :math:`1/n` of orth/gauss - 1 (for a non-zero Gaussian moment).

    Args:
      expr_orth: the orthogonal moment, a sympy expression in :data:`n`.
      expr_gauss: the Gaussian moment (non-zero).
      order: number of terms of the expansion in :math:`1/n`.

    Returns:
      A sympy expression, the expansion of ``expr_orth / expr_gauss - 1`` around
      :math:`n = \\infty` up to (excluding) :math:`n^{-order}`.
    """
    if expr_gauss == 0:
        raise ValueError("expr_gauss must be non-zero for a relative difference")
    eps = sp.Symbol("epsilon", positive=True)
    ratio = sp.cancel((expr_orth / expr_gauss - 1).subs(n, 1 / eps))
    return sp.series(ratio, eps, 0, order).removeO().subs(eps, 1 / n)


# ----------------------------------------------------------------------------- exact checks
_theta = sp.Symbol("theta", real=True)


@functools.lru_cache(maxsize=None)
def _circle_mean(a: int, b: int) -> sp.Rational:
    """Exact mean of cos^a sin^b over the uniform circle."""
    return sp.integrate(sp.cos(_theta) ** a * sp.sin(_theta) ** b, (_theta, 0, 2 * sp.pi)) / (
        2 * sp.pi
    )


@functools.lru_cache(maxsize=None)
def _beta_mean(a: int, b: int) -> sp.Rational:
    """Exact mean of cos^a sin^b over [0, pi] with density sin/2 (the Euler angle beta)."""
    return sp.integrate(sp.cos(_theta) ** a * sp.sin(_theta) ** (b + 1), (_theta, 0, sp.pi)) / 2


def _poly_mean(expr, gens, means):
    poly = sp.Poly(sp.expand(expr), *gens)
    total = sp.Integer(0)
    for monom, coeff in poly.terms():
        term = coeff
        for k, fn in enumerate(means):
            term *= fn(monom[2 * k], monom[2 * k + 1])
        total += term
    return sp.nsimplify(total) if not total.is_Rational else total


def _check_small_indices(rows, cols, size):
    rows, cols = _check_indices(rows, cols)
    for name, idx in (("rows", rows), ("cols", cols)):
        if any((not isinstance(i, (int, np.integer))) or i < 0 or i >= size for i in idx):
            raise ValueError(f"{name} must be integers in 0..{size - 1}, got {idx}")
    return rows, cols


def o2_moment(rows: Sequence[int], cols: Sequence[int]) -> sp.Rational:
    """Exact moment of Haar :math:`O(2)` entries by symbolic integration over both components.

    :math:`O(2)` is rotations :math:`R_\\theta` and reflections :math:`R_\\theta\\,
    \\mathrm{diag}(1, -1)`, each with probability 1/2 and :math:`\\theta` uniform on
    :math:`[0, 2\\pi)`. The product is expanded in :math:`\\cos\\theta, \\sin\\theta` and each
    monomial integrated exactly.

    Args:
      rows, cols: index tuples with entries in {0, 1}.

    Returns:
      The moment, an exact rational.
    """
    rows, cols = _check_small_indices(rows, cols, 2)
    c, s = sp.symbols("c s")
    rot = sp.Matrix([[c, -s], [s, c]])
    ref = sp.Matrix([[c, s], [s, -c]])
    total = sp.Integer(0)
    for M in (rot, ref):
        prod = sp.Mul(*[M[i, j] for i, j in zip(rows, cols)])
        total += _poly_mean(prod, (c, s), (_circle_mean,)) / 2
    return sp.nsimplify(total)


def o3_moment(rows: Sequence[int], cols: Sequence[int]) -> sp.Rational:
    """Exact even-degree moment of Haar :math:`O(3)` entries via Euler angles.

    :math:`R = R_z(\\alpha) R_y(\\beta) R_z(\\gamma)` with density
    :math:`\\sin\\beta / (8\\pi^2)` is Haar on :math:`SO(3)`; :math:`O(3) = SO(3) \\cup
    (-I)\\,SO(3)` and :math:`(-1)^{\\deg} = 1` for even degree, so even moments of
    :math:`O(3)` equal those of :math:`SO(3)`. Each monomial in the six cosines and sines is
    integrated exactly.

    Args:
      rows, cols: index tuples with entries in {0, 1, 2}, even length.

    Raises:
      ValueError: for out-of-range indices or odd degree.
    """
    rows, cols = _check_small_indices(rows, cols, 3)
    if len(rows) % 2:
        raise ValueError(f"o3_moment needs an even degree, got {len(rows)}")
    ca, sa, cb, sb, cg, sg = sp.symbols("ca sa cb sb cg sg")

    def rz(c, s):
        return sp.Matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]])

    ry = sp.Matrix([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    R = rz(ca, sa) * ry * rz(cg, sg)
    prod = sp.Mul(*[R[i, j] for i, j in zip(rows, cols)])
    return _poly_mean(prod, (ca, sa, cb, sb, cg, sg), (_circle_mean, _beta_mean, _circle_mean))


@functools.lru_cache(maxsize=2)
def _haar_samples(n_value: int, num_samples: int, seed: int) -> np.ndarray:
    """Cached ``(num_samples, n, n)`` Haar-orthogonal samples, shared by all index patterns."""
    from scipy.stats import ortho_group

    Os = ortho_group.rvs(n_value, size=num_samples, random_state=np.random.default_rng(seed))
    Os = np.asarray(Os, dtype=np.float64).reshape(num_samples, n_value, n_value)
    Os.flags.writeable = False
    return Os


def monte_carlo_moment(
    rows: Sequence[int], cols: Sequence[int], n_value: int, num_samples: int, seed: int = 0
) -> tuple[float, float]:
    """Monte Carlo estimate of a Haar-orthogonal moment with its standard error.

    Samples come from ``scipy.stats.ortho_group`` (an implementation independent of
    ``ntklit.init``), in float64, and are cached per ``(n_value, num_samples, seed)`` so that
    all patterns of one check share them (their estimates are correlated).

    Args:
      rows, cols: integer index tuples with entries in ``0..n_value-1``.
      n_value: matrix size (>= 2).
      num_samples: number of independent matrices (>= 2).
      seed: numpy seed.

    Returns:
      ``(mean, standard_error)``.
    """
    if not isinstance(n_value, (int, np.integer)) or n_value < 2:
        raise ValueError(f"n_value must be an integer >= 2, got {n_value!r}")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2, got {num_samples!r}")
    rows, cols = _check_small_indices(rows, cols, n_value)
    Os = _haar_samples(int(n_value), int(num_samples), int(seed))
    vals = np.prod(Os[:, np.array(rows), np.array(cols)], axis=1)
    return float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(num_samples))


# ----------------------------------------------------------------------------- propagation
def dot(a: str, b: str) -> sp.Symbol:
    """Symbol for the inner product :math:`\\langle v_a, v_b\\rangle` (symmetric in a, b).

    Args:
      a, b: names of the two vectors.
    """
    a, b = sorted((a, b))
    return sp.Symbol(f"q_{{{a}{b}}}", real=True)


def contracted_moment(
    ensemble: str,
    rows: Sequence[str],
    vectors: Sequence[str],
    *,
    fixed: Sequence[str] = (),
    n_value=None,
) -> sp.Expr:
    """Expectation of a product of weight entries contracted with vectors, for symbolic n.

    Computes

    .. math:: \\mathbb E\\Big[\\sum_{\\text{summed rows}}\\ \\sum_{j_1..j_m}
              \\prod_{a=1}^m W_{r_a j_a} (v_a)_{j_a}\\Big]

    for :math:`W = \\sqrt n\\, O` with Haar :math:`O \\in O(n)` (``"orthogonal"``, Weingarten
    sum) or :math:`W_{ij} \\sim N(0, 1)` i.i.d. (``"gaussian"``, Isserlis). Both have
    :math:`\\mathbb E W_{ij}^2 = 1`. Column sums turn each pairing into a product of inner
    products :func:`dot`; row labels in ``fixed`` are distinct fixed values, the others are
    summed over :math:`1..n` (a free loop gives a factor :math:`n`).

    Args:
      ensemble: ``"gaussian"`` or ``"orthogonal"``.
      rows: row label of each factor, e.g. ``("i", "i", "k", "k")``.
      vectors: vector name contracted with each factor's column index, e.g.
        ``("x", "y", "x", "y")``.
      fixed: labels that are fixed (pairwise distinct) rather than summed.
      n_value: ``None`` for the symbol :data:`n` or a positive integer.

    Returns:
      A sympy expression in :data:`n` and the symbols ``dot(a, b)``.

    Raises:
      ValueError: for an unknown ensemble, mismatched lengths, or ``fixed`` labels not in rows.
    """
    if ensemble not in _ENSEMBLES:
        raise ValueError(f"ensemble must be one of {_ENSEMBLES}, got {ensemble!r}")
    rows, vectors = tuple(rows), tuple(vectors)
    if len(rows) != len(vectors) or not rows:
        raise ValueError(
            f"rows and vectors must be non-empty and of equal length, got "
            f"{len(rows)} and {len(vectors)}"
        )
    if not set(fixed) <= set(rows):
        raise ValueError(f"fixed labels {tuple(fixed)} must appear in rows {rows}")
    m = len(rows)
    if m % 2:
        return sp.Integer(0)
    nv = _as_n(n_value)
    fixed = set(fixed)

    def row_factor(p):
        parent = {lab: lab for lab in rows}

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x

        for a, b in p:
            ra, rb = find(rows[a]), find(rows[b])
            if ra != rb:
                parent[ra] = rb
        classes = {}
        for lab in set(rows):
            classes.setdefault(find(lab), set()).add(lab)
        free = 0
        for members in classes.values():
            nfixed = len(members & fixed)
            if nfixed > 1:
                return sp.Integer(0)
            if nfixed == 0:
                free += 1
        return nv**free

    def col_factor(q):
        return sp.Mul(*[dot(vectors[a], vectors[b]) for a, b in q])

    ps = pairings(m)
    if ensemble == "gaussian":
        total = sum((row_factor(p) * col_factor(p) for p in ps), sp.Integer(0))
    else:
        _, Wg = weingarten_orthogonal(m)
        Wg = Wg.subs(n, nv)
        total = sp.Integer(0)
        for i, p in enumerate(ps):
            rf = row_factor(p)
            if rf == 0:
                continue
            for j, q in enumerate(ps):
                total += rf * col_factor(q) * Wg[i, j]
        total = total * nv ** (m // 2)
    return sp.factor(sp.cancel(sp.expand(total)))


sigma_w, sigma_b = sp.symbols("sigma_w sigma_b", positive=True)


@functools.lru_cache(maxsize=None)
def layer_statistics(ensemble: str) -> dict[str, sp.Expr]:
    """Conditional statistics of one layer :math:`z = \\sigma_w n^{-1/2} W \\phi + \\sigma_b b`.

    Given the previous layer's post-activations :math:`\\phi = \\phi(x), \\phi' = \\phi(y)
    \\in \\mathbb R^n` (inner products :math:`q_{xx}, q_{xy}, q_{yy}`) and
    :math:`b \\sim N(0, I)` independent of :math:`W`, with :math:`u = n^{-1/2} W\\phi`:

    * ``"cov_same"``: :math:`\\mathbb E[z_i(x) z_i(y)] = \\sigma_w^2 q_{xy}/n + \\sigma_b^2`;
    * ``"cov_diff"``: :math:`\\mathbb E[z_i(x) z_k(y)]`, :math:`i \\ne k` (0);
    * ``"var_qhat"``: :math:`\\mathrm{Var}[\\hat q]`, :math:`\\hat q = n^{-1}\\sum_i z_i(x)
      z_i(y)` (the empirical covariance that the next layer sees);
    * ``"excess_kurtosis"``: :math:`\\mathbb E[u_1^4]/\\mathbb E[u_1^2]^2 - 3`;
    * ``"unit_correlation"``: :math:`\\mathrm{Cov}(u_1^2, u_2^2)/\\mathbb E[u_1^2]^2`.

    The bias contributions use only Gaussian facts (:math:`\\mathbb E b_i^2 = 1`,
    :math:`\\mathrm{Var}\\, b_i^2 = 2`, odd moments vanish).

    Args:
      ensemble: ``"gaussian"`` or ``"orthogonal"``.

    Returns:
      A dict of sympy expressions in :data:`n`, ``sigma_w``, ``sigma_b`` and :func:`dot`
      symbols.
    """
    if ensemble not in _ENSEMBLES:
        raise ValueError(f"ensemble must be one of {_ENSEMBLES}, got {ensemble!r}")
    qxx, qxy, qyy = dot("x", "x"), dot("x", "y"), dot("y", "y")
    cm = functools.partial(contracted_moment, ensemble)
    # E[u_i(x) u_k(y)] = E[W_i. phi W_k. phi'] / n
    cov_same = sigma_w**2 * cm(("i", "i"), ("x", "y"), fixed=("i",)) / n + sigma_b**2
    cov_diff = sigma_w**2 * cm(("i", "k"), ("x", "y"), fixed=("i", "k")) / n
    # sum_i u_i u'_i : mean and second moment
    m1 = cm(("i", "i"), ("x", "y")) / n
    m2 = cm(("i", "i", "k", "k"), ("x", "y", "x", "y")) / n**2
    var_uu = sp.factor(sp.cancel(m2 - m1**2))
    var_sum = (
        sigma_w**4 * var_uu + sigma_w**2 * sigma_b**2 * (qxx + 2 * qxy + qyy) + 2 * n * sigma_b**4
    )
    var_qhat = sp.factor(sp.cancel(var_sum / n**2))
    e2 = cm(("i", "i"), ("x", "x"), fixed=("i",)) / n
    e4 = cm(("i",) * 4, ("x",) * 4, fixed=("i",)) / n**2
    e22 = cm(("i", "i", "k", "k"), ("x",) * 4, fixed=("i", "k")) / n**2
    return {
        "cov_same": sp.factor(sp.cancel(cov_same)),
        "cov_diff": sp.factor(sp.cancel(cov_diff)),
        "var_sum_uu": var_uu,
        "var_qhat": var_qhat,
        "excess_kurtosis": sp.factor(sp.cancel(e4 / e2**2 - 3)),
        "unit_correlation": sp.factor(sp.cancel((e22 - e2**2) / e2**2)),
    }


# ----------------------------------------------------------------------------- dual activations
q1, q2 = sp.symbols("q_1 q_2", positive=True)
q12 = sp.Symbol("q_12", real=True)


@functools.lru_cache(maxsize=None)
def relu_duals() -> dict[str, sp.Expr]:
    """Dual of ReLU and of its derivative (the step), derived by sympy in polar coordinates.

    With :math:`u = \\sqrt{q_1} g_1`, :math:`v = \\sqrt{q_2}(\\cos\\theta\\, g_1 + \\sin\\theta
    \\, g_2)`, :math:`\\cos\\theta = q_{12}/\\sqrt{q_1 q_2}`, and polar coordinates
    :math:`g = r(\\cos\\alpha, \\sin\\alpha)`, both are positive for
    :math:`\\alpha \\in (\\theta - \\pi/2, \\pi/2)`. Integrating gives the arc-cosine kernels
    (Cho & Saul 2009):

    .. math:: \\mathbb E[\\mathrm{relu}(u)\\mathrm{relu}(v)] = \\frac{\\sqrt{q_1 q_2}}{2\\pi}
              (\\sin\\theta + (\\pi - \\theta)\\cos\\theta),\\qquad
              \\mathbb E[1_{u>0} 1_{v>0}] = \\frac{\\pi - \\theta}{2\\pi}.

    Returns:
      ``{"k": ..., "kdot": ..., "k_theta": ..., "kdot_theta": ...}``: expressions in
      ``q_1, q_2, q_12`` and (``*_theta``) in ``theta`` with :math:`q_1 = q_2 = 1`.
    """
    a = sp.Symbol("alpha", real=True)
    r = sp.Symbol("r", positive=True)
    th = sp.Symbol("theta", real=True)
    radial1 = sp.integrate(r**3 * sp.exp(-(r**2) / 2), (r, 0, sp.oo))  # = 2
    radial0 = sp.integrate(r * sp.exp(-(r**2) / 2), (r, 0, sp.oo))  # = 1
    ang1 = sp.integrate(sp.cos(a) * sp.cos(a - th), (a, th - sp.pi / 2, sp.pi / 2))
    ang0 = sp.integrate(sp.Integer(1), (a, th - sp.pi / 2, sp.pi / 2))
    k_theta = sp.simplify(radial1 * ang1 / (2 * sp.pi))
    kdot_theta = sp.simplify(radial0 * ang0 / (2 * sp.pi))
    theta_q = sp.acos(q12 / sp.sqrt(q1 * q2))
    k = sp.sqrt(q1 * q2) * k_theta.subs(th, theta_q)
    kdot = kdot_theta.subs(th, theta_q)
    return {
        "k": sp.simplify(k),
        "kdot": sp.simplify(kdot),
        "k_theta": k_theta,
        "kdot_theta": kdot_theta,
    }


@functools.lru_cache(maxsize=None)
def erf_duals() -> dict[str, sp.Expr]:
    """Dual of erf and of its derivative, derived by sympy with Price's theorem.

    :math:`\\partial_{q_{12}}\\mathbb E[f(u)f(v)] = \\mathbb E[f'(u)f'(v)]` (Price's theorem)
    and :math:`\\mathbb E[e^{-u^2 - v^2}] = \\det(I + 2\\Sigma)^{-1/2}` give
    :math:`\\mathbb E[\\mathrm{erf}'(u)\\mathrm{erf}'(v)] = \\frac{4}{\\pi}((1+2q_1)(1+2q_2)
    - 4q_{12}^2)^{-1/2}`; integrating from :math:`q_{12} = 0` (where the expectation vanishes
    because erf is odd) with the substitution :math:`s = 2t/\\sqrt{(1+2q_1)(1+2q_2)}` gives
    Williams' (1997) kernel

    .. math:: \\mathbb E[\\mathrm{erf}(u)\\mathrm{erf}(v)] = \\frac 2\\pi
              \\arcsin\\frac{2 q_{12}}{\\sqrt{(1 + 2q_1)(1 + 2q_2)}}.

    Returns:
      ``{"k": ..., "kdot": ...}`` in ``q_1, q_2, q_12``.
    """
    Sigma = sp.Matrix([[q1, q12], [q12, q2]])
    D = sp.expand((sp.eye(2) + 2 * Sigma).det())
    kdot = (2 / sp.sqrt(sp.pi)) ** 2 / sp.sqrt(D)
    s, rho = sp.Symbol("s", real=True), sp.Symbol("rho", real=True)
    scale = sp.sqrt((1 + 2 * q1) * (1 + 2 * q2))
    # int_0^{q12} kdot(t) dt with t = scale * s / 2: kdot dt = 2 / (pi sqrt(1 - s^2)) ds
    integrand_s = kdot.subs(q12, scale * s / 2) * scale / 2
    canonical = 2 / (sp.pi * sp.sqrt(1 - s**2))
    # both are positive on (-1, 1); equal squares prove the substitution step exactly
    if sp.simplify(sp.expand(integrand_s**2) - canonical**2) != 0:  # pragma: no cover
        raise AssertionError("substitution step of the erf dual failed")
    k = sp.integrate(canonical, (s, 0, rho)).subs(rho, 2 * q12 / scale)
    return {"k": k, "kdot": kdot}


def duals(activation: str) -> dict[str, sp.Expr]:
    """Sympy duals ``{"k", "kdot"}`` of ``"relu"`` or ``"erf"`` in ``q_1, q_2, q_12``."""
    if activation == "relu":
        return relu_duals()
    if activation == "erf":
        return erf_duals()
    raise ValueError(f"activation must be one of ('relu', 'erf'), got {activation!r}")


def lambdify_duals(activation: str):
    r"""Numpy callables ``(k, kdot)`` of ``(q1, q2, q12)`` from the sympy duals (float64).

    For ReLU the angle forms ``k_theta``, ``kdot_theta`` are lambdified and evaluated at
    :math:`\theta = \arccos(\mathrm{clip}(q_{12}/\sqrt{q_1 q_2}, -1, 1))`, so that round-off
    in the cosine cannot produce NaN.
    """
    d = duals(activation)
    if activation == "relu":
        th = sp.Symbol("theta", real=True)
        kt = sp.lambdify(th, d["k_theta"], "numpy")
        kdt = sp.lambdify(th, d["kdot_theta"], "numpy")

        def angle(a, b, c):
            a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
            s = np.sqrt(a * b)
            return s, np.arccos(np.clip(c / s, -1.0, 1.0))

        def k(a, b, c):
            s, t = angle(a, b, c)
            return s * kt(t)

        def kdot(a, b, c):
            _, t = angle(a, b, c)
            return kdt(t) + 0.0 * t

        return k, kdot
    return (
        sp.lambdify((q1, q2, q12), d["k"], "numpy"),
        sp.lambdify((q1, q2, q12), d["kdot"], "numpy"),
    )


def gaussian_expectation_numeric(
    f, g, q1_: float, q2_: float, q12_: float, *, method: str = "quad"
) -> float:
    """Float64 :math:`\\mathbb E[f(u) g(v)]` for :math:`(u, v) \\sim N(0, [[q_1, q_{12}],
    [q_{12}, q_2]])`, by numerical integration (independent of any closed form).

    Writes :math:`u = \\sqrt{q_1} g_1`, :math:`v = a g_1 + b g_2` with
    :math:`a = q_{12}/\\sqrt{q_1}`, :math:`b = \\sqrt{q_2 - a^2}` and integrates the two
    standard normals.

    Args:
      f, g: vectorized numpy functions.
      q1_, q2_, q12_: the covariance; must be positive definite or semi-definite
        (``q12**2 <= q1*q2``).
      method: ``"quad"`` (nested adaptive ``scipy.integrate.quad``, suited to kinks such as
        ReLU's, with breakpoints at 0) or ``"hermite"`` (240-point Gauss-Hermite product rule,
        for smooth integrands).

    Returns:
      The expectation as a float.
    """
    from scipy import integrate

    if method not in ("quad", "hermite"):
        raise ValueError(f"method must be 'quad' or 'hermite', got {method!r}")
    if not (q1_ > 0 and q2_ > 0) or q12_**2 > q1_ * q2_ * (1 + 1e-12):
        raise ValueError(f"need q1 > 0, q2 > 0 and q12^2 <= q1 q2, got {(q1_, q2_, q12_)}")
    a = q12_ / np.sqrt(q1_)
    b = np.sqrt(max(q2_ - a * a, 0.0))
    if method == "hermite":
        x, w = np.polynomial.hermite_e.hermegauss(240)
        w = w / np.sqrt(2 * np.pi)
        G1, G2 = np.meshgrid(x, x, indexing="ij")
        vals = f(np.sqrt(q1_) * G1) * g(a * G1 + b * G2)
        return float(w @ vals @ w)
    phi = lambda t: np.exp(-t * t / 2) / np.sqrt(2 * np.pi)  # noqa: E731

    def inner(g1):
        if b == 0.0:
            return float(g(np.asarray(a * g1)))
        # integrate g(a g1 + b g2) over g2, breakpoint where the argument is 0
        z0 = -a * g1 / b
        h = lambda t: g(np.asarray(a * g1 + b * t)) * phi(t)  # noqa: E731
        lo, _ = integrate.quad(h, -np.inf, z0, epsabs=1e-14, epsrel=1e-13, limit=200)
        hi, _ = integrate.quad(h, z0, np.inf, epsabs=1e-14, epsrel=1e-13, limit=200)
        return lo + hi

    outer = lambda t: f(np.asarray(np.sqrt(q1_) * t)) * inner(t) * phi(t)  # noqa: E731
    lo, _ = integrate.quad(outer, -np.inf, 0.0, epsabs=1e-14, epsrel=1e-13, limit=200)
    hi, _ = integrate.quad(outer, 0.0, np.inf, epsabs=1e-14, epsrel=1e-13, limit=200)
    return float(lo + hi)
