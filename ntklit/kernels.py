r"""Infinite-width NNGP and NTK kernels: neural-tangents, independent closed forms, order/chaos.

* :func:`infinite_width_kernels` is a thin wrapper over :func:`ntklit.nets.fcn` /
  :func:`ntklit.nets.cnn`: the analytic ``kernel_fn`` of neural-tangents (the same for
  ``init="gaussian"`` and ``init="orthogonal"``, chapter 2), evaluated in batches.
* :func:`fcn_kernels` and :func:`cnn_kernels` recompute the same kernels in numpy from the
  layer recursions

  .. math:: \Sigma^{l+1} = \sigma_w^2\, \mathcal A\big[\hat\phi(\Sigma^l)\big] + \sigma_b^2,
            \qquad
            \Theta^{l+1} = \Sigma^{l+1} + \sigma_w^2\, \mathcal A\big[\hat{\phi'}(\Sigma^l)
            \odot \Theta^l\big],

  with :math:`\mathcal A` the identity (FCN) or the patch-averaging operator (CNN, Novak et
  al. 2019, arXiv:1810.05148; Arora et al. 2019, arXiv:1904.11955), and the dual activations
  :func:`relu_dual` (arc-cosine kernels, Cho & Saul 2009), :func:`erf_dual` (Williams 1997) or
  :func:`hermite_dual` (a bivariate Gauss-Hermite rule of any degree, used for tanh). They share
  no code with neural-tangents and serve as its checks.
* Order and chaos (Poole et al. 2016, arXiv:1606.05340; Schoenholz et al. 2017,
  arXiv:1611.01232): :func:`q_fixed_point`, :func:`chi_1`, :func:`critical_weight_variance`,
  :func:`correlation_fixed_point`, :func:`depth_scale`, :func:`correlation_iterates`.
* :func:`kernel_regression`: infinite-time NTK / NNGP regression with
  ``neural_tangents.predict.gradient_descent_mse_ensemble``; :func:`condition_number`.

Conventions follow neural-tangents' NTK parameterization: the first layer sees the input
kernel :math:`x \cdot x' / d` (FCN) or :math:`x(p) \cdot x'(p') / C` (CNN), ``W_std`` is
:math:`\sigma_w` and ``b_std`` is :math:`\sigma_b`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from . import _validate

__all__ = [
    "ACTIVATIONS",
    "infinite_width_kernels",
    "relu_dual",
    "erf_dual",
    "hermite_dual",
    "dual_fn",
    "fcn_kernels",
    "cnn_kernels",
    "angular_inputs",
    "condition_number",
    "q_fixed_point",
    "chi_1",
    "critical_weight_variance",
    "correlation_fixed_point",
    "depth_scale",
    "correlation_iterates",
    "kernel_regression",
]

#: Activations with an independent numpy dual here.
ACTIVATIONS = ("relu", "erf", "tanh", "linear")
_ARCHS = ("fcn", "cnn")
_GETS = ("nngp", "ntk")


# ----------------------------------------------------------------------------- neural-tangents
def infinite_width_kernels(
    x1,
    x2=None,
    *,
    architecture: str = "fcn",
    depth: int = 1,
    activation: str = "relu",
    W_std: float = 1.0,
    b_std: float = 0.0,
    batch_size: int = 0,
    **net_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Analytic infinite-width NNGP and NTK of an ``ntklit.nets`` network.

    Args:
      x1: inputs, ``(N1, d)`` for ``"fcn"`` or ``(N1, H, W, C)`` for ``"cnn"``.
      x2: second inputs ``(N2, ...)`` or ``None`` for ``x1``.
      architecture: ``"fcn"`` or ``"cnn"``.
      depth: number of hidden (FCN) or convolutional (CNN) layers, >= 1.
      activation: ``"relu"``, ``"erf"``, ``"tanh"`` or ``"linear"``.
      W_std, b_std: :math:`\\sigma_w > 0`, :math:`\\sigma_b \\ge 0`.
      batch_size: if > 0, evaluate with ``neural_tangents.batch`` in blocks of this many rows
        (must divide N1 and N2).
      **net_kwargs: passed to :func:`ntklit.nets.fcn` / :func:`ntklit.nets.cnn`
        (e.g. ``filter_shape``, ``readout``, ``tanh_deg``).

    Returns:
      ``(nngp, ntk)``, numpy arrays ``(N1, N2)`` in the dtype of the computation
      (float64 when ``jax_enable_x64`` is on and the inputs are float64).
    """
    from . import nets

    _validate.choice("architecture", architecture, _ARCHS)
    depth = _validate.integer("depth", depth, 1)
    _validate.integer("batch_size", batch_size, 0)
    x1 = np.asarray(x1)
    want = 2 if architecture == "fcn" else 4
    if x1.ndim != want:
        raise ValueError(
            f"x1 must have {want} dimensions for architecture={architecture!r}, "
            f"got shape {x1.shape}"
        )
    if x2 is not None and np.asarray(x2).shape[1:] != x1.shape[1:]:
        raise ValueError(f"x2 must have shape (N2, {x1.shape[1:]}), got {np.asarray(x2).shape}")
    build = nets.fcn if architecture == "fcn" else nets.cnn
    _, _, kernel_fn = build(
        depth, 1, activation=activation, W_std=W_std, b_std=b_std, **net_kwargs
    )
    if batch_size:
        import neural_tangents as nt

        kernel_fn = nt.batch(kernel_fn, batch_size=batch_size)
    k = kernel_fn(x1, x2, ("nngp", "ntk"))
    return np.asarray(k.nngp), np.asarray(k.ntk)


# ----------------------------------------------------------------------------- dual activations
def relu_dual(q1, q2, q12):
    r"""ReLU duals (arc-cosine kernels of order 1 and 0, Cho & Saul 2009).

    .. math:: \hat\phi = \frac{\sqrt{q_1 q_2}}{2\pi}(\sin\theta + (\pi - \theta)\cos\theta),
              \quad \hat{\phi'} = \frac{\pi - \theta}{2\pi},
              \quad \cos\theta = \frac{q_{12}}{\sqrt{q_1 q_2}}.

    Args:
      q1, q2, q12: broadcastable arrays (variances > 0 and covariance).

    Returns:
      ``(k, kdot)`` arrays of the broadcast shape.
    """
    q1, q2, q12 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (q1, q2, q12)))
    s = np.sqrt(q1 * q2)
    c = np.clip(q12 / s, -1.0, 1.0)
    th = np.arccos(c)
    k = s * (np.sqrt(1.0 - c * c) + (np.pi - th) * c) / (2 * np.pi)
    return k, (np.pi - th) / (2 * np.pi)


def erf_dual(q1, q2, q12):
    r"""erf duals (Williams 1997).

    .. math:: \hat\phi = \frac 2\pi \arcsin\frac{2q_{12}}{\sqrt{(1+2q_1)(1+2q_2)}},\quad
              \hat{\phi'} = \frac{4}{\pi\sqrt{(1+2q_1)(1+2q_2) - 4q_{12}^2}}.

    Args:
      q1, q2: variances of the two pre-activations (broadcastable arrays).
      q12: their covariance.

    Returns:
      ``(k, kdot)`` arrays of the broadcast shape.
    """
    q1, q2, q12 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (q1, q2, q12)))
    d = (1 + 2 * q1) * (1 + 2 * q2)
    return (2 / np.pi) * np.arcsin(2 * q12 / np.sqrt(d)), 4 / (np.pi * np.sqrt(d - 4 * q12**2))


def _linear_dual(q1, q2, q12):
    q1, q2, q12 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (q1, q2, q12)))
    return q12.copy(), np.ones_like(q12)


def hermite_dual(fn: Callable, dfn: Callable, q1, q2, q12, *, deg: int = 200, chunk: int = 64):
    r"""Duals of any activation by a bivariate Gauss-Hermite product rule of degree ``deg``.

    :math:`u = \sqrt{q_1} g_1`, :math:`v = a g_1 + b g_2`, :math:`a = q_{12}/\sqrt{q_1}`,
    :math:`b = \sqrt{q_2 - a^2}`; the rule integrates polynomials of degree < 2 ``deg``
    in :math:`(g_1, g_2)` exactly. Accurate for smooth activations (tanh, erf), not for kinks.

    Args:
      fn, dfn: the activation and its derivative (vectorized numpy).
      q1, q2, q12: broadcastable arrays.
      deg: nodes per dimension (>= 2).
      chunk: entries processed at once (memory ``chunk * deg**2`` floats).

    Returns:
      ``(k, kdot)`` arrays of the broadcast shape, float64.
    """
    deg = _validate.integer("deg", deg, 2)
    chunk = _validate.integer("chunk", chunk, 1)
    q1, q2, q12 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (q1, q2, q12)))
    shape = q1.shape
    q1, q2, q12 = q1.ravel(), q2.ravel(), q12.ravel()
    x, w = _hermite_nodes(deg)
    k, kd = np.empty_like(q1), np.empty_like(q1)
    for s in range(0, q1.size, chunk):
        sl = slice(s, s + chunk)
        a = q12[sl] / np.sqrt(q1[sl])
        b = np.sqrt(np.maximum(q2[sl] - a * a, 0.0))
        u = np.sqrt(q1[sl])[:, None] * x[None, :]  # (c, deg)
        v = a[:, None, None] * x[None, :, None] + b[:, None, None] * x[None, None, :]
        k[sl] = np.einsum("ci,cij,i,j->c", fn(u), fn(v), w, w)
        kd[sl] = np.einsum("ci,cij,i,j->c", dfn(u), dfn(v), w, w)
    return k.reshape(shape), kd.reshape(shape)


@functools.lru_cache(maxsize=16)
def _hermite_nodes(deg: int):
    """Probabilists' Gauss-Hermite nodes and weights normalized to the N(0, 1) density."""
    x, w = np.polynomial.hermite_e.hermegauss(deg)
    x.flags.writeable = False
    w = w / np.sqrt(2 * np.pi)
    w.flags.writeable = False
    return x, w


def _tanh(x):
    return np.tanh(x)


def _dtanh(x):
    return 1.0 - np.tanh(x) ** 2


def dual_fn(activation: str, *, tanh_deg: int = 200) -> Callable:
    """The numpy dual ``(q1, q2, q12) -> (k, kdot)`` of an activation name.

    ``"relu"`` and ``"erf"`` are closed forms, ``"linear"`` is exact, ``"tanh"`` is
    :func:`hermite_dual` with ``tanh_deg`` nodes per dimension.

    Args:
      activation: one of :data:`ACTIVATIONS`.
      tanh_deg: Gauss-Hermite nodes per dimension for ``"tanh"``.
    """
    _validate.choice("activation", activation, ACTIVATIONS)
    if activation == "relu":
        return relu_dual
    if activation == "erf":
        return erf_dual
    if activation == "linear":
        return _linear_dual
    deg = _validate.integer("tanh_deg", tanh_deg, 2)
    return lambda a, b, c: hermite_dual(_tanh, _dtanh, a, b, c, deg=deg)


def _resolve_dual(activation, dual):
    if dual is not None:
        if not callable(dual):
            raise ValueError("dual must be a callable (q1, q2, q12) -> (k, kdot) or None")
        return dual
    return dual_fn(activation)


# ----------------------------------------------------------------------------- FCN recursion
def _check_recursion_args(depth, activation, W_std, b_std, dual):
    """Validate the arguments shared by :func:`fcn_kernels` and :func:`cnn_kernels`."""
    depth = _validate.integer("depth", depth, 1)
    W_std = _validate.real("W_std", W_std, strict=True)
    b_std = _validate.real("b_std", b_std)
    if dual is None:
        _validate.choice("activation", activation, ACTIVATIONS)
    return depth, W_std, b_std, _resolve_dual(activation, dual)


def fcn_kernels(
    x1,
    x2=None,
    *,
    depth: int = 1,
    activation: str = "relu",
    W_std: float = 1.0,
    b_std: float = 0.0,
    dual: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""NNGP and NTK of ``nets.fcn(depth, ...)`` from the numpy recursion (float64).

    .. math:: \Sigma^1 = \sigma_w^2\, x\cdot x'/d + \sigma_b^2,\ \Theta^1 = \Sigma^1;\quad
              \Sigma^{l+1} = \sigma_w^2 \hat\phi(\Sigma^l) + \sigma_b^2,\
              \Theta^{l+1} = \Sigma^{l+1} + \sigma_w^2 \hat{\phi'}(\Sigma^l)\,\Theta^l.

    Args:
      x1: ``(N1, d)`` inputs; x2: ``(N2, d)`` or ``None``.
      depth: hidden layers (>= 1); the readout is the ``depth + 1``-th Dense layer.
      activation: one of :data:`ACTIVATIONS` (ignored when ``dual`` is given).
      W_std, b_std: :math:`\sigma_w > 0`, :math:`\sigma_b \ge 0`.
      dual: optional callable ``(q1, q2, q12) -> (k, kdot)`` replacing the built-in dual (e.g.
        the lambdified sympy duals of chapter 2).

    Returns:
      ``(nngp, ntk)``, each ``(N1, N2)`` float64.
    """
    depth, W_std, b_std, dual = _check_recursion_args(depth, activation, W_std, b_std, dual)
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"x1 and x2 must be (N, d) with the same d, got {x1.shape}, {x2.shape}")
    d = x1.shape[1]
    w2, b2 = W_std**2, b_std**2
    s12 = w2 * x1 @ x2.T / d + b2
    s1 = w2 * np.sum(x1 * x1, 1) / d + b2
    s2 = w2 * np.sum(x2 * x2, 1) / d + b2
    t12 = s12.copy()
    for _ in range(depth):
        k, kd = dual(s1[:, None], s2[None, :], s12)
        k1, _ = dual(s1, s1, s1)
        k2, _ = dual(s2, s2, s2)
        t12 = w2 * kd * t12
        s12 = w2 * k + b2
        t12 = t12 + s12
        s1, s2 = w2 * k1 + b2, w2 * k2 + b2
    return s12, t12


# ----------------------------------------------------------------------------- CNN recursion
def _patch_average(K, filter_shape, axes_pairs):
    """Average K over simultaneous shifts of paired spatial axes with zero (SAME) padding."""
    fh, fw = filter_shape
    out = np.zeros_like(K)
    (a1, a2), (b1, b2) = axes_pairs  # (H axis of x1, H axis of x2), (W axis x1, W axis x2)
    H, W = K.shape[a1], K.shape[b1]
    for dh in range(-(fh // 2), fh - fh // 2):
        for dw in range(-(fw // 2), fw - fw // 2):
            src = [slice(None)] * K.ndim
            dst = [slice(None)] * K.ndim
            for ax, size, dlt in ((a1, H, dh), (a2, H, dh), (b1, W, dw), (b2, W, dw)):
                if dlt >= 0:
                    src[ax], dst[ax] = slice(dlt, size), slice(0, size - dlt)
                else:
                    src[ax], dst[ax] = slice(0, size + dlt), slice(-dlt, size)
            out[tuple(dst)] += K[tuple(src)]
    return out / (fh * fw)


def cnn_kernels(
    x1,
    x2=None,
    *,
    depth: int = 1,
    activation: str = "relu",
    W_std: float = 1.0,
    b_std: float = 0.0,
    filter_shape: Sequence[int] = (3, 3),
    dual: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""NNGP and NTK of ``nets.cnn(depth, ..., padding="SAME", readout="gap")`` in numpy.

    Keeps the full pixel-pair covariance :math:`\Sigma(p, p')` of each pair of images,
    :math:`\Sigma^1 = \sigma_w^2\mathcal A[x x'^\top / C] + \sigma_b^2` and

    .. math:: \Sigma^{l+1} = \sigma_w^2\mathcal A[\hat\phi(\Sigma^l)] + \sigma_b^2,\quad
              \Theta^{l+1} = \Sigma^{l+1} + \sigma_w^2\mathcal A[\hat{\phi'}(\Sigma^l)\odot
              \Theta^l],

    where :math:`\mathcal A[K](p,p') = |F|^{-1}\sum_{\delta\in F} K(p+\delta, p'+\delta)`
    (zero outside the image), then global average pooling over :math:`(p, p')` and a Dense
    readout. Memory :math:`N_1 N_2 (HW)^2` floats: for small image sets only (a check).

    Args:
      x1: images ``(N1, H, W, C)``; x2: ``(N2, H, W, C)`` or ``None``.
      depth: Conv layers (>= 1).
      activation, W_std, b_std, dual: as in :func:`fcn_kernels`.
      filter_shape: ``(fh, fw)`` positive ints.

    Returns:
      ``(nngp, ntk)``, each ``(N1, N2)`` float64.
    """
    depth, W_std, b_std, dual = _check_recursion_args(depth, activation, W_std, b_std, dual)
    if (
        not isinstance(filter_shape, (tuple, list))
        or len(filter_shape) != 2
        or any(
            isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1
            for f in filter_shape
        )
    ):
        raise ValueError(f"filter_shape must be a pair of positive ints, got {filter_shape!r}")
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    if x1.ndim != 4 or x2.shape[1:] != x1.shape[1:]:
        raise ValueError(
            f"x1 and x2 must be (N, H, W, C) images of the same shape, got {x1.shape}, {x2.shape}"
        )
    C = x1.shape[-1]
    w2, b2 = W_std**2, b_std**2
    fs = tuple(int(f) for f in filter_shape)
    # cross: (N1, N2, H, H', W, W'); self variances: (N, H, W) from per-image (H, H', W, W')
    cross = np.einsum("ahwc,bgvc->abhgwv", x1, x2) / C
    S = w2 * _patch_average(cross, fs, ((2, 3), (4, 5))) + b2

    def self_var(x):
        full = np.einsum("ahwc,agvc->ahgwv", x, x) / C
        avg = w2 * _patch_average(full, fs, ((1, 2), (3, 4))) + b2
        return avg

    def diag(full):  # (N, H, H, W, W) -> (N, H, W)
        return np.einsum("ahhww->ahw", full)

    V1f, V2f = self_var(x1), self_var(x2)
    T = S.copy()
    for layer in range(depth):
        v1, v2 = diag(V1f), diag(V2f)
        k, kd = dual(v1[:, None, :, None, :, None], v2[None, :, None, :, None, :], S)
        T = w2 * kd * T
        S_act = w2 * k
        if layer == depth - 1:
            break
        S = w2 * _patch_average(k, fs, ((2, 3), (4, 5))) + b2
        T = _patch_average(T, fs, ((2, 3), (4, 5))) + S
        # self covariances of each image: only the diagonal is needed later, but the patch
        # average of the diagonal needs the diagonal only, so propagate full-per-image cheaply
        k1, _ = dual(v1[:, :, None, :, None], v1[:, None, :, None, :], V1f)
        k2, _ = dual(v2[:, :, None, :, None], v2[:, None, :, None, :], V2f)
        V1f = w2 * _patch_average(k1, fs, ((1, 2), (3, 4))) + b2
        V2f = w2 * _patch_average(k2, fs, ((1, 2), (3, 4))) + b2
    nngp = S_act.mean(axis=(2, 3, 4, 5)) + b2
    ntk = T.mean(axis=(2, 3, 4, 5)) + nngp
    return nngp, ntk


# ----------------------------------------------------------------------------- inputs, spectra
def angular_inputs(angles, dim: int = 2) -> np.ndarray:
    r"""Inputs :math:`x(\theta) = \sqrt d(\cos\theta, \sin\theta, 0, \dots)` with
    :math:`x\cdot x/d = 1` and :math:`\cos\angle(x(0), x(\theta)) = \cos\theta`.

    Args:
      angles: 1-d array of angles (radians).
      dim: input dimension >= 2.

    Returns:
      ``(len(angles), dim)`` float64.
    """
    dim = _validate.integer("dim", dim, 2)
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"angles must be 1-d, got shape {a.shape}")
    x = np.zeros((a.size, dim))
    x[:, 0], x[:, 1] = np.cos(a), np.sin(a)
    return x * np.sqrt(dim)


def condition_number(K) -> float:
    """Ratio of the largest to the smallest eigenvalue of a symmetric PSD matrix ``(N, N)``."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"K must be a square matrix, got shape {K.shape}")
    ev = np.linalg.eigvalsh((K + K.T) / 2)
    if ev[0] <= 0:
        return float("inf")
    return float(ev[-1] / ev[0])


# ----------------------------------------------------------------------------- order and chaos
_PHASE_ACTS = ("relu", "erf", "tanh")


def _unit_dual(activation, tanh_deg):
    _validate.choice("activation", activation, _PHASE_ACTS)
    return dual_fn(activation, tanh_deg=tanh_deg)


def _diag_dual(activation, q, tanh_deg):
    """(E[phi(u)^2], E[phi'(u)^2]) for u ~ N(0, q): closed forms, or a 1-d Gauss-Hermite rule
    of ``tanh_deg`` nodes for tanh."""
    _validate.choice("activation", activation, _PHASE_ACTS)
    if activation == "relu":  # E[relu(u)^2] = q/2 and E[step(u)^2] = 1/2 for every q >= 0
        return 0.5 * float(q), 0.5
    if activation != "tanh":
        k, kd = dual_fn(activation)(q, q, q)
        return float(k), float(kd)
    x, w = _hermite_nodes(_validate.integer("tanh_deg", tanh_deg, 2))
    u = np.sqrt(q) * x
    return float(w @ _tanh(u) ** 2), float(w @ _dtanh(u) ** 2)


def q_fixed_point(
    activation: str, W_var: float, b_var: float, *, tol: float = 1e-15, tanh_deg: int = 200
) -> float:
    r"""Fixed point :math:`q^*` of the length map :math:`q \mapsto \sigma_w^2\hat\phi(q, q, q)
    + \sigma_b^2` (Poole et al. 2016, arXiv:1606.05340).

    ReLU: the map is affine, :math:`q^* = \sigma_b^2 / (1 - \sigma_w^2/2)` for
    :math:`\sigma_w^2 < 2`. erf and tanh are bounded by 1, so
    :math:`g(q) = \sigma_w^2 \hat\phi(q,q,q) + \sigma_b^2 - q` has
    :math:`g(\sigma_b^2) > 0 \ge g(\sigma_w^2 + \sigma_b^2)` and Brent's method finds the
    root; with :math:`\sigma_b = 0`, :math:`q^* = 0` unless :math:`g > 0` just above 0, in
    which case the non-zero root is found on :math:`(10^{-12}\sigma_w^2, \sigma_w^2]`.

    Args:
      activation: ``"relu"``, ``"erf"`` or ``"tanh"``.
      W_var, b_var: :math:`\sigma_w^2 > 0`, :math:`\sigma_b^2 \ge 0`.
      tol: absolute tolerance of the root.
      tanh_deg: Gauss-Hermite nodes for tanh's 1-d integrals.

    Returns:
      :math:`q^*`; ``inf`` when the ReLU map diverges (:math:`\sigma_w^2 > 2`, or
      :math:`\sigma_w^2 = 2` with :math:`\sigma_b > 0`); for ReLU at :math:`\sigma_w^2 = 2,
      \sigma_b = 0` every :math:`q` is fixed and 1 is returned.
    """
    from scipy.optimize import brentq

    W_var = _validate.real("W_var", W_var, strict=True)
    b_var = _validate.real("b_var", b_var)
    _validate.choice("activation", activation, _PHASE_ACTS)
    if activation == "relu":  # the map is affine: q -> W_var q / 2 + b_var
        if W_var < 2:
            return b_var / (1 - W_var / 2)
        return float("inf") if b_var > 0 or W_var > 2 else 1.0
    g = lambda q: W_var * _diag_dual(activation, q, tanh_deg)[0] + b_var - q  # noqa: E731
    lo = b_var if b_var > 0 else 1e-12 * W_var
    if g(lo) <= 0:
        return 0.0
    return float(brentq(g, lo, W_var + b_var, xtol=tol, rtol=4 * np.finfo(float).eps))


def chi_1(activation: str, W_var: float, b_var: float, *, tanh_deg: int = 200) -> float:
    r""":math:`\chi_1 = \sigma_w^2\,\mathbb E[\phi'(\sqrt{q^*} z)^2]`, the slope of the
    correlation map at :math:`c = 1` (Schoenholz et al. 2017, arXiv:1611.01232, eq. 5).

    :math:`\chi_1 < 1`: ordered phase; :math:`\chi_1 > 1`: chaotic phase.

    Args:
      activation: one of :data:`ACTIVATIONS`.
      W_var: weight variance :math:`\sigma_w^2`.
      b_var: bias variance :math:`\sigma_b^2`.
      tanh_deg: Gauss-Hermite nodes per dimension for ``"tanh"``.
    """
    q = q_fixed_point(activation, W_var, b_var, tanh_deg=tanh_deg)
    if not math.isfinite(q):
        q = 1.0  # ReLU: chi_1 = W_var / 2 does not depend on q
    return float(W_var * _diag_dual(activation, q, tanh_deg)[1])


def critical_weight_variance(
    activation: str, b_var: float, *, bracket=(0.1, 20.0), tanh_deg: int = 200
) -> float:
    r"""The :math:`\sigma_w^2` where :math:`\chi_1 = 1` at a given :math:`\sigma_b^2`,
    by Brent's root finding (the order-to-chaos transition line).

    Args:
      activation: one of :data:`ACTIVATIONS`.
      b_var: bias variance :math:`\sigma_b^2`.
      bracket: the :math:`\sigma_w^2` interval searched.
      tanh_deg: Gauss-Hermite nodes per dimension for ``"tanh"``.

    Raises:
      ValueError: if ``chi_1 - 1`` does not change sign on ``bracket``.
    """
    from scipy.optimize import brentq

    b_var = _validate.real("b_var", b_var)
    f = lambda w: chi_1(activation, w, b_var, tanh_deg=tanh_deg) - 1.0  # noqa: E731
    lo, hi = bracket
    if f(lo) * f(hi) > 0:
        raise ValueError(
            f"bracket {bracket} does not contain the critical point for "
            f"activation={activation!r}, b_var={b_var}"
        )
    return float(brentq(f, lo, hi, xtol=1e-12, rtol=1e-12, maxiter=500))


def _corr_map(activation, W_var, b_var, q, tanh_deg):
    dual = _unit_dual(activation, tanh_deg)

    def step(c):
        k, kd = dual(q, q, c * q)
        return (W_var * k + b_var) / q, W_var * kd

    return step


def correlation_iterates(
    activation: str, W_var: float, b_var: float, c0: float, num_layers: int, *, tanh_deg: int = 200
) -> np.ndarray:
    r"""Correlations :math:`c^l` of two inputs at the length fixed point, :math:`l = 0..L`:
    :math:`c^{l+1} = (\sigma_w^2 \hat\phi(q^*, q^*, c^l q^*) + \sigma_b^2)/q^*`.

    Args:
      activation: one of :data:`ACTIVATIONS`.
      W_var: weight variance :math:`\sigma_w^2`.
      b_var: bias variance :math:`\sigma_b^2`.
      c0: the input correlation, in [-1, 1].
      num_layers: number of layers L.
      tanh_deg: Gauss-Hermite nodes per dimension for ``"tanh"``.

    Returns:
      ``(num_layers + 1,)`` array starting with ``c0``.
    """
    num_layers = _validate.integer("num_layers", num_layers, 1)
    c0 = _validate.real("c0", c0, minimum=-1.0)
    if c0 > 1:
        raise ValueError(f"c0 must be in [-1, 1], got {c0}")
    q = q_fixed_point(activation, W_var, b_var, tanh_deg=tanh_deg)
    if not (math.isfinite(q) and q > 0):
        raise ValueError(
            f"no finite positive length fixed point for {activation!r} at "
            f"W_var={W_var}, b_var={b_var} (q*={q})"
        )
    step = _corr_map(activation, W_var, b_var, q, tanh_deg)
    cs = [c0]
    for _ in range(num_layers):
        cs.append(float(step(cs[-1])[0]))
    return np.array(cs)


def correlation_fixed_point(
    activation: str, W_var: float, b_var: float, *, tanh_deg: int = 200
) -> float:
    r"""The stable fixed point :math:`c^*` of the correlation map (1 in the ordered phase).

    In the chaotic phase :math:`c = 1` is unstable and :math:`c^* < 1` is found by Brent's
    method on :math:`f(c) - c` over :math:`[0, 1 - 10^{-9}]`.

    Args:
      activation: one of :data:`ACTIVATIONS`.
      W_var: weight variance :math:`\sigma_w^2`.
      b_var: bias variance :math:`\sigma_b^2`.
      tanh_deg: Gauss-Hermite nodes per dimension for ``"tanh"``.

    Raises:
      ValueError: in the chaotic phase without a finite positive :math:`q^*` (ReLU with
        :math:`\sigma_w^2 > 2`).
    """
    from scipy.optimize import brentq

    if chi_1(activation, W_var, b_var, tanh_deg=tanh_deg) <= 1.0:
        return 1.0
    q = q_fixed_point(activation, W_var, b_var, tanh_deg=tanh_deg)
    if not (math.isfinite(q) and q > 0):
        raise ValueError(
            f"no finite positive length fixed point for {activation!r} at "
            f"W_var={W_var}, b_var={b_var} (q*={q})"
        )
    step = _corr_map(activation, W_var, b_var, q, tanh_deg)
    g = lambda c: float(step(c)[0]) - c  # noqa: E731
    lo, hi = (0.0 if b_var > 0 else -1.0 + 1e-9), 1.0 - 1e-9
    if g(lo) * g(hi) > 0:  # pragma: no cover - odd activations with b_var = 0 have c* = 0
        return 0.0
    return float(brentq(g, lo, hi, xtol=1e-14))


def depth_scale(activation: str, W_var: float, b_var: float, *, tanh_deg: int = 200) -> float:
    r"""Correlation depth scale :math:`\xi_c = -1/\log\chi_c`, :math:`\chi_c = \sigma_w^2\,
    \mathbb E[\phi'(u_1)\phi'(u_2)]` at the fixed point :math:`(q^*, c^*)` (Schoenholz et al.
    2017, arXiv:1611.01232, eq. 9); ``inf`` on the critical line.

    Args:
      activation: one of :data:`ACTIVATIONS`.
      W_var: weight variance :math:`\sigma_w^2`.
      b_var: bias variance :math:`\sigma_b^2`.
      tanh_deg: Gauss-Hermite nodes per dimension for ``"tanh"``.
    """
    c = correlation_fixed_point(activation, W_var, b_var, tanh_deg=tanh_deg)
    q = q_fixed_point(activation, W_var, b_var, tanh_deg=tanh_deg)
    if not math.isfinite(q):
        q = 1.0
    if c == 1.0:
        chi_c = W_var * _diag_dual(activation, q, tanh_deg)[1]
    else:
        chi_c = float(_corr_map(activation, W_var, b_var, q, tanh_deg)(c)[1])
    if chi_c >= 1.0:
        return float("inf")
    return -1.0 / math.log(chi_c)


# ----------------------------------------------------------------------------- regression
def kernel_regression(
    kernel_fn: Callable, x_train, y_train, x_test, *, get: str = "ntk", diag_reg: float = 0.0
) -> np.ndarray:
    r"""Infinite-time mean prediction of kernel (gradient-descent MSE) regression.

    Uses ``neural_tangents.predict.gradient_descent_mse_ensemble`` at :math:`t = \infty`:
    :math:`f(x_*) = K_{*,\text{train}}(K_{\text{train}} + \lambda\,\mathrm{tr}(K)/N\, I)^{-1}
    y` for ``get="ntk"`` (the trained infinite network) or ``"nngp"`` (the GP posterior
    mean), with :math:`\lambda` = ``diag_reg`` (neural-tangents' relative scaling).

    Args:
      kernel_fn: an analytic neural-tangents ``kernel_fn``.
      x_train: ``(N, ...)``; y_train: ``(N, k)`` targets; x_test: ``(M, ...)``.
      get: ``"ntk"`` or ``"nngp"``.
      diag_reg: relative ridge :math:`\lambda \ge 0`.

    Returns:
      ``(M, k)`` predictions.
    """
    import neural_tangents as nt

    _validate.choice("get", get, _GETS)
    diag_reg = _validate.real("diag_reg", diag_reg)
    y_train = np.asarray(y_train)
    if y_train.ndim != 2 or y_train.shape[0] != np.shape(x_train)[0]:
        raise ValueError(
            f"y_train must be (N, k) with N = len(x_train) = "
            f"{np.shape(x_train)[0]}, got {y_train.shape}"
        )
    predict_fn = nt.predict.gradient_descent_mse_ensemble(
        kernel_fn, x_train, y_train, diag_reg=diag_reg
    )
    return np.asarray(predict_fn(x_test=x_test, get=get, compute_cov=False))
