"""Make neural-tangents 0.6.5 work on current JAX, without tensorflow.

neural-tangents (NT) 0.6.5 was released in early 2024 and is unmaintained. On current JAX it
fails at import time (names removed from ``jax.core``, the ``jax.util`` module, internals of
``jax.interpreters.ad``) and at run time in a few places. Its ``experimental.empirical_tf``
module imports tensorflow, which this project never installs.

:func:`apply` (called by ``import ntklit``) restores exactly what NT needs:

* **Missing names** are added to JAX's namespaces *additively*: an attribute that JAX still
  has is never overwritten. Each is taken from where current JAX keeps it, found by feature
  detection (``hasattr``), not by version strings.
* **Changed behaviour** is fixed by replacing NT's own module globals (functions of
  ``neural_tangents._src.empirical``, the ``sp`` and ``jax`` names seen by
  ``neural_tangents._src.predict``), never JAX's or SciPy's functions. Each replacement is
  installed only if a probe of the installed JAX/SciPy shows it is needed; these run-time
  patches are applied right after ``neural_tangents`` is imported (a post-import hook), or at
  once if it already is. The replaced NT functions are kept in ``_NT_ORIGINALS``.
* ``neural_tangents.experimental.empirical_tf`` is replaced by a stub whose functions raise a
  clear ``ImportError``: tensorflow is never imported.

Every patch is listed in ``PATCHES`` (``applied`` says whether the installed versions
needed it, ``needed_on`` on which tested JAX versions it was measured as needed);
``tests/test_compat.py`` covers each one and exercises every NT feature the book
uses. The patches, and why:

Import time (names NT imports or reads):

* ``jax.core.Jaxpr``, ``jax.core.JaxprEqn``, ``jax.core.Var``, ``jax.core.Literal``,
  ``jax.core.Primitive``: removed from ``jax.core`` (now in ``jax.extend.core``).
* ``jax.core.ShapedArray``, ``jax.core.eval_context``, ``jax.core.AbstractValue``,
  ``jax.core.Value``: imported by NT; added only where JAX no longer exports them.
* ``jax.core.DShapedArray``: dynamic shapes were removed; NT only tests ``type(a) is`` it.
* ``jax.extend.core.Primitive.map_primitive``: class flag removed; NT's ``_eqn_vjp_fn`` reads it.
* ``jax.util``: module removed; NT imports ``safe_map``/``safe_zip`` from it.
* ``jax.interpreters.ad.reducing_transposes``, ``jax.interpreters.ad.source_info_util``,
  ``jax.interpreters.ad.config``, ``jax.interpreters.ad.zeros_like_p``: no longer re-exported;
  NT's structured-derivative code uses them.
* ``jax.random.KeyArray``: removed (keys are ``jax.Array``).
* ``neural_tangents.experimental.empirical_tf``: imports tensorflow/tf2jax at import time;
  a stub that raises ``ImportError`` when used.

Run time (behaviour changes, patched in NT's modules):

* ``neural_tangents._src.empirical._get_primals_out_and_pullback``: ``STRUCTURED_DERIVATIVES``
  (implementation 3) called the internal ``jax.interpreters.ad.linearize(f, *primals,
  has_aux)``, whose signature and outputs changed in JAX 0.10.2 (flat-tree argument, output
  zeros instead of partial values) and again after 0.11. Rebuilt on public APIs
  (``linearized_jaxpr``: ``jax.linearize`` + ``jax.make_jaxpr``), inlining call
  primitives (``jit``, ``checkpoint``) and evaluating non-linear equations to constants, so
  NT's backward pass sees primitive-level linear equations only.
* ``neural_tangents._src.empirical._eqn_vjp_fn``: JAX now registers the transposes of some
  primitives (e.g. ``slice``, ``dynamic_slice``) only in its internal ``fancy_transposes``;
  NT's lookup raised ``NotImplementedError``. Falls back to public ``jax.linear_transpose``.
* ``neural_tangents._src.empirical._write_cotangent``: with ``jax_enable_checks`` NT called
  ``jax.core.lattice_join``, ``jax.core.get_aval`` and ``ShapedArray.strip_named_shape``, all
  removed; checks shape and dtype directly.
* ``neural_tangents._src.empirical._std_basis, _unravel_array_into_pytree``: call
  ``jnp.size``/``jnp.shape`` on ``ShapeDtypeStruct``/``ShapedArray``, deprecated in JAX
  ("will be an error"); read ``.shape``.
* ``neural_tangents._src.empirical._get_fx_axis_and_dtype``: calls ``jnp.dtype(array)``,
  deprecated in JAX ("will result in an error"); reads ``array.dtype``.
* ``neural_tangents._src.empirical._get_flops``: ``implementation=AUTO`` indexed
  ``Compiled.cost_analysis()[0]``, which is now a dict (``KeyError: 0``). Accepts a dict or a
  list of dicts, detected per call; a clear error if the backend gives no flops.
* ``neural_tangents._src.predict.sp``: ``predict.max_learning_rate`` calls
  ``scipy.linalg.eigvalsh(eigvals=...)``, removed in SciPy 1.14; NT's ``sp`` becomes a view
  whose ``linalg.eigvalsh`` translates it to ``subset_by_index`` (same inclusive range).
* ``neural_tangents._src.predict.gradient_descent_mse`` (also exported as
  ``neural_tangents.predict.gradient_descent_mse``): ``jax.core.eval_context`` now drops
  enclosing traces, so ``grad``/``jit``/``vmap`` over the train kernel raised
  ``UnexpectedTracerError``. NT's ``jax`` name in ``predict`` becomes a view whose
  ``core.eval_context`` computes eagerly only when the kernel and targets are concrete (as
  on the JAX NT was written for), and is a no-op when they are traced.

Deprecation warnings (JAX's "will become an error" warnings raised by NT code):

* ``linear_util.wrap_init is missing a DebugInfo`` (``DeprecationWarning``): raised by NT's
  own ``_get_primals_out_and_pullback`` (``lu.wrap_init(fn)``), which the compat layer
  replaces on every tested JAX; the replacement uses public ``jax.linearize`` and never calls
  ``wrap_init``, so the warning is gone wherever the patch is installed (a test asserts both
  that NT's original raises it and that the patched ``STRUCTURED_DERIVATIVES`` raises no
  ``DeprecationWarning``).
* ``jnp.size``/``jnp.shape`` of abstract values and ``jnp.dtype(array)``: patched (above).
* No other JAX deprecation warning is raised by the NT features that the tests exercise on
  the tested versions (the compat tests run them with ``DeprecationWarning`` as an error).

Tested versions (``TESTED_VERSIONS``; ``requirements.txt`` locks the newest JAX per Python):

=========  ============  ==================================================================
Python     JAX           role
=========  ============  ==================================================================
3.11       0.10.2        the newest JAX for Python 3.11; the lock on 3.11 (CI's first leg)
3.12       0.11.2        the GPU node's (Python 3.12.3; ``NTKLIT_JAX=0.11.2``)
3.12       0.12.0.1      the lock on Python 3.12
3.13       0.12.0.1      the lock on Python 3.13 (CI's second leg)
=========  ============  ==================================================================

Every patch above was measured as needed on each tested JAX (``Patch.needed_on``; a test
asserts that the probe's answer on the installed JAX equals the recorded one), except
``jax.core.ShapedArray``, ``eval_context``, ``AbstractValue`` and ``Value``, which every
tested JAX still exports (they are recorded for older or newer JAX).

Known neural-tangents behaviours (NT's own, on every tested JAX; not patched):

* ``nt.batch`` (serial batching) returns a ``Kernel`` with ``x1_is_x2=True`` when ``x2``
  equals the first rows of ``x1`` (e.g. ``x2 = x1[:2]`` with batch size 8), where the
  unbatched kernel says ``False``; the kernel values agree.
* ``stax.FanInSum``/``FanInProd`` of branches that are not mean-zero Gaussian (e.g. ending in
  a nonlinearity) raise ``NotImplementedError`` in ``kernel_fn``, by design; and
  ``stax.Elementwise(fn)`` without ``nngp_fn`` has no analytic kernel (use
  ``stax.ElementwiseNumerical``).

Not patched, checked to work: ``jax.core.eval_context`` in ``stax.linear`` (attention
positional embeddings; its inputs are always static), ``gradient_descent_mse_ensemble``
(does not use ``eval_context``), ``nt.linearize``, ``nt.taylor_expand``, ``nt.batch``,
``nt.monte_carlo_kernel_fn``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from dataclasses import dataclass

__all__ = [
    "apply",
    "PATCHES",
    "Patch",
    "applied",
    "TESTED_VERSIONS",
    "TESTED_JAX",
    "TestedVersion",
    "installed_versions",
    "is_tested",
]


@dataclass(frozen=True)
class TestedVersion:
    """One (Python, JAX) pair on which the test suite passed.

    Attributes:
      python: ``"major.minor"`` of the interpreter.
      jax: the exact ``jax.__version__`` (``jaxlib`` the same).
      role: why it is tested (the lock, the GPU node's, CI's legs).
    """

    __test__ = False  # not a pytest class

    python: str
    jax: str
    role: str


#: The supported range: every (Python, JAX) pair the tests ran on. ``requirements.txt`` gives
#: each Python the newest of them; ``NTKLIT_JAX=0.11.2 bash scripts/setup.sh`` the GPU node's.
TESTED_VERSIONS: tuple[TestedVersion, ...] = (
    TestedVersion("3.11", "0.10.2", "the newest JAX for Python 3.11; the lock on 3.11"),
    TestedVersion("3.12", "0.11.2", "the GPU node's (Python 3.12.3)"),
    TestedVersion("3.12", "0.12.0.1", "the lock on Python 3.12"),
    TestedVersion("3.13", "0.12.0.1", "the lock on Python 3.13 (CI's second leg)"),
)

#: The tested JAX versions, oldest first.
TESTED_JAX: tuple[str, ...] = tuple(dict.fromkeys(v.jax for v in TESTED_VERSIONS))

# Measured, not guessed: on which tested JAX each patch's probe found it needed (every
# tested set has SciPy 1.17.1). tests/test_compat.py asserts, on the installed JAX, that the
# probe's answer equals this record; a new JAX whose answer differs fails that test, and the
# record is updated from the run.
_NEEDED_ON: dict[str, tuple[str, ...]] = {
    "jax.core.ShapedArray": (),
    "jax.core.eval_context": (),
    "jax.core.AbstractValue": (),
    "jax.core.Value": (),
}


@dataclass(frozen=True)
class Patch:
    """One compatibility patch.

    Attributes:
      name: the patched location, e.g. ``"jax.core.Jaxpr"``.
      reason: why neural-tangents needs it.
      applied: whether it was needed (and applied) on the installed JAX.
      needed_on: the tested JAX versions (``TESTED_JAX``) on which it was measured as needed.
    """

    name: str
    reason: str
    applied: bool
    needed_on: tuple[str, ...] = ()


PATCHES: list[Patch] = []
_APPLIED = False


def _record(name: str, reason: str, applied: bool) -> None:
    PATCHES.append(Patch(name, reason, applied, _NEEDED_ON.get(name, TESTED_JAX)))


def installed_versions() -> tuple[str, str]:
    """``(python "major.minor", jax.__version__)`` of this interpreter."""
    import jax

    return "%d.%d" % sys.version_info[:2], jax.__version__


def is_tested() -> bool:
    """Whether the installed (Python, JAX) pair is one of ``TESTED_VERSIONS``."""
    py, jx = installed_versions()
    return any(v.python == py and v.jax == jx for v in TESTED_VERSIONS)


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
        _add_attr(
            jax.core,
            name,
            value,
            f"removed from jax.core; NT imports it (now jax.extend.core.{name})",
            "jax.core",
        )
    for name in ("ShapedArray", "eval_context", "AbstractValue", "Value"):
        if hasattr(src_core, name):
            _add_attr(
                jax.core, name, getattr(src_core, name), "NT imports it from jax.core", "jax.core"
            )

    class DShapedArray:  # noqa: D401 - a marker type
        """Placeholder: dynamic-shape arrays were removed from JAX. NT only compares
        ``type(aval) is core.DShapedArray``, which is then always false."""

    _add_attr(
        jax.core,
        "DShapedArray",
        getattr(src_core, "DShapedArray", DShapedArray),
        "dynamic shapes were removed; NT's STRUCTURED_DERIVATIVES tests the type",
        "jax.core",
    )
    # `Primitive.map_primitive` was removed with the old pmap machinery; NT reads the flag.
    _add_attr(
        src_core.Primitive,
        "map_primitive",
        False,
        "class flag removed from Primitive; NT's _eqn_vjp_fn reads it",
        "jax.extend.core.Primitive",
    )
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

    mod = types.ModuleType(
        "jax.util",
        "Compatibility module created by ntklit.compat (jax.util was removed from JAX).",
    )
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

    _add_attr(
        ad,
        "reducing_transposes",
        src_ad.reducing_transposes,
        "no longer re-exported by jax.interpreters.ad; NT's _eqn_vjp_fn reads it",
        "jax.interpreters.ad",
    )
    _add_attr(
        ad,
        "source_info_util",
        source_info_util,
        "no longer re-exported by jax.interpreters.ad; NT's backward pass uses it",
        "jax.interpreters.ad",
    )
    _add_attr(
        ad,
        "config",
        jax.config,
        "no longer re-exported by jax.interpreters.ad; NT reads ad.config.jax_enable_checks",
        "jax.interpreters.ad",
    )
    _add_attr(
        ad,
        "zeros_like_p",
        ad_util.zeros_like_p,
        "no longer re-exported by jax.interpreters.ad; NT registers structure rules "
        "for it at import",
        "jax.interpreters.ad",
    )


def _patch_jax_random() -> None:
    import jax

    _add_attr(
        jax.random,
        "KeyArray",
        jax.Array,
        "removed from jax.random (keys are jax.Array); NT-era code annotates with it",
        "jax.random",
    )


# --------------------------------------------------------------------------------------------
# neural_tangents.experimental.empirical_tf: never import tensorflow.
# --------------------------------------------------------------------------------------------

_TF_STUB_MSG = (
    "neural_tangents.experimental.empirical_tf needs tensorflow and tf2jax, which ntklit "
    "never installs (see DESIGN.md, 'Dependencies'). Use neural_tangents.empirical_ntk_fn "
    "on JAX functions instead."
)


def _tf_unavailable(*args, **kwargs):
    raise ImportError(_TF_STUB_MSG)


class _EmpiricalTfStubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves stub modules for ``neural_tangents.experimental.empirical_tf[.empirical]``."""

    NAMES = (
        "neural_tangents.experimental.empirical_tf",
        "neural_tangents.experimental.empirical_tf.empirical",
    )

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
        isinstance(f, _EmpiricalTfStubFinder) for f in sys.meta_path
    ):
        # NT imported before ntklit: its import would already have failed without tensorflow.
        pass
    if not any(isinstance(f, _EmpiricalTfStubFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _EmpiricalTfStubFinder())
    _record(
        "neural_tangents.experimental.empirical_tf",
        "imports tensorflow and tf2jax at import time; replaced by a stub that raises "
        "ImportError when used",
        True,
    )


# --------------------------------------------------------------------------------------------
# Run-time patches inside neural-tangents' own modules (behaviour changes).
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Run-time patches inside neural-tangents' own modules (behaviour changes). They are applied
# right after ``neural_tangents`` is imported (a post-import hook), or at once if it already is.
# --------------------------------------------------------------------------------------------


class _ModuleView(types.ModuleType):
    """A module-like view of ``wrapped`` in which a few attributes are replaced.

    Installed as a module global of neural-tangents (e.g. its ``sp`` or ``jax`` name) so that
    only NT sees the replacement; the real module is left untouched.
    """

    def __init__(self, wrapped: types.ModuleType, **overrides):
        super().__init__(wrapped.__name__, f"ntklit.compat view of {wrapped.__name__}")
        self.__dict__["_ntklit_wrapped"] = wrapped
        self.__dict__.update(overrides)

    def __getattr__(self, name):
        return getattr(self.__dict__["_ntklit_wrapped"], name)


def _bind_eqn(eqn, invals: list) -> list:
    """Bind ``eqn``'s primitive to ``invals``; always returns a list of outputs."""
    bind_params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(bind_params, tuple):  # older JAX: (subfuns, params)
        subfuns, bind_params = bind_params
    else:  # current JAX: params only
        subfuns = ()
    out = eqn.primitive.bind(*subfuns, *invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


# Call-like primitives whose body is inlined into the linearized jaxpr, so that NT's
# structured-derivative rules see primitive-level linear operations only.
_INLINE_PRIMITIVES = frozenset(
    {
        "pjit",
        "jit",
        "closed_call",
        "core_call",
        "call",
        "remat",
        "remat2",
        "checkpoint",
        "named_call",
    }
)


def _call_body(eqn):
    """``(jaxpr, consts)`` of a call-like equation to inline, or ``None``."""
    prim = eqn.primitive
    if not (getattr(prim, "call_primitive", False) or prim.name in _INLINE_PRIMITIVES):
        return None
    for key in ("jaxpr", "call_jaxpr"):
        body = eqn.params.get(key)
        if body is None:
            continue
        if hasattr(body, "consts") and hasattr(body, "jaxpr"):  # ClosedJaxpr
            return body.jaxpr, list(body.consts)
        if hasattr(body, "eqns"):  # open Jaxpr
            return body, []
    return None


def _eval_inlined(jaxpr, consts, *args):
    """Evaluate ``jaxpr`` binding primitives one by one, recursing into call bodies."""
    from jax.extend.core import Literal

    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for v, x in zip(jaxpr.constvars, consts, strict=True):
        env[v] = x
    for v, x in zip(jaxpr.invars, args, strict=True):
        env[v] = x
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        body = _call_body(eqn)
        outs = _eval_inlined(*body, *invals) if body is not None else _bind_eqn(eqn, invals)
        for v, out in zip(eqn.outvars, outs, strict=True):
            env[v] = out
    return [read(v) for v in jaxpr.outvars]


def _tangent_spec(x):
    import jax
    import jax.numpy as jnp

    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.inexact):
        dtype = jax.dtypes.float0
    return jax.ShapeDtypeStruct(jnp.shape(x), dtype)


def _split_known(jaxpr, consts):
    """Evaluate the equations of ``jaxpr`` that do not depend on its ``invars``.

    Returns ``(env, linear)``: the values of the evaluated ("known") variables, including the
    constvars, and the set of variables that depend on the ``invars``.
    """
    from jax.extend.core import Literal

    env = dict(zip(jaxpr.constvars, consts, strict=True))
    linear = set(jaxpr.invars)
    for eqn in jaxpr.eqns:
        atoms = [v for v in eqn.invars if not isinstance(v, Literal)]
        if any(v in linear for v in atoms):
            linear.update(eqn.outvars)
        else:
            invals = [v.val if isinstance(v, Literal) else env[v] for v in eqn.invars]
            env.update(zip(eqn.outvars, _bind_eqn(eqn, invals), strict=True))
    return env, linear


def _eval_linear_part(jaxpr, env, linear, *args):
    """Evaluate the equations of ``jaxpr`` that depend on its ``invars``, reading every other
    variable from ``env`` (so that, under :func:`jax.make_jaxpr`, they become constants)."""
    from jax.extend.core import Literal

    env = dict(env)
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for eqn in jaxpr.eqns:
        if any(v in linear for v in eqn.outvars):
            outs = _bind_eqn(eqn, [read(v) for v in eqn.invars])
            env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def linearized_jaxpr(fn, *primals):
    """Linearize ``fn`` at ``primals`` into a primitive-level linear jaxpr, by public APIs.

    Replaces the internal ``jax.interpreters.ad.linearize`` that neural-tangents'
    ``STRUCTURED_DERIVATIVES`` used (its signature and return value changed in JAX 0.10.2 and
    again after 0.11). Built from :func:`jax.linearize` and :func:`jax.make_jaxpr` of the
    linear map. Then, as NT's backward pass needs: call-like equations (``jit``/``pjit``,
    ``closed_call``, ``checkpoint``) are inlined, and equations that do not depend on the
    tangents (e.g. primal values recomputed by ``jax.checkpoint``) are evaluated into
    constants, so every remaining equation is a primitive-level op linear in the tangents.

    Args:
      fn: function of ``len(primals)`` array arguments returning a pytree of arrays.
      *primals: the arrays at which to linearize.

    Returns:
      ``(primals_out, jaxpr, consts)``: ``fn(*primals)`` (a pytree), an open jaxpr whose
      ``invars`` are the tangents of ``primals`` (in order), whose ``constvars`` are bound to
      ``consts`` (the residuals), and whose ``outvars`` are the flattened output tangents.
    """
    import jax

    specs = [_tangent_spec(p) for p in primals]
    with jax.disable_jit():
        primals_out, f_jvp = jax.linearize(fn, *primals)
        closed = jax.make_jaxpr(f_jvp)(*specs)
        jaxpr, consts = closed.jaxpr, list(closed.consts)
        if any(_call_body(e) is not None for e in jaxpr.eqns):
            closed = jax.make_jaxpr(functools.partial(_eval_inlined, jaxpr, consts))(*specs)
            jaxpr, consts = closed.jaxpr, list(closed.consts)
        env, linear = _split_known(jaxpr, consts)
        if any(not any(v in linear for v in e.outvars) for e in jaxpr.eqns):
            closed = jax.make_jaxpr(functools.partial(_eval_linear_part, jaxpr, env, linear))(
                *specs
            )
            jaxpr, consts = closed.jaxpr, list(closed.consts)
    return primals_out, jaxpr, consts


def _nt_get_primals_out_and_pullback(fn, mode, _j_rules, _s_rules, _fwd, *primals_in):
    """Drop-in for ``neural_tangents._src.empirical._get_primals_out_and_pullback``."""
    import jax
    from jax.interpreters.ad import UndefinedPrimal

    empirical = sys.modules["neural_tangents._src.empirical"]
    primals_in_flat, in_tree = jax.tree_util.tree_flatten(primals_in)

    def fn_flat(*flat):
        return fn(*jax.tree_util.tree_unflatten(in_tree, flat))

    primals_out, jaxpr, consts = linearized_jaxpr(fn_flat, *primals_in_flat)

    def pullback_fn(*cts_in):
        cts_in, _ = jax.tree_util.tree_flatten(cts_in)
        if len(cts_in) != len(jaxpr.outvars):
            raise ValueError(f"expected {len(jaxpr.outvars)} output cotangents, got {len(cts_in)}")
        dummy_args = [UndefinedPrimal(v.aval) for v in jaxpr.invars]
        cts_out = empirical._backward_pass(
            jaxpr,
            mode=mode,
            consts=consts,
            primals_in=dummy_args,
            cotangents_in=tuple(cts_in),
            _j_rules=_j_rules,
            _s_rules=_s_rules,
            _fwd=_fwd,
        )
        return jax.tree_util.tree_unflatten(in_tree, cts_out)

    return primals_out, pullback_fn


def _old_style_linearize() -> bool:
    """Whether ``jax.interpreters.ad.linearize`` still has NT's ``(f, *primals)`` form."""
    import inspect

    from jax.interpreters import ad

    fn = getattr(ad, "linearize", None)
    if fn is None:
        return False
    params = list(inspect.signature(fn).parameters.values())
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _has_transpose_rule(prim) -> bool:
    from jax.interpreters import ad

    return (
        prim in getattr(ad, "primitive_transposes", {})
        or prim in getattr(ad, "reducing_transposes", {})
        or getattr(prim, "call_primitive", False)
        or getattr(prim, "map_primitive", False)
    )


def _vjp_by_linear_transpose(eqn, cts_in, *invals):
    """VJP of one linear equation through the public :func:`jax.linear_transpose`."""
    import jax
    from jax.interpreters import ad

    undefined = [i for i, x in enumerate(invals) if ad.is_undefined_primal(x)]
    if type(cts_in) is ad.Zero:
        return [ad.Zero(invals[i].aval) if i in undefined else None for i in range(len(invals))]

    def linear_fn(*xs):
        args = list(invals)
        for i, x in zip(undefined, xs, strict=True):
            args[i] = x
        return _bind_eqn(eqn, args)

    specs = [jax.ShapeDtypeStruct(invals[i].aval.shape, invals[i].aval.dtype) for i in undefined]
    cts = jax.linear_transpose(linear_fn, *specs)([cts_in])
    out = [None] * len(invals)
    for i, ct in zip(undefined, cts, strict=True):
        out[i] = ct
    return out


def _make_eqn_vjp_fn(original):
    def _eqn_vjp_fn(eqn, cts_in, *invals):
        """NT's ``_eqn_vjp_fn``, falling back to :func:`jax.linear_transpose` for primitives
        whose transpose JAX now only registers in its internal ``fancy_transposes``."""
        if eqn is None or _has_transpose_rule(eqn.primitive):
            return original(eqn, cts_in, *invals)
        return _vjp_by_linear_transpose(eqn, cts_in, *invals)

    _eqn_vjp_fn.__wrapped__ = original
    return _eqn_vjp_fn


def _primitives_without_transpose_rule() -> list[str]:
    from jax._src.interpreters import ad as src_ad

    fancy = getattr(src_ad, "fancy_transposes", {})
    return sorted(p.name for p in fancy if not _has_transpose_rule(p))


def _nt_write_cotangent(prim, ct_env, v, ct):
    """``neural_tangents._src.empirical._write_cotangent`` without ``lattice_join``.

    With ``jax_enable_checks`` NT checked ``lattice_join(v.aval, ct_aval)`` and
    ``.strip_named_shape()``, both removed from JAX; this checks shape and dtype directly.
    """
    import jax
    from jax.extend.core import Literal
    from jax.interpreters import ad

    assert ct is not ad.Zero, (prim, v.aval)
    if ct is None or type(v) is Literal or type(ct) is ad.Zero:
        return
    ct_env[v] = ad.add_tangents(ct_env[v], ct) if v in ct_env else ct
    if jax.config.jax_enable_checks:
        ct_aval = jax.typeof(ct_env[v])
        if (tuple(ct_aval.shape), ct_aval.dtype) != (tuple(v.aval.shape), v.aval.dtype):
            raise AssertionError((prim, v.aval, ct_aval))


def _flops_of(analysis) -> float | None:
    """The ``'flops'`` entry of a cost analysis: a dict (current JAX), a list of dicts
    (older JAX), or ``None`` (backend without cost analysis)."""
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def _nt_get_flops(f, optimize: bool, *a, **kw) -> float:
    """``neural_tangents._src.empirical._get_flops`` for both cost-analysis shapes."""
    import jax

    lowered = jax.jit(f).lower(*a, **kw)
    flops = _flops_of(lowered.compile().cost_analysis()) if optimize else None
    if flops is None:
        flops = _flops_of(lowered.cost_analysis())
    if flops is None:
        raise RuntimeError(
            "neural-tangents implementation=AUTO needs XLA's cost analysis, which this "
            "backend does not provide; choose an implementation (1, 2 or 3) explicitly."
        )
    return flops


def _shape_of(x) -> tuple[int, ...]:
    import numpy as np

    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _nt_std_basis(pytree):
    """``neural_tangents._src.empirical._std_basis`` without ``jnp.size`` of abstract values."""
    import math

    import jax
    import jax.numpy as jnp

    leaves, _ = jax.tree_util.tree_flatten(pytree)
    ndim = sum(math.prod(_shape_of(leaf)) for leaf in leaves)
    dtype = jax.dtypes.result_type(*leaves)
    flat_basis = jnp.eye(ndim, dtype=dtype)
    return _nt_unravel_array_into_pytree(pytree, 1, flat_basis)


def _nt_unravel_array_into_pytree(pytree, axis: int, arr):
    """``neural_tangents._src.empirical._unravel_array_into_pytree`` without ``jnp.shape`` /
    ``jnp.size`` of abstract values (``ShapeDtypeStruct``, ``ShapedArray``)."""
    import math

    import jax
    import jax.numpy as jnp
    import numpy as np

    leaves, treedef = jax.tree_util.tree_flatten(pytree)
    if arr.ndim > 0:
        axis %= arr.ndim
    shapes = [arr.shape[:axis] + _shape_of(leaf) + arr.shape[axis + 1 :] for leaf in leaves]
    sizes = [math.prod(_shape_of(leaf)) for leaf in leaves[:-1]]
    parts = jnp.split(arr, np.cumsum(sizes, dtype=int), axis)
    reshaped = [jnp.reshape(x, shape) for x, shape in zip(parts, shapes, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, reshaped)


def _nt_get_fx_axis_and_dtype(fx, fx_axis, params):
    """``neural_tangents._src.empirical._get_fx_axis_and_dtype`` reading ``x.dtype`` instead
    of the deprecated ``jnp.dtype(x)`` of an array."""
    import jax
    import jax.numpy as jnp

    if fx_axis is None:
        fx_axis = jax.tree_util.tree_map(lambda x: None, fx)
    dtypes = [jnp.dtype(getattr(x, "dtype", x)) for x in jax.tree_util.tree_leaves(params)]
    dtype = functools.reduce(jnp.promote_types, dtypes) if dtypes else None
    return fx_axis, dtype


def _deprecated_abstract_size() -> bool:
    """Whether ``jnp.size`` of a ``ShapeDtypeStruct`` warns or fails (NT relies on it)."""
    import warnings

    import jax
    import jax.numpy as jnp

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            jnp.size(jax.ShapeDtypeStruct((2, 3), jnp.float32))
            jnp.shape(jax.ShapeDtypeStruct((2, 3), jnp.float32))
        except Exception:  # noqa: BLE001 - DeprecationWarning now, TypeError later
            return True
    return False


def _deprecated_array_as_dtype() -> bool:
    """Whether ``jnp.dtype(array)`` warns or fails (NT relies on it)."""
    import warnings

    import jax.numpy as jnp

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            jnp.dtype(jnp.zeros(1))
        except Exception:  # noqa: BLE001 - DeprecationWarning now, TypeError later
            return True
    return False


def _eigvalsh_with_eigvals(a, b=None, *args, eigvals=None, **kwargs):
    """``scipy.linalg.eigvalsh`` accepting the ``eigvals=(lo, hi)`` argument that SciPy 1.14
    removed, translated to ``subset_by_index=[lo, hi]`` (same inclusive index range)."""
    import scipy.linalg

    if eigvals is not None:
        if kwargs.get("subset_by_index") is not None:
            raise TypeError("give at most one of eigvals and subset_by_index")
        kwargs["subset_by_index"] = [int(eigvals[0]), int(eigvals[1])]
    return scipy.linalg.eigvalsh(a, b, *args, **kwargs)


def _eigvalsh_lacks_eigvals() -> bool:
    import inspect

    import scipy.linalg

    return "eigvals" not in inspect.signature(scipy.linalg.eigvalsh).parameters


def _eval_context_drops_traces() -> bool:
    """Whether ``jax.core.eval_context`` hides enclosing traces (stackless JAX): then an
    operation on a tracer inside it raises instead of being traced, as NT expected."""
    import jax

    def probe(x):
        with jax.core.eval_context():
            return x * 2.0

    try:
        jax.grad(probe)(1.0)
    except Exception:  # noqa: BLE001 - UnexpectedTracerError or its relatives
        return True
    return False


# True: NT's eval_context blocks run eagerly (inputs concrete); False: they are traced.
_NT_EVAL_EAGERLY = contextvars.ContextVar("ntklit_nt_eval_eagerly", default=True)


@contextlib.contextmanager
def _nt_eval_context():
    """NT's ``jax.core.eval_context()``, with the semantics NT was written for.

    NT caches the kernel's eigendecomposition in ``eval_context`` so it is computed once,
    eagerly, even when the predictor is first called under ``jit``/``vmap``. That is right
    when the kernel is concrete, but if the kernel itself is a tracer (``grad``/``jit``/
    ``vmap`` over it) the computation must be traced, which old JAX did and current JAX's
    ``eval_context`` refuses. :func:`_wrap_predictor` tells this context which case holds.
    """
    import jax

    if _NT_EVAL_EAGERLY.get():
        with jax.core.eval_context():
            yield
    else:
        yield


def _contains_tracer(tree) -> bool:
    import jax

    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(tree))


def _wrap_predictor(original):
    def gradient_descent_mse(
        k_train_train,
        y_train,
        learning_rate=1.0,
        diag_reg=0.0,
        diag_reg_absolute_scale=False,
        trace_axes=(-1,),
    ):
        eager = not _contains_tracer((k_train_train, y_train, learning_rate, diag_reg))
        predict_fn = original(
            k_train_train, y_train, learning_rate, diag_reg, diag_reg_absolute_scale, trace_axes
        )

        @functools.wraps(predict_fn)
        def predict_fn_compat(*args, **kwargs):
            token = _NT_EVAL_EAGERLY.set(eager)
            try:
                return predict_fn(*args, **kwargs)
            finally:
                _NT_EVAL_EAGERLY.reset(token)

        return predict_fn_compat

    functools.update_wrapper(gradient_descent_mse, original)
    return gradient_descent_mse


def _set_nt_global(module, name: str, value) -> None:
    """Replace ``module.name`` (a neural-tangents module global), keeping the original."""
    original = getattr(module, name)
    _NT_ORIGINALS[(module.__name__, name)] = original
    setattr(module, name, value)


_NT_ORIGINALS: dict[tuple[str, str], object] = {}


def _patch_nt_runtime() -> None:
    """Patch neural-tangents' module globals for run-time behaviour changes."""
    import jax
    import scipy

    empirical = sys.modules["neural_tangents._src.empirical"]
    predict = sys.modules["neural_tangents._src.predict"]
    public_predict = sys.modules["neural_tangents.predict"]

    need = not _old_style_linearize()
    if need:
        _set_nt_global(
            empirical, "_get_primals_out_and_pullback", _nt_get_primals_out_and_pullback
        )
    _record(
        "neural_tangents._src.empirical._get_primals_out_and_pullback",
        "STRUCTURED_DERIVATIVES called the internal jax.interpreters.ad.linearize(f, "
        "*primals, has_aux) and unpacked (out, pvals, jaxpr, consts); its signature and "
        "outputs changed (0.10.2, again after 0.11). Rebuilt from public jax.linearize + "
        "jax.make_jaxpr, with call primitives (jit, checkpoint) inlined",
        need,
    )

    missing = _primitives_without_transpose_rule()
    if missing:
        _set_nt_global(empirical, "_eqn_vjp_fn", _make_eqn_vjp_fn(empirical._eqn_vjp_fn))
    _record(
        "neural_tangents._src.empirical._eqn_vjp_fn",
        "JAX registers the transposes of some primitives only in its internal "
        f"fancy_transposes ({', '.join(missing) or 'none here'}); NT looked them up in "
        "primitive_transposes. Falls back to public jax.linear_transpose",
        bool(missing),
    )

    need = not (
        hasattr(jax.core, "lattice_join")
        and hasattr(jax.core, "get_aval")
        and hasattr(jax.core.ShapedArray, "strip_named_shape")
    )
    if need:
        _set_nt_global(empirical, "_write_cotangent", _nt_write_cotangent)
    _record(
        "neural_tangents._src.empirical._write_cotangent",
        "with jax_enable_checks NT called jax.core.lattice_join, jax.core.get_aval and "
        "ShapedArray.strip_named_shape, all removed; checks shape and dtype directly",
        need,
    )

    need = _deprecated_abstract_size()
    if need:
        _set_nt_global(empirical, "_std_basis", _nt_std_basis)
        _set_nt_global(empirical, "_unravel_array_into_pytree", _nt_unravel_array_into_pytree)
    _record(
        "neural_tangents._src.empirical._std_basis, _unravel_array_into_pytree",
        "call jnp.size/jnp.shape on ShapeDtypeStruct/ShapedArray, deprecated in JAX "
        "(DeprecationWarning, 'will be an error'); read .shape instead",
        need,
    )

    need = _deprecated_array_as_dtype()
    if need:
        _set_nt_global(empirical, "_get_fx_axis_and_dtype", _nt_get_fx_axis_and_dtype)
    _record(
        "neural_tangents._src.empirical._get_fx_axis_and_dtype",
        "calls jnp.dtype(array), deprecated in JAX ('will result in an error'); reads "
        "array.dtype instead",
        need,
    )

    _set_nt_global(empirical, "_get_flops", _nt_get_flops)
    _record(
        "neural_tangents._src.empirical._get_flops",
        "implementation=AUTO indexed Compiled.cost_analysis()[0]; current JAX returns a "
        "dict (KeyError 0). Accepts a dict or a list of dicts, detected per call",
        True,
    )

    need = _eigvalsh_lacks_eigvals()
    if need:
        linalg_view = _ModuleView(scipy.linalg, eigvalsh=_eigvalsh_with_eigvals)
        _set_nt_global(predict, "sp", _ModuleView(predict.sp, linalg=linalg_view))
    _record(
        "neural_tangents._src.predict.sp",
        "predict.max_learning_rate calls scipy.linalg.eigvalsh(eigvals=...), removed in "
        "SciPy 1.14; NT's `sp` becomes a view translating it to subset_by_index",
        need,
    )

    need = _eval_context_drops_traces()
    if need:
        core_view = _ModuleView(jax.core, eval_context=_nt_eval_context)
        _set_nt_global(predict, "jax", _ModuleView(predict.jax, core=core_view))
        wrapped = _wrap_predictor(predict.gradient_descent_mse)
        _set_nt_global(predict, "gradient_descent_mse", wrapped)
        _set_nt_global(public_predict, "gradient_descent_mse", wrapped)
    _record(
        "neural_tangents._src.predict.gradient_descent_mse",
        "jax.core.eval_context now drops enclosing traces, so grad/jit/vmap over the "
        "kernel raised UnexpectedTracerError; NT's eval_context now runs eagerly only "
        "when the kernel and targets are concrete, as on the JAX NT was written for",
        need,
    )


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Runs ``callback(module)`` right after the module ``name`` has been executed."""

    def __init__(self, name: str, callback):
        self.name = name
        self.callback = callback
        self._busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader, callback):
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


_RUNTIME_DONE = False


def _on_neural_tangents_import(module=None) -> None:
    global _RUNTIME_DONE
    if _RUNTIME_DONE:
        return
    _RUNTIME_DONE = True
    _patch_nt_runtime()


def _install_runtime_patches() -> None:
    if "neural_tangents" in sys.modules:
        _on_neural_tangents_import(sys.modules["neural_tangents"])
    elif not any(isinstance(f, _PostImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportHook("neural_tangents", _on_neural_tangents_import))


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
    _install_runtime_patches()
    _APPLIED = True


def applied() -> list[Patch]:
    """The patches that were needed on the installed JAX/SciPy (and so applied)."""
    return [p for p in PATCHES if p.applied]
