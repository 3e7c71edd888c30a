"""Argument checks shared by every ``ntklit`` module.

Each check raises ``ValueError`` naming the parameter and the values it allows, and
returns the value normalized (``int``, ``float``, ``str``), so a public function can validate
all its arguments first, before any heavy computation, in one line each::

    depth = _validate.integer("depth", depth, minimum=1)
    W_std = _validate.real("W_std", W_std, positive=True)
    init = _validate.choice("init", init, ("gaussian", "orthogonal"))
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["integer", "real", "choice", "prng_key"]


def integer(
    name: str,
    value: Any,
    minimum: int | None = 1,
    maximum: int | None = None,
    *,
    allow_none: bool = False,
) -> int | None:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (``bool`` is rejected).

    Args:
      name: the parameter's name, for the message.
      value: the value to check.
      minimum, maximum: inclusive bounds (``None``: unbounded).
      allow_none: also accept ``None`` (returned unchanged).
    """
    if value is None and allow_none:
        return None
    if minimum == 1 and maximum is None:
        allowed = "a positive int"
    elif maximum is None:
        allowed = f"an int >= {minimum}"
    elif minimum is None:
        allowed = f"an int <= {maximum}"
    else:
        allowed = f"an int in [{minimum}, {maximum}]"
    if allow_none:
        allowed += " or None"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    return int(value)


def real(
    name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    strict: bool = False,
    positive: bool | None = None,
) -> float:
    """``value`` as a finite ``float`` with ``value >= minimum`` (``> minimum`` if ``strict``).

    Args:
      name: the parameter's name, for the message.
      value: the value to check (Python or numpy real; ``bool`` is rejected).
      minimum: the lower bound.
      strict: exclude the bound itself.
      positive: shorthand: ``True`` means ``> 0``, ``False`` means ``>= 0`` (overrides
        ``minimum`` and ``strict``).
    """
    if positive is not None:
        minimum, strict = 0.0, bool(positive)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    v = float(value)
    bad = (v <= minimum) if strict else (v < minimum)
    if not math.isfinite(v) or bad:
        bound = (
            ("positive" if strict else "non-negative")
            if minimum == 0
            else (f"{'>' if strict else '>='} {minimum}")
        )
        raise ValueError(f"{name} must be a {bound} finite number, got {value!r}")
    return v


def choice(name: str, value: Any, allowed: tuple | list) -> Any:
    """``value`` itself if it is one of ``allowed``.

    Args:
      name: the parameter's name, for the message.
      value: the value to check.
      allowed: the allowed values.
    """
    try:
        ok = value in tuple(allowed)
    except (TypeError, ValueError):  # uncomparable values (e.g. arrays)
        ok = False
    if isinstance(value, bool) and not any(isinstance(a, bool) for a in allowed):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def prng_key(key: Any, name: str = "key", *, typed: bool = False) -> Any:
    """Check a JAX PRNG key: a typed key (``jax.random.key``) or, unless ``typed``, a raw
    ``uint32`` key (``jax.random.PRNGKey``).

    Args:
      key: the value to check.
      name: the parameter's name, for the message.
      typed: require a typed key.
    """
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        if not typed and key.dtype == jnp.uint32 and key.shape[-1:] == (2,):
            return key
    raise ValueError(
        f"{name} must be a JAX PRNG key (jax.random.key(seed)"
        f"{'' if typed else ' or jax.random.PRNGKey(seed)'}), got "
        f"{type(key).__name__}" + (f" of dtype {key.dtype}" if hasattr(key, "dtype") else "")
    )
