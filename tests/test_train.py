"""Tests of ntklit.train: a tiny grid trains, divergence is caught, vmapped == looped, the
MSE dynamics of a linear model match the closed form, the NTK record matches neural-tangents.

Networks are built with neural-tangents' stax directly (NTK parameterization) so these tests do
not depend on other ntklit modules.
"""

import jax
import numpy as np
import pytest

from ntklit import data, train  # noqa: I001  (importing ntklit first applies the compat layer)

import neural_tangents as nt
from neural_tangents import stax

jax.config.update("jax_enable_x64", True)


def _net(depth=2, width=32, out=10, act=stax.Erf):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=1.2, b_std=0.1), act()]
    layers += [stax.Dense(out, W_std=1.2, b_std=0.1)]
    return stax.serial(*layers)


@pytest.fixture(scope="module")
def ds():
    tr = data.load("gaussian", "train", size=64, seed=0, dtype="float64")
    te = data.load("gaussian", "test", size=32, seed=0, dtype="float64")
    return tr, te


def test_tiny_grid_trains(ds):
    tr, te = ds
    init_fn, apply_fn, _ = _net()
    res = train.train(
        init_fn,
        apply_fn,
        tr.x,
        tr.y,
        learning_rates=[1.0, 4.0],
        seeds=[0, 1, 2],
        steps=200,
        record_every=50,
        loss="mse",
        x_test=te.x,
        y_test=te.y,
    )
    assert res.loss.shape == (2, 3, 5) and res.test_accuracy.shape == (2, 3, 5)
    assert res.weight_change.shape == (2, 3, 5, 3)
    assert res.f_train.shape == (2, 3, 64, 10) and res.f_test.shape == (2, 3, 32, 10)
    np.testing.assert_array_equal(res.record_steps, [0, 50, 100, 150, 200])
    assert not res.diverged.any()
    assert np.all(res.loss[..., -1] < 0.5 * res.loss[..., 0])
    # the larger learning rate trains faster on paired runs (same init, same data)
    assert np.all(res.loss[1, :, -1] < res.loss[0, :, -1])
    assert np.all(res.accuracy[..., -1] > res.accuracy[..., 0])
    np.testing.assert_array_equal(res.weight_change[..., 0, :], 0.0)
    assert np.all(res.weight_change[..., -1, :] > 0)
    # recorded loss is the loss of the recorded outputs
    f = res.f_train[1, 2]
    np.testing.assert_allclose(res.loss[1, 2, -1], 0.5 * np.mean((f - tr.y) ** 2), rtol=1e-10)
    # same seed -> same initialization across learning rates
    np.testing.assert_array_equal(res.loss[0, :, 0], res.loss[1, :, 0])
    assert res.num_params == 16 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10


def test_divergence_is_detected_not_raised(ds):
    tr, _ = ds
    init_fn, apply_fn, _ = _net(act=stax.Relu)
    res = train.train(
        init_fn,
        apply_fn,
        tr.x,
        tr.y,
        learning_rates=[0.5, 1e6],
        seeds=[0, 1],
        steps=60,
        record_every=20,
        loss="mse",
    )
    assert not res.diverged[0].any()
    assert res.diverged[1].all()
    assert np.all(res.diverged_step[1] >= 0) and np.all(res.diverged_step[0] == -1)
    assert np.all(np.isnan(res.loss[1, :, -1])) and np.all(np.isfinite(res.loss[0]))
    assert np.all(np.isfinite(res.loss[1, :, 0]))  # before divergence
    assert not res.trained.any()  # no target given
    # max_loss turns a blow-up into divergence before overflow
    res2 = train.train(
        init_fn,
        apply_fn,
        tr.x,
        tr.y,
        learning_rates=[1e3],
        seeds=[0],
        steps=20,
        record_every=10,
        loss="mse",
        max_loss=1e3,
    )
    assert res2.diverged.all() and res2.diverged_step[0, 0] < 20


def test_vmapped_equals_looped_sgd_momentum_xent(ds):
    tr, te = ds
    init_fn, apply_fn, _ = _net()
    kw = dict(
        learning_rates=[0.3, 1.0],
        seeds=[3, 4],
        steps=40,
        record_every=10,
        loss="xent",
        batch_size=16,
        momentum=0.9,
        x_test=te.x,
        y_test=te.y,
        target_accuracy=0.5,
    )
    v = train.train(init_fn, apply_fn, tr.x, tr.y, chunk_size=3, **kw)  # 3 + 1 padded
    loop = train.train(init_fn, apply_fn, tr.x, tr.y, vectorize=False, **kw)
    for name in (
        "loss",
        "accuracy",
        "test_loss",
        "test_accuracy",
        "weight_change",
        "f_train",
        "f_test",
    ):
        np.testing.assert_allclose(
            getattr(v, name), getattr(loop, name), rtol=1e-9, atol=1e-12, err_msg=name
        )
    np.testing.assert_array_equal(v.steps_to_target, loop.steps_to_target)
    # different seeds and learning rates give different runs (the test is not vacuous)
    assert not np.allclose(v.loss[:, 0, -1], v.loss[:, 1, -1])
    assert not np.allclose(v.loss[0, :, -1], v.loss[1, :, -1])


def test_record_windows_early_stop_and_ntk_between(ds, monkeypatch):
    """Records crossing several program calls (window of 3 records), an NTK evaluation between
    them, progress ticks and a chunk whose runs all freeze early: same results vmapped (with a
    padded chunk) and looped, and the frozen records repeat the last computed one."""
    monkeypatch.setattr(train, "_RECORD_WINDOW", 3)
    train._programs.cache_clear()
    tr, _ = ds
    init_fn, apply_fn, _ = _net()
    kw = dict(
        learning_rates=[0.02, 6.0],
        seeds=[0, 1],
        steps=200,
        record_every=10,
        loss="mse",
        target_accuracy=0.5,
        stop_at_target=True,
        ntk_steps=[70, 200],
        x_ntk=tr.x[:4],
    )
    try:
        v = train.train(init_fn, apply_fn, tr.x, tr.y, chunk_size=3, progress=True, **kw)
        loop = train.train(init_fn, apply_fn, tr.x, tr.y, vectorize=False, **kw)
    finally:
        train._programs.cache_clear()
    for name in ("loss", "accuracy", "weight_change", "f_train", "ntk", "ntk_change"):
        np.testing.assert_allclose(
            getattr(v, name), getattr(loop, name), rtol=1e-9, atol=1e-12, err_msg=name
        )
    np.testing.assert_array_equal(v.steps_to_target, loop.steps_to_target)
    # the fast runs reach the target and freeze before the NTK at step 70 (the second chunk,
    # run (6.0, 1) and its two padding copies, stops early); the slow ones never do
    assert np.all((v.steps_to_target[1] > 0) & (v.steps_to_target[1] <= 70))
    assert np.all(v.steps_to_target[0] == -1)
    for s in range(2):
        k = int(np.searchsorted(v.record_steps, v.steps_to_target[1, s]))
        np.testing.assert_array_equal(v.loss[1, s, k:], v.loss[1, s, k])
        np.testing.assert_array_equal(v.ntk[1, s, 1], v.ntk[1, s, 2])
    # the slow runs keep training through every window
    assert np.all(np.diff(v.loss[0], axis=-1) < 0)


def test_linear_model_matches_discrete_closed_form(ds):
    """For a linear model, GD on MSE obeys r_{t+1} = (I - eta Theta / (N C)) r_t exactly."""
    tr, _ = ds
    init_fn, apply_fn, _ = stax.serial(stax.Dense(10, W_std=1.5, b_std=0.3))
    eta, T = 2.0, 30
    res = train.train(
        init_fn,
        apply_fn,
        tr.x,
        tr.y,
        learning_rates=[eta],
        seeds=[7],
        steps=T,
        loss="mse",
        center=True,
    )
    params = init_fn(jax.random.fold_in(jax.random.key(7), 0), (-1, 16))[1]
    theta = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=1)(tr.x, None, params)
    n, c = tr.y.shape
    step = np.eye(n) - eta * np.asarray(theta) / (n * c)
    r = np.linalg.matrix_power(step, T) @ np.asarray(tr.y)  # centred: f_0 = 0
    np.testing.assert_allclose(res.f_train[0, 0], tr.y - r, rtol=1e-9, atol=1e-11)


def test_ntk_record(ds):
    tr, _ = ds
    init_fn, apply_fn, _ = _net()
    probe = tr.x[:6]
    res = train.train(
        init_fn,
        apply_fn,
        tr.x,
        tr.y,
        learning_rates=[2.0],
        seeds=[1],
        steps=40,
        record_every=20,
        ntk_steps=[40],
        x_ntk=probe,
    )
    np.testing.assert_array_equal(res.ntk_steps, [0, 40])
    assert res.ntk.shape == (1, 1, 2, 6, 6)
    params = init_fn(jax.random.fold_in(jax.random.key(1), 0), (-1, 16))[1]
    ref = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=1)(probe, None, params)
    np.testing.assert_allclose(res.ntk[0, 0, 0], ref, rtol=1e-9)
    assert res.ntk_change[0, 0, 0] == 0.0 and res.ntk_change[0, 0, 1] > 1e-4


def test_stop_at_target(ds):
    tr, _ = ds
    init_fn, apply_fn, _ = _net()
    res = train.train(
        init_fn,
        apply_fn,
        tr.x,
        tr.y,
        learning_rates=[4.0],
        seeds=[0, 1],
        steps=400,
        record_every=20,
        loss="mse",
        target_accuracy=0.6,
        stop_at_target=True,
    )
    assert res.trained.all()
    for s in range(2):
        k = int(np.searchsorted(res.record_steps, res.steps_to_target[0, s]))
        assert res.accuracy[0, s, k] >= 0.6 and np.all(res.accuracy[0, s, :k] < 0.6)
        # frozen afterwards
        np.testing.assert_array_equal(res.loss[0, s, k:], res.loss[0, s, k])


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(loss="hinge"), "loss must be one of"),
        (dict(learning_rates=[-1.0]), "learning_rates"),
        (dict(seeds=[0.5]), "seeds"),
        (dict(steps=0), "steps"),
        (dict(steps=10, record_every=3), "multiple of record_every"),
        (dict(batch_size=1000), "batch_size"),
        (dict(momentum=1.0), "momentum"),
        (dict(ntk_steps=[5]), "ntk_steps"),
        (dict(ntk_steps=[10]), "x_ntk"),
        (dict(stop_at_target=True), "stop_at_target"),
        (dict(target_accuracy=1.5), "target_accuracy"),
        (dict(x_test=np.zeros((3, 5)), y_test=np.zeros((3, 10))), "x_test"),
    ],
)
def test_bad_arguments(ds, kw, match):
    tr, _ = ds
    init_fn, apply_fn, _ = _net()
    args = dict(learning_rates=[1.0], seeds=[0], steps=10, record_every=5)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        train.train(init_fn, apply_fn, tr.x, tr.y, **args)
