"""Finite-width (empirical) NTK and NNGP, a fast path for FCNs, ensembles over seeds.

The **empirical NTK** of a network :math:`f(\\theta, x) \\in \\mathbb{R}^k` at parameters
:math:`\\theta` is

.. math:: \\Theta_{ab}(x, x') = \\sum_p \\partial_{\\theta_p} f_a(x)\\,
          \\partial_{\\theta_p} f_b(x').

With ``trace_outputs=True`` (the default, as neural-tangents' ``trace_axes=(-1,)``) the output
axes are traced and divided by :math:`k`, giving an ``(N1, N2)`` matrix; otherwise the result has
shape ``(N1, N2, k, k)``.

The **empirical NNGP** of one network is, by default, the *readout-conditional* covariance

.. math:: K(x, x') = \\mathbb{E}_{W^{L+1}, b^{L+1}}\\big[f(x) f(x')^\\top / k\\big]
          = \\frac{\\sigma_w^2}{n_L} \\langle x^L(x), x^L(x') \\rangle + \\sigma_b^2,

the covariance of the outputs given every layer but the last (NTK parameterization). Unlike the
outer product :math:`f(x) f(x')^\\top` of a single network (``readout="output"``, neural-tangents'
``empirical_nngp_fn``), which stays random at infinite width for a fixed number of outputs, it
converges to the analytic NNGP as the width grows, with :math:`O(n^{-1/2})` fluctuations.

Functions:

* :func:`ntk`, :func:`nngp`: any stax network (FCN, CNN, ...) through neural-tangents'
  ``empirical_ntk_fn`` in any of its implementations.
* :func:`fcn_kernels`, :func:`fcn_ntk`: a fast path for fully connected networks that uses the
  layer structure instead of Jacobians (see :func:`fcn_kernels`).
* :func:`cnn_kernels`: the same for the CNNs of :func:`ntklit.nets.cnn` (Gram matrices over
  positions instead of Jacobians, whose size grows with the channels squared).
* :func:`ensemble`, :func:`ensemble_kernels`, :func:`fcn_ensemble_kernels`,
  :func:`cnn_ensemble_kernels`: kernels of many
  independently initialized networks at once (``vmap`` over seeds, chunked to fit memory).
* :func:`fluctuation_stats`, :func:`relative_frobenius_error`: statistics over an ensemble.

Reference for the neural-tangents implementations: Novak et al., "Fast Finite Width Neural
Tangent Kernel", arXiv:2206.08720. The NTK: Jacot et al., arXiv:1806.07572.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate
from . import compat as _compat

_compat.apply()

import neural_tangents as nt  # noqa: E402  (needs the compat patches first)

__all__ = [
    "IMPLEMENTATIONS",
    "ACTIVATIONS",
    "Kernels",
    "FluctuationStats",
    "ntk",
    "nngp",
    "kernels",
    "dense_layers",
    "fcn_kernels",
    "fcn_ntk",
    "PADDINGS",
    "CNN_READOUTS",
    "cnn_layers",
    "cnn_kernels",
    "cnn_ensemble_kernels",
    "ensemble",
    "ensemble_kernels",
    "fcn_ensemble_kernels",
    "auto_chunk_size",
    "INIT_MODES",
    "fluctuation_stats",
    "relative_frobenius_error",
    "Sweep",
    "width_sweep",
]

#: neural-tangents' empirical NTK implementations by name (``nt.NtkImplementation``).
IMPLEMENTATIONS: dict[str, int] = {
    "auto": 0,
    "jacobian_contraction": 1,
    "ntk_vector_products": 2,
    "structured_derivatives": 3,
}


def _relu(x):
    return jnp.maximum(x, 0)


def _erf(x):
    return jax.scipy.special.erf(x)


#: Elementwise activations understood by the FCN fast path. They match neural-tangents'
#: ``stax.Relu()``, ``stax.Erf()`` (:math:`\mathrm{erf}(x)`), ``jnp.tanh`` and the identity.
ACTIVATIONS: dict[str, Callable] = {
    "relu": _relu,
    "erf": _erf,
    "tanh": jnp.tanh,
    "linear": lambda x: x,
}


class Kernels(NamedTuple):
    """An empirical NNGP and NTK pair.

    Attributes:
      nngp: shape ``(..., N1, N2)`` (or ``(..., N1, N2, k, k)`` untraced).
      ntk: same shape as ``nngp``.
    """

    nngp: Any
    ntk: Any


class FluctuationStats(NamedTuple):
    """Per-entry statistics of a kernel over an ensemble of networks.

    Attributes:
      mean: :math:`\\mathbb{E}[\\Theta]`, shape of one kernel.
      var: unbiased sample variance :math:`\\mathrm{Var}[\\Theta]` (``ddof=1``).
      normalized: :math:`\\mathrm{Var}[\\Theta] / \\mathbb{E}[\\Theta]^2` per entry.
      n_samples: number of networks.
    """

    mean: np.ndarray
    var: np.ndarray
    normalized: np.ndarray
    n_samples: int


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def _check_inputs(x1, x2):
    """Validate ``x1``/``x2`` and return them as arrays (``x2`` may be ``None``)."""
    x1 = jnp.asarray(x1)
    if x1.ndim < 2 or x1.shape[0] < 1:
        raise ValueError(
            f"x1 must have shape (N1, ...) with N1 >= 1 and at least 2 axes, got shape {x1.shape}"
        )
    if x2 is not None:
        x2 = jnp.asarray(x2)
        if x2.ndim != x1.ndim or x2.shape[1:] != x1.shape[1:] or x2.shape[0] < 1:
            raise ValueError(
                f"x2 must have shape (N2, {', '.join(map(str, x1.shape[1:]))}) "
                f"like x1 = {x1.shape}, got {x2.shape}"
            )
    return x1, x2


def _check_implementation(implementation) -> int:
    if isinstance(implementation, (int, np.integer)) and not isinstance(implementation, bool):
        return _validate.integer("implementation", implementation, minimum=0, maximum=3)
    return IMPLEMENTATIONS[
        _validate.choice("implementation", implementation, tuple(IMPLEMENTATIONS))
    ]


def _check_readout(readout: str) -> None:
    _validate.choice("readout", readout, ("conditional", "output"))


# ---------------------------------------------------------------------------------------------
# Any stax network: neural-tangents' implementations
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _nt_ntk_fn(apply_fn, implementation: int, trace_outputs: bool):
    fn = nt.empirical_ntk_fn(
        apply_fn,
        trace_axes=(-1,) if trace_outputs else (),
        vmap_axes=0,
        implementation=implementation,
    )
    return jax.jit(fn)


@functools.lru_cache(maxsize=128)
def _nt_nngp_fn(apply_fn, trace_outputs: bool):
    return jax.jit(nt.empirical_nngp_fn(apply_fn, trace_axes=(-1,) if trace_outputs else ()))


def ntk(
    apply_fn: Callable,
    params,
    x1,
    x2=None,
    *,
    implementation: str | int = "jacobian_contraction",
    trace_outputs: bool = True,
):
    """Empirical NTK of any stax network via neural-tangents' ``empirical_ntk_fn``.

    .. math:: \\Theta(x, x') = \\frac{1}{k}\\sum_a \\sum_p \\partial_{\\theta_p} f_a(x)\\,
              \\partial_{\\theta_p} f_a(x')

    Args:
      apply_fn: ``apply_fn(params, x)`` of a stax network (e.g. from :mod:`ntklit.nets`).
      params: its parameters (any initialization).
      x1: inputs, shape ``(N1, ...)``.
      x2: inputs, shape ``(N2, ...)`` with the same trailing shape; ``None`` means ``x1``.
      implementation: ``"jacobian_contraction"`` (default, most reliable),
        ``"ntk_vector_products"``, ``"structured_derivatives"`` or ``"auto"``
        (arXiv:2206.08720), or the integer codes 1, 2, 3, 0.
      trace_outputs: trace (and average) over the output axis, as ``trace_axes=(-1,)``.

    Returns:
      Array of shape ``(N1, N2)``, or ``(N1, N2, k, k)`` if ``trace_outputs=False``, in the
      dtype of ``params``/inputs.

    Raises:
      ValueError: for mismatched input shapes or an unknown ``implementation``.
    """
    impl = _check_implementation(implementation)
    x1, x2 = _check_inputs(x1, x2)
    return _nt_ntk_fn(apply_fn, impl, bool(trace_outputs))(x1, x2, params)


def _readout_path(params):
    """Path (tuple of indices) of the last Dense/Conv-like ``(W, b)`` layer in stax params."""
    found = None

    def visit(node, path):
        nonlocal found
        if isinstance(node, (list, tuple)):
            if (
                len(node) == 2
                and hasattr(node[0], "ndim")
                and node[0].ndim >= 2
                and (node[1] is None or hasattr(node[1], "ndim"))
            ):
                found = path
                return
            for i, child in enumerate(node):
                visit(child, path + (i,))

    visit(params, ())
    if found is None:
        raise ValueError(
            "params contain no (W, b) layer: expected stax params of a network "
            "ending in a Dense layer"
        )
    return found


def _get_path(tree, path):
    for i in path:
        tree = tree[i]
    return tree


def _set_path(tree, path, value):
    if not path:
        return value
    i, rest = path[0], path[1:]
    items = list(tree)
    items[i] = _set_path(items[i], rest, value)
    return type(tree)(items) if isinstance(tree, tuple) else items


@functools.lru_cache(maxsize=128)
def _conditional_nngp_fn(apply_fn, path: tuple, trace_outputs: bool):
    def fn(x1, x2, params):
        def g(readout, x):
            return apply_fn(_set_path(params, path, readout), x)

        f = nt.empirical_ntk_fn(
            g, trace_axes=(-1,) if trace_outputs else (), vmap_axes=0, implementation=1
        )
        return f(x1, x2, _get_path(params, path))

    return jax.jit(fn)


def nngp(
    apply_fn: Callable,
    params,
    x1,
    x2=None,
    *,
    readout: str = "conditional",
    trace_outputs: bool = True,
):
    """Empirical NNGP of one network.

    ``readout="conditional"`` (default): the output covariance given all layers but the readout,
    :math:`\\mathbb{E}_{W^{L+1}, b^{L+1}}[f(x) f(x')^\\top]/k`. In the NTK parameterization
    (readout weights i.i.d. :math:`N(0,1)`) the output is linear in them, so this equals the NTK
    restricted to the readout parameters, which is how it is computed here (a Jacobian
    contraction over the readout layer only). It converges to the analytic NNGP as the width
    grows. ``readout="output"``: the outer product :math:`f(x) f(x')^\\top / k` of this network
    (neural-tangents' ``empirical_nngp_fn``), which does not converge for fixed :math:`k`.

    Args:
      apply_fn: ``apply_fn(params, x)`` of a stax network ending in a ``Dense`` readout.
      params: its parameters, NTK parameterization for ``"conditional"``.
      x1: inputs, shape ``(N1, ...)``.
      x2: inputs, shape ``(N2, ...)``; ``None`` means ``x1``.
      readout: ``"conditional"`` or ``"output"``.
      trace_outputs: trace (and average) over the output axis.

    Returns:
      Array of shape ``(N1, N2)`` (or ``(N1, N2, k, k)`` if ``trace_outputs=False``).

    Raises:
      ValueError: for mismatched input shapes, an unknown ``readout``, or params without a
        ``(W, b)`` readout layer.
    """
    _check_readout(readout)
    x1, x2 = _check_inputs(x1, x2)
    if readout == "output":
        return _nt_nngp_fn(apply_fn, bool(trace_outputs))(x1, x2, params)
    path = _readout_path(params)
    return _conditional_nngp_fn(apply_fn, path, bool(trace_outputs))(x1, x2, params)


def kernels(
    apply_fn: Callable,
    params,
    x1,
    x2=None,
    *,
    implementation: str | int = "jacobian_contraction",
    trace_outputs: bool = True,
) -> Kernels:
    """Both :func:`nngp` (readout-conditional) and :func:`ntk` of any stax network.

    Args:
      apply_fn, params, x1, x2, implementation, trace_outputs: as in :func:`ntk`.

    Returns:
      :class:`Kernels` of arrays of shape ``(N1, N2)`` (``(N1, N2, k, k)`` untraced).
    """
    return Kernels(
        nngp(apply_fn, params, x1, x2, trace_outputs=trace_outputs),
        ntk(apply_fn, params, x1, x2, implementation=implementation, trace_outputs=trace_outputs),
    )


# ---------------------------------------------------------------------------------------------
# FCN fast path
# ---------------------------------------------------------------------------------------------


def _weight_pairs(params, bare_arrays: str | None = None) -> list[tuple[Any, Any]]:
    """The ``(W, b)`` pairs of (possibly nested) stax parameters, in order (``b`` may be
    ``None``); with ``bare_arrays`` (the network kind, for the message) an array outside such
    a pair raises ``ValueError``, otherwise it is ignored."""
    layers: list = []

    def visit(node):
        if isinstance(node, (list, tuple)):
            if (
                len(node) == 2
                and hasattr(node[0], "ndim")
                and (node[1] is None or hasattr(node[1], "ndim"))
            ):
                layers.append((node[0], node[1]))
                return
            for child in node:
                visit(child)
        elif bare_arrays and node is not None and hasattr(node, "ndim"):
            raise ValueError(
                f"params must be {bare_arrays} parameters: (W, b) pairs and empty "
                f"tuples, found a bare array of shape {node.shape}"
            )

    visit(params)
    return layers


def dense_layers(params) -> list[tuple[Any, Any]]:
    """The ``(W, b)`` pairs of a stax FCN's parameters, in order.

    Accepts the parameters of ``stax.serial(Dense, act, Dense, ..., Dense)`` (possibly nested,
    with ``()`` for parameter-free layers such as activations or ``Flatten``) or a plain list of
    ``(W, b)`` pairs. ``b`` may be ``None`` (``b_std=None``).

    Args:
      params: stax parameters.

    Returns:
      List of ``(W, b)`` with ``W`` of shape ``(n_in, n_out)`` and ``b`` of shape
      ``(1, n_out)``, ``(n_out,)`` or ``None``.

    Raises:
      ValueError: if there is no layer, a ``W`` is not a matrix, or consecutive widths do not
        match.
    """
    layers = _weight_pairs(params, bare_arrays="stax FCN")
    if not layers:
        raise ValueError("params contain no (W, b) layer")
    for i, (W, b) in enumerate(layers):
        if W.ndim != 2:
            raise ValueError(
                f"layer {i}: W must be a matrix (n_in, n_out) for the FCN fast "
                f"path, got shape {W.shape} (use ntk() for CNNs)"
            )
        if min(W.shape) < 1:
            raise ValueError(f"layer {i}: widths must be positive, W has shape {W.shape}")
        if i and W.shape[0] != layers[i - 1][0].shape[1]:
            raise ValueError(
                f"layer {i}: W has n_in = {W.shape[0]} but the previous layer has "
                f"n_out = {layers[i - 1][0].shape[1]}"
            )
        if b is not None and b.size != W.shape[1]:
            raise ValueError(f"layer {i}: b has {b.size} entries, expected {W.shape[1]}")
    return layers


def _check_fcn_args(activation, W_std, b_std, parameterization):
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)} or a callable, "
                f"got {activation!r}"
            )
        phi = ACTIVATIONS[activation]
    elif callable(activation):
        phi = activation
    else:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}"
        )
    _validate.choice("parameterization", parameterization, ("ntk", "standard"))
    if parameterization == "ntk":
        _validate.real("W_std", W_std, positive=True)
        if b_std is not None:
            _validate.real("b_std", b_std, positive=False)
    return phi


def _fcn_forward_backward(layers, x, phi, W_std, b_std, parameterization):
    """Activations entering each Dense layer and backpropagated output gradients.

    Returns:
      ``acts``: list over layers of arrays ``(N, n_in_l)``; ``deltas``: list over layers of
      ``(N, k, n_out_l)`` with ``deltas[l][i, a, j] = d f_a(x_i) / d h^l_j(x_i)`` where
      ``h^l`` is the output of Dense layer ``l``; ``alphas``/``betas``: the weight and bias
      multipliers of each layer.
    """
    acts, pre, alphas, betas = [], [], [], []
    h = x
    for i, (W, b) in enumerate(layers):
        a = h if i == 0 else phi(h)
        acts.append(a)
        if parameterization == "ntk":
            alpha = W_std / math.sqrt(W.shape[0])
            beta = 0.0 if (b is None or b_std is None) else b_std
        else:
            alpha, beta = 1.0, (0.0 if b is None else 1.0)
        alphas.append(alpha)
        betas.append(beta)
        h = alpha * (a @ W)
        if beta:
            h = h + beta * b.reshape(1, -1)
        pre.append(h)
    k = h.shape[-1]
    n = x.shape[0]
    delta = jnp.broadcast_to(jnp.eye(k, dtype=h.dtype), (n, k, k))
    deltas = [None] * len(layers)
    deltas[-1] = delta
    for i in range(len(layers) - 1, 0, -1):
        W = layers[i][0]
        back = alphas[i] * jnp.einsum("nak,jk->naj", delta, W)
        _, dphi = jax.jvp(phi, (pre[i - 1],), (jnp.ones_like(pre[i - 1]),))
        delta = back * dphi[:, None, :]
        deltas[i - 1] = delta
    return acts, deltas, alphas, betas


@functools.partial(
    jax.jit, static_argnames=("phi", "W_std", "b_std", "parameterization", "trace_outputs", "same")
)
def _fcn_kernels_jit(layers, x1, x2, *, phi, W_std, b_std, parameterization, trace_outputs, same):
    a1, d1, alphas, betas = _fcn_forward_backward(layers, x1, phi, W_std, b_std, parameterization)
    if same:
        a2, d2 = a1, d1
    else:
        a2, d2, _, _ = _fcn_forward_backward(layers, x2, phi, W_std, b_std, parameterization)
    k = d1[-1].shape[1]
    theta = None
    cov = None
    for l in range(len(layers)):
        cov = alphas[l] ** 2 * (a1[l] @ a2[l].T) + betas[l] ** 2
        if trace_outputs:
            g = jnp.einsum("iak,jak->ij", d1[l], d2[l]) / k
            term = cov * g
        else:
            g = jnp.einsum("iak,jbk->ijab", d1[l], d2[l])
            term = cov[:, :, None, None] * g
        theta = term if theta is None else theta + term
    if trace_outputs:
        nngp_ = cov
    else:
        nngp_ = cov[:, :, None, None] * jnp.eye(k, dtype=cov.dtype)
    return nngp_, theta


def fcn_kernels(
    params,
    x1,
    x2=None,
    *,
    activation: str | Callable = "relu",
    W_std: float = 1.0,
    b_std: float | None = 0.0,
    parameterization: str = "ntk",
    trace_outputs: bool = True,
) -> Kernels:
    """Empirical NNGP and NTK of a fully connected network from its layer structure.

    For ``f = h^{L+1}``, ``h^l = \\alpha_l x^{l-1} W^l + \\beta_l b^l``, ``x^l = \\phi(h^l)``
    (``\\alpha_l = \\sigma_w/\\sqrt{n_{l-1}}``, ``\\beta_l = \\sigma_b`` in NTK
    parameterization), the gradient of ``f_a`` with respect to ``W^l_{ij}`` is
    ``\\alpha_l x^{l-1}_i \\delta^l_{aj}`` with ``\\delta^l_a = \\partial f_a / \\partial h^l``,
    so the NTK is a sum over layers of Hadamard products of Gram matrices:

    .. math:: \\Theta(x, x') = \\sum_{l=1}^{L+1} \\big(\\alpha_l^2 \\langle x^{l-1}(x),
              x^{l-1}(x')\\rangle + \\beta_l^2\\big)\\,
              \\tfrac{1}{k}\\textstyle\\sum_a \\langle \\delta^l_a(x), \\delta^l_a(x')\\rangle

    and the readout-conditional NNGP is the ``l = L+1`` activation factor
    :math:`\\alpha_{L+1}^2 \\langle x^L(x), x^L(x')\\rangle + \\beta_{L+1}^2`. The cost is one
    forward and ``k`` backward passes per input plus ``O(N_1 N_2 n)`` per layer, instead of
    ``O(N_1 N_2 P)`` for a Jacobian contraction over ``P ~ L n^2`` parameters.

    Args:
      params: stax parameters of ``serial(Dense, act, ..., Dense)`` or a list of ``(W, b)``
        (see :func:`dense_layers`). The activation is applied between consecutive Dense layers.
      x1: inputs, shape ``(N1, n_0)``.
      x2: inputs, shape ``(N2, n_0)``; ``None`` means ``x1`` (and reuses its passes).
      activation: ``"relu"``, ``"erf"``, ``"tanh"``, ``"linear"`` or an elementwise callable.
      W_std: weight standard deviation :math:`\\sigma_w` (positive).
      b_std: bias standard deviation :math:`\\sigma_b` (non-negative) or ``None`` (no bias).
      parameterization: ``"ntk"`` or ``"standard"`` (stax' conventions).
      trace_outputs: average over the ``k`` outputs (``(N1, N2)`` result) or keep them
        (``(N1, N2, k, k)``).

    Returns:
      :class:`Kernels` ``(nngp, ntk)`` in the dtype of the inputs/params.

    Raises:
      ValueError: for mismatched shapes or an unknown activation/parameterization.
    """
    phi = _check_fcn_args(activation, W_std, b_std, parameterization)
    x1, x2 = _check_inputs(x1, x2)
    layers = dense_layers(params)
    if x1.ndim != 2:
        raise ValueError(f"x1 must have shape (N1, n_0) for the FCN fast path, got {x1.shape}")
    if x1.shape[1] != layers[0][0].shape[0]:
        raise ValueError(
            f"x1 has {x1.shape[1]} features but the first layer expects "
            f"n_0 = {layers[0][0].shape[0]}"
        )
    layers = [(W, b) for W, b in layers]
    out = _fcn_kernels_jit(
        layers,
        x1,
        x1 if x2 is None else x2,
        phi=phi,
        W_std=float(W_std),
        b_std=None if b_std is None else float(b_std),
        parameterization=parameterization,
        trace_outputs=bool(trace_outputs),
        same=x2 is None,
    )
    return Kernels(*out)


def fcn_ntk(params, x1, x2=None, **kwargs):
    """Empirical NTK of an FCN by the fast path; see :func:`fcn_kernels`.

    Args:
      params: stax FCN parameters or a list of ``(W, b)``.
      x1: inputs ``(N1, n_0)``.
      x2: inputs ``(N2, n_0)`` or ``None``.
      **kwargs: ``activation``, ``W_std``, ``b_std``, ``parameterization``, ``trace_outputs``
        as in :func:`fcn_kernels`.

    Returns:
      Array of shape ``(N1, N2)`` (``(N1, N2, k, k)`` if ``trace_outputs=False``).
    """
    return fcn_kernels(params, x1, x2, **kwargs).ntk


# ---------------------------------------------------------------------------------------------
# CNN fast path
# ---------------------------------------------------------------------------------------------

#: Paddings understood by the CNN fast path (neural-tangents' ``stax.Conv`` paddings).
PADDINGS = ("SAME", "VALID", "CIRCULAR")
#: Readouts of the CNN fast path (as :func:`ntklit.nets.cnn`).
CNN_READOUTS = ("gap", "flatten")


def cnn_layers(params) -> tuple[list[tuple[Any, Any]], tuple[Any, Any]]:
    """The Conv ``(W, b)`` pairs and the Dense readout of a stax CNN's parameters.

    Accepts the parameters of ``stax.serial(Conv, act, ..., Conv, act, GlobalAvgPool() or
    Flatten(), Dense)`` (the networks of :func:`ntklit.nets.cnn`), with ``()`` for
    parameter-free layers.

    Args:
      params: stax parameters.

    Returns:
      ``(convs, readout)``: ``convs`` a list of ``(W, b)`` with ``W`` of shape
      ``(*filter_shape, c_in, c_out)`` (``HWIO``) and ``b`` of shape ``(1, ..., 1, c_out)`` or
      ``None``; ``readout`` the ``(W, b)`` of the Dense layer, ``W`` of shape ``(d, k)``.

    Raises:
      ValueError: if the last layer is not Dense, a Conv kernel is not ``(*filter, c_in,
        c_out)`` with the previous layer's channels, or a Dense layer precedes a Conv.
    """
    layers = _weight_pairs(params)
    if not layers or layers[-1][0].ndim != 2:
        raise ValueError(
            "params must be those of a stax CNN ending in a Dense readout "
            "(Conv layers, activations, GlobalAvgPool/Flatten, Dense)"
        )
    convs, readout = layers[:-1], layers[-1]
    for i, (W, b) in enumerate(convs):
        if W.ndim < 3:
            raise ValueError(
                f"layer {i}: expected a Conv kernel (*filter_shape, c_in, c_out), "
                f"got shape {W.shape} (a Dense layer before the readout?)"
            )
        if i and W.shape[-2] != convs[i - 1][0].shape[-1]:
            raise ValueError(
                f"layer {i}: Conv kernel has c_in = {W.shape[-2]} but the previous "
                f"layer has c_out = {convs[i - 1][0].shape[-1]}"
            )
        if b is not None and b.size != W.shape[-1]:
            raise ValueError(f"layer {i}: b has {b.size} entries, expected {W.shape[-1]}")
    return convs, readout


def _dimension_numbers(nsp: int) -> tuple[str, str, str]:
    """``("NHWC", "HWIO", "NHWC")`` for ``nsp = 2`` spatial axes, likewise for 1 to 3."""
    sp = "HWD"[:nsp]
    return f"N{sp}C", f"{sp}IO", f"N{sp}C"


def _pad_spatial(a, filter_shape, padding):
    """Pad ``a`` (``(N, *spatial, C)``) so that a ``VALID`` convolution implements ``padding``
    (neural-tangents' ``CIRCULAR``: the ``SAME`` pads, filled periodically)."""
    if padding == "VALID":
        return a
    pads = jax.lax.padtype_to_pads(a.shape[1:-1], filter_shape, (1,) * len(filter_shape), "SAME")
    widths = [(0, 0)] + [tuple(p) for p in pads] + [(0, 0)]
    return jnp.pad(a, widths, mode="wrap" if padding == "CIRCULAR" else "constant")


def _cnn_forward_backward(convs, readout, x, phi, W_std, b_std, readout_mode, padding):
    """Padded activations entering every Conv layer, backpropagated output gradients and the
    readout features of one CNN on ``x`` (``(N, *spatial, C)``).

    Returns:
      ``pads``: list over Conv layers of ``(N, *padded_spatial, c_in)``; ``deltas``: list of
      ``(k, N, *spatial_out, c_out)`` with ``deltas[l][a] = d f_a / d h^l`` (``h^l`` the output
      of Conv layer ``l``); ``feats``: ``(N, d)`` inputs of the readout; ``alphas``: the Conv
      weight scales :math:`\\sigma_w / \\sqrt{c_\\text{in} \\prod \\text{filter}}`.
    """
    nsp = x.ndim - 2
    dn = _dimension_numbers(nsp)
    alphas = [W_std / math.sqrt(math.prod(W.shape[:-1])) for W, _ in convs]

    def forward(eps):
        a, pads = x, []
        for l, (W, b) in enumerate(convs):
            ap = _pad_spatial(a, W.shape[:-2], padding)
            pads.append(ap)
            h = alphas[l] * jax.lax.conv_general_dilated(
                ap, W, (1,) * nsp, "VALID", dimension_numbers=dn
            )
            if b is not None and b_std:
                h = h + b_std * b
            a = phi(h + eps[l])
        feats = (
            a.mean(axis=tuple(range(1, nsp + 1)))
            if readout_mode == "gap"
            else (a.reshape(a.shape[0], -1))
        )
        Wr, br = readout
        f = W_std / math.sqrt(feats.shape[1]) * (feats @ Wr)
        if br is not None and b_std:
            f = f + b_std * br.reshape(1, -1)
        return f, (pads, feats)

    shapes = jax.eval_shape(lambda: _cnn_preact_shapes(convs, x, padding, dn))
    eps0 = [jnp.zeros(s.shape, x.dtype) for s in shapes]
    f, vjp, (pads, feats) = jax.vjp(forward, eps0, has_aux=True)
    k = f.shape[1]
    basis = jnp.broadcast_to(jnp.eye(k, dtype=f.dtype)[:, None, :], (k,) + f.shape)
    deltas = jax.vmap(lambda ct: vjp(ct)[0])(basis)  # list of (k, N, *spatial, c_out)
    return pads, deltas, feats, alphas


def _cnn_preact_shapes(convs, x, padding, dn):
    out, a = [], x
    for W, _ in convs:
        ap = _pad_spatial(a, W.shape[:-2], padding)
        a = jax.lax.conv_general_dilated(ap, W, (1,) * (x.ndim - 2), "VALID", dimension_numbers=dn)
        out.append(a)
    return out


def _patch_gram(p1, p2, filter_shape):
    """:math:`\\sum_t \\langle a_{s+t}(x), a_{s'+t}(x')\\rangle` for every pair of output
    positions: ``(N1, *out, N2, *out)`` from padded activations ``(N, *padded, C)``.

    The Gram of the padded activations (``O(N_1 N_2 P^2 C)`` for ``P`` padded positions),
    summed over the filter taps ``t`` by slicing; no ``(N, positions, C prod(filter))`` patch
    matrix is formed.
    """
    nsp = len(filter_shape)
    sp = "hwdxyz"[:nsp]
    sq = "HWDXYZ"[:nsp]
    G = jnp.einsum(f"n{sp}c,m{sq}c->n{sp}m{sq}", p1, p2)
    out = [p1.shape[1 + i] - filter_shape[i] + 1 for i in range(nsp)]
    total = None
    for t in np.ndindex(*filter_shape):
        sl = tuple(slice(t[i], t[i] + out[i]) for i in range(nsp))
        piece = G[(slice(None),) + sl + (slice(None),) + sl]
        total = piece if total is None else total + piece
    return total


@functools.partial(
    jax.jit,
    static_argnames=("phi", "W_std", "b_std", "readout_mode", "padding", "trace_outputs", "same"),
)
def _cnn_kernels_jit(
    convs, readout, x1, x2, *, phi, W_std, b_std, readout_mode, padding, trace_outputs, same
):
    p1, d1, f1, alphas = _cnn_forward_backward(
        convs, readout, x1, phi, W_std, b_std, readout_mode, padding
    )
    if same:
        p2, d2, f2 = p1, d1, f1
    else:
        p2, d2, f2, _ = _cnn_forward_backward(
            convs, readout, x2, phi, W_std, b_std, readout_mode, padding
        )
    nsp = x1.ndim - 2
    sp, sq = "hwdxyz"[:nsp], "HWDXYZ"[:nsp]
    k = readout[0].shape[1]
    beta = b_std if b_std else 0.0
    cov = W_std**2 / f1.shape[1] * (f1 @ f2.T) + (beta**2 if readout[1] is not None else 0.0)
    eye = jnp.eye(k, dtype=cov.dtype)
    theta = cov if trace_outputs else cov[:, :, None, None] * eye
    for l, (W, b) in enumerate(convs):
        P = alphas[l] ** 2 * _patch_gram(p1[l], p2[l], W.shape[:-2])
        if b is not None and beta:
            P = P + beta**2
        if trace_outputs:
            D = jnp.einsum(f"an{sp}c,am{sq}c->n{sp}m{sq}", d1[l], d2[l]) / k
            theta = theta + jnp.einsum(f"n{sp}m{sq},n{sp}m{sq}->nm", P, D)
        else:
            D = jnp.einsum(f"an{sp}c,bm{sq}c->n{sp}m{sq}ab", d1[l], d2[l])
            theta = theta + jnp.einsum(f"n{sp}m{sq},n{sp}m{sq}ab->nmab", P, D)
    nngp_ = cov if trace_outputs else cov[:, :, None, None] * eye
    return nngp_, theta


def _check_cnn_args(activation, W_std, b_std, readout, padding):
    phi = _check_fcn_args(activation, W_std, b_std, "ntk")
    _validate.choice("readout", readout, CNN_READOUTS)
    _validate.choice("padding", padding, PADDINGS)
    return phi


def cnn_kernels(
    params,
    x1,
    x2=None,
    *,
    activation: str | Callable = "relu",
    W_std: float = 1.0,
    b_std: float | None = 0.0,
    readout: str = "gap",
    padding: str = "SAME",
    trace_outputs: bool = True,
) -> Kernels:
    """Empirical NNGP and NTK of a CNN (:func:`ntklit.nets.cnn`) from its layer structure.

    A Conv layer :math:`h^l_s = \\alpha_l \\sum_t W^l_t\\, a^{l-1}_{s+t} + \\beta\\, b^l`
    (positions :math:`s`, filter taps :math:`t`, padded input, :math:`\\alpha_l = \\sigma_w /
    \\sqrt{c_\\text{in} |\\text{filter}|}`, NTK parameterization) has weight gradients
    :math:`\\partial f_a / \\partial W^l_t = \\alpha_l \\sum_s a^{l-1}_{s+t}\\,
    \\delta^l_{a,s}{}^\\top` with :math:`\\delta^l_{a,s} = \\partial f_a / \\partial h^l_s`, so

    .. math:: \\Theta(x, x') = {} & \\sum_l \\sum_{s, s'} \\Big(\\alpha_l^2 \\sum_t \\langle
              a^{l-1}_{s+t}(x), a^{l-1}_{s'+t}(x')\\rangle + \\beta^2\\Big) \\\\
              & \\times \\tfrac1k \\textstyle\\sum_a \\langle\\delta^l_{a,s}(x),
              \\delta^l_{a,s'}(x')\\rangle + \\tfrac{\\sigma_w^2}{d}\\langle r(x), r(x')\\rangle
              + \\beta^2,

    with :math:`r` the ``d`` readout features (global average or flattened last activations);
    the last term is the readout-conditional NNGP. The cost is one forward and ``k``
    backward passes plus Gram matrices over positions, ``O(N_1 N_2 P^2 c)`` per layer for
    ``P`` positions; the Jacobian (``N`` times the parameter count, 9.7 GB for 16 images and
    one 4096-channel ``3 x 3`` layer in float32) is never formed. Compare the layer sum of
    :func:`fcn_kernels` and the structured derivatives of arXiv:2206.08720.

    Args:
      params: stax parameters of a CNN as built by :func:`ntklit.nets.cnn` (see
        :func:`cnn_layers`), NTK parameterization.
      x1: images ``(N1, *spatial, C)`` (``NHWC``); x2: ``(N2, ...)`` or ``None`` (``x1``).
      activation: ``"relu"``, ``"erf"``, ``"tanh"``, ``"linear"`` or an elementwise callable.
      W_std, b_std: :math:`\\sigma_w > 0`, :math:`\\sigma_b \\ge 0` (or ``None``).
      readout: ``"gap"`` or ``"flatten"``.
      padding: ``"SAME"``, ``"VALID"`` or ``"CIRCULAR"`` of every Conv layer (stride 1).
      trace_outputs: average over the ``k`` outputs (``(N1, N2)``) or keep them
        (``(N1, N2, k, k)``).

    Returns:
      :class:`Kernels` ``(nngp, ntk)`` in the dtype of the inputs/params.

    Raises:
      ValueError: for mismatched shapes, parameters that are not a CNN's, or an unknown
        activation, readout or padding.
    """
    phi = _check_cnn_args(activation, W_std, b_std, readout, padding)
    x1, x2 = _check_inputs(x1, x2)
    convs, ro = cnn_layers(params)
    if not 3 <= x1.ndim <= 5:
        raise ValueError(
            f"x1 must have shape (N1, *spatial, C) with 1 to 3 spatial axes for "
            f"the CNN fast path, got {x1.shape}"
        )
    c_in = convs[0][0].shape[-2] if convs else None
    if convs and (x1.shape[-1] != c_in or convs[0][0].ndim != x1.ndim):
        raise ValueError(
            f"x1 has shape {x1.shape} but the first Conv kernel has shape "
            f"{convs[0][0].shape} (expected {x1.ndim - 2} spatial axes and "
            f"{c_in} channels)"
        )
    out = _cnn_kernels_jit(
        list(convs),
        ro,
        x1,
        x1 if x2 is None else x2,
        phi=phi,
        W_std=float(W_std),
        b_std=None if b_std is None else float(b_std),
        readout_mode=readout,
        padding=padding,
        trace_outputs=bool(trace_outputs),
        same=x2 is None,
    )
    return Kernels(*out)


# ---------------------------------------------------------------------------------------------
# Ensembles over seeds
# ---------------------------------------------------------------------------------------------


def auto_chunk_size(
    init_fn: Callable,
    input_shape: Sequence[int],
    n_samples: int,
    *,
    memory_bytes: int = 2**30,
    overhead: float = 4.0,
) -> int:
    """How many networks to evaluate at once so that their parameters fit a memory budget.

    Estimates one network's footprint as ``overhead`` times its parameter bytes (parameters,
    their sampling and the activations of a small batch) from ``jax.eval_shape(init_fn)``.

    Args:
      init_fn: stax ``init_fn(key, input_shape)``.
      input_shape: e.g. ``(-1, n_0)``.
      n_samples: ensemble size (upper bound of the result).
      memory_bytes: budget.
      overhead: multiplier on parameter bytes.

    Returns:
      An integer in ``[1, n_samples]``.
    """
    n_samples = _validate.integer("n_samples", n_samples)
    memory_bytes = _validate.integer("memory_bytes", memory_bytes)
    overhead = _validate.real("overhead", overhead, positive=True)
    leaves = _init_trace(init_fn, tuple(int(d) for d in input_shape))[1]
    nbytes = sum(math.prod(s.shape) * s.dtype.itemsize for s in leaves)
    per = max(1.0, overhead * nbytes)
    return int(max(1, min(n_samples, memory_bytes // per)))


#: Allowed values of ``init_mode`` (see :func:`ensemble`).
INIT_MODES = ("auto", "vmap", "map", "loop")

#: Primitives that XLA:CPU runs as LAPACK custom calls (jaxlib's ``lapack_*_ffi`` kernels).
#: Batched (``vmap``-ed) over an ensemble they are the calls that can deadlock on CPU, see
#: :func:`ensemble`.
_LAPACK_PRIMITIVES = frozenset(
    {
        "qr",
        "householder_product",
        "geqrf",
        "geqp3",
        "eigh",
        "eig",
        "svd",
        "cholesky",
        "lu",
        "schur",
        "hessenberg",
        "tridiagonal",
        "tridiagonal_solve",
    }
)


def _primitive_names(jaxpr, names: set) -> set:
    """Names of all primitives in ``jaxpr`` and its sub-jaxprs (``jit``, ``cond``, ...)."""
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                if hasattr(sub, "eqns"):
                    _primitive_names(sub, names)
                elif hasattr(getattr(sub, "jaxpr", None), "eqns"):
                    _primitive_names(sub.jaxpr, names)
    return names


@functools.lru_cache(maxsize=64)
def _init_trace(init_fn, input_shape: tuple) -> tuple[tuple[str, ...], tuple]:
    """One trace of ``init_fn``: the LAPACK-backed primitives it uses (e.g. ``qr`` of an
    orthogonal init) and the shapes/dtypes of its parameter leaves."""
    jaxpr, shapes = jax.make_jaxpr(lambda k: init_fn(k, input_shape)[1], return_shape=True)(
        jax.random.key(0)
    )
    lapack = tuple(sorted(_primitive_names(jaxpr.jaxpr, set()) & _LAPACK_PRIMITIVES))
    return lapack, tuple(jax.tree_util.tree_leaves(shapes))


#: On CPU, ``init_mode="auto"`` draws networks with at least this many parameters one at a time
#: (``"map"``) rather than batched (``"vmap"``); see :func:`ensemble`.
MAP_ABOVE_PARAMS = 2**17


def _resolve_init_mode(init_mode: str, init_fn, input_shape) -> str:
    """``init_mode`` after ``"auto"`` is resolved; rejects ``"vmap"`` where it would deadlock."""
    _validate.choice("init_mode", init_mode, INIT_MODES)
    if init_mode in ("map", "loop") or jax.default_backend() != "cpu":
        return "vmap" if init_mode == "auto" else init_mode
    lapack, leaves = _init_trace(init_fn, input_shape)
    if init_mode == "auto":
        big = sum(math.prod(s.shape) for s in leaves) >= MAP_ABOVE_PARAMS
        return "map" if lapack or big else "vmap"
    if lapack:
        raise ValueError(
            f"init_mode must be one of ['auto', 'map', 'loop'] for this init_fn on CPU, got "
            f"'vmap': the init uses LAPACK primitives {list(lapack)} (e.g. the QR of an "
            f"orthogonal init), and vmapped over an ensemble they become batched LAPACK calls, "
            f"which jaxlib {jax.__version__} runs on XLA:CPU's intra-op thread pool: two such "
            f"calls running concurrently (one per layer) block every pool thread and the "
            f"program deadlocks. 'map' (or 'auto') draws the networks one at a time inside the "
            f"compiled program instead."
        )
    return init_mode


@functools.lru_cache(maxsize=64)
def _ensemble_runner(fn, init_fn, input_shape, init_mode: str):
    def draw(k):
        return init_fn(k, input_shape)[1]

    @jax.jit
    def run(keys, args):
        if init_mode == "vmap":
            return jax.vmap(lambda k: fn(draw(k), *args))(keys)
        params = jax.lax.map(draw, keys)  # one network at a time, inside the program
        return jax.vmap(lambda p: fn(p, *args))(params)

    return run


@functools.lru_cache(maxsize=64)
def _init_one(init_fn, input_shape):
    return jax.jit(lambda k: init_fn(k, input_shape)[1])


@functools.lru_cache(maxsize=64)
def _kernel_runner(fn):
    return jax.jit(jax.vmap(lambda p, args: fn(p, *args), in_axes=(0, None)))


def ensemble(
    fn: Callable,
    init_fn: Callable,
    key,
    input_shape: Sequence[int],
    n_samples: int,
    *,
    args: tuple = (),
    chunk_size: int | None = None,
    memory_bytes: int = 2**30,
    init_mode: str = "auto",
):
    """Evaluate ``fn(params, *args)`` for ``n_samples`` independently initialized networks.

    The networks are drawn with ``init_fn(k_i, input_shape)`` for ``k_i`` in
    ``jax.random.split(key, n_samples)`` (the same networks in every ``init_mode``), and ``fn``
    is vectorized over them with ``jax.vmap``, ``chunk_size`` networks at a time (one compiled
    function per ``(fn, init_fn, input_shape, init_mode)``, cached across calls; the last
    chunk is padded). Pass arrays such as inputs through ``args`` (not a closure) so that the
    compiled function is reused.

    ``init_mode`` chooses how each chunk's parameters are drawn:

    * ``"vmap"``: inside the vectorized call (``vmap`` of ``init_fn``): one batched random
      draw per layer for the whole chunk. Fastest where the init is random-number generation
      only (Gaussian).
    * ``"map"``: inside the same compiled call, one network after another
      (``jax.lax.map`` over the keys), then ``fn`` vectorized over the stacked parameters. No
      Python dispatch per network, and no batched LAPACK calls.
    * ``"loop"``: one compiled ``init_fn`` call per network from Python, then ``fn``
      vectorized over the stacked parameters.
    * ``"auto"`` (default): on CPU, ``"map"`` when ``init_fn`` uses LAPACK-backed primitives
      (the QR of an orthogonal init) or a network has at least ``MAP_ABOVE_PARAMS``
      parameters, ``"vmap"`` otherwise; ``"vmap"`` on other backends. Measured on 2 CPU cores
      for 100 Gaussian FCNs: depth 2, width 128 (25k parameters each) 35 ms with ``"vmap"``,
      45 ms with ``"map"``; depth 1, width 256 on 1024 inputs (263k) 0.62 s vs 0.40 s; depth 2,
      width 512 (296k) 0.73 s vs 0.46 s. Either way the time is dominated by drawing the
      random numbers, which batching does not make cheaper on a CPU.

    Why not ``"vmap"`` for an orthogonal init on CPU: vmapped, each layer's QR becomes a
    batched LAPACK custom call, and jaxlib 0.10's CPU LAPACK kernels split a batch into tasks
    on XLA's intra-op thread pool (one thread per core) and block that pool thread until the
    tasks finish. When as many such calls run concurrently as the pool has threads (the QRs of
    two independent layers on a 2-core machine), every thread waits for tasks that no thread is
    free to run: a deadlock (observed: a depth-2, width-128 orthogonal FCN ensemble of 100
    networks hung with all threads asleep in ``jax::ParallelBatchMap``; a batch of one, as in
    ``"map"``, is run inline without the pool). So on CPU ``init_mode="vmap"`` with such an
    init raises ``ValueError`` instead of hanging.

    The QRs of orthogonal inits run in the OpenBLAS that jaxlib's CPU LAPACK kernels call;
    ``import ntklit`` limits it to one thread (``ntklit._threads``, ``NTKLIT_BLAS_THREADS``),
    without which its threads compete with XLA's: 48 orthogonal width-256 networks on
    1024-dimensional inputs took 19-78 s instead of 0.9 s (2 shared cores, load ~7).

    Args:
      fn: hashable function ``fn(params, *args)`` returning a pytree of arrays (a module-level
        function or a frozen dataclass; a fresh closure recompiles on every call).
      init_fn: stax ``init_fn(key, input_shape) -> (output_shape, params)``; any initialization
        (e.g. ``ntklit.nets.fcn(..., init="orthogonal")[0]``).
      key: a JAX PRNG key.
      input_shape: input shape for ``init_fn``, e.g. ``(-1, n_0)``.
      n_samples: number of networks (positive).
      args: extra array arguments of ``fn``.
      chunk_size: networks per vectorized call; ``None`` picks one with
        :func:`auto_chunk_size` for ``memory_bytes``.
      memory_bytes: memory budget used when ``chunk_size`` is ``None``.
      init_mode: ``"auto"``, ``"vmap"``, ``"map"`` or ``"loop"`` (see above).

    Returns:
      ``fn``'s pytree with a leading axis of size ``n_samples``.

    Raises:
      ValueError: for a bad ``key``, a non-positive ``n_samples`` or ``chunk_size``, an unknown
        ``init_mode``, or ``init_mode="vmap"`` with a LAPACK-based init on CPU.
    """
    _validate.prng_key(key)
    n_samples = _validate.integer("n_samples", n_samples)
    chunk_size = _validate.integer("chunk_size", chunk_size, allow_none=True)
    input_shape = tuple(int(d) for d in input_shape)
    init_mode = _resolve_init_mode(init_mode, init_fn, input_shape)
    if chunk_size is None:
        chunk_size = auto_chunk_size(init_fn, input_shape, n_samples, memory_bytes=memory_bytes)
    chunk_size = min(chunk_size, n_samples)
    keys = jax.random.split(key, n_samples)
    n_chunks = -(-n_samples // chunk_size)
    pad = n_chunks * chunk_size - n_samples
    if pad:
        keys = jnp.concatenate([keys, jnp.broadcast_to(keys[-1:], (pad,) + keys.shape[1:])])
    if init_mode in ("vmap", "map"):
        run = _ensemble_runner(fn, init_fn, input_shape, init_mode)
        outs = [
            run(keys[i * chunk_size : (i + 1) * chunk_size], tuple(args)) for i in range(n_chunks)
        ]
    else:
        init_one, run = _init_one(init_fn, input_shape), _kernel_runner(fn)
        outs = []
        for i in range(n_chunks):
            ps = [init_one(k) for k in keys[i * chunk_size : (i + 1) * chunk_size]]
            params = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *ps)
            outs.append(run(params, tuple(args)))
    if n_chunks == 1:
        out = outs[0]
    else:
        out = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *outs)
    return out if not pad else jax.tree_util.tree_map(lambda x: x[:n_samples], out)


@dataclasses.dataclass(frozen=True)
class _NtKernels:
    """Hashable ``fn(params, x1, x2)`` giving :class:`Kernels` via neural-tangents."""

    apply_fn: Callable
    implementation: int
    trace_outputs: bool

    def __call__(self, params, x1, x2):
        path = _readout_path(params)
        return Kernels(
            _conditional_nngp_fn(self.apply_fn, path, self.trace_outputs)(x1, x2, params),
            _nt_ntk_fn(self.apply_fn, self.implementation, self.trace_outputs)(x1, x2, params),
        )


@dataclasses.dataclass(frozen=True)
class _FcnKernels:
    """Hashable ``fn(params, x1, x2)`` giving :class:`Kernels` by the FCN fast path."""

    phi: Callable
    W_std: float
    b_std: float | None
    parameterization: str
    trace_outputs: bool
    same: bool

    def __call__(self, params, x1, x2):
        return Kernels(
            *_fcn_kernels_jit(
                dense_layers(params),
                x1,
                x2,
                phi=self.phi,
                W_std=self.W_std,
                b_std=self.b_std,
                parameterization=self.parameterization,
                trace_outputs=self.trace_outputs,
                same=self.same,
            )
        )


def ensemble_kernels(
    init_fn: Callable,
    apply_fn: Callable,
    key,
    x1,
    x2=None,
    *,
    n_samples: int,
    implementation: str | int = "jacobian_contraction",
    trace_outputs: bool = True,
    chunk_size: int | None = None,
    memory_bytes: int = 2**30,
    init_mode: str = "auto",
) -> Kernels:
    """NNGP and NTK (:func:`kernels`) of ``n_samples`` independently initialized networks.

    Args:
      init_fn, apply_fn: a stax network (FCN or CNN, any initialization).
      key: a JAX PRNG key.
      x1: inputs, shape ``(N1, ...)``; x2: ``(N2, ...)`` or ``None``.
      n_samples: ensemble size; chunk_size, memory_bytes, init_mode: see :func:`ensemble`.
      implementation, trace_outputs: see :func:`ntk`.

    Returns:
      :class:`Kernels` with arrays of shape ``(n_samples, N1, N2)``.
    """
    impl = _check_implementation(implementation)
    n_samples = _validate.integer("n_samples", n_samples)
    x1, x2 = _check_inputs(x1, x2)
    fn = _NtKernels(apply_fn, impl, bool(trace_outputs))
    return ensemble(
        fn,
        init_fn,
        key,
        (-1,) + tuple(x1.shape[1:]),
        n_samples,
        args=(x1, x2),
        chunk_size=chunk_size,
        memory_bytes=memory_bytes,
        init_mode=init_mode,
    )


def fcn_ensemble_kernels(
    init_fn: Callable,
    key,
    x1,
    x2=None,
    *,
    n_samples: int,
    activation: str | Callable = "relu",
    W_std: float = 1.0,
    b_std: float | None = 0.0,
    parameterization: str = "ntk",
    trace_outputs: bool = True,
    chunk_size: int | None = None,
    memory_bytes: int = 2**30,
    init_mode: str = "auto",
) -> Kernels:
    """:func:`fcn_kernels` of ``n_samples`` independently initialized FCNs, vectorized.

    Args:
      init_fn: stax ``init_fn`` of an FCN (e.g. ``ntklit.nets.fcn(...)[0]``).
      key: a JAX PRNG key.
      x1: inputs ``(N1, n_0)``; x2: ``(N2, n_0)`` or ``None``.
      n_samples: ensemble size; chunk_size, memory_bytes, init_mode: see :func:`ensemble`.
      activation, W_std, b_std, parameterization, trace_outputs: as for :func:`fcn_kernels`;
        they must describe the network ``init_fn`` builds.

    Returns:
      :class:`Kernels` with arrays of shape ``(n_samples, N1, N2)``.
    """
    phi = _check_fcn_args(activation, W_std, b_std, parameterization)
    n_samples = _validate.integer("n_samples", n_samples)
    x1, x2 = _check_inputs(x1, x2)
    if x1.ndim != 2:
        raise ValueError(f"x1 must have shape (N1, n_0) for the FCN fast path, got {x1.shape}")
    same = x2 is None
    fn = _FcnKernels(
        phi,
        float(W_std),
        None if b_std is None else float(b_std),
        parameterization,
        bool(trace_outputs),
        same,
    )
    return ensemble(
        fn,
        init_fn,
        key,
        (-1, x1.shape[1]),
        n_samples,
        args=(x1, x1 if same else x2),
        chunk_size=chunk_size,
        memory_bytes=memory_bytes,
        init_mode=init_mode,
    )


@dataclasses.dataclass(frozen=True)
class _CnnKernels:
    """Hashable ``fn(params, x1, x2)`` giving :class:`Kernels` by the CNN fast path."""

    phi: Callable
    W_std: float
    b_std: float | None
    readout: str
    padding: str
    trace_outputs: bool
    same: bool

    def __call__(self, params, x1, x2):
        convs, ro = cnn_layers(params)
        return Kernels(
            *_cnn_kernels_jit(
                convs,
                ro,
                x1,
                x2,
                phi=self.phi,
                W_std=self.W_std,
                b_std=self.b_std,
                readout_mode=self.readout,
                padding=self.padding,
                trace_outputs=self.trace_outputs,
                same=self.same,
            )
        )


def _cnn_intermediate_bytes(x1, x2, itemsize: int) -> int:
    """Bytes of the per-network Gram matrices of :func:`cnn_kernels` (padded positions by
    padded positions, a few live at once): they do not shrink with the width, so they bound
    the chunk of networks evaluated together where the parameters are small."""
    pos = math.prod(int(d) + 2 for d in x1.shape[1:-1])  # padded positions, 3 x 3 filters
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    return 4 * x1.shape[0] * n2 * pos * pos * itemsize


def cnn_ensemble_kernels(
    init_fn: Callable,
    key,
    x1,
    x2=None,
    *,
    n_samples: int,
    activation: str | Callable = "relu",
    W_std: float = 1.0,
    b_std: float | None = 0.0,
    readout: str = "gap",
    padding: str = "SAME",
    trace_outputs: bool = True,
    chunk_size: int | None = None,
    memory_bytes: int = 2**30,
    init_mode: str = "auto",
) -> Kernels:
    """:func:`cnn_kernels` of ``n_samples`` independently initialized CNNs, vectorized.

    Args:
      init_fn: stax ``init_fn`` of a CNN (e.g. ``ntklit.nets.cnn(...)[0]``).
      key: a JAX PRNG key.
      x1: images ``(N1, *spatial, C)``; x2: ``(N2, ...)`` or ``None``.
      n_samples: ensemble size; chunk_size, memory_bytes, init_mode: see :func:`ensemble`
        (the default chunk also keeps the per-network Gram matrices within ``memory_bytes``).
      activation, W_std, b_std, readout, padding, trace_outputs: as for :func:`cnn_kernels`;
        they must describe the network ``init_fn`` builds.

    Returns:
      :class:`Kernels` with arrays of shape ``(n_samples, N1, N2)``.
    """
    phi = _check_cnn_args(activation, W_std, b_std, readout, padding)
    n_samples = _validate.integer("n_samples", n_samples)
    x1, x2 = _check_inputs(x1, x2)
    if not 3 <= x1.ndim <= 5:
        raise ValueError(
            f"x1 must have shape (N1, *spatial, C) with 1 to 3 spatial axes for "
            f"the CNN fast path, got {x1.shape}"
        )
    if chunk_size is None:
        input_shape = (-1,) + tuple(x1.shape[1:])
        grams = _cnn_intermediate_bytes(x1, x2, x1.dtype.itemsize)
        chunk_size = max(
            1,
            min(
                auto_chunk_size(init_fn, input_shape, n_samples, memory_bytes=memory_bytes),
                memory_bytes // max(1, grams),
            ),
        )
    same = x2 is None
    fn = _CnnKernels(
        phi,
        float(W_std),
        None if b_std is None else float(b_std),
        readout,
        padding,
        bool(trace_outputs),
        same,
    )
    return ensemble(
        fn,
        init_fn,
        key,
        (-1,) + tuple(x1.shape[1:]),
        n_samples,
        args=(x1, x1 if same else x2),
        chunk_size=chunk_size,
        memory_bytes=memory_bytes,
        init_mode=init_mode,
    )


class Sweep(NamedTuple):
    """Empirical kernels of ensembles over a range of widths (from :func:`width_sweep`).

    Attributes:
      widths: ``(W,)`` int array.
      inits: the initializations, e.g. ``("gaussian", "orthogonal")``.
      nngp: ``{init: (W, S, N1, N2) array}`` of readout-conditional NNGPs.
      ntk: ``{init: (W, S, N1, N2) array}`` of NTKs.
      nngp_ref: ``{init: (N1, N2) array}``, the analytic infinite-width NNGP of each
        ensemble (its ``kernel_fn``; the same for Gaussian and orthogonal FCNs, different for
        delta-orthogonal CNNs, see :func:`ntklit.nets.cnn`).
      ntk_ref: ``{init: (N1, N2) array}``, the analytic NTK likewise.
    """

    widths: np.ndarray
    inits: tuple
    nngp: dict
    ntk: dict
    nngp_ref: dict
    ntk_ref: dict

    def errors(self, kind: str) -> dict:
        """``{init: (W, S) array}`` of relative Frobenius errors to the analytic kernel.

        Args:
          kind: ``"nngp"`` or ``"ntk"``.
        """
        if kind not in ("nngp", "ntk"):
            raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")
        samples, ref = (self.nngp, self.nngp_ref) if kind == "nngp" else (self.ntk, self.ntk_ref)
        return {i: relative_frobenius_error(samples[i], ref[i]) for i in self.inits}


def width_sweep(
    build: Callable,
    widths: Sequence[int],
    x1,
    key,
    *,
    n_samples: int,
    inits: Sequence[str] = ("gaussian", "orthogonal"),
    fcn: dict | None = None,
    cnn: dict | None = None,
    implementation: str | int = "jacobian_contraction",
    chunk_size: int | None = None,
    memory_bytes: int = 2**30,
    progress: bool = True,
) -> Sweep:
    """Empirical NNGP/NTK of ``n_samples`` networks per width and initialization.

    For every ``width`` and ``init``, ``build(width, init)`` must return a stax triple
    ``(init_fn, apply_fn, kernel_fn)`` (e.g. ``functools.partial(ntklit.nets.fcn, 1)`` called
    as ``nets.fcn(1, width, init=init, ...)``); the ensemble is drawn with :func:`ensemble`
    from independent keys ``fold_in(fold_in(key, init_index), width)``. The analytic kernels come
    from each init's ``kernel_fn`` at the first width (they do not depend on the width).

    Args:
      build: ``build(width, init) -> (init_fn, apply_fn, kernel_fn)``.
      widths: positive ints.
      x1: inputs ``(N, ...)``.
      key: a JAX PRNG key.
      n_samples: networks per (width, init), positive.
      inits: initialization labels passed to ``build`` (any strings, e.g. ``"delta"`` for a
        ``build`` that maps it to ``nets.cnn(..., init="orthogonal", conv="delta")``).
      fcn: ``None`` (neural-tangents' ``implementation``, any network) or a dict with the
        FCN's ``activation``, ``W_std``, ``b_std`` (and optionally ``parameterization``) to use
        the fast path :func:`fcn_kernels`.
      cnn: ``None`` or a dict with the CNN's ``activation``, ``W_std``, ``b_std`` (and
        optionally ``readout``, ``padding``) to use the fast path :func:`cnn_kernels` for
        networks of :func:`ntklit.nets.cnn` (no Jacobian: memory independent of the width).
      implementation: see :func:`ntk` (used when ``fcn`` and ``cnn`` are ``None``).
      chunk_size, memory_bytes: see :func:`ensemble`.
      progress: show a ``tqdm`` progress bar.

    Returns:
      :class:`Sweep`.

    Raises:
      ValueError: for empty or non-positive ``widths``, bad ``n_samples``, empty ``inits``,
        or both ``fcn`` and ``cnn``.
    """
    if isinstance(widths, (int, np.integer, str, bytes)) or len(widths) == 0:
        raise ValueError(f"widths must be a non-empty list of positive ints, got {widths!r}")
    widths = [_validate.integer("widths", w) for w in widths]
    n_samples = _validate.integer("n_samples", n_samples)
    inits = tuple(inits)
    if not inits:
        raise ValueError("inits must name at least one initialization, e.g. ('gaussian',)")
    _validate.prng_key(key)
    x1, _ = _check_inputs(x1, None)
    if fcn is not None and cnn is not None:
        raise ValueError("fcn and cnn select different fast paths: pass at most one")
    if cnn is not None:
        cnn = dict(cnn)
        unknown = set(cnn) - {"activation", "W_std", "b_std", "readout", "padding"}
        if unknown:
            raise ValueError(
                f"cnn keys must be among activation, W_std, b_std, readout, "
                f"padding, got {sorted(unknown)}"
            )
    if fcn is not None:
        fcn = dict(fcn)
        unknown = set(fcn) - {"activation", "W_std", "b_std", "parameterization"}
        if unknown:
            raise ValueError(
                f"fcn keys must be among activation, W_std, b_std, "
                f"parameterization, got {sorted(unknown)}"
            )
    from tqdm.auto import tqdm

    nngp_, ntk_ = {i: [] for i in inits}, {i: [] for i in inits}
    ref = {}
    bar = tqdm(total=len(widths) * len(inits), desc="widths x inits", disable=not progress)
    for w in widths:
        for j, init in enumerate(inits):
            init_fn, apply_fn, kernel_fn = build(w, init)
            if init not in ref:
                ref[init] = kernel_fn(x1, None, ("nngp", "ntk"))
            k = jax.random.fold_in(jax.random.fold_in(key, j), w)
            if fcn is not None:
                K = fcn_ensemble_kernels(
                    init_fn,
                    k,
                    x1,
                    n_samples=n_samples,
                    chunk_size=chunk_size,
                    memory_bytes=memory_bytes,
                    **fcn,
                )
            elif cnn is not None:
                K = cnn_ensemble_kernels(
                    init_fn,
                    k,
                    x1,
                    n_samples=n_samples,
                    chunk_size=chunk_size,
                    memory_bytes=memory_bytes,
                    **cnn,
                )
            else:
                K = ensemble_kernels(
                    init_fn,
                    apply_fn,
                    k,
                    x1,
                    n_samples=n_samples,
                    implementation=implementation,
                    chunk_size=chunk_size,
                    memory_bytes=memory_bytes,
                )
            nngp_[init].append(np.asarray(K.nngp, dtype=np.float64))
            ntk_[init].append(np.asarray(K.ntk, dtype=np.float64))
            bar.update(1)
    bar.close()
    return Sweep(
        np.asarray(widths),
        inits,
        {i: np.stack(v) for i, v in nngp_.items()},
        {i: np.stack(v) for i, v in ntk_.items()},
        {i: np.asarray(r.nngp, dtype=np.float64) for i, r in ref.items()},
        {i: np.asarray(r.ntk, dtype=np.float64) for i, r in ref.items()},
    )


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def fluctuation_stats(samples, axis: int = 0) -> FluctuationStats:
    """Mean, variance and normalized fluctuation of kernels over an ensemble, per entry.

    .. math:: \\mathrm{normalized} = \\mathrm{Var}[\\Theta] / \\mathbb{E}[\\Theta]^2

    Args:
      samples: array with the ensemble on ``axis``, e.g. ``(n_samples, N1, N2)``.
      axis: the ensemble axis.

    Returns:
      :class:`FluctuationStats` (numpy float64 arrays of the per-kernel shape).

    Raises:
      ValueError: with fewer than 2 samples on ``axis``.
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim == 0 or not -s.ndim <= axis < s.ndim:
        raise ValueError(f"axis must index an axis of samples (ndim {s.ndim}), got {axis}")
    n = s.shape[axis]
    if n < 2:
        raise ValueError(f"samples needs at least 2 entries on axis {axis}, got {n}")
    mean = s.mean(axis=axis)
    var = s.var(axis=axis, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        normalized = var / mean**2
    return FluctuationStats(mean, var, normalized, n)


def relative_frobenius_error(K, K_ref):
    """Relative Frobenius error :math:`\\|K - K_\\mathrm{ref}\\|_F / \\|K_\\mathrm{ref}\\|_F`.

    Args:
      K: kernels of shape ``(..., N1, N2)`` (e.g. an ensemble ``(S, N1, N2)``).
      K_ref: reference of shape ``(N1, N2)`` (broadcast against ``K``).

    Returns:
      numpy array of shape ``K.shape[:-2]`` (a float for a single kernel).

    Raises:
      ValueError: if the trailing shapes differ or ``K_ref`` is zero.
    """
    K = np.asarray(K, dtype=np.float64)
    K_ref = np.asarray(K_ref, dtype=np.float64)
    if K.ndim < 2 or K_ref.shape != K.shape[-2:]:
        raise ValueError(
            f"K must have shape (..., N1, N2) with (N1, N2) = K_ref.shape "
            f"{K_ref.shape}, got {K.shape}"
        )
    ref = np.linalg.norm(K_ref)
    if ref == 0:
        raise ValueError("K_ref must be non-zero")
    err = np.linalg.norm(K - K_ref, axis=(-2, -1)) / ref
    return float(err) if err.ndim == 0 else err
