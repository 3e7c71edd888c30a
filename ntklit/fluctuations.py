"""Finite-width fluctuations of deep MLPs at initialization: large vectorized ensembles and the
:math:`1/n` effective theory.

Networks (NTK parameterization, the convention of :func:`ntklit.nets.fcn`): input
:math:`x \\in \\mathbb R^{n_0}`, ``depth`` hidden layers of width :math:`n`, and for every depth
:math:`D` that is asked for a scalar readout on top of hidden layer :math:`D`,

.. math:: z^{(1)} &= \\tfrac{\\sigma_w}{\\sqrt{n_0}} W^{(1)} x + \\sigma_b b^{(1)},\\qquad
          z^{(l+1)} = \\tfrac{\\sigma_w}{\\sqrt{n}} W^{(l+1)} \\phi(z^{(l)}) + \\sigma_b b^{(l+1)},
          \\\\ f_D &= \\tfrac{\\sigma_w}{\\sqrt{n}} u_D^\\top \\phi(z^{(D)}) + \\sigma_b b_D.

Weights have unit-second-moment entries: i.i.d. :math:`\\mathcal N(0, 1)` (``"gaussian"``) or
:math:`\\sqrt{\\max(n_\\text{out}, n_\\text{in})}` times a Haar semi-orthogonal matrix
(``"orthogonal"``; QR with sign correction, Mezzadri 2007, arXiv:math-ph/0609050), exactly as
:func:`ntklit.init.orthogonal`. Biases are :math:`\\mathcal N(0, 1)`. A network of depth
:math:`D < L` is the first :math:`D` hidden layers of the depth-:math:`L` network with its own
readout :math:`u_D`, so one pass yields every depth (each depth is still an i.i.d. ensemble).

The ensemble is propagated as batched matrix products (``einsum('cij,cpj->cpi')`` over ``c``
networks), the layers by ``lax.scan`` with weights drawn inside the scan from
``fold_in(fold_in(key, network), layer)``: memory is one layer of weights per network, results
do not depend on the chunk size, and :func:`network_weights` reproduces any single network.
The NTK uses no Jacobian: one forward pass stores :math:`z^{(l)}`, one backward pass carries
:math:`\\delta^{(l)}_D = \\partial f_D / \\partial z^{(l)}` for all requested depths at once
(weights kept from the forward pass, or redrawn from their keys to save memory), and

.. math:: \\Theta_D(x, x') = {} & \\sum_{l=1}^{D} \\big(\\alpha_l^2 \\langle a^{(l-1)}(x),
          a^{(l-1)}(x')\\rangle + \\sigma_b^2\\big) \\langle\\delta^{(l)}_D(x),
          \\delta^{(l)}_D(x')\\rangle \\\\ & + \\alpha_{D+1}^2 \\langle a^{(D)}(x),
          a^{(D)}(x')\\rangle + \\sigma_b^2,

with :math:`a^{(0)} = x`, :math:`a^{(l)} = \\phi(z^{(l)})`, :math:`\\alpha_1 = \\sigma_w /
\\sqrt{n_0}` and :math:`\\alpha_l = \\sigma_w / \\sqrt{n}` otherwise. Cost per network: the
weight sampling (:math:`L n^2` normals, plus :math:`L` QR factorizations of :math:`n \\times n`
matrices for orthogonal weights, twice with the NTK if the weights are redrawn for the backward
pass rather than kept) and :math:`2 L n^2 P (1 + |S|)` flops of
matrix-vector products for :math:`P` inputs and :math:`|S|` readout depths.

The effective theory (Roberts, Yaida & Hanin, arXiv:2106.10165, ch. 4-5; Day, Kahn & Roberts,
arXiv:2310.07765) is :func:`kernel_recursion`: the single-input kernel :math:`K^{(l)}` and
four-point vertex :math:`V^{(l)}` of Gaussian networks,

.. math:: K^{(l+1)} &= C_b + C_W \\langle\\phi^2\\rangle_{K^{(l)}},\\qquad
          \\chi_\\parallel^{(l)} = C_W \\frac{d\\langle\\phi^2\\rangle_K}{dK}\\Big|_{K^{(l)}},
          \\\\ V^{(l+1)} &= C_W^2\\big(\\langle\\phi^4\\rangle_{K^{(l)}} - \\langle\\phi^2
          \\rangle_{K^{(l)}}^2\\big) + \\chi_\\parallel^{(l)\\,2} V^{(l)},

:math:`C_W = \\sigma_w^2`, :math:`C_b = \\sigma_b^2`, :math:`V^{(1)} = 0`, which gives
:math:`n\\,\\mathrm{Var}[q^{(l)}] / \\mathbb E[q^{(l)}]^2 = 2 + V^{(l)} / (K^{(l)})^2 +
O(1/n)` for :math:`q^{(l)} = \\frac1n \\sum_i (z^{(l)}_i)^2` (:func:`q_variance_prediction`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import _validate

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "Ensemble",
    "sample_weight",
    "network_weights",
    "ensemble",
    "q_ensemble",
    "normalized_variance",
    "bootstrap",
    "gaussian_moments",
    "kernel_recursion",
    "q_variance_prediction",
    "ASYMPTOTIC_SLOPES",
    "fit_slope",
]

#: Activations supported by the ensemble code and the effective theory.
ACTIVATIONS = ("tanh", "relu", "linear")
#: Weight ensembles.
INITS = ("gaussian", "orthogonal")

#: Large-depth slope of :math:`V^{(l)}/(K^{(l)})^2` per layer at criticality, derived in
#: chapter 7 from the recursion: ``tanh`` (:math:`K^\star = 0` class, :math:`\sigma_w^2 = 1,
#: \sigma_b = 0`): 2/3; ``relu`` (scale-invariant, :math:`\sigma_w^2 = 2`): :math:`3A_4/A_2^2
#: - 1 = 5`; ``linear`` (:math:`\sigma_w^2 = 1`): 2.
ASYMPTOTIC_SLOPES: dict[str, float] = {"tanh": 2.0 / 3.0, "relu": 5.0, "linear": 2.0}


def _phi(activation: str) -> Callable:
    return {"tanh": jnp.tanh, "relu": jax.nn.relu, "linear": lambda z: z}[activation]


def _dphi(activation: str) -> Callable:
    if activation == "tanh":
        return lambda z: 1.0 - jnp.tanh(z) ** 2
    if activation == "relu":
        return lambda z: (z > 0).astype(z.dtype)
    return jnp.ones_like


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------


def _check_key_and_inputs(key, x) -> jnp.ndarray:
    """Validate an ensemble's key and its ``(P, n_0)`` float inputs; returns ``x`` as an array."""
    _validate.prng_key(key)
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (P, n_0) with P, n_0 >= 1, got {x.shape}")
    if x.dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"x must be float32 or float64, got {x.dtype}")
    return x


def sample_weight(
    key: jax.Array, shape: Sequence[int], init: str = "gaussian", dtype=jnp.float32
) -> jax.Array:
    """One weight matrix with unit-second-moment entries.

    Args:
      key: a JAX PRNG key (``jax.random.key(seed)`` or ``jax.random.PRNGKey(seed)``).
      shape: ``(n_out, n_in)`` (the layer computes ``W @ a``).
      init: ``"gaussian"`` (i.i.d. :math:`\\mathcal N(0,1)`) or ``"orthogonal"``:
        :math:`W = \\sqrt{m}\\, Q`, :math:`m = \\max(n_\\text{out}, n_\\text{in})`, with
        :math:`Q` the first columns (or, transposed, rows) of a Haar orthogonal matrix, from the
        reduced QR of a Gaussian matrix with :math:`\\mathrm{diag}\\,R > 0`
        (arXiv:math-ph/0609050). For :math:`n_\\text{out} \\ge n_\\text{in}`,
        :math:`W^\\top W = n_\\text{out} I`.
      dtype: floating dtype.

    Returns:
      ``(n_out, n_in)`` array.
    """
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"shape must be a pair (n_out, n_in) of positive ints, got {shape!r}")
    n_out = _validate.integer("shape[0]", shape[0])
    n_in = _validate.integer("shape[1]", shape[1])
    init = _validate.choice("init", init, INITS)
    return _weight(key, (n_out, n_in), init == "orthogonal", dtype)


def _weight(key, shape, orth, dtype):
    """:func:`sample_weight` with ``orth`` a Python bool or a traced scalar bool.

    Both laws transform the same Gaussian draw ``g`` (``(m, k)``, tall orientation), so a traced
    ``orth`` compiles one program for both ensembles (``lax.cond``: only one branch runs).
    """
    n_out, n_in = shape
    tall = n_out >= n_in
    m, k = (n_out, n_in) if tall else (n_in, n_out)
    g = jax.random.normal(key, (m, k), dtype)

    def haar(g):
        q, r = jnp.linalg.qr(g)  # reduced: q (m, k)
        q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(dtype)[None, :]
        return math.sqrt(m) * q

    if isinstance(orth, bool):
        w = haar(g) if orth else g
    else:
        w = jax.lax.cond(orth, haar, lambda g: g, g)
    return w if tall else w.T


def _network_keys(key, index):
    kn = jax.random.fold_in(key, index)
    return jax.random.fold_in(kn, 0), jax.random.fold_in(kn, 1), jax.random.fold_in(kn, 2)


def _layer_params(key, index, layer, shape, orth, dtype, with_bias):
    """Weight (and bias) of hidden layer ``layer`` (1-based) of network ``index``."""
    kw, kb, _ = _network_keys(key, index)
    w = _weight(jax.random.fold_in(kw, layer), shape, orth, dtype)
    b = (
        jax.random.normal(jax.random.fold_in(kb, layer), (shape[0],), dtype)
        if with_bias
        else jnp.zeros((shape[0],), dtype)
    )
    return w, b


def _readout_params(key, index, depth, width, orth, dtype, with_bias):
    """Readout vector ``(width,)`` and bias of the depth-``depth`` readout of network ``index``."""
    _, _, kr = _network_keys(key, index)
    kd = jax.random.fold_in(kr, depth)
    u = _weight(jax.random.fold_in(kd, 0), (1, width), orth, dtype)[0]
    b = (
        jax.random.normal(jax.random.fold_in(kd, 1), (), dtype)
        if with_bias
        else jnp.zeros((), dtype)
    )
    return u, b


def network_weights(
    key: jax.Array,
    index: int,
    *,
    depth: int,
    width: int,
    n_in: int,
    readout_depth: int | None = None,
    init: str = "gaussian",
    dtype=jnp.float32,
    bias: bool = False,
) -> list[tuple[jax.Array, jax.Array]]:
    """The parameters of network ``index`` of an :func:`ensemble`, one network at a time.

    Used as the plain reference loop in the tests and to hand a member of the ensemble to other
    tools (``ntklit.empirical.fcn_kernels`` or a ``stax`` network, after transposing ``W``).

    Args:
      key, index: the ensemble's key and the network's index in ``[0, n_networks)``.
      depth: number of hidden layers to return.
      width, n_in: hidden width and input dimension.
      readout_depth: if given, append the readout ``(u[None, :], b)`` of that depth, ``(1, n)``.
      init: ``"gaussian"`` or ``"orthogonal"``.
      dtype: floating dtype.
      bias: whether the networks have biases (``b_std > 0``); otherwise biases are zeros.

    Returns:
      List of ``(W, b)`` with ``W`` of shape ``(n_out, n_in)`` (the layer computes
      ``alpha * W @ a + b_std * b``).
    """
    _validate.prng_key(key)
    index = _validate.integer("index", index, minimum=0)
    init = _validate.choice("init", init, INITS)
    depth = _validate.integer("depth", depth, minimum=1)
    width = _validate.integer("width", width, minimum=1)
    n_in = _validate.integer("n_in", n_in, minimum=1)
    out = []
    for l in range(1, depth + 1):
        shape = (width, n_in if l == 1 else width)
        out.append(_layer_params(key, index, l, shape, init == "orthogonal", dtype, bias))
    if readout_depth is not None:
        readout_depth = _validate.integer("readout_depth", readout_depth, minimum=1)
        u, b = _readout_params(key, index, readout_depth, width, init == "orthogonal", dtype, bias)
        out.append((u[None, :], b[None]))
    return out


# ---------------------------------------------------------------------------------------------
# the vectorized ensemble
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ensemble:
    """Statistics of an ensemble of networks on a few inputs.

    Attributes:
      q: ``(depth, B, P, P)`` preactivation Gram matrices
        :math:`\\frac1n z^{(l)}(x_p)\\cdot z^{(l)}(x_{p'})` of hidden layers ``l = 1..depth``
        (row ``l - 1``); the diagonal is :math:`q^{(l)}(x_p)`.
      ntk: ``(S, B, P, P)`` empirical NTK :math:`\\Theta_D(x_p, x_{p'})` of the depth-``D``
        networks, ``D`` in ``ntk_depths``; ``None`` if no NTK was asked for.
      nngp: ``(S, B, P, P)`` readout-conditional NNGP :math:`\\alpha^2 \\langle a^{(D)},
        a^{(D)}\\rangle + \\sigma_b^2` (``None`` likewise).
      ntk_depths: the depths ``D`` of the rows of ``ntk``.
      width: hidden width ``n``.
    """

    q: np.ndarray
    ntk: np.ndarray | None
    nngp: np.ndarray | None
    ntk_depths: tuple[int, ...]
    width: int


@functools.partial(
    jax.jit,
    static_argnames=("depth", "width", "activation", "ntk_depths", "W_std", "b_std", "store"),
)
def _chunk(key, indices, x, orth, *, depth, width, activation, ntk_depths, W_std, b_std, store):
    # orth is traced: the Gaussian and orthogonal ensembles share one compiled program
    dtype = x.dtype
    n0 = x.shape[1]
    phi, dphi = _phi(activation), _dphi(activation)
    with_bias = b_std > 0
    a1 = W_std / math.sqrt(n0)
    ah = W_std / math.sqrt(width)

    def params(l, shape):
        return jax.vmap(lambda i: _layer_params(key, i, l, shape, orth, dtype, with_bias))(indices)

    def gram(v):  # (C, P, n) -> (C, P, P)
        return jnp.einsum("cpi,cqi->cpq", v, v)

    # layer 1
    W1, b1 = params(1, (width, n0))
    z1 = a1 * jnp.einsum("cij,pj->cpi", W1, x) + b_std * b1[:, None, :]
    in_gram = jnp.broadcast_to(x @ x.T, (indices.shape[0],) + (x.shape[0],) * 2)

    def fwd(z, l):
        a = phi(z)
        W, b = params(l, (width, width))
        z_new = ah * jnp.einsum("cij,cpj->cpi", W, a) + b_std * b[:, None, :]
        return z_new, (z_new, gram(a), W if (store and ntk_depths) else None)

    _, (zs, act_grams, Ws) = jax.lax.scan(fwd, z1, jnp.arange(2, depth + 1))
    zs = jnp.concatenate([z1[None], zs], axis=0)  # (L, C, P, n): z^(1..L)
    q = jnp.einsum("lcpi,lcqi->lcpq", zs, zs) / width  # (L, C, P, P)
    if not ntk_depths:
        return q, None, None
    # A_l = alpha_l^2 <a^(l-1), a^(l-1)> + b_std^2, l = 1..L
    A = jnp.concatenate([a1**2 * in_gram[None], ah**2 * act_grams], axis=0) + b_std**2
    Ds = jnp.asarray(ntk_depths)
    last_act_gram = jnp.einsum("scpi,scqi->scpq", phi(zs[Ds - 1]), phi(zs[Ds - 1]))
    nngp = ah**2 * last_act_gram + b_std**2  # (S, C, P, P)
    U = jax.vmap(
        lambda D: jax.vmap(lambda i: _readout_params(key, i, D, width, orth, dtype, with_bias)[0])(
            indices
        )
    )(Ds)
    U = jnp.transpose(U, (1, 0, 2))  # (C, S, n)

    def back_step(carry, l):
        c, theta = carry  # c: (C, S, P, n)
        z = zs[l - 1]
        inject = (Ds == l).astype(dtype)[None, :, None, None] * (ah * U[:, :, None, :])
        c = c + inject
        delta = dphi(z)[:, None] * c
        theta = theta + A[l - 1][:, None] * jnp.einsum("cspi,csqi->cspq", delta, delta)
        return (c, theta, delta)

    def bwd(carry, xs):
        l, W = xs
        c, theta, delta = back_step(carry, l)
        if W is None:  # regenerate the weights from their keys
            W, _ = params(l, (width, width))
        c = ah * jnp.einsum("cij,cspi->cspj", W, delta)
        return (c, theta), None

    C, P = indices.shape[0], x.shape[0]
    S = len(ntk_depths)
    carry = (jnp.zeros((C, S, P, width), dtype), jnp.zeros((C, S, P, P), dtype))
    # layers depth..2 (reverse=True reads the stored weights in place, without a flipped copy)
    carry, _ = jax.lax.scan(bwd, carry, (jnp.arange(2, depth + 1), Ws), reverse=True)
    _, theta, _ = back_step(carry, 1)
    theta = jnp.transpose(theta, (1, 0, 2, 3)) + nngp
    return q, theta, nngp


def _store_budget() -> int:
    """Bytes of weights per chunk that :func:`ensemble` keeps by default: 1 GiB, or a quarter of
    the default device's memory when it reports a limit (GPUs do; the CPU does not)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001  (backends without memory statistics)
        stats = {}
    limit = stats.get("bytes_limit")
    return max(2**30, int(limit) // 4) if limit else 2**30


def ensemble(
    key: jax.Array,
    x,
    *,
    depth: int,
    width: int,
    n_networks: int,
    activation: str = "tanh",
    W_std: float = 1.0,
    b_std: float = 0.0,
    init: str = "gaussian",
    ntk_depths: Sequence[int] = (),
    chunk_size: int | None = None,
    store_weights: bool | None = None,
    progress: bool = False,
) -> Ensemble:
    """Propagate an ensemble of deep MLPs and record preactivation Grams and the NTK.

    Exact for every network (no sampling beyond the weights); see the module docstring for the
    networks and the algorithm. Network ``b`` uses the key ``fold_in(key, b)`` for all its
    parameters, so results do not depend on ``chunk_size`` and :func:`network_weights`
    reproduces it.

    Args:
      key: a JAX PRNG key, typed (``jax.random.key(seed)``) or raw
        (``jax.random.PRNGKey(seed)``; both give the same networks).
      x: ``(P, n_0)`` inputs; their dtype (float32 or float64) is the computation's dtype.
      depth: number of hidden layers :math:`L \\ge 1`; Grams are recorded at every layer.
      width: hidden width :math:`n \\ge 1`.
      n_networks: ensemble size :math:`B \\ge 2`.
      activation: one of :data:`ACTIVATIONS`.
      W_std, b_std: :math:`\\sigma_w > 0`, :math:`\\sigma_b \\ge 0`.
      init: ``"gaussian"`` or ``"orthogonal"``.
      ntk_depths: depths :math:`D \\in [1, L]` at which to compute the empirical NTK (empty: no
        NTK, forward pass only).
      chunk_size: networks per compiled call (memory :math:`\\approx` chunk x (L n P +
        n^2) floats, plus chunk x L n^2 with stored weights); default ``min(B, 256)``.
      store_weights: keep the weights of the forward pass for the backward pass (``True``) or
        redraw them from their keys (``False``: half the memory, twice the sampling work,
        identical results). Default: store if they take at most 1 GiB per chunk, or a quarter
        of the memory of an accelerator that reports its size (on a GPU this halves the QR
        work of orthogonal ensembles, which dominates them).
      progress: show a ``tqdm`` bar over chunks.

    Returns:
      An :class:`Ensemble` with numpy arrays.

    Raises:
      ValueError: for a bad key, input shape/dtype, size, activation, init or depth list.
    """
    x = _check_key_and_inputs(key, x)
    depth = _validate.integer("depth", depth, minimum=1)
    width = _validate.integer("width", width, minimum=1)
    n_networks = _validate.integer("n_networks", n_networks, minimum=2)
    activation = _validate.choice("activation", activation, ACTIVATIONS)
    init = _validate.choice("init", init, INITS)
    W_std = _validate.real("W_std", W_std, positive=True)
    b_std = _validate.real("b_std", b_std, positive=False)
    if isinstance(ntk_depths, (str, bytes)) or not (
        isinstance(ntk_depths, Sequence)
        or (isinstance(ntk_depths, np.ndarray) and ntk_depths.ndim == 1)
    ):
        raise ValueError(
            f"ntk_depths must be a sequence of ints in [1, depth={depth}], got {ntk_depths!r}"
        )
    ds = [
        _validate.integer(f"ntk_depths[{i}]", d, minimum=1, maximum=depth)
        for i, d in enumerate(ntk_depths)
    ]
    if len(set(ds)) != len(ds):
        raise ValueError(f"ntk_depths must not repeat, got {ds}")
    chunk_size = (
        min(n_networks, 256) if chunk_size is None else _validate.integer("chunk_size", chunk_size)
    )
    if store_weights is None:
        store_weights = chunk_size * depth * width**2 * x.dtype.itemsize <= _store_budget()
    starts = range(0, n_networks, chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"{init} n={width} L={depth}", leave=False)
    qs, ntks, nngps = [], [], []
    for s in starts:
        idx = jnp.arange(s, min(s + chunk_size, n_networks))
        if idx.shape[0] < chunk_size:  # pad the last chunk: one compiled shape
            idx = jnp.concatenate([idx, jnp.full((chunk_size - idx.shape[0],), idx[-1])])
        q, th, ng = _chunk(
            key,
            idx,
            x,
            jnp.asarray(init == "orthogonal"),
            depth=depth,
            width=width,
            activation=activation,
            ntk_depths=tuple(ds),
            W_std=W_std,
            b_std=b_std,
            store=bool(store_weights),
        )
        m = min(chunk_size, n_networks - s)
        qs.append(np.asarray(q[:, :m]))
        if ds:
            ntks.append(np.asarray(th[:, :m]))
            nngps.append(np.asarray(ng[:, :m]))
    return Ensemble(
        q=np.concatenate(qs, axis=1),
        ntk=np.concatenate(ntks, axis=1) if ds else None,
        nngp=np.concatenate(nngps, axis=1) if ds else None,
        ntk_depths=tuple(ds),
        width=width,
    )


def _gaussian_layer(key, a, n_out, alpha, b_std):
    """Exact-in-law preactivations of a fresh Gaussian layer: ``(P, n_in) -> (P, n_out)``."""
    kz, kb = jax.random.split(key)
    G = alpha**2 * (a @ a.T)
    lam, U = jnp.linalg.eigh(G)
    root = U * jnp.sqrt(jnp.clip(lam, 0.0, None))[None, :]
    z = root @ jax.random.normal(kz, (a.shape[0], n_out), a.dtype)
    return z + b_std * jax.random.normal(kb, (1, n_out), a.dtype)


def _orthogonal_layer(key, a, n_out, alpha, b_std):
    """Exact-in-law preactivations of a fresh orthogonal layer: ``(P, n_in) -> (P, n_out)``.

    With :math:`m = \\max(n_\\text{in}, n_\\text{out})`, :math:`W a = \\sqrt m\\,(O \\tilde a)`
    restricted to the first :math:`n_\\text{out}` rows, :math:`\\tilde a` the input padded to
    :math:`\\mathbb R^m` and :math:`O` Haar on :math:`O(m)`. Writing :math:`\\tilde A = V R`
    (thin QR, :math:`V` an :math:`m \\times P` frame), :math:`O V` is a Haar frame, sampled as the
    sign-corrected Q factor of an :math:`m \\times P` Gaussian matrix: cost :math:`O(m P^2)`.
    """
    kz, kb = jax.random.split(key)
    P, n_in = a.shape
    m = max(n_in, n_out)
    A = jnp.zeros((m, P), a.dtype).at[:n_in].set(a.T)
    V, R = jnp.linalg.qr(A)
    F, S = jnp.linalg.qr(jax.random.normal(kz, (m, P), a.dtype))
    F = F * jnp.where(jnp.diagonal(S) < 0, -1.0, 1.0).astype(a.dtype)[None, :]
    z = (alpha * math.sqrt(m)) * (F @ R)[:n_out].T
    return z + b_std * jax.random.normal(kb, (1, n_out), a.dtype)


def _single_input_layer(key, a, n_out, alpha, b_std, orth):
    r"""Exact-in-law preactivations of a fresh layer on one input: ``(1, n_in) -> (1, n_out)``.

    With :math:`m = \max(n_\text{in}, n_\text{out})` and :math:`g \sim \mathcal N(0, I_m)`:
    Gaussian weights give :math:`z = \alpha |a|\, g_{1..n_\text{out}}` (the rows of :math:`Wa`
    are i.i.d. :math:`\mathcal N(0, |a|^2)`); a Haar rotation makes :math:`O\tilde a =
    |a|\, g/|g|` uniform on the sphere, so :math:`z = \alpha\sqrt m\, |a|\,
    (g/|g|)_{1..n_\text{out}}`. ``orth`` (a traced bool) selects the law, so one compiled
    program serves both ensembles.
    """
    kz, kb = jax.random.split(key)
    m = max(a.shape[1], n_out)
    g = jax.random.normal(kz, (1, m), a.dtype)
    scale = jnp.where(orth, math.sqrt(m) / jnp.sqrt(jnp.sum(g * g)), 1.0).astype(a.dtype)
    z = alpha * jnp.sqrt(jnp.sum(a * a)) * scale * g[:, :n_out]
    return z + b_std * jax.random.normal(kb, (1, n_out), a.dtype)


@functools.partial(jax.jit, static_argnames=("depth", "width"))
def _q_chunk_single(key, indices, x, orth, act, W_std, b_std, *, depth, width):
    """:func:`_q_chunk` for one input; init, activation and scales are traced (one compile per
    ``(depth, width)``, shared by the Gaussian/orthogonal and tanh/ReLU/linear ensembles)."""

    def phi(z):
        return jax.lax.switch(act, [_phi(a) for a in ACTIVATIONS], z)

    a1 = W_std / math.sqrt(x.shape[1])
    ah = W_std / math.sqrt(width)

    def one(i):
        kn = jax.random.fold_in(key, i)
        z1 = _single_input_layer(jax.random.fold_in(kn, 1), x, width, a1, b_std, orth)

        def step(z, l):
            z_new = _single_input_layer(jax.random.fold_in(kn, l), phi(z), width, ah, b_std, orth)
            return z_new, z_new @ z_new.T / width

        _, qs = jax.lax.scan(step, z1, jnp.arange(2, depth + 1))
        return jnp.concatenate([(z1 @ z1.T / width)[None], qs], axis=0)

    return jnp.transpose(jax.vmap(one)(indices), (1, 0, 2, 3))


@functools.partial(
    jax.jit, static_argnames=("depth", "width", "activation", "init", "W_std", "b_std")
)
def _q_chunk(key, indices, x, *, depth, width, activation, init, W_std, b_std):
    phi = _phi(activation)
    layer = _gaussian_layer if init == "gaussian" else _orthogonal_layer
    a1 = W_std / math.sqrt(x.shape[1])
    ah = W_std / math.sqrt(width)

    def one(i):
        kn = jax.random.fold_in(key, i)
        z1 = layer(jax.random.fold_in(kn, 1), x, width, a1, b_std)

        def step(z, l):
            z_new = layer(jax.random.fold_in(kn, l), phi(z), width, ah, b_std)
            return z_new, z_new @ z_new.T / width

        _, qs = jax.lax.scan(step, z1, jnp.arange(2, depth + 1))
        return jnp.concatenate([(z1 @ z1.T / width)[None], qs], axis=0)

    return jnp.transpose(jax.vmap(one)(indices), (1, 0, 2, 3))


def q_ensemble(
    key: jax.Array,
    x,
    *,
    depth: int,
    width: int,
    n_networks: int,
    activation: str = "tanh",
    W_std: float = 1.0,
    b_std: float = 0.0,
    init: str = "gaussian",
    chunk_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Preactivation Grams of an ensemble, sampled layer by layer in :math:`O(L n P^2)`.

    Exact in law, without weight matrices: a fresh layer acts on the fixed activations
    :math:`a` (``(P, n_in)``, the previous layer's, independent of the new weights) as

    * Gaussian: the rows :math:`z_i` are i.i.d. :math:`\\mathcal N(0, \\alpha^2 a a^\\top +
      \\sigma_b^2 \\mathbf 1\\mathbf 1^\\top)` over units :math:`i`;
    * orthogonal: :math:`O a` for Haar :math:`O` is a uniformly rotated copy of :math:`a`,
      :math:`O V R` with :math:`a^\\top = V R` and :math:`O V` a Haar frame.

    The joint law of :math:`(z^{(1)}, \\dots, z^{(L)})` on the ``P`` inputs is exactly that of
    :func:`ensemble` (which draws the matrices, as the NTK needs), at :math:`O(n P)` instead
    of :math:`O(n^2)` random numbers per layer: this is what makes :math:`10^4` networks of
    depth 256 cheap. The same draws are not reproduced, only the law. For one input
    (``P = 1``) the layer reduces to a Gaussian vector (``"orthogonal"``: normalized to the
    sphere) times :math:`|a|`, and one compiled program per ``(depth, width)`` serves both
    ``init`` values and every activation and scale.

    Args:
      key: a JAX PRNG key (typed or raw, as in :func:`ensemble`).
      x: ``(P, n_0)`` inputs with ``P <= width``; dtype float32 or float64.
      depth, width, n_networks, activation, W_std, b_std, init, chunk_size, progress: as in
        :func:`ensemble` (default ``chunk_size`` 4096).

    Returns:
      ``(depth, B, P, P)`` array of :math:`\\frac1n z^{(l)}(x_p)\\cdot z^{(l)}(x_{p'})`.

    Raises:
      ValueError: for bad arguments, or ``P > width``.
    """
    x = _check_key_and_inputs(key, x)
    depth = _validate.integer("depth", depth, minimum=1)
    width = _validate.integer("width", width, minimum=1)
    if x.shape[0] > width:
        raise ValueError(
            f"q_ensemble needs P <= width, got P={x.shape[0]} inputs and "
            f"width={width}; use ensemble()"
        )
    n_networks = _validate.integer("n_networks", n_networks, minimum=2)
    activation = _validate.choice("activation", activation, ACTIVATIONS)
    init = _validate.choice("init", init, INITS)
    W_std = _validate.real("W_std", W_std, positive=True)
    b_std = _validate.real("b_std", b_std, positive=False)
    chunk_size = (
        min(n_networks, 4096)
        if chunk_size is None
        else _validate.integer("chunk_size", chunk_size)
    )
    starts = range(0, n_networks, chunk_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"q {init} n={width} L={depth}", leave=False)
    out = []
    for s in starts:
        idx = jnp.arange(s, min(s + chunk_size, n_networks))
        m = idx.shape[0]
        if m < chunk_size:
            idx = jnp.concatenate([idx, jnp.full((chunk_size - m,), idx[-1])])
        if x.shape[0] == 1:
            q = _q_chunk_single(
                key,
                idx,
                x,
                jnp.asarray(init == "orthogonal"),
                jnp.asarray(ACTIVATIONS.index(activation), jnp.int32),
                jnp.asarray(W_std, x.dtype),
                jnp.asarray(b_std, x.dtype),
                depth=depth,
                width=width,
            )
        else:
            q = _q_chunk(
                key,
                idx,
                x,
                depth=depth,
                width=width,
                activation=activation,
                init=init,
                W_std=W_std,
                b_std=b_std,
            )
        out.append(np.asarray(q[:, :m]))
    return np.concatenate(out, axis=1)


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------


def normalized_variance(samples, axis: int = 0) -> np.ndarray:
    """:math:`\\mathrm{Var}[s] / \\mathbb E[s]^2` over ``axis`` (unbiased variance, ddof = 1).

    Args:
      samples: array with at least 2 entries along ``axis`` (e.g. ``Ensemble.q[..., 0, 0]``
        with the network axis).
      axis: the ensemble axis.

    Returns:
      The array with ``axis`` removed.
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim == 0 or s.shape[axis] < 2:
        raise ValueError(
            f"samples must have at least 2 entries along axis {axis}, got shape {s.shape}"
        )
    return s.var(axis=axis, ddof=1) / s.mean(axis=axis) ** 2


def bootstrap(
    fn: Callable[[np.ndarray], np.ndarray],
    samples,
    *,
    n_boot: int = 200,
    seed: int = 0,
    axis: int = 0,
) -> np.ndarray:
    """Bootstrap replicates of a statistic, resampling the ensemble axis with replacement.

    All other axes (e.g. layers, inputs) are resampled jointly, so correlations between depths
    of the same networks are kept; the standard deviation of the replicates of a fitted slope is
    then its standard error.

    Args:
      fn: statistic, ``fn(resampled_samples) -> array``.
      samples: array whose ``axis`` indexes independent networks.
      n_boot: number of replicates (>= 2).
      seed: numpy seed of the resampling.
      axis: the ensemble axis.

    Returns:
      ``(n_boot, ...)`` replicates.
    """
    n_boot = _validate.integer("n_boot", n_boot, minimum=2)
    seed = _validate.integer("seed", seed, minimum=0)
    s = np.asarray(samples)
    rng = np.random.default_rng(seed)
    b = s.shape[axis]
    return np.stack(
        [np.asarray(fn(np.take(s, rng.integers(0, b, b), axis=axis))) for _ in range(n_boot)]
    )


def fit_slope(x, y) -> float:
    """Least-squares slope of ``y`` against ``x`` (linear axes).

    Args:
      x, y: arrays of the same length >= 2.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must have the same length >= 2, got {x.size} and {y.size}")
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc))


# ---------------------------------------------------------------------------------------------
# effective theory
# ---------------------------------------------------------------------------------------------

_GH_DEG = 160


@functools.lru_cache(maxsize=4)
def _gauss_hermite(deg: int):
    t, w = np.polynomial.hermite_e.hermegauss(deg)  # weight exp(-t^2/2)
    return t, w / np.sqrt(2 * np.pi)


def gaussian_moments(
    activation: str, K: float, *, deg: int = _GH_DEG
) -> tuple[float, float, float]:
    """Gaussian expectations that drive the kernel and four-point-vertex recursions.

    Args:
      activation: one of :data:`ACTIVATIONS`.
      K: variance :math:`K > 0` of :math:`z \\sim \\mathcal N(0, K)`.
      deg: Gauss-Hermite degree for ``tanh`` (closed forms for ``relu`` and ``linear``).

    Returns:
      ``(m2, m4, dm2)`` with :math:`m_2 = \\langle\\phi^2\\rangle_K`, :math:`m_4 =
      \\langle\\phi^4\\rangle_K` and :math:`dm_2 = \\frac{d}{dK}\\langle\\phi^2\\rangle_K =
      \\frac{1}{2K^2}\\langle\\phi^2 (z^2 - K)\\rangle_K`.
    """
    activation = _validate.choice("activation", activation, ACTIVATIONS)
    K = _validate.real("K", K, positive=True)
    deg = _validate.integer("deg", deg, minimum=2)
    if activation == "linear":
        return K, 3 * K**2, 1.0
    if activation == "relu":
        return K / 2, 3 * K**2 / 2, 0.5
    t, w = _gauss_hermite(deg)
    z = np.sqrt(K) * t
    p2 = np.tanh(z) ** 2
    m2 = float(w @ p2)
    m4 = float(w @ p2**2)
    dm2 = float(w @ (p2 * (z**2 - K))) / (2 * K**2)
    return m2, m4, dm2


def kernel_recursion(
    activation: str, depth: int, *, W_std: float = 1.0, b_std: float = 0.0, K1: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Leading-order single-input kernel and four-point vertex of Gaussian MLPs, layer by layer.

    .. math:: K^{(l+1)} &= C_b + C_W m_2(K^{(l)}), \\\\
              V^{(l+1)} &= C_W^2\\,[m_4 - m_2^2](K^{(l)}) + \\big(C_W\\, dm_2(K^{(l)})\\big)^2
              V^{(l)},\\quad V^{(1)} = 0

    (Roberts, Yaida & Hanin, arXiv:2106.10165, the single-input four-point recursion of ch. 4;
    :math:`V^{(l)}/n` is the connected :math:`\\mathbb E[z_i^2 z_j^2] - \\mathbb E[z_i^2]
    \\mathbb E[z_j^2]`, :math:`i \\ne j`).

    Args:
      activation: one of :data:`ACTIVATIONS`.
      depth: number of layers :math:`L \\ge 1`.
      W_std, b_std: :math:`\\sigma_w > 0`, :math:`\\sigma_b \\ge 0`.
      K1: first-layer kernel :math:`K^{(1)} = \\sigma_b^2 + \\sigma_w^2 |x|^2 / n_0 > 0`.

    Returns:
      ``(K, V)``, each ``(depth,)``, for layers ``1..depth``.
    """
    activation = _validate.choice("activation", activation, ACTIVATIONS)
    depth = _validate.integer("depth", depth, minimum=1)
    cw = _validate.real("W_std", W_std, positive=True) ** 2
    cb = _validate.real("b_std", b_std, positive=False) ** 2
    K1 = _validate.real("K1", K1, positive=True)
    K = np.empty(depth)
    V = np.empty(depth)
    K[0], V[0] = K1, 0.0
    for l in range(1, depth):
        m2, m4, dm2 = gaussian_moments(activation, K[l - 1])
        K[l] = cb + cw * m2
        V[l] = cw**2 * (m4 - m2**2) + (cw * dm2) ** 2 * V[l - 1]
    return K, V


def q_variance_prediction(
    activation: str, depth: int, *, W_std: float = 1.0, b_std: float = 0.0, K1: float = 1.0
) -> np.ndarray:
    """Effective-theory prediction of :math:`n\\,\\mathrm{Var}[q^{(l)}]/\\mathbb E[q^{(l)}]^2`.

    For Gaussian weights, conditionally on layer :math:`l-1` the :math:`z^{(l)}_i` are i.i.d.
    :math:`\\mathcal N(0, G)` with :math:`G = C_b + C_W \\frac1n\\sum_j \\phi(z^{(l-1)}_j)^2`,
    hence exactly :math:`n\\,\\mathrm{Var}[q]/\\mathbb E[q]^2 = 2 + (1 + 2/n)\\, n\\mathrm{Var}[G]
    /\\mathbb E[G]^2`, and to leading order

    .. math:: n\\,\\mathrm{Var}[q^{(l)}]/\\mathbb E[q^{(l)}]^2 = 2 + V^{(l)}/(K^{(l)})^2.

    Args:
      activation, depth, W_std, b_std, K1: as in :func:`kernel_recursion`.

    Returns:
      ``(depth,)`` array for layers ``1..depth``.
    """
    K, V = kernel_recursion(activation, depth, W_std=W_std, b_std=b_std, K1=K1)
    return 2.0 + V / K**2
