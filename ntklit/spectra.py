r"""Log-singular values of long matrix products, stable at any depth.

The input-output Jacobian of a deep network is a product of per-layer factors,
:math:`J = F_L \cdots F_2 F_1`. Its singular values spread exponentially with depth (the
Lyapunov exponents of the product), so a direct SVD of the formed product resolves only those
within about :math:`10^{-16}` of the largest: the rest come out as rounding noise. This module
never forms :math:`J`. :func:`log_singular_values` works on the factors:

1. **QR sweeps in product form** (the standard method for Lyapunov spectra, Benettin et al.
   1980; Geist, Parlitz & Lauterborn 1990). A forward sweep through the factors,
   :math:`F_l Q_{l-1} = Q_l R_l`, gives :math:`J Q_0 = Q_L\, R_L \cdots R_1` with every QR
   taken of a single layer's (well-conditioned) matrix, so no precision is lost; a backward
   sweep through the transposed factors does the same for :math:`J^\top`. Alternating sweeps
   are subspace iteration on :math:`J^\top J` in product form (the QR algorithm for the product
   SVD, Stewart 1997): they align :math:`Q_0` with the right singular vectors, so that the
   triangular product becomes graded, :math:`T = R_L\cdots R_1 = D X` with
   :math:`D = \mathrm{diag}\,\prod_l |(R_l)_{ii}|` and :math:`X` well conditioned. The
   diagonal :math:`D` alone is only an approximation of the singular values at finite depth
   (and none for clustered ones), so the sweeps stop after ``sweeps`` and a final step makes
   the result exact.
2. **One-sided Jacobi on the graded rows**, in log-scaled form. :math:`T` is accumulated as
   :math:`\ln D` plus the well-scaled :math:`X` (no overflow at any depth), and the rows of
   :math:`DX` are orthogonalized by cyclic (round-robin) Jacobi rotations, each row kept as a
   log scale and a unit vector. Jacobi's method computes the singular values of a row-graded
   matrix :math:`DX` with relative accuracy :math:`O(\varepsilon\,\kappa(X))` however wide
   the grading (Demmel & Veselić 1992, SIAM J. Matrix Anal. Appl. 13:1204), where LAPACK's
   bidiagonalization of the formed :math:`J` has absolute accuracy
   :math:`\varepsilon\, s_\max`. Rotations are orthogonal, so
   :math:`\sum_i \ln s_i = \ln|\det J| = \sum_l \ln|\det F_l|` holds to rounding.

The sweeps stop when every pair of rows has cosine below ``tol`` (default
:math:`n\varepsilon`); :func:`log_singular_values` with ``return_info=True`` reports the
Jacobi sweeps used and the final largest cosine, so a caller can check convergence.

:func:`fcn_jacobian_factors` gives the factors of a :func:`ntklit.nets.fcn` network at an
input: in NTK parameterization :math:`F_1 = \frac{\sigma_w}{\sqrt{n_0}} W_1^\top` and
:math:`F_l = \frac{\sigma_w}{\sqrt{n_{l-1}}} W_l^\top D_{l-1}`, in standard
parameterization (the scale stored in the weights) :math:`F_1 = W_1^\top` and
:math:`F_l = W_l^\top D_{l-1}`, with :math:`D_l = \mathrm{diag}\,\phi'(h^l)`
(rows-as-outputs convention, :math:`J = \partial f/\partial x`).

Everything is jit- and vmap-compatible (argument checks look only at shapes and Python
values) and meant for float64 (``jax.config.update("jax_enable_x64", True)``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate

__all__ = ["log_singular_values", "fcn_jacobian_factors", "product", "ACTIVATION_DERIVATIVES"]


def _dtanh(h):
    return 1.0 - jnp.tanh(h) ** 2


def _derf(h):  # stax.Erf() is erf(h) (a=1, b=1, c=0)
    return 2.0 / math.sqrt(math.pi) * jnp.exp(-(h**2))


def _drelu(h):
    return (h > 0).astype(h.dtype)


def _dlinear(h):
    return jnp.ones_like(h)


_ACTIVATIONS = {
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "tanh": jnp.tanh,
    "linear": lambda h: h,
}

#: Derivative :math:`\phi'` of each :data:`ntklit.nets.ACTIVATIONS` activation.
ACTIVATION_DERIVATIVES = {"relu": _drelu, "erf": _derf, "tanh": _dtanh, "linear": _dlinear}


def _check_factors(factors) -> jax.Array:
    shape = getattr(factors, "shape", None)
    if shape is None or len(shape) != 3 or shape[1] != shape[2] or shape[0] < 1 or shape[1] < 1:
        raise ValueError(
            f"factors must be an array of shape (L, n, n) with L >= 1, n >= 1 "
            f"(square factors, factors[0] applied first), got shape {shape}"
        )
    dt = getattr(factors, "dtype", None)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"factors must have a floating dtype (float64 recommended), got {dt}")
    return jnp.asarray(factors)


def product(factors: jax.Array) -> jax.Array:
    """The product :math:`F_L \\cdots F_1` of stacked factors, formed directly.

    Only for checks at small depth (its small singular values are rounding noise at large
    depth; that is why :func:`log_singular_values` exists).

    Args:
      factors: ``(L, n, n)``, ``factors[0]`` applied first.

    Returns:
      ``(n, n)`` array ``factors[L-1] @ ... @ factors[0]``.

    Raises:
      ValueError: for a shape other than ``(L, n, n)`` or a non-float dtype.
    """
    factors = _check_factors(factors)
    return jax.lax.fori_loop(1, factors.shape[0], lambda l, j: factors[l] @ j, factors[0])


def _qr_sweep(factors, q0, *, transpose: bool, scaled: bool):
    """One QR sweep: ``F_l Q_{l-1} = Q_l R_l`` over the factors (``F_l^T`` in reverse order if
    ``transpose``). Returns ``Q_L`` and, if ``scaled``, ``(d, X)`` with
    ``R_L ... R_1 = diag(exp d) X``; ``d`` is accumulated in logs, ``X`` stays O(1)."""
    n = q0.shape[0]
    mats = jnp.swapaxes(factors[::-1], 1, 2) if transpose else factors
    upper = jnp.triu(jnp.ones((n, n), bool))

    def step(carry, a):
        q, d, x = carry
        q_new, r = jnp.linalg.qr(a @ q)
        rd = jnp.diagonal(r)
        lr = jnp.log(jnp.abs(rd))
        if scaled:
            # R diag(e^d) X = diag(e^(d + lr)) S X,  S_ij = R_ij / |R_ii| * e^(d_j - d_i)
            expo = jnp.where(upper, d[None, :] - d[:, None], -jnp.inf)
            s = jnp.where(upper, r / jnp.abs(rd)[:, None], 0.0) * jnp.exp(expo)
            x = s @ x
        return (q_new, d + lr, x), None

    init = (q0, jnp.zeros(n, q0.dtype), jnp.eye(n, dtype=q0.dtype))
    (q, d, x), _ = jax.lax.scan(step, init, mats)
    return q, d, x


def _round_robin(m: int) -> np.ndarray:
    """Circle-method tournament on ``m`` (even) players: ``(m - 1, m)`` partner permutations
    (involutions without fixed points), every pair of players meeting exactly once."""
    players = np.arange(m)
    perms = []
    for _ in range(m - 1):
        half = m // 2
        a, b = players[:half], players[half:][::-1]
        perm = np.empty(m, int)
        perm[a], perm[b] = b, a
        perms.append(perm)
        players = np.concatenate([players[:1], players[-1:], players[1:-1]])
    return np.array(perms)


def _jacobi_rows(d, y, tol, max_sweeps):
    """One-sided Jacobi on the rows of ``diag(exp d) y``; rows stay ``(log scale, vector)``.

    Each step rotates ``m / 2`` disjoint row pairs at once (round-robin order); a row's new
    value is ``c * y_i + coef_i * y_partner(i)``, a gather and no scatter."""
    m = y.shape[0]
    perms = jnp.asarray(_round_robin(m))
    idx = jnp.arange(m)
    tiny = jnp.finfo(y.dtype).tiny

    def normalize(d, y):
        nrm = jnp.linalg.norm(y, axis=1)
        ok = nrm > 0
        return (
            jnp.where(ok, d + jnp.log(jnp.where(ok, nrm, 1.0)), d),
            y / jnp.where(ok, nrm, 1.0)[:, None],
        )

    def rotate(step, carry):
        d, y, worst = carry
        perm = perms[step]
        yp = jnp.take(y, perm, axis=0)
        a = jnp.sum(y * y, 1)  # own squared norm
        g = jnp.sum(y * yp, 1)  # inner product with the partner
        b = a[perm]
        dp = d[perm]
        # the pair's "big" row has the larger scale; rho = e^(d_small - d_big) <= 1
        big = (d > dp) | ((d == dp) & (idx < perm))
        rho = jnp.exp(-jnp.abs(d - dp))
        a_big, b_small = jnp.where(big, a, b), jnp.where(big, b, a)
        cos = jnp.abs(g) / jnp.maximum(jnp.sqrt(a * b), tiny)
        do = cos > tol
        g_safe = jnp.where(do, g, 1.0)
        # zeta = (beta - alpha) / (2 gamma) in units of e^(2 d_big); rz = rho * zeta is finite
        rz = (rho**2 * b_small - a_big) / (2 * g_safe)
        t_over_rho = jnp.where(rz >= 0, 1.0, -1.0) / (jnp.abs(rz) + jnp.sqrt(rho**2 + rz**2))
        t = t_over_rho * rho
        c = 1.0 / jnp.sqrt(1.0 + t**2)
        # big row: c y_big - c t rho y_small;  small row: c (t / rho) y_big + c y_small
        coef = jnp.where(big, -c * t * rho, c * t_over_rho)
        c = jnp.where(do, c, 1.0)
        coef = jnp.where(do, coef, 0.0)
        return d, c[:, None] * y + coef[:, None] * yp, jnp.maximum(worst, jnp.max(cos))

    def sweep(carry):
        d, y, _, k = carry
        d, y, worst = jax.lax.fori_loop(0, m - 1, rotate, (d, y, jnp.zeros((), y.dtype)))
        d, y = normalize(d, y)
        return d, y, worst, k + 1

    def not_done(carry):
        return (carry[2] > tol) & (carry[3] < max_sweeps)

    d, y = normalize(d, y)
    inf = jnp.asarray(jnp.inf, y.dtype)
    return jax.lax.while_loop(not_done, sweep, (d, y, inf, jnp.zeros((), jnp.int32)))


def log_singular_values(
    factors: jax.Array,
    *,
    sweeps: int = 3,
    tol: float | None = None,
    max_jacobi_sweeps: int = 30,
    return_info: bool = False,
) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """Natural logs of the singular values of :math:`J = F_L \\cdots F_1`, without forming J.

    QR sweeps through the factors in product form, then one-sided Jacobi on the graded
    triangular product (module docstring). The result is accurate relative to each singular
    value (not to the largest), so values :math:`10^{-100}` below the largest are resolved.

    .. math:: \\ln s_i(F_L \\cdots F_1), \\qquad \\sum_i \\ln s_i = \\sum_l \\ln|\\det F_l|.

    Args:
      factors: ``(L, n, n)`` array of square factors, ``factors[0]`` applied first (as from
        :func:`fcn_jacobian_factors`). Float64 recommended.
      sweeps: number of QR sweeps, an odd int >= 1: ``(sweeps - 1) / 2`` forward-backward
        pairs of subspace iteration and a final forward sweep. 3 (default) suffices for
        products of random matrices; more only make the final Jacobi step shorter.
      tol: Jacobi convergence threshold on the cosine between rows, a positive float
        (default ``n * eps`` of the dtype).
      max_jacobi_sweeps: most Jacobi sweeps, int >= 1.
      return_info: also return ``{"jacobi_sweeps", "max_cos", "converged"}``: Jacobi sweeps
        used, largest row cosine seen in the last sweep, and whether it fell below ``tol``
        with every value finite.

    Returns:
      ``(n,)`` log-singular values in decreasing order (and the info dict if asked).

    Raises:
      ValueError: for factors not of shape ``(L, n, n)`` or not floating, an even or
        non-positive ``sweeps``, a non-positive ``tol`` or ``max_jacobi_sweeps``.
    """
    factors = _check_factors(factors)
    sweeps = _validate.integer("sweeps", sweeps, 1)
    if sweeps % 2 == 0:
        raise ValueError(
            f"sweeps must be an odd int >= 1 (forward-backward pairs and a final "
            f"forward sweep), got {sweeps}"
        )
    max_jacobi_sweeps = _validate.integer("max_jacobi_sweeps", max_jacobi_sweeps, 1)
    return_info = _validate.choice("return_info", return_info, (True, False))
    n, dt = factors.shape[1], factors.dtype
    if tol is None:
        tol = n * float(jnp.finfo(dt).eps)
    tol = _validate.real("tol", tol, positive=True)

    q = jnp.eye(n, dtype=dt)
    for _ in range((sweeps - 1) // 2):
        u, _, _ = _qr_sweep(factors, q, transpose=False, scaled=False)
        q, _, _ = _qr_sweep(factors, u, transpose=True, scaled=False)
    _, d, x = _qr_sweep(factors, q, transpose=False, scaled=True)
    # Preconditioning (Drmac & Veselic 2008): X^T = Q R, so D X = D R^T Q^T has the singular
    # values of D R^T, whose rows are closer to orthogonal (fewer Jacobi sweeps). Householder QR
    # perturbs each column of X^T, i.e. each row of D X, relative to its own norm.
    x = jnp.linalg.qr(x.T)[1].T
    pad = n % 2  # round-robin pairs need an even number of rows: pad with a zero row
    if pad:
        d = jnp.concatenate([d, jnp.zeros(1, dt)])
        x = jnp.concatenate(
            [jnp.concatenate([x, jnp.zeros((n, 1), dt)], 1), jnp.zeros((1, n + 1), dt)], 0
        )
    d, y, worst, k = _jacobi_rows(d, x, jnp.asarray(tol, dt), max_jacobi_sweeps)
    log_s = -jnp.sort(-d[:n])  # rows are unit vectors after the last normalization
    if not return_info:
        return log_s
    info = {
        "jacobi_sweeps": k,
        "max_cos": worst,
        "converged": (worst <= tol) & jnp.all(jnp.isfinite(log_s)),
    }
    return log_s, info


def fcn_jacobian_factors(
    params: Any,
    x: jax.Array,
    *,
    activation: str,
    W_std: float,
    b_std: float = 0.0,
    parameterization: str = "ntk",
) -> jax.Array:
    """The per-layer Jacobian factors of a :func:`ntklit.nets.fcn` network at one input.

    For ``nets.fcn(depth, n, out_dim=n, activation=..., W_std=..., b_std=...)`` in NTK
    parameterization (stax ``Dense`` computes :math:`h = \\frac{\\sigma_w}{\\sqrt{n_\\text{in}}}
    x W + \\sigma_b b`), the input-output Jacobian is :math:`J = F_L \\cdots F_1` with

    .. math:: F_1 = \\tfrac{\\sigma_w}{\\sqrt{n_0}} W_1^\\top,\\qquad
       F_l = \\tfrac{\\sigma_w}{\\sqrt{n_{l-1}}} W_l^\\top\\, \\mathrm{diag}\\,\\phi'(h^{l-1}).

    In standard parameterization (``parameterization="standard"``: the weights carry the scale,
    :math:`h = x W + b`) the same holds without the factor :math:`\\sigma_w/\\sqrt{n}`:
    :math:`F_1 = W_1^\\top`, :math:`F_l = W_l^\\top\\,\\mathrm{diag}\\,\\phi'(h^{l-1})`.

    Args:
      params: the network's parameters (``init_fn(key, (1, n))[1]``): a list alternating
        Dense ``(W, b)`` and activation ``()`` entries, all weights ``(n, n)``.
      x: one input, shape ``(n,)``.
      activation: the network's activation, one of :data:`ntklit.nets.ACTIVATIONS`.
      W_std: the network's weight scale :math:`\\sigma_w > 0`.
      b_std: the network's bias scale :math:`\\sigma_b \\ge 0` (0: no bias parameters).
      parameterization: the network's, ``"ntk"`` (default) or ``"standard"``.

    Returns:
      ``(depth + 1, n, n)`` factors, ``factors[0]`` applied first (for
      :func:`log_singular_values`); their product is ``jax.jacrev`` of the network at ``x``.

    Raises:
      ValueError: for an unknown ``activation`` or ``parameterization``, bad scales,
        parameters that are not a square fcn's, or an ``x`` whose shape does not match them.
    """
    _validate.choice("activation", activation, tuple(ACTIVATION_DERIVATIVES))
    _validate.choice("parameterization", parameterization, ("ntk", "standard"))
    W_std = _validate.real("W_std", W_std, positive=True)
    b_std = _validate.real("b_std", b_std, positive=False)
    if not isinstance(params, (list, tuple)) or len(params) % 2 != 1:
        raise ValueError(
            "params must be the list of an nets.fcn network (Dense, activation, "
            f"..., Dense entries: odd length), got {type(params).__name__}"
            + (f" of length {len(params)}" if hasattr(params, "__len__") else "")
        )
    dense = list(params[::2])
    ws, bs = [], []
    for i, layer in enumerate(dense):
        if not isinstance(layer, (list, tuple)) or len(layer) != 2:
            raise ValueError(f"params[{2 * i}] must be a Dense layer's (W, b), got {layer!r}")
        w, b = layer
        if getattr(w, "ndim", None) != 2 or w.shape[0] != w.shape[1]:
            raise ValueError(
                f"params[{2 * i}] weight must be square (n, n) (use "
                f"nets.fcn(depth, n, out_dim=n)), got shape {getattr(w, 'shape', None)}"
            )
        ws.append(w)
        bs.append(b)
    n = ws[0].shape[0]
    if any(w.shape != (n, n) for w in ws):
        raise ValueError(
            f"every weight must have shape ({n}, {n}), got {[tuple(w.shape) for w in ws]}"
        )
    if getattr(x, "shape", None) != (n,):
        raise ValueError(
            f"x must have shape ({n},) (one input of the network), got {getattr(x, 'shape', None)}"
        )
    dphi = ACTIVATION_DERIVATIVES[activation]
    standard = parameterization == "standard"
    scale = 1.0 if standard else W_std / math.sqrt(n)
    w_stack = jnp.stack(ws)
    b_stack = jnp.stack(
        [jnp.zeros((1, n), w_stack.dtype) if b is None else jnp.reshape(b, (1, n)) for b in bs]
    )
    has_b = b_std > 0 and all(b is not None for b in bs)
    bscale = (1.0 if standard else b_std) if has_b else 0.0

    phi = _ACTIVATIONS[activation]

    def layer(z, wb):  # z: the previous layer's post-activation output, (n,)
        w, b = wb
        h = scale * z @ w + bscale * b[0]
        return phi(h), h

    # pre-activations h^1 ... h^depth of the hidden layers (the readout's is not needed)
    _, hs = jax.lax.scan(layer, jnp.asarray(x, w_stack.dtype), (w_stack[:-1], b_stack[:-1]))
    first = scale * w_stack[0].T[None]
    rest = scale * jnp.swapaxes(w_stack[1:], 1, 2) * dphi(hs)[:, None, :]
    return jnp.concatenate([first, rest], 0)
