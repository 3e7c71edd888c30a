"""Random features and sketches for the NTK of deep ReLU networks.

The exact NTK of a fully-connected network costs :math:`O(N^2)` memory and :math:`O(N^3)` time
for kernel regression on :math:`N` points. A feature map :math:`\\phi: \\mathbb{R}^d \\to
\\mathbb{R}^m` with :math:`\\phi(x)^\\top \\phi(y) \\approx \\Theta(x, y)` replaces that by
ridge regression in feature space, :math:`O(N m^2)` time and :math:`O(N m + m^2)` memory.
This module implements three such maps, in JAX, jit-compiled, batched over inputs and
deterministic given a key:

* ``"random_features"``: NTK random features (Han et al. 2021, arXiv:2104.01351): arc-cosine
  random features of order 1 and 0 for every layer, combined layer by layer with a
  TensorSketch (Pham & Pagh 2013) of the tensor product.
* ``"orthogonal_features"``: the same, with every Gaussian projection drawn as stacked
  Haar-orthogonal blocks with chi-distributed row norms (orthogonal random features, Yu et al.
  2016, arXiv:1610.09072), so each row is still marginally Gaussian.
* ``"sketch"``: the NTK sketch (Zandieh et al. 2021, arXiv:2106.07880): the arc-cosine
  functions are replaced by polynomials with nonnegative coefficients, whose feature maps are
  sketched with TensorSRHT (Ahle et al. 2020, arXiv:1909.01410) and reduced with SRHTs. The
  tensor powers are built by a sequential chain of TensorSRHTs by default, or by the paper's
  PolySketch tree (``powers="tree"``); at degree 8 the two are equally accurate on the NTK
  (see :func:`ntk_sketch`).

**Which kernel.** Every map targets the NTK that neural-tangents' analytic ``kernel_fn(x, y,
"ntk")`` returns for ``stax.serial(*[Dense(w, W_std=sqrt(2), b_std=0), Relu()] * depth,
Dense(out, W_std=sqrt(2), b_std=0))`` in the default NTK parameterization, i.e. ``depth``
hidden ReLU layers, weight variance 2 (the He/critical choice, which keeps the diagonal
constant through depth) and no biases. For it the kernel factorizes into norms and a function
of the cosine :math:`t = \\hat x^\\top \\hat y` of the unit-norm inputs:

.. math::

   \\Theta(x, y) &= \\frac{2\\|x\\|\\|y\\|}{d}\\,\\Theta_L(t),\\qquad
   \\Sigma_0 = \\Theta_0 = t, \\\\ \\Sigma_h &= \\kappa_1(\\Sigma_{h-1}),\\qquad
   \\Theta_h = \\Sigma_h + \\Theta_{h-1}\\,\\kappa_0(\\Sigma_{h-1}),

with the arc-cosine functions :math:`\\kappa_0(t) = 1 - \\arccos(t)/\\pi` and
:math:`\\kappa_1(t) = (\\sqrt{1-t^2} + (\\pi - \\arccos t)\\,t)/\\pi` (Cho & Saul 2009), see
:func:`relu_ntk`. The feature maps work on unit-norm inputs and scale back by
:math:`\\sqrt{2/d}\\,\\|x\\|`. Other ``W_std`` only rescale the kernel by
:math:`(W_{std}^2/2)^{depth+1}`; biases break the factorization and are not supported.

Ridge regression in feature space (:func:`ridge_select`; streamed from a map without holding
the features, :func:`ridge_select_streaming` with :func:`normal_equations` and
:func:`predict_features`) and with an exact kernel (:func:`kernel_ridge_select`) choose the
regularization on a validation split; :func:`measure` records wall time, CPU time and peak
memory of a call.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntklit import _validate

__all__ = [
    "METHODS",
    "SKETCH_POWERS",
    "FeatureMap",
    "feature_map",
    "ntk_random_features",
    "ntk_sketch",
    "kappa0",
    "kappa1",
    "relu_ntk",
    "poly_relu_ntk",
    "arccos_poly_coefficients",
    "relative_frobenius_error",
    "ridge_select",
    "kernel_ridge_select",
    "RidgeFit",
    "normal_equations",
    "ridge_select_streaming",
    "predict_features",
    "BATCH_ELEMENTS",
    "measure",
    "Measurement",
]

#: The feature-map methods of :func:`feature_map`.
METHODS: tuple[str, ...] = ("random_features", "orthogonal_features", "sketch")

#: Entries of the widest intermediate array of one feature-map batch (see
#: :meth:`FeatureMap.batch_rows`): 2^25 float32 entries are 128 MiB.
BATCH_ELEMENTS = 2**25

_MAX_DEPTH = 64
_MAX_DEGREE = 32


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _check_inputs(x: Any, in_dim: int | None = None, name: str = "x") -> jnp.ndarray:
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (N, d) of flattened inputs, got shape {x.shape}"
        )
    if in_dim is not None and x.shape[1] != in_dim:
        raise ValueError(
            f"{name} must have {in_dim} columns (the map's in_dim), got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


# --------------------------------------------------------------------------------------------
# exact kernels
# --------------------------------------------------------------------------------------------


def kappa0(t: jnp.ndarray) -> jnp.ndarray:
    """Arc-cosine function of order 0, :math:`\\kappa_0(t) = 1 - \\arccos(t)/\\pi`.

    It is :math:`2\\,\\mathbb{E}[\\mathrm{step}(u)\\mathrm{step}(v)]` for unit-variance Gaussians
    with correlation ``t`` (Cho & Saul 2009).

    Args:
      t: cosines, any shape; clipped to [-1, 1].
    """
    t = jnp.clip(t, -1.0, 1.0)
    return 1.0 - jnp.arccos(t) / jnp.pi


def kappa1(t: jnp.ndarray) -> jnp.ndarray:
    """Arc-cosine function of order 1.

    :math:`\\kappa_1(t) = (\\sqrt{1-t^2} + (\\pi - \\arccos t)\\,t)/\\pi
    = 2\\,\\mathbb{E}[\\mathrm{relu}(u)\\mathrm{relu}(v)]`, with :math:`\\kappa_1(1) = 1`.

    Args:
      t: cosines, any shape; clipped to [-1, 1].
    """
    t = jnp.clip(t, -1.0, 1.0)
    return (jnp.sqrt(jnp.maximum(1.0 - t * t, 0.0)) + (jnp.pi - jnp.arccos(t)) * t) / jnp.pi


def _ntk_of_cosine(t: jnp.ndarray, depth: int, k0: Callable, k1: Callable) -> jnp.ndarray:
    sigma, theta = t, t
    for _ in range(depth):
        sigma, theta = k1(sigma), k1(sigma) + theta * k0(sigma)
    return theta


def _norms_and_cosines(x1: jnp.ndarray, x2: jnp.ndarray):
    n1 = jnp.linalg.norm(x1, axis=1)
    n2 = jnp.linalg.norm(x2, axis=1)
    g = x1 @ x2.T
    denom = jnp.outer(n1, n2)
    t = jnp.where(denom > 0, g / jnp.where(denom > 0, denom, 1.0), 0.0)
    return n1, n2, jnp.clip(t, -1.0, 1.0)


def relu_ntk(x1: Any, x2: Any | None = None, *, depth: int) -> jnp.ndarray:
    """Closed-form NTK of a ReLU FCN with ``W_std = sqrt(2)``, ``b_std = 0`` (NTK param.).

    An independent implementation of what neural-tangents' ``kernel_fn(x1, x2, "ntk")``
    returns for ``depth`` hidden ReLU layers (see the module docstring):

    .. math:: \\Theta(x, y) = \\tfrac{2\\|x\\|\\|y\\|}{d}\\,\\Theta_L(\\hat x^\\top \\hat y).

    Args:
      x1: inputs, shape ``(N1, d)``.
      x2: inputs, shape ``(N2, d)``; ``None`` means ``x1``.
      depth: number of hidden ReLU layers, >= 1.

    Returns:
      The kernel matrix, shape ``(N1, N2)``.

    Raises:
      ValueError: for a bad ``depth`` or input shapes.
    """
    depth = _validate.integer("depth", depth, 1, _MAX_DEPTH)
    x1 = _check_inputs(x1, name="x1")
    x2 = x1 if x2 is None else _check_inputs(x2, x1.shape[1], name="x2")
    return _relu_ntk_jit(x1, x2, depth)


@functools.partial(jax.jit, static_argnums=2)
def _relu_ntk_jit(x1, x2, depth):
    n1, n2, t = _norms_and_cosines(x1, x2)
    return (2.0 / x1.shape[1]) * jnp.outer(n1, n2) * _ntk_of_cosine(t, depth, kappa0, kappa1)


@functools.lru_cache(maxsize=None)
def arccos_poly_coefficients(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Nonnegative polynomial approximations of :math:`\\kappa_0` and :math:`\\kappa_1`.

    The NTK sketch (Zandieh et al. 2021, arXiv:2106.07880) needs polynomials
    :math:`p(t) = \\sum_j c_j t^j` with :math:`c_j \\ge 0` (so that each term is a sketchable
    polynomial kernel). Both arc-cosine functions have Taylor series with nonnegative
    coefficients, but they converge slowly at :math:`t = \\pm 1`; like the paper we fit instead:
    nonnegative least squares on a grid of [-1, 1] that is denser near the endpoints, with the
    value at :math:`t = 1` (the kernel's diagonal) weighted heavily.

    Args:
      degree: polynomial degree, in [1, 32].

    Returns:
      ``(c0, c1)``, each of shape ``(degree + 1,)``, coefficients of :math:`t^0, \\ldots,
      t^{degree}` for :math:`\\kappa_0` and :math:`\\kappa_1`, all >= 0.
    """
    from scipy.optimize import nnls

    degree = _validate.integer("degree", degree, 1, _MAX_DEGREE)
    grid = np.cos(np.linspace(np.pi, 0.0, 801))  # Chebyshev-like, dense near +-1
    powers = grid[:, None] ** np.arange(degree + 1)[None, :]
    weights = np.ones_like(grid)
    weights[-1] = 100.0  # t = 1: keep the diagonal accurate
    t = np.clip(grid, -1.0, 1.0)
    targets = (
        1.0 - np.arccos(t) / np.pi,  # kappa0 in float64
        (np.sqrt(np.maximum(1.0 - t * t, 0.0)) + (np.pi - np.arccos(t)) * t) / np.pi,
    )
    out = []
    for target in targets:
        coef, _ = nnls(powers * weights[:, None], target * weights)
        out.append(coef)
    return out[0], out[1]


def poly_relu_ntk(x1: Any, x2: Any | None = None, *, depth: int, degree: int) -> jnp.ndarray:
    """The NTK with :math:`\\kappa_0, \\kappa_1` replaced by their polynomial approximations.

    This is the kernel whose expectation the NTK sketch estimates without bias at ``depth=1``
    (and up to an :math:`O(1/m)` bias from normalization at larger depth); its distance to
    :func:`relu_ntk` is the sketch's approximation floor.

    Args:
      x1: inputs, shape ``(N1, d)``.
      x2: inputs, shape ``(N2, d)``; ``None`` means ``x1``.
      depth: number of hidden ReLU layers, >= 1.
      degree: degree of the polynomials (:func:`arccos_poly_coefficients`).

    Returns:
      The kernel matrix, shape ``(N1, N2)``.
    """
    depth = _validate.integer("depth", depth, 1, _MAX_DEPTH)
    c0, c1 = arccos_poly_coefficients(degree)
    x1 = _check_inputs(x1, name="x1")
    x2 = x1 if x2 is None else _check_inputs(x2, x1.shape[1], name="x2")
    n1, n2, t = _norms_and_cosines(x1, x2)
    p0 = lambda s: jnp.polyval(jnp.asarray(c0[::-1], t.dtype), s)  # noqa: E731
    p1 = lambda s: jnp.polyval(jnp.asarray(c1[::-1], t.dtype), s)  # noqa: E731
    return (2.0 / x1.shape[1]) * jnp.outer(n1, n2) * _ntk_of_cosine(t, depth, p0, p1)


def relative_frobenius_error(k_hat: Any, k: Any) -> float:
    """:math:`\\|\\hat K - K\\|_F / \\|K\\|_F` (computed in float64 numpy).

    Args:
      k_hat: approximation, shape ``(N1, N2)``.
      k: reference, same shape.
    """
    k_hat = np.asarray(k_hat, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if k_hat.shape != k.shape:
        raise ValueError(f"k_hat and k must have the same shape, got {k_hat.shape} and {k.shape}")
    return float(np.linalg.norm(k_hat - k) / np.linalg.norm(k))


# --------------------------------------------------------------------------------------------
# sketching primitives
# --------------------------------------------------------------------------------------------


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


#: Largest factor of the Kronecker-factored Walsh-Hadamard transform (see :func:`_fwht`).
_HADAMARD_FACTOR = 128


@functools.lru_cache(maxsize=None)
def _hadamard(n: int) -> np.ndarray:
    """The unnormalized Sylvester-Hadamard matrix of order ``n`` (a power of 2), float32."""
    h = np.ones((1, 1), np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _fwht(a: jnp.ndarray) -> jnp.ndarray:
    """Unnormalized Walsh-Hadamard transform along the last axis (length a power of 2).

    Computed as a Kronecker product, :math:`H_{2^k} = H_{2^{k_1}} \\otimes \\cdots \\otimes
    H_{2^{k_r}}` with factors of order at most ``_HADAMARD_FACTOR``: the last axis is reshaped
    to ``(2^{k_1}, ..., 2^{k_r})`` and each small dense factor is applied by a matrix product,
    :math:`O(2^k \\sum_i 2^{k_i})` flops that run as BLAS-like kernels. On the 2-core CPU this
    was 2-4 times faster than the :math:`O(2^k k)` butterfly of reshapes and stacks (which moves
    the whole array through memory once per level) for the lengths the feature maps use.
    """
    dim = a.shape[-1]
    lead = a.shape[:-1]
    k = dim.bit_length() - 1
    if dim != 1 << k:
        raise ValueError(f"_fwht needs a power-of-2 length, got {dim}")
    if dim == 1:
        return a
    kmax = _HADAMARD_FACTOR.bit_length() - 1
    r = -(-k // kmax)  # number of factors, as equal as possible
    ks = [k // r + (1 if i < k % r else 0) for i in range(r)]
    a = a.reshape(lead + tuple(1 << ki for ki in ks))
    nl = len(lead)
    for i, ki in enumerate(ks):
        h = jnp.asarray(_hadamard(1 << ki), a.dtype)
        # H is symmetric: contracting axis nl + i of a with H's rows applies H along that axis
        a = jnp.moveaxis(jnp.tensordot(a, h, axes=[[nl + i], [0]]), -1, nl + i)
    return a.reshape(lead + (dim,))


def _pad(a: jnp.ndarray, dim: int) -> jnp.ndarray:
    return (
        a if a.shape[-1] == dim else jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, dim - a.shape[-1])])
    )


def _rademacher(key, n):
    return jax.random.rademacher(key, (n,), dtype=jnp.float32)


def _srht_params(key, in_dim: int, out_dim: int) -> dict:
    """SRHT :math:`a \\mapsto m^{-1/2} (H D a)_{i_1..i_m}`, indices uniform with replacement.

    With the unnormalized Hadamard matrix, :math:`\\mathbb{E}_i[(HDa)_i (HDb)_i] = a^\\top b`
    exactly for any signs, so the sketch is unbiased for the inner product.
    """
    dim = _next_pow2(in_dim)
    k1, k2 = jax.random.split(key)
    return {"signs": _rademacher(k1, dim), "idx": jax.random.randint(k2, (out_dim,), 0, dim)}


def _srht(p: dict, a: jnp.ndarray) -> jnp.ndarray:
    dim = p["signs"].shape[0]
    h = _fwht(_pad(a, dim) * p["signs"])
    return h[..., p["idx"]] / jnp.sqrt(p["idx"].shape[0]).astype(a.dtype)


def _tensor_srht_params(key, dim1: int, dim2: int, out_dim: int) -> dict:
    """TensorSRHT (Ahle et al. 2020, arXiv:1909.01410) of :math:`a \\otimes b`."""
    k1, k2 = jax.random.split(key)
    return {"a": _srht_params(k1, dim1, out_dim), "b": _srht_params(k2, dim2, out_dim)}


def _tensor_srht(p: dict, a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Unbiased:
    :math:`\\mathbb{E}[S(a\\otimes b)^\\top S(a'\\otimes b')] = (a^\\top a')(b^\\top b')`."""
    m = p["a"]["idx"].shape[0]
    return _srht(p["a"], a) * _srht(p["b"], b) * jnp.sqrt(m).astype(a.dtype)


def _count_sketch_params(key, in_dim: int, out_dim: int) -> dict:
    k1, k2 = jax.random.split(key)
    return {"h": jax.random.randint(k1, (in_dim,), 0, out_dim), "s": _rademacher(k2, in_dim)}


def _count_sketch(p: dict, a: jnp.ndarray, out_dim: int) -> jnp.ndarray:
    """Count sketch :math:`(Ca)_k = \\sum_{i: h(i) = k} s_i a_i` along the last axis.

    A segment sum over the hash buckets (no dense ``in_dim x out_dim`` matrix); on the 2-core
    CPU it was ~3x faster than a scatter-add into the output (``.at[..., h].add``).
    """
    moved = jnp.moveaxis(a * p["s"], -1, 0)
    return jnp.moveaxis(jax.ops.segment_sum(moved, p["h"], num_segments=out_dim), 0, -1)


def _tensor_sketch(pa: dict, pb: dict, a: jnp.ndarray, b: jnp.ndarray, out_dim: int):
    """TensorSketch (Pham & Pagh 2013) of :math:`a \\otimes b` via two count sketches and FFT."""
    fa = jnp.fft.rfft(_count_sketch(pa, a, out_dim), axis=-1)
    fb = jnp.fft.rfft(_count_sketch(pb, b, out_dim), axis=-1)
    return jnp.fft.irfft(fa * fb, n=out_dim, axis=-1).astype(a.dtype)


def _gaussian_rows(key, rows: int, cols: int, orthogonal: bool, block_size: int) -> jnp.ndarray:
    """``rows x cols`` matrix whose rows are marginally N(0, I).

    ``orthogonal=True`` (Yu et al. 2016, arXiv:1610.09072) stacks independent blocks of
    :math:`b = \\min(\\mathrm{cols}, \\mathrm{block\\_size})` exactly orthonormal rows, each block
    Haar-distributed (QR of a ``cols x b`` Gaussian with sign correction, Mezzadri 2007), and
    rescales every row by an independent chi(cols) norm, so each row is still exactly
    Gaussian while rows within a block are orthogonal. ``block_size`` caps the
    :math:`O(\\mathrm{cols}\\, b^2)` cost of the QR per block.
    """
    if not orthogonal:
        return jax.random.normal(key, (rows, cols), jnp.float32)
    b = min(cols, block_size)
    n_blocks = -(-rows // b)
    kq, kn = jax.random.split(key)
    q, r = jnp.linalg.qr(jax.random.normal(kq, (n_blocks, cols, b), jnp.float32))
    q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    blocks = jnp.swapaxes(q, -1, -2).reshape(n_blocks * b, cols)[:rows]
    norms = jnp.linalg.norm(jax.random.normal(kn, (rows, cols), jnp.float32), axis=1)
    return blocks * norms[:, None]


# --------------------------------------------------------------------------------------------
# feature maps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureMap:
    """A drawn NTK feature map; call it on inputs to get features.

    Attributes:
      method: one of :data:`METHODS`.
      in_dim: input dimension ``d``.
      depth: number of hidden ReLU layers ``L``.
      dim: output feature dimension ``m``.
      degree: polynomial degree (``"sketch"`` only, else ``None``).
      params: the random parameters (a pytree of arrays).
      powers: how the sketch builds tensor powers, ``"chain"`` or ``"tree"`` (``"sketch"``
        only, else ``None``).

    Calling ``fmap(x, batch_size=...)`` on ``x`` of shape ``(N, in_dim)`` returns features of
    shape ``(N, dim)`` with :math:`\\phi(x)^\\top\\phi(y) \\approx` :func:`relu_ntk`, computed
    by jit-compiled functions in batches of ``batch_size`` rows (the last batch is padded, so
    there is one compilation per map and batch size; fewer rows are padded to the next power of
    two, so small inputs of different sizes share compilations too). The default
    ``batch_size=None`` is :meth:`batch_rows`: the largest power of two whose widest
    intermediate array has at most :data:`BATCH_ELEMENTS` entries, so memory stays bounded at
    large ``dim``.
    """

    method: str
    in_dim: int
    depth: int
    dim: int
    degree: int | None
    params: Any = field(repr=False)
    _apply: Callable = field(repr=False, compare=False)
    powers: str | None = None

    def batch_rows(self) -> int:
        """Default rows per batch: a power of two in [1, 2048], at most
        :data:`BATCH_ELEMENTS` / (the widest intermediate per row: ``degree * dim`` for the
        sketch's concatenated powers, ``2 * dim`` for the random features)."""
        width = self.dim * (self.degree if self.method == "sketch" else 2)
        rows = max(1, BATCH_ELEMENTS // max(width, 1))
        return min(2048, 1 << (rows.bit_length() - 1))

    def _batch(self, batch_size: int | None) -> int:
        if batch_size is None:
            return self.batch_rows()
        return _validate.integer("batch_size", batch_size, 1)

    def __call__(self, x: Any, batch_size: int | None = None) -> jnp.ndarray:
        x = _check_inputs(x, self.in_dim)
        batch_size = self._batch(batch_size)
        n = x.shape[0]
        if n <= batch_size:  # pad to a power of two: one compilation serves many sizes
            rows = _batch_rows(n, batch_size)
            return self._apply(self.params, _pad(x.T, rows).T)[:n]
        outs = []
        for start in range(0, n, batch_size):
            chunk = x[start : start + batch_size]
            rows = chunk.shape[0]
            if rows < batch_size:
                chunk = _pad(chunk.T, batch_size).T
            outs.append(self._apply(self.params, chunk)[:rows])
        return jnp.concatenate(outs, axis=0)

    def compile(self, n: int, batch_size: int | None = None, dtype: Any = jnp.float32) -> None:
        """Compile (and run once, on zeros) the program that a call on ``n`` rows of ``dtype``
        uses, so that a timed call measures the computation only; costs one batch, not ``n``
        rows.

        Args:
          n: number of input rows of the call to prepare, >= 1.
          batch_size: the ``batch_size`` of that call (``None``: :meth:`batch_rows`).
          dtype: the floating dtype of its inputs.
        """
        n = _validate.integer("n", n, 1)
        batch_size = self._batch(batch_size)
        x = jnp.zeros((_batch_rows(n, batch_size), self.in_dim), dtype)
        jax.block_until_ready(self._apply(self.params, x))


def _batch_rows(n: int, batch_size: int) -> int:
    """Rows of the compiled batch for a call on n rows: batch_size, or for n <= batch_size the
    next power of two (so one compilation serves many small sizes)."""
    return min(batch_size, _next_pow2(max(n, 1)))


def _split_dim(dim: int) -> tuple[int, int]:
    """Feature dimension split: half for the NNGP part, half for the sketched product."""
    m1 = dim // 2
    return m1, dim - m1


def _unit(x):
    n = jnp.linalg.norm(x, axis=1, keepdims=True)
    return x / jnp.where(n > 0, n, 1.0), n


def ntk_random_features(
    key: jax.Array,
    in_dim: int,
    depth: int,
    dim: int,
    *,
    orthogonal: bool = False,
    block_size: int = 1024,
) -> FeatureMap:
    """NTK random features (Han et al. 2021, arXiv:2104.01351).

    With :math:`m_1 = \\lfloor m/2 \\rfloor` and :math:`m_s = m - m_1`, for layers
    :math:`h = 1..L`, starting from :math:`\\phi_0 = \\psi_0 = \\hat x`:

    .. math::

       \\phi_h &= \\sqrt{2/m_1}\\,\\mathrm{relu}(W_h \\phi_{h-1}),\\qquad
       \\dot\\phi_h = \\sqrt{2/m_1}\\,\\mathrm{step}(W_h \\phi_{h-1}), \\\\
       \\psi_h &= [\\phi_h,\\ \\mathrm{TS}(\\psi_{h-1} \\otimes \\dot\\phi_h)],

    with a Gaussian (or orthogonal, Yu et al. 2016) :math:`W_h` of :math:`m_1` rows and a
    TensorSketch TS of dimension :math:`m_s`. One projection serves both orders (the order-0
    features are the derivative of the order-1 ones, :math:`\\mathrm{relu}' = \\mathrm{step}`:
    they are the gradient features of a random ReLU network); each order alone is unbiased,
    and this halves the cost. Then :math:`\\phi_h^\\top\\phi_h' \\approx
    \\Sigma_h`, :math:`\\dot\\phi_h^\\top\\dot\\phi_h' \\approx \\kappa_0(\\Sigma_{h-1})` and
    :math:`\\psi_L^\\top \\psi_L' \\approx \\Theta_L`; the output is
    :math:`\\sqrt{2/d}\\,\\|x\\|\\,\\psi_L(\\hat x)`. At ``depth=1`` the estimate is exactly
    unbiased; deeper, the random norms of :math:`\\phi_{h-1}` add an :math:`O(1/m)` bias.

    Args:
      key: a JAX PRNG key; the map is a deterministic function of it.
      in_dim: input dimension ``d`` >= 1.
      depth: number of hidden ReLU layers ``L`` in [1, 64].
      dim: output dimension ``m`` >= 4.
      orthogonal: draw the projections from orthogonal blocks (``"orthogonal_features"``).
      block_size: largest orthogonal block (``orthogonal=True`` only), >= 1.

    Returns:
      A :class:`FeatureMap`.

    Raises:
      ValueError: for invalid ``in_dim``, ``depth`` or ``dim``.
    """
    key = _validate.prng_key(key)
    in_dim = _validate.integer("in_dim", in_dim, 1)
    depth = _validate.integer("depth", depth, 1, _MAX_DEPTH)
    dim = _validate.integer("dim", dim, 4)
    block_size = _validate.integer("block_size", block_size, 1)
    m1, ms = _split_dim(dim)
    layers = []
    prev_phi, prev_psi = in_dim, in_dim
    for lkey in jax.random.split(key, depth):
        kw, ka, kb = jax.random.split(lkey, 3)
        layers.append(
            {
                "w": _gaussian_rows(kw, m1, prev_phi, orthogonal, block_size),
                "cs_psi": _count_sketch_params(ka, prev_psi, ms),
                "cs_dot": _count_sketch_params(kb, m1, ms),
            }
        )
        prev_phi, prev_psi = m1, dim
    apply = functools.partial(_rf_apply, m1=m1, ms=ms)
    method = "orthogonal_features" if orthogonal else "random_features"
    return FeatureMap(method, in_dim, depth, dim, None, layers, apply)


@functools.partial(jax.jit, static_argnames=("m1", "ms"))
def _rf_apply(layers, x, *, m1, ms):
    u, norms = _unit(x)
    phi, psi = u, u
    c = jnp.sqrt(2.0 / m1).astype(x.dtype)
    for p in layers:
        z = phi @ p["w"].T.astype(x.dtype)
        dot = c * (z > 0).astype(x.dtype)
        phi = c * jax.nn.relu(z)
        psi = jnp.concatenate(
            [phi, _tensor_sketch(p["cs_psi"], p["cs_dot"], psi, dot, ms)], axis=-1
        )
    return jnp.sqrt(2.0 / x.shape[1]).astype(x.dtype) * norms * psi


def _chain_params(key, in_dim: int, out_dim: int, degree: int) -> list:
    """TensorSRHTs of the chain :math:`z_j = \\mathrm{TSRHT}(z_{j-1} \\otimes z_1)`."""
    params, zdim = [], in_dim
    for k in jax.random.split(key, degree)[1:]:
        params.append(_tensor_srht_params(k, zdim, in_dim, out_dim))
        zdim = out_dim
    return params


def _chain_powers(params: list, x: jnp.ndarray) -> list:
    zs = [x]
    for p in params:
        zs.append(_tensor_srht(p, zs[-1], x))
    return zs


def _tree_params(key, in_dim: int, out_dim: int, degree: int) -> list:
    """TensorSRHTs of a PolySketch tree with :math:`2^k \\ge` ``degree`` leaves, by level."""
    leaves = _next_pow2(degree)
    levels, width, nodes = [], in_dim, leaves // 2
    for lkey in jax.random.split(key, leaves.bit_length() - 1):
        levels.append(
            [_tensor_srht_params(k, width, width, out_dim) for k in jax.random.split(lkey, nodes)]
        )
        width, nodes = out_dim, nodes // 2
    return levels


def _tree_powers(levels: list, x: jnp.ndarray, degree: int) -> list:
    """PolySketch of all powers :math:`x^{\\otimes j}`, j = 1..degree (Ahle et al. 2020).

    Power j feeds x to the first j leaves and the unit vector :math:`e_1` to the others
    (:math:`\\langle x^{\\otimes j} \\otimes e_1^{\\otimes (p-j)}, y^{\\otimes j} \\otimes
    e_1^{\\otimes (p-j)}\\rangle = \\langle x, y\\rangle^j`). A subtree of :math:`e_1` leaves
    only is replaced by the exact unit vector (its inner product is exactly 1), and a subtree is
    computed once for every number of x leaves it holds, so subtrees are shared between powers.
    """
    memo: dict = {}
    unit = jnp.ones((1, 1), x.dtype)  # e_1; _srht pads it to the sketch's width

    def node(level: int, i: int, r: int):  # r = number of x leaves under node (level, i)
        if r == 0:
            return unit
        if level == 0:
            return x
        if (level, i, r) not in memo:
            half = 1 << (level - 1)
            left = node(level - 1, 2 * i, min(r, half))
            right = node(level - 1, 2 * i + 1, max(r - half, 0))
            memo[level, i, r] = _tensor_srht(levels[level - 1][i], left, right)
        return memo[level, i, r]

    return [x] + [node(len(levels), 0, j) for j in range(2, degree + 1)]


#: How :func:`ntk_sketch` sketches the tensor powers: ``"chain"`` or ``"tree"`` (PolySketch).
SKETCH_POWERS: tuple[str, ...] = ("chain", "tree")


def ntk_sketch(
    key: jax.Array, in_dim: int, depth: int, dim: int, *, degree: int = 8, powers: str = "chain"
) -> FeatureMap:
    """The NTK sketch (Zandieh et al. 2021, arXiv:2106.07880).

    :math:`\\kappa_1, \\kappa_0` are replaced by polynomials :math:`p_1(t) = \\sum_j a_j t^j`,
    :math:`p_0(t) = \\sum_j b_j t^j` with nonnegative coefficients
    (:func:`arccos_poly_coefficients`). With sketches :math:`z_j \\approx \\phi_{h-1}^{\\otimes j}`
    of the tensor powers (:math:`z_1 = \\phi_{h-1}` exactly, :math:`z_j` of dimension
    :math:`m_1` for :math:`j \\ge 2`),

    .. math::

       \\phi_h &= [S\\,[\\sqrt{a_j} z_j]_{j=1}^q,\\ \\sqrt{a_0}],\\qquad
       \\dot\\phi_h = [S'\\,[\\sqrt{b_j} z_j]_{j=1}^q,\\ \\sqrt{b_0}], \\\\
       \\psi_h &= [\\phi_h,\\ \\mathrm{TSRHT}(\\psi_{h-1} \\otimes \\dot\\phi_h)],

    with SRHTs :math:`S, S'` to :math:`m_1 - 1` dimensions (:math:`m_1 = \\lfloor m/2\\rfloor`;
    the constant term stays exact, and the sketched width :math:`d + (q-1) m_1` is a power of
    two when :math:`d` and :math:`m_1` are powers of two) and the product
    sketched to :math:`m - m_1`. Every sketch is unbiased for inner products, so the map
    estimates :func:`poly_relu_ntk` (without bias at ``depth=1``); the output is scaled by
    :math:`\\sqrt{2/d}\\,\\|x\\|`.

    **The tensor powers.** ``powers="tree"`` is the paper's PolySketch (Ahle et al. 2020,
    arXiv:1909.01410): a binary tree of TensorSRHTs over :math:`p = 2^{\\lceil \\log_2 q\\rceil}`
    leaves, power :math:`j` obtained by feeding :math:`\\phi_{h-1}` to :math:`j` leaves and
    :math:`e_1` to the rest, subtrees shared between powers; its worst-case variance bound grows
    only polynomially in :math:`q`. ``powers="chain"`` (the default) composes
    :math:`z_j = \\mathrm{TSRHT}(z_{j-1} \\otimes \\phi_{h-1})`, whose bound grows exponentially
    in :math:`q`. Both are unbiased. Measured at degree 8 (``tests/test_features.py`` and
    chapter 8), the chain is *not* the noisier one. The two estimate the top power :math:`t^q`
    equally well, and the tree is noisier for the low powers (standard deviation 1.6-1.9 times
    the chain's for :math:`t^2`), because every power passes through all :math:`\\log_2 p`
    levels and the :math:`e_1` leaves add SRHT resampling noise without information. On the NTK,
    where the SRHTs :math:`S, S'` and the product sketch add noise of their own, the two are
    equally accurate within Monte Carlo error. The tree computes 21 TensorSRHTs per layer at
    degree 8 against the chain's 7, but the SRHTs of the concatenated powers dominate the cost,
    so the two maps take about the same time, :math:`O(L\\,q\\,m \\log(q m))` per input.

    Args:
      key: a JAX PRNG key; the map is a deterministic function of it.
      in_dim: input dimension ``d`` >= 1.
      depth: number of hidden ReLU layers ``L`` in [1, 64].
      dim: output dimension ``m`` >= 4.
      degree: polynomial degree ``q`` in [1, 32].
      powers: ``"chain"`` or ``"tree"`` (:data:`SKETCH_POWERS`), how the tensor powers are
        sketched.

    Returns:
      A :class:`FeatureMap`.

    Raises:
      ValueError: for invalid ``in_dim``, ``depth``, ``dim``, ``degree`` or ``powers``.
    """
    key = _validate.prng_key(key)
    in_dim = _validate.integer("in_dim", in_dim, 1)
    depth = _validate.integer("depth", depth, 1, _MAX_DEPTH)
    dim = _validate.integer("dim", dim, 4)
    degree = _validate.integer("degree", degree, 1, _MAX_DEGREE)
    powers = _validate.choice("powers", powers, SKETCH_POWERS)
    c0, c1 = arccos_poly_coefficients(degree)
    m1, ms = _split_dim(dim)
    draw = _chain_params if powers == "chain" else _tree_params
    layers = []
    prev_phi, prev_psi = in_dim, in_dim
    for lkey in jax.random.split(key, depth):
        kp, k1, k0, kprod = jax.random.split(lkey, 4)
        full = prev_phi + (degree - 1) * m1  # the constant term is kept out of the SRHT
        layers.append(
            {
                "powers": draw(kp, prev_phi, m1, degree),
                "s1": _srht_params(k1, full, m1 - 1),
                "s0": _srht_params(k0, full, m1 - 1),
                "prod": _tensor_srht_params(kprod, prev_psi, m1, ms),
            }
        )
        prev_phi, prev_psi = m1, dim
    apply = functools.partial(
        _sketch_apply, c0=tuple(map(float, c0)), c1=tuple(map(float, c1)), powers=powers
    )
    return FeatureMap("sketch", in_dim, depth, dim, degree, layers, apply, powers)


#: The TensorSRHT as its own compiled program: :func:`_sketch_apply` calls it once per tensor
#: product instead of compiling the whole map as one program, because XLA's CPU backend ran a
#: chain of TensorSRHTs 3-4 times slower inside one program (2-core CPU, m = 4096: 2.3 s against
#: 0.6 s for the seven TensorSRHTs of a layer on 2048 rows), the same arithmetic.
_tensor_srht_jit = jax.jit(_tensor_srht)


@functools.partial(jax.jit, static_argnames=("c0", "c1"))
def _sketch_layer(p, zs, psi, *, c0, c1):
    """One layer of the NTK sketch after its tensor powers ``zs``: ``(phi_h, psi_h)``."""
    one = jnp.ones(psi.shape[:-1] + (1,), psi.dtype)
    cat1 = jnp.concatenate([math.sqrt(c1[j + 1]) * z for j, z in enumerate(zs)], axis=-1)
    cat0 = jnp.concatenate([math.sqrt(c0[j + 1]) * z for j, z in enumerate(zs)], axis=-1)
    phi = jnp.concatenate([_srht(p["s1"], cat1), math.sqrt(c1[0]) * one], axis=-1)
    dot = jnp.concatenate([_srht(p["s0"], cat0), math.sqrt(c0[0]) * one], axis=-1)
    return phi, jnp.concatenate([phi, _tensor_srht(p["prod"], psi, dot)], axis=-1)


@jax.jit
def _sketch_out(x, psi, norms):
    return jnp.sqrt(2.0 / x.shape[1]).astype(x.dtype) * norms * psi


def _sketch_apply(layers, x, *, c0, c1, powers):
    """The NTK sketch of a batch ``x`` (a sequence of compiled stages, see _tensor_srht_jit)."""
    u, norms = jax.jit(_unit)(x)
    phi, psi = u, u
    for p in layers:
        if powers == "chain":
            zs = [phi]
            for q in p["powers"]:
                zs.append(_tensor_srht_jit(q, zs[-1], phi))
        else:
            zs = jax.jit(_tree_powers, static_argnums=2)(p["powers"], phi, len(c0) - 1)
        phi, psi = _sketch_layer(p, zs, psi, c0=c0, c1=c1)
    return _sketch_out(x, psi, norms)


def feature_map(
    key: jax.Array,
    method: str,
    in_dim: int,
    depth: int,
    dim: int,
    *,
    degree: int = 8,
    block_size: int = 1024,
    powers: str = "chain",
) -> FeatureMap:
    """Draw an NTK feature map by name.

    Args:
      key: a JAX PRNG key.
      method: ``"random_features"``, ``"orthogonal_features"`` or ``"sketch"``.
      in_dim: input dimension ``d``.
      depth: number of hidden ReLU layers.
      dim: output dimension ``m``.
      degree: polynomial degree (``"sketch"`` only).
      block_size: largest orthogonal block (``"orthogonal_features"`` only).
      powers: how the sketch builds tensor powers, ``"chain"`` or ``"tree"``
        (``"sketch"`` only, see :func:`ntk_sketch`).

    Returns:
      A :class:`FeatureMap`.

    Raises:
      ValueError: for an unknown ``method`` or invalid sizes.
    """
    method = _validate.choice("method", method, METHODS)
    if method == "sketch":
        return ntk_sketch(key, in_dim, depth, dim, degree=degree, powers=powers)
    return ntk_random_features(
        key,
        in_dim,
        depth,
        dim,
        orthogonal=(method == "orthogonal_features"),
        block_size=block_size,
    )


# --------------------------------------------------------------------------------------------
# ridge regression
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RidgeFit:
    """Result of ridge regression with the regularization chosen on a validation split.

    Attributes:
      ridge: the chosen relative regularization (see :func:`ridge_select`).
      ridges: the candidates, shape ``(R,)``.
      val_accuracy: validation accuracy of every candidate, shape ``(R,)``.
      coef: fitted coefficients: primal weights ``(m, C)`` for features, dual ``(N, C)`` for
        kernels.
      dual: whether ``coef`` are dual coefficients.
    """

    ridge: float
    ridges: np.ndarray
    val_accuracy: np.ndarray
    coef: np.ndarray
    dual: bool

    def predict(self, a: Any) -> np.ndarray:
        """Predictions ``a @ coef``: ``a`` are test features ``(N', m)`` for a primal fit, or
        the test-train kernel ``(N', N)`` (or test features times train features) for a dual
        fit. Returns shape ``(N', C)``."""
        return np.asarray(a, dtype=np.float64) @ self.coef


def _check_ridge_args(y, labels_val, ridges, n_train, n_val):
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != n_train:
        raise ValueError(f"y_train must have shape (N, C) with N = {n_train}, got {y.shape}")
    labels_val = np.asarray(labels_val)
    if labels_val.shape != (n_val,):
        raise ValueError(f"labels_val must have shape ({n_val},), got {labels_val.shape}")
    ridges = np.atleast_1d(np.asarray(ridges, dtype=np.float64))
    if ridges.ndim != 1 or ridges.size == 0 or np.any(ridges <= 0):
        raise ValueError(f"ridges must be a non-empty list of positive floats, got {ridges}")
    return y, labels_val, ridges


def _accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    if pred.shape[1] == 1:
        return float(np.mean((pred[:, 0] > 0) == (labels > 0)))
    return float(np.mean(np.argmax(pred, axis=1) == labels))


def _solve_all(gram, rhs, lambdas: np.ndarray) -> list[np.ndarray]:
    """Solve (gram + lam I) w = rhs for every lam.

    On the CPU backend: one Cholesky factorization per lam, in numpy/SciPy (LAPACK, float64),
    with one work array reused for every lam. For R candidates that is :math:`R n^3/3` flops
    against the :math:`\\approx 9 n^3` of one symmetric eigendecomposition (measured on the
    2-core CPU at n = 4000: 0.8 s per factorization, 18.6 s for ``eigh``). If a factorization
    fails (a matrix not positive definite in floating point) it falls back to one
    eigendecomposition. On a GPU it runs one eigendecomposition in JAX (float64 when x64 is
    enabled) for all lam. Returns numpy arrays.
    """
    if jax.default_backend() == "cpu":
        from scipy.linalg import cho_factor, cho_solve

        gram = np.asarray(gram, dtype=np.float64)
        rhs = np.asarray(rhs, dtype=np.float64)
        n = gram.shape[0]
        work = np.empty_like(gram, order="F")
        out = []
        try:
            for lam in lambdas:
                work[...] = gram
                work.flat[:: n + 1] += lam
                out.append(
                    cho_solve(
                        cho_factor(work, overwrite_a=True, check_finite=False),
                        rhs,
                        check_finite=False,
                    )
                )
            return out
        except np.linalg.LinAlgError:
            del work
        evals, evecs = np.linalg.eigh(gram)
        proj = evecs.T @ rhs
        return [evecs @ (proj / (evals + lam)[:, None]) for lam in lambdas]
    evals, evecs = jnp.linalg.eigh(jnp.asarray(gram))
    proj = evecs.T @ jnp.asarray(rhs, evecs.dtype)
    return [np.asarray(evecs @ (proj / (evals + lam)[:, None])) for lam in lambdas]


def ridge_select(
    phi_train: Any,
    y_train: Any,
    phi_val: Any,
    labels_val: Any,
    ridges: Any = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
) -> RidgeFit:
    """Ridge regression on features, regularization chosen by validation accuracy.

    Solves :math:`(\\Phi^\\top\\Phi + \\lambda I)\\,W = \\Phi^\\top Y` in feature space,
    :math:`O(N m^2 + m^3)` time and :math:`O(m^2)` extra memory, with
    :math:`\\lambda = r\\,\\mathrm{tr}(\\Phi\\Phi^\\top)/N` for each relative ridge :math:`r`
    (the same scale as :func:`kernel_ridge_select`, so both regularize a kernel the same way).
    When :math:`N < m` it solves the same problem in the dual instead,
    :math:`W = \\Phi^\\top (\\Phi\\Phi^\\top + \\lambda I)^{-1} Y` (push-through identity),
    :math:`O(N^2 m + N^3)` time and :math:`O(N^2)` extra memory; the result is the same.
    The regularized systems are solved by ``_solve_all`` (Cholesky per candidate on the
    CPU). :func:`ridge_select_streaming` solves the same problem from a feature map without
    holding :math:`\\Phi`.

    Args:
      phi_train: training features, shape ``(N, m)``.
      y_train: regression targets, shape ``(N, C)`` (one-hot for classification) or ``(N,)``.
      phi_val: validation features, shape ``(N_val, m)``.
      labels_val: validation class labels, shape ``(N_val,)`` (for ``C = 1``: sign labels).
      ridges: relative regularizations to try, positive.

    Returns:
      A :class:`RidgeFit` with primal weights of shape ``(m, C)``.

    Raises:
      ValueError: for inconsistent shapes or non-positive ridges.
    """
    phi_train = np.asarray(phi_train, dtype=np.float64)
    phi_val = np.asarray(phi_val, dtype=np.float64)
    if phi_train.ndim != 2 or phi_val.ndim != 2 or phi_train.shape[1] != phi_val.shape[1]:
        raise ValueError(
            "phi_train and phi_val must be 2-D with the same number of columns, "
            f"got {phi_train.shape} and {phi_val.shape}"
        )
    y, labels_val, ridges = _check_ridge_args(
        y_train, labels_val, ridges, phi_train.shape[0], phi_val.shape[0]
    )
    # numpy (BLAS) on the CPU backend; JAX on an accelerator
    xp = np if jax.default_backend() == "cpu" else jnp
    phi_j = xp.asarray(phi_train)
    n, m = phi_train.shape
    if n < m:  # dual: (Phi Phi^T + lam I)^-1 Y, then W = Phi^T alpha
        gram = phi_j @ phi_j.T
        scale = float(xp.trace(gram)) / n
        ws = [
            np.asarray(phi_j.T @ xp.asarray(a, phi_j.dtype))
            for a in _solve_all(gram, y, ridges * scale)
        ]
    else:
        gram = phi_j.T @ phi_j
        scale = float(xp.trace(gram)) / n
        ws = _solve_all(gram, np.asarray(phi_j.T @ xp.asarray(y, phi_j.dtype)), ridges * scale)
    acc = np.array([_accuracy(phi_val @ w, labels_val) for w in ws])
    best = int(np.argmax(acc))
    return RidgeFit(float(ridges[best]), ridges, acc, ws[best], False)


def _symmetrize_upper(a: np.ndarray, block: int = 1024) -> np.ndarray:
    """Copy the upper triangle of the square ``a`` onto its lower one, in place and by blocks
    of rows (no full-size temporaries: the Gram matrices here reach gigabytes). Returns ``a``."""
    n = a.shape[0]
    for s in range(0, n, block):
        e = min(s + block, n)
        a[s:e, :s] = a[:s, s:e].T
        d = a[s:e, s:e]
        a[s:e, s:e] = np.triu(d) + np.triu(d, 1).T
    return a


def _feature_blocks(fmap: "FeatureMap", x: Any, batch_size: int | None):
    """Yield ``(start, features of rows start..start+b)`` in float64 numpy, block by block."""
    x = _check_inputs(x, fmap.in_dim)
    rows = fmap._batch(batch_size)
    n = x.shape[0]
    for start in range(0, n, rows):
        chunk = x[start : start + rows]
        k = chunk.shape[0]
        if n > rows and k < rows:  # pad the last block: one compiled program for every block
            chunk = _pad(chunk.T, rows).T
        yield start, np.asarray(fmap(chunk, batch_size=rows)[:k], dtype=np.float64)


def normal_equations(
    fmap: "FeatureMap", x: Any, y: Any, *, batch_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The normal equations of least squares on ``fmap``'s features, streamed over row blocks.

    :math:`G = \\Phi^\\top\\Phi = \\sum_b \\Phi_b^\\top\\Phi_b` and :math:`B = \\Phi^\\top Y =
    \\sum_b \\Phi_b^\\top Y_b`, accumulated in float64 over blocks :math:`\\Phi_b` of
    ``batch_size`` rows (default :meth:`FeatureMap.batch_rows`), so the :math:`N \\times m`
    matrix :math:`\\Phi` is never held: :math:`O(m^2 + b\\,m)` memory, :math:`O(N m^2)` time.
    On the CPU backend the Gram update is a symmetric rank-b update (BLAS ``dsyrk``, half the
    flops of a general product).

    Args:
      fmap: a :class:`FeatureMap`.
      x: inputs, shape ``(N, in_dim)``.
      y: targets, shape ``(N, C)`` or ``(N,)``.
      batch_size: rows per block.

    Returns:
      ``(G, B)`` of shapes ``(m, m)`` (symmetric) and ``(m, C)``, float64.

    Raises:
      ValueError: for inconsistent shapes.
    """
    x = _check_inputs(x, fmap.in_dim)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have shape (N, C) with N = {x.shape[0]} (the rows of x), got {y.shape}"
        )
    m = fmap.dim
    cpu = jax.default_backend() == "cpu"
    if cpu:
        from scipy.linalg.blas import dsyrk
    gram = np.zeros((m, m), np.float64, order="F")
    rhs = np.zeros((m, y.shape[1]), np.float64)
    for start, phi in _feature_blocks(fmap, x, batch_size):
        if cpu:  # upper triangle of gram += phi^T phi (phi.T is Fortran-ordered: no copy)
            gram = dsyrk(1.0, phi.T, beta=1.0, c=gram, trans=0, lower=0, overwrite_c=1)
        else:
            gram += phi.T @ phi
        rhs += phi.T @ y[start : start + phi.shape[0]]
    if cpu:
        gram = _symmetrize_upper(gram)
    return gram, rhs


def predict_features(
    fmap: "FeatureMap", coef: Any, x: Any, *, batch_size: int | None = None
) -> np.ndarray:
    """:math:`\\Phi(x)\\,W` block by block, without holding :math:`\\Phi(x)`.

    Args:
      fmap: a :class:`FeatureMap`.
      coef: primal weights ``W``, shape ``(m, C)`` (e.g. ``RidgeFit.coef`` of a primal fit).
      x: inputs, shape ``(N', in_dim)``.
      batch_size: rows per block.

    Returns:
      Predictions, shape ``(N', C)``, float64.
    """
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim != 2 or coef.shape[0] != fmap.dim:
        raise ValueError(f"coef must have shape ({fmap.dim}, C) (the map's dim), got {coef.shape}")
    x = _check_inputs(x, fmap.in_dim)
    out = np.empty((x.shape[0], coef.shape[1]))
    for start, phi in _feature_blocks(fmap, x, batch_size):
        out[start : start + phi.shape[0]] = phi @ coef
    return out


def ridge_select_streaming(
    fmap: "FeatureMap",
    x_train: Any,
    y_train: Any,
    x_val: Any,
    labels_val: Any,
    ridges: Any = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    *,
    batch_size: int | None = None,
) -> RidgeFit:
    """:func:`ridge_select` on the features of ``fmap``, computed block by block.

    The same problem and result as ``ridge_select(fmap(x_train), y_train, fmap(x_val),
    labels_val, ridges)`` without holding the feature matrices. For :math:`N \\ge m` the
    primal normal equations are streamed (:func:`normal_equations`): :math:`O(m^2)` memory.
    For :math:`N < m` the dual needs :math:`\\Phi\\Phi^\\top` (:math:`N \\times N`): the
    training features are held (float64, :math:`N m`) for it and for
    :math:`W = \\Phi^\\top\\alpha`. Validation features are streamed in both cases. The
    regularization scale :math:`\\mathrm{tr}(\\Phi^\\top\\Phi)/N` and the solves (Cholesky
    per candidate on the CPU) are those of :func:`ridge_select`.

    Args:
      fmap: a :class:`FeatureMap`.
      x_train: training inputs, shape ``(N, in_dim)``.
      y_train: targets, shape ``(N, C)`` or ``(N,)``.
      x_val: validation inputs, shape ``(N_val, in_dim)``.
      labels_val: validation labels, shape ``(N_val,)``.
      ridges: relative regularizations to try, positive.
      batch_size: rows per feature block (default :meth:`FeatureMap.batch_rows`).

    Returns:
      A :class:`RidgeFit` with primal weights of shape ``(m, C)``; predict test points with
      :func:`predict_features`.

    Raises:
      ValueError: for inconsistent shapes or non-positive ridges.
    """
    x_train = _check_inputs(x_train, fmap.in_dim, name="x_train")
    x_val = _check_inputs(x_val, fmap.in_dim, name="x_val")
    n, m = x_train.shape[0], fmap.dim
    y, labels_val, ridges = _check_ridge_args(y_train, labels_val, ridges, n, x_val.shape[0])
    if n < m:  # dual, as in ridge_select
        phi = np.empty((n, m))
        for start, block in _feature_blocks(fmap, x_train, batch_size):
            phi[start : start + block.shape[0]] = block
        if jax.default_backend() == "cpu":
            from scipy.linalg.blas import dsyrk

            gram = _symmetrize_upper(dsyrk(1.0, phi.T, trans=1, lower=0))  # phi phi^T
        else:
            gram = phi @ phi.T
        scale = float(np.trace(gram)) / n
        ws = [phi.T @ a for a in _solve_all(gram, y, ridges * scale)]
        del gram, phi
    else:
        gram, rhs = normal_equations(fmap, x_train, y, batch_size=batch_size)
        scale = float(np.trace(gram)) / n
        ws = _solve_all(gram, rhs, ridges * scale)
        del gram
    pred = predict_features(fmap, np.concatenate(ws, axis=1), x_val, batch_size=batch_size)
    c = y.shape[1]
    acc = np.array([_accuracy(pred[:, i * c : (i + 1) * c], labels_val) for i in range(len(ws))])
    best = int(np.argmax(acc))
    return RidgeFit(float(ridges[best]), ridges, acc, ws[best], False)


def kernel_ridge_select(
    k_train: Any,
    y_train: Any,
    k_val_train: Any,
    labels_val: Any,
    ridges: Any = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
) -> RidgeFit:
    """Exact kernel ridge regression, regularization chosen by validation accuracy.

    Solves :math:`(K + \\lambda I)\\,\\alpha = Y` with :math:`\\lambda = r\\,\\mathrm{tr}(K)/N`,
    :math:`O(N^3)` time, :math:`O(N^2)` memory; predictions are :math:`K_{*X}\\alpha`.

    Args:
      k_train: train-train kernel, shape ``(N, N)``.
      y_train: targets, shape ``(N, C)`` or ``(N,)``.
      k_val_train: validation-train kernel, shape ``(N_val, N)``.
      labels_val: validation labels, shape ``(N_val,)``.
      ridges: relative regularizations to try, positive.

    Returns:
      A :class:`RidgeFit` with dual coefficients of shape ``(N, C)``.
    """
    k_train = np.asarray(k_train, dtype=np.float64)
    k_val_train = np.asarray(k_val_train, dtype=np.float64)
    n = k_train.shape[0]
    if k_train.shape != (n, n) or k_val_train.ndim != 2 or k_val_train.shape[1] != n:
        raise ValueError(
            "k_train must be (N, N) and k_val_train (N_val, N), got "
            f"{k_train.shape} and {k_val_train.shape}"
        )
    y, labels_val, ridges = _check_ridge_args(y_train, labels_val, ridges, n, k_val_train.shape[0])
    scale = np.trace(k_train) / n
    alphas = _solve_all(k_train, y, ridges * scale)
    acc = np.array([_accuracy(k_val_train @ a, labels_val) for a in alphas])
    best = int(np.argmax(acc))
    return RidgeFit(float(ridges[best]), ridges, acc, alphas[best], True)


# --------------------------------------------------------------------------------------------
# measuring time and memory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """Wall time, CPU time (user + sys of this process) and peak extra resident memory."""

    wall_s: float
    cpu_s: float
    peak_mem_mb: float


def measure(fn: Callable[[], Any], *, interval_s: float = 0.005) -> tuple[Any, Measurement]:
    """Run ``fn()`` and measure wall time, CPU time and peak resident memory above the start.

    Memory is sampled from the process RSS (``psutil``) every ``interval_s`` in a thread, so
    it includes JAX/XLA buffers that ``tracemalloc`` cannot see; JAX results are blocked on
    before the clock stops.

    Args:
      fn: a function of no arguments.
      interval_s: sampling interval of the memory thread.

    Returns:
      ``(result, Measurement)``.
    """
    import psutil

    proc = psutil.Process(os.getpid())
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    cpu0 = proc.cpu_times()
    t0 = time.perf_counter()
    try:
        out = fn()
        out = jax.block_until_ready(out)
    finally:
        wall = time.perf_counter() - t0
        cpu1 = proc.cpu_times()
        stop.set()
        thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return out, Measurement(wall, cpu, (peak[0] - base) / 2**20)
