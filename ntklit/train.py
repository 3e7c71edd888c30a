"""Training a grid of networks (seeds x learning rates) as one vectorized program.

:func:`train` trains ``len(learning_rates) * len(seeds)`` copies of one stax network
(e.g. from :func:`ntklit.nets.fcn`, either initialization) by full-batch gradient descent or
minibatch SGD (optional heavy-ball momentum through ``optax.trace``), on the MSE loss

.. math:: \\mathcal L = \\frac{1}{2NC}\\sum_{i=1}^N\\sum_{c=1}^C (f_c(x_i) - y_{ic})^2

(the normalization of ``neural_tangents.predict.gradient_descent_mse``, so a network trained
for ``t`` steps at learning rate ``eta`` is compared with the kernel prediction at time
``eta * t``), or the softmax cross-entropy averaged over examples,
:math:`\\mathcal L = -\\frac1N\\sum_i \\sum_c y_{ic}\\log\\mathrm{softmax}(f(x_i))_c`.

All runs of a chunk are trained by one ``jax.vmap``-ed, jit-compiled program; the grid is split
into chunks of ``chunk_size`` runs to bound memory (the last chunk is padded so that every
chunk reuses the same compiled program). ``vectorize=False`` trains the same runs one by one
with the same per-run program (used by the tests and the benchmark as the reference loop).

Runs sharing a seed share the initial parameters and the minibatch order, so learning rates are
compared on paired runs. A run whose loss or parameters become non-finite (or whose loss exceeds
``max_loss``) is marked diverged at that step, frozen at its last finite parameters, and its
later records are NaN; it never raises. With ``target_accuracy`` the first recorded step at
which the train accuracy reaches the target is reported (``steps_to_target``), and with
``stop_at_target=True`` such runs are frozen too; when every run of a chunk is frozen the chunk
stops early.

Records (at steps ``0, record_every, 2 record_every, ..., steps``): train loss and accuracy on
the full training set (or ``x_eval``), the same on the test set if given, and the relative
weight change per layer :math:`\\|W^l_t - W^l_0\\|_F / \\|W^l_0\\|_F` (the ``W`` of every stax
``(W, b)`` layer, Dense or Conv, input layer first; see :func:`weight_layers`). At the
steps ``ntk_steps`` the empirical NTK on ``x_ntk`` is stored and its relative change
:math:`\\|\\Theta_t - \\Theta_0\\|_F / \\|\\Theta_0\\|_F` (Huang et al., arXiv:2004.05867, Fig. 2).

``center=True`` trains the centred function :math:`f(\\theta, x) - f(\\theta_0, x)`, whose
infinite-width gradient-descent limit is the deterministic kernel prediction
:math:`\\Theta(x, X)\\Theta^{-1}(I - e^{-\\eta t \\Theta/(NC)})Y` (the mean returned by
``nt.predict.gradient_descent_mse_ensemble``); it leaves the NTK and the gradients unchanged.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntklit import _validate

__all__ = ["TrainResult", "train", "LOSSES", "default_ntk_fn", "weight_layers"]

LOSSES: tuple[str, ...] = ("mse", "xent")
_REC_KEYS = ("loss", "acc", "test_loss", "test_acc", "w")
_RECORD_WINDOW = 32  # records per call of the compiled training program


@dataclass(frozen=True)
class TrainResult:
    """Results of :func:`train` for a grid of ``A = len(learning_rates)`` by ``S = len(seeds)``.

    Attributes:
      learning_rates: ``(A,)``.
      seeds: ``(S,)``.
      record_steps: ``(T,)`` steps at which metrics were recorded (``0`` and ``steps`` included).
      loss, accuracy: ``(A, S, T)`` train loss and accuracy (NaN after divergence).
      test_loss, test_accuracy: ``(A, S, T)`` or ``None`` without test data.
      weight_change: ``(A, S, T, L)`` relative Frobenius change of each weight array.
      ntk_steps: ``(K,)`` steps at which the NTK was evaluated.
      ntk: ``(A, S, K, M, M)`` empirical NTK on ``x_ntk`` (traced over outputs), or ``None``.
      ntk_change: ``(A, S, K)`` :math:`\\|\\Theta_t-\\Theta_0\\|_F/\\|\\Theta_0\\|_F`, or ``None``.
      diverged: ``(A, S)`` bool.
      diverged_step: ``(A, S)`` first step with a non-finite (or too large) loss; -1 if none.
      steps_to_target: ``(A, S)`` first recorded step with train accuracy >= target; -1 if
        never (or no target).
      f_train, f_test: ``(A, S, N, C)`` final outputs (centred if ``center``) on the training
        set (on ``x_eval`` if given) and the test set (``None`` without test data).
      num_params: parameters per network.
      examples_per_step: examples per gradient step (batch size or N).
      steps: steps requested.
      wall_time: seconds spent in :func:`train` (compilation included).
      config: the arguments, for the record.
    """

    learning_rates: np.ndarray
    seeds: np.ndarray
    record_steps: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    weight_change: np.ndarray
    ntk_steps: np.ndarray
    ntk: np.ndarray | None
    ntk_change: np.ndarray | None
    diverged: np.ndarray
    diverged_step: np.ndarray
    steps_to_target: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray | None
    num_params: int
    examples_per_step: int
    steps: int
    wall_time: float
    config: dict = field(default_factory=dict)

    @property
    def trained(self) -> np.ndarray:
        """``(A, S)``: reached the target accuracy without diverging."""
        return (~self.diverged) & (self.steps_to_target >= 0)


def _weights(params) -> list:
    """The weight arrays of a stax network: ``W`` of every ``(W, b)`` layer, in order."""
    found = []

    def walk(node):
        if isinstance(node, (tuple, list)):
            if (
                len(node) == 2
                and hasattr(node[0], "ndim")
                and node[0].ndim >= 2
                and (node[1] is None or hasattr(node[1], "ndim"))
            ):
                found.append(node[0])
                return
            for child in node:
                walk(child)

    walk(params)
    return found


def weight_layers(params) -> list[tuple[int, ...]]:
    """Shapes of the layer weights tracked by ``weight_change``: the ``W`` of every stax
    ``(W, b)`` layer (Dense, Conv), input layer first."""
    return [tuple(w.shape) for w in _weights(params)]


@functools.lru_cache(maxsize=32)
def default_ntk_fn(apply_fn: Callable) -> Callable:
    """``ntk_fn(params, x) -> (M, M)``: empirical NTK traced (averaged) over outputs.

    :func:`ntklit.empirical.ntk` with NTK-vector products (implementation 2,
    arXiv:2206.08720), which never materializes the Jacobian, so that wide networks fit.
    """
    from ntklit import empirical

    def ntk_fn(params, x):
        return empirical.ntk(apply_fn, params, x, implementation="ntk_vector_products")

    return ntk_fn


def _as_list(name, values, kind):
    arr = np.atleast_1d(np.asarray(values))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got {values!r}")
    if kind == "lr":
        arr = arr.astype(float)
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise ValueError(f"{name} must be positive finite numbers, got {values!r}")
    else:
        if not np.issubdtype(arr.dtype, np.integer) or np.any(arr < 0):
            raise ValueError(f"{name} must be non-negative ints, got {values!r}")
        arr = arr.astype(np.int64)
    return arr


def _accuracy(f, y):
    return jnp.mean(jnp.argmax(f, -1) == jnp.argmax(y, -1))


def _loss_value(kind, f, y):
    if kind == "mse":
        return 0.5 * jnp.mean((f - y) ** 2)
    return jnp.mean(optax.softmax_cross_entropy(f, y))


def _rel_change(new, old):
    num = jnp.sqrt(jnp.sum((new - old) ** 2))
    return num / jnp.maximum(jnp.sqrt(jnp.sum(old**2)), jnp.finfo(old.dtype).tiny)


def _tree_where(c, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(c, u, v), a, b)


@functools.lru_cache(maxsize=32)
def _programs(
    apply_fn,
    ntk_fn,
    loss,
    batch_size,
    momentum,
    center,
    record_every,
    stop_at_target,
    target_v,
    max_loss_v,
    vectorize,
):
    """The compiled programs ``(start, run, ntk)``, vmapped over runs if ``vectorize``.

    ``run`` trains from one record to a later one in a single call (no host round trip per
    record or per step); the host calls it once per stretch between NTK evaluations (and
    progress updates).

    Cached on the network's ``apply_fn`` and the training configuration; the data are
    arguments, so calls that differ only in data, seeds, learning rates or ``init_fn`` (e.g.
    Gaussian vs orthogonal initialization of one architecture) reuse the compiled programs.
    """
    tx = optax.trace(decay=momentum) if momentum else optax.identity()

    def init_run(params, key, D):
        f0 = (lambda x: apply_fn(params, x)) if center else (lambda x: jnp.zeros(()))
        return {
            "params": params,
            "params0": params,
            "opt": tx.init(params),
            "active": jnp.array(True),
            "div_step": jnp.array(-1, jnp.int32),
            "tgt_step": jnp.array(-1, jnp.int32),
            "f0": {"train": f0(D["x_train"]), "eval": f0(D["x_eval"]), "test": f0(D["x_test"])},
            "key": jax.random.fold_in(key, 1),
        }

    def out(st, params, x, which):
        return apply_fn(params, x) - st["f0"][which]

    def metrics(st, D):
        p = st["params"]
        fe = out(st, p, D["x_eval"], "eval")
        ft = out(st, p, D["x_test"], "test")
        w = [_rel_change(a, b) for a, b in zip(_weights(p), _weights(st["params0"]))]
        return {
            "loss": _loss_value(loss, fe, D["y_eval"]),
            "acc": _accuracy(fe, D["y_eval"]),
            "test_loss": _loss_value(loss, ft, D["y_test"]),
            "test_acc": _accuracy(ft, D["y_test"]),
            "w": jnp.stack(w),
            "f_eval": fe,
            "f_test": ft,
        }

    def epoch_perms(st, t0, D):
        """Permutations of the epochs that steps ``t0 .. t0 + record_every - 1`` touch."""
        n = D["x_train"].shape[0]
        if batch_size is None:
            return jnp.zeros((1, 1), jnp.int32)
        n_batches = n // batch_size
        n_ep = (record_every - 1) // n_batches + 2
        epochs = t0 // n_batches + jnp.arange(n_ep)
        return jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(st["key"], e), n))(
            epochs
        )

    def one_step(st, lr, t, D, perms, t0):
        x_train, y_train = D["x_train"], D["y_train"]
        n = x_train.shape[0]
        if batch_size is None:
            xb, yb, f0b = x_train, y_train, st["f0"]["train"]
        else:
            # minibatch pos of epoch t // n_batches (epochs are per-seed random permutations)
            n_batches = n // batch_size
            pos = t % n_batches
            perm = perms[t // n_batches - t0 // n_batches]
            idx = jax.lax.dynamic_slice(perm, (pos * batch_size,), (batch_size,))
            xb, yb = x_train[idx], y_train[idx]
            f0b = st["f0"]["train"][idx] if center else st["f0"]["train"]

        def loss_fn(p):
            return _loss_value(loss, apply_fn(p, xb) - f0b, yb)

        lv, g = jax.value_and_grad(loss_fn)(st["params"])
        upd, opt = tx.update(g, st["opt"], st["params"])
        new = jax.tree_util.tree_map(lambda p, u: p - lr * u, st["params"], upd)
        sq = sum(jnp.sum(jnp.square(p)) for p in jax.tree_util.tree_leaves(new))
        ok = jnp.isfinite(lv) & jnp.isfinite(sq) & (lv <= max_loss_v)
        go = st["active"] & ok
        newly_div = st["active"] & ~ok
        st = dict(st)
        st["params"] = _tree_where(go, new, st["params"])
        st["opt"] = _tree_where(go, opt, st["opt"])
        st["active"] = go
        st["div_step"] = jnp.where(newly_div, t, st["div_step"]).astype(jnp.int32)
        return st

    def after_record(st, t_now, D):
        m = metrics(st, D)
        reached = (m["acc"] >= target_v) & (st["div_step"] < 0)
        st = dict(st)
        st["tgt_step"] = jnp.where(reached & (st["tgt_step"] < 0), t_now, st["tgt_step"]).astype(
            jnp.int32
        )
        if stop_at_target:
            st["active"] = st["active"] & ~reached
        return st, m

    def segment(st, lr, t0, D):
        perms = epoch_perms(st, t0, D)

        def body(s, i):
            return one_step(s, lr, t0 + i, D, perms, t0), None

        st, _ = jax.lax.scan(body, st, jnp.arange(record_every))
        return after_record(st, t0 + record_every, D)

    def start(params, key, D):
        return after_record(init_run(params, key, D), 0, D)

    def ntk_eval(st, D):
        return ntk_fn(st["params"], D["x_ntk"])

    seg = jax.vmap(segment, in_axes=(0, 0, None, None)) if vectorize else segment

    def run(st, lr, D, last, r, r_end):
        """Records ``r .. r_end`` (inclusive, at most ``_RECORD_WINDOW``) in one program, on
        device: a ``while_loop`` over records that stops early when no run is active.
        Returns the state, the metrics of the window (``(_RECORD_WINDOW, ...)`` per key,
        record ``r + i`` in row ``i``), the latest outputs and the next record to compute.
        The window has a fixed length so that one compiled program serves every ``steps``."""
        shapes = jax.eval_shape(lambda s: seg(s, lr, 0, D)[1], st)
        bufs = {
            k: jnp.zeros((_RECORD_WINDOW,) + shapes[k].shape, shapes[k].dtype) for k in _REC_KEYS
        }

        def cond(c):
            st, _, _, i = c
            return (r + i <= r_end) & jnp.any(st["active"])

        def body(c):
            st, bufs, last, i = c
            st, m = seg(st, lr, (r + i - 1) * record_every, D)
            bufs = {k: b.at[i].set(m[k]) for k, b in bufs.items()}
            return st, bufs, {k: m[k] for k in last}, i + 1

        st, bufs, last, i = jax.lax.while_loop(cond, body, (st, bufs, last, 0 * r))
        return st, bufs, last, r + i

    # The training state (parameters, their initial copy, optimizer state) and the latest
    # outputs are donated to ``run``: XLA writes the new state into the old buffers, so a chunk
    # holds one copy of its state, not two (the host never reads a state after passing it on).
    # In the vectorized path ``start`` also takes over the stacked initial parameters (a fresh
    # array per chunk); the one-by-one path passes the cached per-seed parameters, kept.
    if vectorize:
        return (
            jax.jit(jax.vmap(start, in_axes=(0, 0, None)), donate_argnums=0),
            jax.jit(run, donate_argnums=(0, 3)),
            jax.jit(jax.vmap(ntk_eval, in_axes=(0, None))),
        )
    return jax.jit(start), jax.jit(run, donate_argnums=(0, 3)), jax.jit(ntk_eval)


def train(
    init_fn: Callable,
    apply_fn: Callable,
    x_train,
    y_train,
    *,
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    loss: str = "mse",
    batch_size: int | None = None,
    momentum: float = 0.0,
    x_test=None,
    y_test=None,
    x_eval=None,
    y_eval=None,
    record_every: int | None = None,
    ntk_steps: Sequence[int] = (),
    x_ntk=None,
    ntk_fn: Callable | None = None,
    center: bool = False,
    target_accuracy: float | None = None,
    stop_at_target: bool = False,
    max_loss: float | None = None,
    chunk_size: int | None = None,
    vectorize: bool = True,
    progress: bool = False,
) -> TrainResult:
    """Train a grid of networks over learning rates and seeds.

    Args:
      init_fn, apply_fn: a stax network, e.g. from :func:`ntklit.nets.fcn`
        (``init_fn(key, input_shape) -> (out_shape, params)``, ``apply_fn(params, x)``).
      x_train: ``(N, ...)`` inputs.
      y_train: ``(N, C)`` targets (one-hot for accuracy; any real targets for MSE).
      learning_rates: ``(A,)`` positive learning rates.
      seeds: ``(S,)`` non-negative ints; run ``(a, s)`` initializes with
        ``jax.random.fold_in(jax.random.key(seeds[s]), 0)``.
      steps: number of gradient steps (a multiple of ``record_every``).
      loss: ``"mse"`` or ``"xent"`` (see the module docstring for the normalization).
      batch_size: minibatch size for SGD (epochs of a per-seed random permutation, the last
        incomplete batch dropped); ``None`` for full-batch gradient descent.
      momentum: heavy-ball momentum in ``[0, 1)`` (``optax.trace``); 0 is plain (S)GD.
      x_test, y_test: optional test set, evaluated at every record.
      x_eval, y_eval: optional set replacing the training set for the recorded train metrics
        (e.g. a subset of a large training set).
      record_every: steps between records; default ``steps`` (records at 0 and ``steps``).
      ntk_steps: recorded steps (0 included automatically if non-empty) at which to evaluate
        the empirical NTK on ``x_ntk``.
      x_ntk: ``(M, ...)`` probe inputs for the NTK.
      ntk_fn: ``ntk_fn(params, x) -> (M, M)``; default :func:`default_ntk_fn`.
      center: train :math:`f(\\theta,x) - f(\\theta_0,x)`.
      target_accuracy: accuracy in ``(0, 1]`` defining ``steps_to_target``.
      stop_at_target: freeze runs once they reached ``target_accuracy``.
      max_loss: treat a step whose minibatch loss exceeds this as divergence (``None``: only
        non-finite losses or parameters).
      chunk_size: runs per vectorized program; default all runs.
      vectorize: ``False`` trains the runs one after another (reference loop).
      progress: show a ``tqdm`` bar over records.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ValueError: for bad arguments (before any compilation).
    """
    t_start = time.perf_counter()
    _validate.choice("loss", loss, LOSSES)
    lrs = _as_list("learning_rates", learning_rates, "lr")
    seed_arr = _as_list("seeds", seeds, "seed")
    steps = _validate.integer("steps", steps)
    record_every = (
        steps if record_every is None else _validate.integer("record_every", record_every)
    )
    if steps % record_every:
        raise ValueError(f"steps ({steps}) must be a multiple of record_every ({record_every})")
    x_train = jnp.asarray(x_train)
    y_train = jnp.asarray(y_train)
    if y_train.ndim != 2 or x_train.shape[0] != y_train.shape[0]:
        raise ValueError(
            "x_train must be (N, ...) and y_train (N, C) with the same N, got "
            f"{x_train.shape} and {y_train.shape}"
        )
    n = int(x_train.shape[0])
    batch_size = _validate.integer("batch_size", batch_size, allow_none=True)
    if batch_size is not None and batch_size > n:
        raise ValueError(f"batch_size must be at most N={n}, got {batch_size}")
    momentum = _validate.real("momentum", momentum, minimum=0.0)
    if momentum >= 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    for nm, xa, ya in (("test", x_test, y_test), ("eval", x_eval, y_eval)):
        if (xa is None) != (ya is None):
            raise ValueError(f"x_{nm} and y_{nm} must be given together")
        if xa is not None and (
            np.shape(xa)[1:] != x_train.shape[1:]
            or np.shape(ya)[1:] != y_train.shape[1:]
            or np.shape(xa)[0] != np.shape(ya)[0]
        ):
            raise ValueError(
                f"x_{nm}/y_{nm} shapes {np.shape(xa)}/{np.shape(ya)} do not match "
                f"the training data {x_train.shape}/{y_train.shape}"
            )
    record_steps = np.arange(0, steps + 1, record_every)
    ntk_steps = sorted({int(s) for s in ntk_steps})
    if ntk_steps:
        bad = [s for s in ntk_steps if s not in set(record_steps.tolist())]
        if bad:
            raise ValueError(
                f"ntk_steps must be recorded steps (multiples of record_every="
                f"{record_every} in [0, {steps}]), got {bad}"
            )
        if x_ntk is None:
            raise ValueError("x_ntk is required when ntk_steps is given")
        if 0 not in ntk_steps:
            ntk_steps = [0] + ntk_steps
    if target_accuracy is not None and not (
        0.0 < _validate.real("target_accuracy", target_accuracy, positive=True) <= 1.0
    ):
        raise ValueError(f"target_accuracy must be in (0, 1], got {target_accuracy!r}")
    if stop_at_target and target_accuracy is None:
        raise ValueError("stop_at_target requires target_accuracy")
    if max_loss is not None:
        max_loss = _validate.real("max_loss", max_loss, positive=True)
    n_runs = lrs.size * seed_arr.size
    chunk_size = n_runs if chunk_size is None else _validate.integer("chunk_size", chunk_size)
    chunk_size = min(chunk_size, n_runs)

    x_eval_ = x_train if x_eval is None else jnp.asarray(x_eval)
    y_eval_ = y_train if y_eval is None else jnp.asarray(y_eval)
    has_test = x_test is not None
    x_test_ = jnp.asarray(x_test) if has_test else x_train[:1]
    y_test_ = jnp.asarray(y_test) if has_test else y_train[:1]
    x_ntk_ = jnp.asarray(x_ntk) if ntk_steps else x_train[:1]
    if ntk_steps and ntk_fn is None:
        ntk_fn = default_ntk_fn(apply_fn)
    input_shape = (-1,) + tuple(x_train.shape[1:])
    bsz = n if batch_size is None else batch_size
    target_v = 2.0 if target_accuracy is None else float(target_accuracy)
    max_loss_v = float("inf") if max_loss is None else float(max_loss)
    D = {
        "x_train": x_train,
        "y_train": y_train,
        "x_eval": x_eval_,
        "y_eval": y_eval_,
        "x_test": x_test_,
        "y_test": y_test_,
        "x_ntk": x_ntk_,
    }
    j_start, j_run, j_ntk = _programs(
        apply_fn,
        ntk_fn,
        loss,
        batch_size,
        float(momentum),
        bool(center),
        record_every,
        bool(stop_at_target),
        target_v,
        max_loss_v,
        bool(vectorize),
    )

    # Initialization runs outside the compiled programs, op by op and one seed at a time:
    # jax.random's samplers are jitted per shape and cached for the process, whereas inlining
    # threefry into a larger program, or vmapping it over keys, costs seconds of XLA
    # compilation per sampler on CPU (vmapped init was 2/3 of the first call's time).
    init_cache: dict[int, object] = {}

    def init_params(seed):
        if seed not in init_cache:
            key = jax.random.fold_in(jax.random.key(seed), 0)
            init_cache[seed] = init_fn(key, input_shape)[1]
        return init_cache[seed]

    cs = chunk_size if vectorize else 1

    # ------------------------------------------------------------------ grid loop
    run_lr = np.repeat(lrs, seed_arr.size)
    run_seed = np.tile(seed_arr, lrs.size)
    T, K = record_steps.size, len(ntk_steps)
    ntk_records = [int(np.searchsorted(record_steps, s_)) for s_ in ntk_steps]
    # host calls per chunk: up to each NTK record, up to ~20 progress ticks, every
    # _RECORD_WINDOW records, and the end
    stops = set(ntk_records) | {T - 1} | set(range(0, T, _RECORD_WINDOW))
    if progress:
        stops |= set(range(0, T, max(1, -(-(T - 1) // 20))))
    stops = sorted(r for r in stops if r > 0)
    recs = {k: [] for k in _REC_KEYS}
    ntks, div_steps, tgt_steps, f_tr, f_te = [], [], [], [], []
    chunks = [np.arange(i, min(i + cs, n_runs)) for i in range(0, n_runs, cs)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chunks) * (T - 1), desc="training", leave=False)
    for idx in chunks:
        real = idx.size
        if vectorize and real < cs:  # pad to keep one compiled program
            idx = np.concatenate([idx, np.full(cs - real, idx[-1])])
        if vectorize:
            keys = jax.vmap(jax.random.key)(jnp.asarray(run_seed[idx]))
            lr_c = jnp.asarray(run_lr[idx], dtype=x_train.dtype)
            params = jax.tree_util.tree_map(
                lambda *a: jnp.stack(a), *[init_params(int(s_)) for s_ in run_seed[idx]]
            )
        else:
            keys = jax.random.key(int(run_seed[idx[0]]))
            lr_c = jnp.asarray(run_lr[idx[0]], dtype=x_train.dtype)
            params = init_params(int(run_seed[idx[0]]))
        st, m = j_start(params, keys, D)
        windows = {k: [np.asarray(m[k])[None]] for k in _REC_KEYS}  # record 0
        last = {"f_eval": m["f_eval"], "f_test": m["f_test"]}
        chunk_ntk = [j_ntk(st, D)] if 0 in ntk_steps else []
        r_next, done = 1, 0
        for stop in stops:
            if r_next <= stop:  # else every run of the chunk is frozen
                st, w, last, r_out = j_run(
                    st, lr_c, D, last, jnp.asarray(r_next, jnp.int32), jnp.asarray(stop, jnp.int32)
                )
                r_out = int(r_out)
                for k in _REC_KEYS:
                    windows[k].append(np.asarray(w[k])[: r_out - r_next])
                r_next = r_out if r_out > stop else T  # stopped early: all runs frozen
            if stop in ntk_records:  # frozen runs: the NTK of their frozen parameters
                chunk_ntk.append(j_ntk(st, D))
            if bar is not None:
                bar.update(stop - done)
                done = stop
        sl = slice(0, real)

        def npy(a):
            a = np.asarray(a)
            return a[sl] if vectorize else a[None]

        for k in _REC_KEYS:
            b = np.concatenate(windows[k])
            # records after every run of the chunk froze repeat the last computed one
            b = np.concatenate([b, np.repeat(b[-1:], T - b.shape[0], axis=0)])
            b = np.moveaxis(b, 0, 1) if vectorize else b[None]  # (runs, T, ...)
            recs[k].append(b[sl])
        if K:
            ntks.append(np.stack([npy(a) for a in chunk_ntk], axis=1))
        div_steps.append(npy(st["div_step"]))
        tgt_steps.append(npy(st["tgt_step"]))
        f_tr.append(npy(last["f_eval"]))
        f_te.append(npy(last["f_test"]))
    if bar is not None:
        bar.close()

    A, S = lrs.size, seed_arr.size

    def grid(parts):
        a = np.concatenate(parts, axis=0)
        return a.reshape((A, S) + a.shape[1:])

    loss_r, acc_r = grid(recs["loss"]).astype(float), grid(recs["acc"]).astype(float)
    tl_r, ta_r = grid(recs["test_loss"]).astype(float), grid(recs["test_acc"]).astype(float)
    w_r = grid(recs["w"]).astype(float)
    div = grid(div_steps).astype(np.int64)
    tgt = grid(tgt_steps).astype(np.int64)
    diverged = div >= 0
    # records at or after the divergence step are NaN (the run was stopped there)
    after = diverged[..., None] & (record_steps[None, None, :] > div[..., None])
    for arr in (loss_r, acc_r, tl_r, ta_r):
        arr[after] = np.nan
    w_r[after] = np.nan
    tgt = np.where(diverged & (tgt > div), -1, tgt)
    ntk_arr = ntk_change = None
    if K:
        ntk_arr = grid(ntks)
        d = ntk_arr - ntk_arr[:, :, :1]
        ntk_change = np.linalg.norm(d.reshape(A, S, K, -1), axis=-1) / np.linalg.norm(
            ntk_arr[:, :, :1].reshape(A, S, 1, -1), axis=-1
        )
    shapes = jax.eval_shape(lambda: init_fn(jax.random.key(0), input_shape)[1])
    num_params = int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes)))
    config = dict(
        steps=steps,
        loss=loss,
        batch_size=batch_size,
        momentum=float(momentum),
        record_every=record_every,
        center=center,
        target_accuracy=target_accuracy,
        stop_at_target=stop_at_target,
        max_loss=max_loss,
        chunk_size=cs,
        vectorize=vectorize,
        n_train=n,
        dtype=str(x_train.dtype),
    )
    return TrainResult(
        learning_rates=lrs,
        seeds=seed_arr,
        record_steps=record_steps,
        loss=loss_r,
        accuracy=acc_r,
        test_loss=tl_r if has_test else None,
        test_accuracy=ta_r if has_test else None,
        weight_change=w_r,
        ntk_steps=np.asarray(ntk_steps, dtype=np.int64),
        ntk=ntk_arr,
        ntk_change=ntk_change,
        diverged=diverged,
        diverged_step=np.where(diverged, div, -1),
        steps_to_target=tgt,
        f_train=grid(f_tr),
        f_test=grid(f_te) if has_test else None,
        num_params=num_params,
        examples_per_step=bsz,
        steps=steps,
        wall_time=time.perf_counter() - t_start,
        config=config,
    )
