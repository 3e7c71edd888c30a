r"""Fully-connected and convolutional networks with Gaussian or orthogonal initialization.

Both builders return neural-tangents' triple ``(init_fn, apply_fn, kernel_fn)`` of a
``stax.serial`` network. ``init="orthogonal"`` only changes ``init_fn``: it draws the Gaussian
parameters and passes them through :func:`ntklit.init.orthogonalize_params` (Dense weights
become scaled Haar semi-orthogonal matrices, Conv kernels delta-orthogonal ones; biases stay
Gaussian). ``apply_fn`` and the analytic infinite-width ``kernel_fn`` are the same for both
initializations: the NNGP and NTK limits of the two ensembles coincide (Huang, Du & Xu 2021,
arXiv:2004.05867; chapter 2 of the book derives it). The one exception is :func:`cnn` with
``conv="delta"``, whose delta-orthogonal layers are ``1 x 1`` convolutions in disguise and
have the ``1 x 1`` network's kernel (see :func:`cnn`).

Activations (``activation=``):

* ``"relu"``: ``stax.Relu()`` (arc-cosine kernels, closed form).
* ``"erf"``: ``stax.Erf()`` (closed form).
* ``"tanh"``: neural-tangents has no analytic tanh kernel, so this is
  ``stax.ElementwiseNumerical(jnp.tanh, deg=tanh_deg, df=1 - tanh^2)``: the kernel integrals
  are computed by a bivariate Gauss-Hermite rule with ``tanh_deg**2`` nodes
  (arXiv:2209.04121); time and memory of ``kernel_fn`` grow like ``tanh_deg**2`` per kernel
  entry. ``apply_fn`` is exact tanh. The rule converges slowly when the pre-activation
  variance :math:`q` is large (tanh has poles at :math:`\pm i\pi/2`). Measured max relative
  error of one ``Dense -> tanh -> Dense`` layer against a degree-300 rule, float64, NNGP / NTK:

  ====  ==============  ================  ==============
  q     deg 25          deg 50 (default)  deg 100
  ====  ==============  ================  ==============
  0.25  1e-9 / 5e-9     1e-14 / 5e-14     1e-14 / 1e-14
  1     5e-5 / 3e-4     1e-7 / 1.3e-6     2e-11 / 4e-10
  2     1e-3 / 7e-3     2e-5 / 2e-4       4e-8 / 9e-7
  4     9e-3 / 6e-2     5e-4 / 6e-3       8e-6 / 2e-4
  ====  ==============  ================  ==============

  So keep :math:`q \lesssim 1` (e.g. :math:`W_\text{std}^2 + b_\text{std}^2 \lesssim 1` and
  unit-variance inputs) or raise ``tanh_deg``.
* ``"linear"``: ``stax.Identity()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from neural_tangents import stax

from . import _validate
from . import init as _init

__all__ = [
    "fcn",
    "cnn",
    "activation_layer",
    "ACTIVATIONS",
    "INITS",
    "READOUTS",
    "PADDINGS",
    "PARAMETERIZATIONS",
    "TANH_QUADRATURE_DEG",
]

#: Allowed ``activation`` values.
ACTIVATIONS = ("relu", "erf", "tanh", "linear")
#: Allowed ``init`` values.
INITS = ("gaussian", "orthogonal")
#: Allowed ``readout`` values of :func:`cnn`.
READOUTS = ("gap", "flatten")
#: Allowed ``padding`` values of :func:`cnn`.
PADDINGS = ("SAME", "VALID", "CIRCULAR")
#: Allowed ``parameterization`` values.
PARAMETERIZATIONS = ("ntk", "standard")
#: Default Gauss-Hermite degree (per dimension) of the numerical tanh kernel (see the module
#: docstring for its accuracy; neural-tangents' suggested 25 is only ~1e-4 accurate at q = 1).
#: tests/test_nets.py checks a depth-3 tanh network (q <= 1) against a degree-150 rule.
TANH_QUADRATURE_DEG = 50


def _tanh_prime(x):
    return 1.0 - jnp.tanh(x) ** 2


def activation_layer(activation: str, *, tanh_deg: int = TANH_QUADRATURE_DEG):
    """The stax layer of an activation name.

    Args:
      activation: one of :data:`ACTIVATIONS`.
      tanh_deg: Gauss-Hermite degree of the ``"tanh"`` kernel (ignored otherwise), int >= 1.

    Returns:
      A stax layer ``(init_fn, apply_fn, kernel_fn)``.

    Raises:
      ValueError: for an unknown name or a bad ``tanh_deg``.
    """
    tanh_deg = _validate.integer("tanh_deg", tanh_deg, 1)
    if activation == "relu":
        return stax.Relu()
    if activation == "erf":
        return stax.Erf()
    if activation == "tanh":
        with warnings.catch_warnings():  # neural-tangents warns on every construction
            warnings.simplefilter("ignore")
            return stax.ElementwiseNumerical(jnp.tanh, deg=tanh_deg, df=_tanh_prime)
    if activation == "linear":
        return stax.Identity()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _common_checks(activation, W_std, b_std, out_dim, init, parameterization):
    _validate.choice("activation", activation, ACTIVATIONS)
    W_std = _validate.real("W_std", W_std, positive=True)
    b_std = _validate.real("b_std", b_std, positive=False)
    out_dim = _validate.integer("out_dim", out_dim, 1)
    _validate.choice("init", init, INITS)
    _validate.choice("parameterization", parameterization, PARAMETERIZATIONS)
    return W_std, b_std, out_dim


def _wrap(
    layers,
    init: str,
    W_std: float,
    parameterization: str,
    conv: str = "orthogonal",
    kernel_fn=None,
):
    init_fn, apply_fn, default_kernel_fn = stax.serial(*layers)
    kernel_fn = default_kernel_fn if kernel_fn is None else kernel_fn
    if init == "gaussian":
        return init_fn, apply_fn, kernel_fn

    def orthogonal_init_fn(key: jax.Array, input_shape: Sequence[int]):
        """Gaussian ``init_fn`` followed by :func:`ntklit.init.orthogonalize_params`."""
        output_shape, params = init_fn(key, input_shape)
        params = _init.orthogonalize_params(
            jax.random.fold_in(key, 0x0A7),
            params,
            conv=conv,
            parameterization=parameterization,
            W_std=W_std,
        )
        return output_shape, params

    return orthogonal_init_fn, apply_fn, kernel_fn


def fcn(
    depth: int,
    width: int,
    *,
    activation: str = "relu",
    W_std: float = 1.0,
    b_std: float = 0.0,
    out_dim: int = 1,
    init: str = "gaussian",
    parameterization: str = "ntk",
    tanh_deg: int = TANH_QUADRATURE_DEG,
) -> tuple[Callable, Callable, Callable]:
    """A fully-connected network: ``depth`` hidden layers of ``width`` units and a readout.

    Layers: ``[Dense(width, W_std, b_std), activation] * depth + [Dense(out_dim, W_std, b_std)]``.
    In NTK parameterization a layer computes

    .. math:: h^{l+1} = \\frac{W_\\text{std}}{\\sqrt{n_l}}\\, \\phi(h^l) W^{l+1} + b_\\text{std}\\,
       b^{l+1}.

    ``b_std = 0`` builds the Dense layers without bias parameters. ``depth = 0`` is a linear
    readout ``Dense(out_dim)`` of the input.

    Args:
      depth: number of hidden layers, int >= 0.
      width: hidden width, int >= 1.
      activation: one of :data:`ACTIVATIONS`.
      W_std: weight scale :math:`\\sigma_w > 0`.
      b_std: bias scale :math:`\\sigma_b \\ge 0`.
      out_dim: output dimension, int >= 1.
      init: ``"gaussian"`` (neural-tangents' default) or ``"orthogonal"`` (weights replaced by
        :func:`ntklit.init.orthogonal`; deterministic in the key; biases unchanged).
      parameterization: ``"ntk"`` or ``"standard"`` (neural-tangents' meaning).
      tanh_deg: Gauss-Hermite degree of the tanh kernel (module docstring), int >= 1.

    Returns:
      ``(init_fn, apply_fn, kernel_fn)``: ``init_fn(key, (N, d))`` gives
      ``(output_shape, params)``; ``apply_fn(params, x)`` maps ``(N, d)`` to ``(N, out_dim)``;
      ``kernel_fn(x1, x2, ("nngp", "ntk"))`` is the analytic infinite-width kernel, the same
      for both ``init`` values.

    Raises:
      ValueError: for a negative ``depth``, non-positive ``width``/``out_dim``/``W_std``,
        negative ``b_std``, or an unknown ``activation``/``init``/``parameterization``.
    """
    depth = _validate.integer("depth", depth, 0)
    width = _validate.integer("width", width, 1)
    W_std, b_std, out_dim = _common_checks(
        activation, W_std, b_std, out_dim, init, parameterization
    )
    tanh_deg = _validate.integer("tanh_deg", tanh_deg, 1)
    b = b_std if b_std > 0 else None
    layers = []
    for _ in range(depth):
        layers += [
            stax.Dense(width, W_std=W_std, b_std=b, parameterization=parameterization),
            activation_layer(activation, tanh_deg=tanh_deg),
        ]
    layers.append(stax.Dense(out_dim, W_std=W_std, b_std=b, parameterization=parameterization))
    return _wrap(layers, init, W_std, parameterization)


def cnn(
    depth: int,
    channels: int,
    *,
    filter_shape: Sequence[int] = (3, 3),
    activation: str = "relu",
    W_std: float = 1.0,
    b_std: float = 0.0,
    out_dim: int = 1,
    readout: str = "gap",
    padding: str = "SAME",
    init: str = "gaussian",
    parameterization: str = "ntk",
    conv: str = "orthogonal",
    tanh_deg: int = TANH_QUADRATURE_DEG,
) -> tuple[Callable, Callable, Callable]:
    """A convolutional network on NHWC images: ``depth`` Conv layers and a Dense readout.

    Layers: ``[Conv(channels, filter_shape, padding, W_std, b_std), activation] * depth``, then
    ``GlobalAvgPool()`` (``readout="gap"``) or ``Flatten()`` (``readout="flatten"``), then
    ``Dense(out_dim, W_std, b_std)``.

    With ``init="orthogonal"`` the readout is :func:`ntklit.init.orthogonal` and the Conv
    kernels depend on ``conv`` (passed to :func:`ntklit.init.orthogonalize_params`):

    * ``conv="orthogonal"`` (default): the kernel reshaped to its ``(k c_in, c_out)`` im2col
      matrix is a scaled Haar semi-orthogonal matrix. Its entries have the Gaussian kernel's
      second moments, :math:`\\mathbb E W_{t a b} W_{t' a' b'} = \\delta_{tt'}\\delta_{aa'}
      \\delta_{bb'}`, so the infinite-width NNGP/NTK is the Gaussian network's ``kernel_fn``
      (with spatial averaging over the filter), the equality the book is about.
    * ``conv="delta"``: delta-orthogonal kernels (Xiao et al. 2018, arXiv:1806.05393), only the
      centre tap non-zero. Such a layer equals a ``1 x 1`` convolution with the same
      ``W_std``, so its infinite-width kernel is **not** the Gaussian ``filter_shape`` kernel: it
      is the kernel of the same network with ``filter_shape = (1,) * len(filter_shape)``, and
      that is the ``kernel_fn`` returned in this case (``padding="VALID"`` is rejected, since
      the cropping it implies has no ``1 x 1`` counterpart). For ``init="gaussian"`` ``conv`` is
      ignored.

    Args:
      depth: number of Conv layers, int >= 0.
      channels: channels of every Conv layer, int >= 1.
      filter_shape: spatial filter size, a tuple of positive ints (2 entries for NHWC).
      activation: one of :data:`ACTIVATIONS`.
      W_std: weight scale > 0.
      b_std: bias scale >= 0 (0 builds layers without bias parameters).
      out_dim: output dimension, int >= 1.
      readout: ``"gap"`` (global average pooling) or ``"flatten"``.
      padding: ``"SAME"``, ``"VALID"`` or ``"CIRCULAR"``.
      init: ``"gaussian"`` or ``"orthogonal"``.
      parameterization: ``"ntk"`` or ``"standard"``.
      conv: ``"orthogonal"`` or ``"delta"``, the orthogonal Conv kernel (see above).
      tanh_deg: Gauss-Hermite degree of the tanh kernel (module docstring), int >= 1.

    Returns:
      ``(init_fn, apply_fn, kernel_fn)``; inputs ``(N, H, W, C)``, outputs ``(N, out_dim)``.
      ``kernel_fn`` is the same for both ``init`` values, except for ``init="orthogonal",
      conv="delta"`` (see above).

    Raises:
      ValueError: for bad sizes, a ``filter_shape`` that is not a non-empty tuple of positive
        ints, or an unknown ``activation``/``readout``/``padding``/``init``/``parameterization``.
    """
    depth = _validate.integer("depth", depth, 0)
    channels = _validate.integer("channels", channels, 1)
    if not isinstance(filter_shape, (tuple, list)) or len(filter_shape) == 0:
        raise ValueError(
            f"filter_shape must be a non-empty tuple of positive ints, got {filter_shape!r}"
        )
    filter_shape = tuple(
        _validate.integer(f"filter_shape[{i}]", f, 1) for i, f in enumerate(filter_shape)
    )
    W_std, b_std, out_dim = _common_checks(
        activation, W_std, b_std, out_dim, init, parameterization
    )
    _validate.choice("readout", readout, READOUTS)
    _validate.choice("padding", padding, PADDINGS)
    _validate.choice("conv", conv, _init.CONV_MODES)
    tanh_deg = _validate.integer("tanh_deg", tanh_deg, 1)
    delta = init == "orthogonal" and conv == "delta"
    if delta and padding == "VALID" and depth > 0:
        raise ValueError(
            "conv='delta' with init='orthogonal' needs padding in "
            "('SAME', 'CIRCULAR'), got 'VALID'"
        )
    if delta and any(f % 2 == 0 for f in filter_shape):
        raise ValueError(
            f"conv='delta' with init='orthogonal' needs odd filter sizes (a centre "
            f"tap), got filter_shape={filter_shape}"
        )
    b = b_std if b_std > 0 else None

    def layers_for(fs):
        layers = []
        for _ in range(depth):
            layers += [
                stax.Conv(
                    channels,
                    fs,
                    padding=padding,
                    W_std=W_std,
                    b_std=b,
                    parameterization=parameterization,
                ),
                activation_layer(activation, tanh_deg=tanh_deg),
            ]
        layers.append(stax.GlobalAvgPool() if readout == "gap" else stax.Flatten())
        layers.append(stax.Dense(out_dim, W_std=W_std, b_std=b, parameterization=parameterization))
        return layers

    kernel_fn = stax.serial(*layers_for((1,) * len(filter_shape)))[2] if delta else None
    return _wrap(layers_for(filter_shape), init, W_std, parameterization, conv, kernel_fn)
