"""Gaussian, Haar-orthogonal and delta-orthogonal weight samplers for neural-tangents networks.

All samplers follow neural-tangents' **NTK parameterization**: a ``stax.Dense`` layer computes

.. math:: z = \\frac{W_\\text{std}}{\\sqrt{n_\\text{in}}}\\, x W + b_\\text{std}\\, b,
   \\qquad W_{ij} \\sim \\mathcal N(0, 1),

and a ``stax.Conv`` layer with an ``filter_shape + (c_in, c_out)`` (HWIO) kernel divides by
:math:`\\sqrt{c_\\text{in} \\prod \\text{filter\\_shape}}` instead. The weights themselves
therefore have unit-variance entries, and the orthogonal samplers here are scaled so that their
entries have unit second moment too: a semi-orthogonal :math:`(n_\\text{in}, n_\\text{out})`
matrix is multiplied by :math:`\\sqrt{\\max(n_\\text{in}, n_\\text{out})}`.

Functions:

* :func:`haar_orthogonal` -- a Haar-distributed matrix of :math:`O(n)` (Mezzadri 2007,
  arXiv:math-ph/0609050).
* :func:`orthogonal` -- a scaled semi-orthogonal Dense weight.
* :func:`delta_orthogonal` -- a delta-orthogonal convolution kernel (Xiao et al. 2018,
  arXiv:1806.05393).
* :func:`gaussian` -- i.i.d. :math:`\\mathcal N(0, 1)` (neural-tangents' default), for symmetry.
* :func:`orthogonalize_params` -- replace every Dense/Conv weight of a ``stax`` parameter pytree
  by its orthogonal counterpart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate

__all__ = [
    "haar_orthogonal",
    "orthogonal",
    "delta_orthogonal",
    "gaussian",
    "orthogonalize_params",
    "CONV_MODES",
    "PARAMETERIZATIONS",
]

#: Allowed values of ``orthogonalize_params(conv=...)``.
CONV_MODES = ("delta", "orthogonal")
#: Allowed values of ``orthogonalize_params(parameterization=...)``.
PARAMETERIZATIONS = ("ntk", "standard")


def _check_shape(name: str, shape, min_ndim: int, max_ndim: int | None = None) -> tuple:
    if not isinstance(shape, (tuple, list)):
        raise ValueError(
            f"{name} must be a tuple of positive ints, got {shape!r} ({type(shape).__name__})"
        )
    shape = tuple(shape)
    if len(shape) < min_ndim or (max_ndim is not None and len(shape) > max_ndim):
        allowed = f"exactly {min_ndim}" if max_ndim == min_ndim else f"at least {min_ndim}"
        raise ValueError(
            f"{name} must have {allowed} entries, got {shape!r} ({len(shape)} entries)"
        )
    for i, s in enumerate(shape):
        _validate.integer(f"{name}[{i}]", s)
    return tuple(int(s) for s in shape)


def _check_float_dtype(dtype) -> jnp.dtype:
    try:
        dt = jnp.dtype(dtype)
    except TypeError as e:
        raise ValueError(
            f"dtype must be a floating dtype (float32 or float64), got {dtype!r}"
        ) from e
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype (float32 or float64), got {dt}")
    return dt


def _haar_frame(key, m: int, r: int, dt) -> jax.Array:
    """First ``r`` columns of a Haar matrix of O(m): ``(m, r)`` with orthonormal columns."""
    g = jax.random.normal(key, (m, r), dtype=dt)
    q, rr = jnp.linalg.qr(g)  # reduced QR
    d = jnp.diagonal(rr)
    return q * jnp.where(d < 0, -1.0, 1.0).astype(dt)[None, :]


def haar_orthogonal(
    key: jax.Array, n: int, dtype=jnp.float32, *, sign_correction: bool = True
) -> jax.Array:
    """A Haar-distributed (uniform) random orthogonal matrix of :math:`O(n)`.

    Draws :math:`G` with i.i.d. :math:`\\mathcal N(0, 1)` entries, takes its QR decomposition
    :math:`G = QR` and returns :math:`Q\\, \\mathrm{diag}(\\mathrm{sign}\\, R_{ii})`
    (Mezzadri 2007, arXiv:math-ph/0609050). The sign correction makes :math:`R` have a positive
    diagonal, which makes the decomposition unique; then :math:`Q` inherits the invariance
    :math:`G \\mapsto UG` of the Gaussian law and is Haar. Without it the law of :math:`Q` depends
    on the QR routine's sign convention: with LAPACK's Householder convention (JAX on CPU) every
    raw :math:`Q` has :math:`Q_{11} < 0` and :math:`\\det Q = (-1)^{n-1}`, which is not Haar.

    Args:
      key: a JAX PRNG key.
      n: matrix size, a positive int.
      dtype: floating dtype of the result.
      sign_correction: apply the sign correction (default). ``False`` returns the raw ``Q`` of
        ``jnp.linalg.qr``; it exists only to demonstrate why the correction is needed.

    Returns:
      ``(n, n)`` array :math:`O` with :math:`O^\\top O = I`; both determinants :math:`\\pm 1`
      occur with probability 1/2.

    Raises:
      ValueError: for a non-positive or non-integer ``n``, a non-float ``dtype`` or a bad key.
    """
    _validate.prng_key(key)
    n = _validate.integer("n", n)
    dt = _check_float_dtype(dtype)
    g = jax.random.normal(key, (n, n), dtype=dt)
    q, r = jnp.linalg.qr(g)
    if sign_correction:
        d = jnp.diagonal(r)
        # sign(0) = 0 would lose a column; R_ii = 0 has probability zero, map it to +1 anyway.
        q = q * jnp.where(d < 0, -1.0, 1.0).astype(dt)[None, :]
    return q


def orthogonal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """A scaled Haar semi-orthogonal Dense weight in NTK parameterization.

    For ``shape = (n_in, n_out)`` returns

    .. math:: W = \\sqrt{\\max(n_\\text{in}, n_\\text{out})}\\;
              O_{[:n_\\text{in}, :n_\\text{out}]},

    with :math:`O` Haar on :math:`O(\\max(n_\\text{in}, n_\\text{out}))` (sampled as the
    sign-corrected reduced QR factor of a Gaussian :math:`\\max \\times \\min` matrix, which
    has the law of the first :math:`\\min` columns of a Haar matrix). If
    :math:`n_\\text{in} \\le n_\\text{out}` the rows are orthogonal, :math:`W W^\\top =
    n_\\text{out} I`; otherwise the columns are, :math:`W^\\top W = n_\\text{in} I`. Every entry
    has :math:`\\mathbb E W_{ij}^2 = 1` like the Gaussian default, and for
    :math:`n_\\text{in} \\le n_\\text{out}` the Dense layer maps
    :math:`\\|z\\|^2 = W_\\text{std}^2 \\frac{n_\\text{out}}{n_\\text{in}} \\|x\\|^2` exactly
    (b = 0), the value the Gaussian layer has in expectation (Saxe et al. 2014, arXiv:1312.6120).

    Args:
      key: a JAX PRNG key.
      shape: ``(n_in, n_out)``, positive ints.
      dtype: floating dtype.

    Returns:
      ``(n_in, n_out)`` array.

    Raises:
      ValueError: if ``shape`` is not a pair of positive ints, or ``dtype`` is not floating.
    """
    _validate.prng_key(key)
    n_in, n_out = _check_shape("shape", shape, 2, 2)
    dt = _check_float_dtype(dtype)
    m, r = max(n_in, n_out), min(n_in, n_out)
    # The first r columns of a Haar matrix of O(m) are the sign-corrected reduced QR factor of
    # an (m, r) Gaussian matrix (same argument as haar_orthogonal): O(m r^2) work, not O(m^3).
    q = _haar_frame(key, m, r, dt)
    w = q if n_in >= n_out else q.T
    return (math.sqrt(m) * w).astype(dt)


def delta_orthogonal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """A delta-orthogonal convolution kernel (Xiao et al. 2018, arXiv:1806.05393).

    ``shape = filter_shape + (c_in, c_out)`` (neural-tangents' default HWIO layout, any number of
    spatial dimensions). The kernel is zero except at the spatial centre tap
    ``filter_shape[i] // 2``, which holds

    .. math:: W_\\text{centre} = \\sqrt{k}\\,\\sqrt{\\max(c_\\text{in}, c_\\text{out})}\\;
              O_{[:c_\\text{in}, :c_\\text{out}]}, \\qquad k = \\prod \\text{filter\\_shape},

    with :math:`O` Haar-orthogonal, i.e. :math:`\\sqrt{k}` times :func:`orthogonal`.

    Why :math:`\\sqrt{k}`: neural-tangents' NTK-parameterized ``Conv`` computes
    :math:`z_p = \\frac{W_\\text{std}}{\\sqrt{c_\\text{in} k}} \\sum_{t} x_{p+t} W_t` (sum over the
    :math:`k` taps). With Gaussian :math:`W` and :math:`b = 0`,
    :math:`\\mathbb E \\|z_p\\|^2 = W_\\text{std}^2 \\frac{c_\\text{out}}{c_\\text{in}}
    \\frac1k \\sum_t \\|x_{p+t}\\|^2`: the tap-average of the input's squared norm. Only the centre
    tap is non-zero here, so it must carry the weight of all :math:`k` taps: with
    :math:`c_\\text{in} \\le c_\\text{out}`,

    .. math:: \\|z_p\\|^2 = \\frac{W_\\text{std}^2}{c_\\text{in} k}\\, k\\, c_\\text{out}
       \\|x_p\\|^2 = W_\\text{std}^2 \\frac{c_\\text{out}}{c_\\text{in}} \\|x_p\\|^2

    exactly, the Gaussian layer's expectation for a spatially constant input (and for
    :math:`c_\\text{in} > c_\\text{out}` the same holds in expectation over :math:`O`). The total
    :math:`\\|W\\|_F^2 = k\\, c_\\text{in} c_\\text{out}` equals the Gaussian kernel's expected
    squared norm. An even filter size has no centre; ``filter_shape[i] // 2`` is used.

    Args:
      key: a JAX PRNG key.
      shape: ``filter_shape + (c_in, c_out)``, at least 3 positive ints.
      dtype: floating dtype.

    Returns:
      Array of ``shape``.

    Raises:
      ValueError: if ``shape`` has fewer than 3 entries or non-positive entries, or ``dtype``
        is not floating.
    """
    _validate.prng_key(key)
    shape = _check_shape("shape", shape, 3)
    dt = _check_float_dtype(dtype)
    filter_shape, (c_in, c_out) = shape[:-2], shape[-2:]
    k = math.prod(filter_shape)
    centre = tuple(f // 2 for f in filter_shape)
    w = jnp.zeros(shape, dt)
    return w.at[centre].set(math.sqrt(k) * orthogonal(key, (c_in, c_out), dt))


def gaussian(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """I.i.d. :math:`\\mathcal N(0, 1)` weights, neural-tangents' NTK-parameterization default.

    Args:
      key: a JAX PRNG key.
      shape: any tuple of positive ints (``(n_in, n_out)`` or ``filter_shape + (c_in, c_out)``).
      dtype: floating dtype.

    Returns:
      Array of ``shape``.

    Raises:
      ValueError: for an empty or non-positive ``shape`` or a non-float ``dtype``.
    """
    _validate.prng_key(key)
    shape = _check_shape("shape", shape, 1)
    dt = _check_float_dtype(dtype)
    return jax.random.normal(key, shape, dt)


# ----------------------------------------------------------------------------------------------
# orthogonalizing stax parameters


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


def _is_bias_for(b, w) -> bool:
    """Whether ``b`` looks like the bias of a layer with weight ``w`` (or is absent)."""
    if b is None:
        return True
    if not _is_array(b):
        return False
    if b.ndim == 0:
        return False
    non_unit = [s for s in b.shape if s != 1]
    return b.size == w.shape[-1] and len(non_unit) <= 1


def _is_layer(node) -> bool:
    """A stax Dense/Conv parameter pair ``(W, b)``: W an array with ndim >= 2, b bias or None."""
    return (
        isinstance(node, tuple)
        and len(node) == 2
        and _is_array(node[0])
        and node[0].ndim >= 2
        and _is_bias_for(node[1], node[0])
    )


def _describe(x) -> str:
    if _is_array(x):
        return f"array of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:200]


def orthogonalize_params(
    key: jax.Array,
    params: Any,
    *,
    conv: str = "delta",
    parameterization: str = "ntk",
    W_std: float = 1.0,
) -> Any:
    """Replace every Dense/Conv weight of a neural-tangents ``stax`` parameter pytree.

    The pytree is walked in order. Each layer's parameters ``(W, b)`` are recognised by their
    structure (a pair whose first element has ``ndim >= 2`` and whose second is ``None`` or a
    bias with ``W.shape[-1]`` entries):

    * ``W.ndim == 2`` (``stax.Dense``): ``W`` becomes :func:`orthogonal` of the same shape.
    * ``W.ndim >= 3`` (``stax.Conv`` with HWIO kernel, any number of spatial dims):
      ``conv="delta"`` uses :func:`delta_orthogonal` (Xiao et al. 2018, arXiv:1806.05393;
      note that a delta-orthogonal layer acts as a ``1 x 1`` convolution, so the network's
      infinite-width kernel becomes that of the ``1 x 1`` network, see :func:`ntklit.nets.cnn`);
      ``conv="orthogonal"`` uses the kernel reshaped to ``(k * c_in, c_out)`` (the im2col matrix
      of the layer) filled by :func:`orthogonal`, i.e. every tap gets a slice of one Haar
      matrix; for ``k c_in <= c_out`` the layer is then an isometry of the whole patch (up to
      the factor :math:`\\sqrt{c_\\text{out}/(c_\\text{in} k)}\\, W_\\text{std}`), rather than of
      the centre pixel only. Its entries have unit second moment like the Gaussian kernel.
    * Biases are left unchanged. Parameter-free layers (``()``, e.g. activations, pooling,
      ``Flatten``, ``LayerNorm``) and ``None`` pass through; ``serial``/``parallel``
      nesting (lists/tuples) is followed.

    Each layer draws from its own key (``jax.random.fold_in(key, i)`` for the ``i``-th layer in
    traversal order), so the result is deterministic in ``key``.

    Limitations: the Conv layout is assumed to be neural-tangents' default HWIO
    (``dimension_numbers=None``); ``ConvLocal``/``ConvTranspose`` and layers whose parameters
    are not a ``(W, b)`` pair (e.g. attention) are not supported.

    Args:
      key: a JAX PRNG key.
      params: the ``params`` returned by a stax ``init_fn``.
      conv: ``"delta"`` (default) or ``"orthogonal"``, see above.
      parameterization: ``"ntk"`` (default; weights have unit-variance entries) or
        ``"standard"`` (neural-tangents' standard parameterization stores
        :math:`W_\\text{std} W / \\sqrt{\\text{fan\\_in}}`; the orthogonal weight is scaled
        the same way, with ``fan_in = W.shape[0]`` for Dense and ``prod(W.shape[:-1])`` for Conv
        and one ``W_std`` for every layer; ``s != (1, 1)`` widths are not supported).
      W_std: the layers' ``W_std``; used only with ``parameterization="standard"``.

    Returns:
      A pytree of the same structure, shapes and dtypes.

    Raises:
      ValueError: for an unknown ``conv`` or ``parameterization``, or a leaf that is not part of
        a Dense/Conv ``(W, b)`` pair (e.g. a bare 3-D array or a parameter of an unsupported
        layer), naming what was found and what is supported.
    """
    _validate.prng_key(key)
    _validate.choice("conv", conv, CONV_MODES)
    _validate.choice("parameterization", parameterization, PARAMETERIZATIONS)
    counter = [0]

    def new_weight(w):
        k = jax.random.fold_in(key, counter[0])
        counter[0] += 1
        dt = w.dtype
        if w.ndim == 2:
            new = orthogonal(k, w.shape, dt)
            fan_in = w.shape[0]
        elif conv == "delta":
            new = delta_orthogonal(k, w.shape, dt)
            fan_in = math.prod(w.shape[:-1])
        else:
            fan_in = math.prod(w.shape[:-1])
            new = orthogonal(k, (fan_in, w.shape[-1]), dt).reshape(w.shape)
        if parameterization == "standard":
            new = (W_std / math.sqrt(fan_in)) * new
        return new.astype(dt)

    def walk(node, path):
        if node is None:
            return None
        if _is_layer(node):
            return (new_weight(node[0]), node[1])
        if isinstance(node, (list, tuple)):
            out = [walk(c, f"{path}[{i}]") for i, c in enumerate(node)]
            return type(node)(out) if isinstance(node, list) else tuple(out)
        if isinstance(node, dict):
            return {k: walk(v, f"{path}[{k!r}]") for k, v in node.items()}
        raise ValueError(
            f"orthogonalize_params: cannot classify params{path}: {_describe(node)}. Supported: "
            f"stax Dense (W, b) pairs with 2-D W, Conv (W, b) pairs with HWIO W of ndim >= 3, "
            f"b None or a bias with W.shape[-1] entries, and parameter-free layers (() or "
            f"None), nested in lists/tuples/dicts."
        )

    return walk(params, "")
