"""LR schedule and EMA helpers vs the official trainer / official EMA class."""

import math

import keras
import numpy as np
import pytest
import torch
from keras import ops
from linear_cae.components.ema import ExponentialMovingAverage

from keras_lincae.backend_dispatch import compile_traced
from keras_lincae.models.ema import ema_decay, ema_update
from keras_lincae.training.schedules import WarmupDecay

BACKEND = keras.backend.backend()


def official_lr(it, lr, final_lr, warmup, total, decay):
    """CAETrainer.update_learning_rate (the LR set before the update at global_step it)."""
    if it < warmup:
        return lr * (it / warmup)
    if decay == "cosine":
        span = total - warmup
        cur = (it - warmup) % span
        return final_lr + 0.5 * (lr - final_lr) * (1.0 + np.cos((cur / span) * np.pi))
    if decay == "linear":
        span = total - warmup
        cur = (it - warmup) % span
        return lr - (lr - final_lr) * (cur / span)
    if decay == "inverse_sqrt":
        return lr * (warmup**0.5) / max(it, warmup) ** 0.5
    return lr


STEPS = [0, 1, 2500, 5000, 9999, 10000, 10001, 100000, 405000, 799999, 800000, 800001, 1200000]


@pytest.mark.parametrize("decay", ["cosine", "linear", "inverse_sqrt", None])
def test_lr_schedule_matches_official(decay):
    sched = WarmupDecay(1e-4, 1e-6, warmup_steps=10000, total_steps=800000, decay=decay)
    for s in STEPS:
        ref = official_lr(s, 1e-4, 1e-6, 10000, 800000, decay)
        np.testing.assert_allclose(np.float64(ops.convert_to_numpy(sched(s))), ref,
                                   rtol=2e-5, atol=1e-12, err_msg=f"step {s}")


def test_lr_schedule_landmarks():
    sched = WarmupDecay()  # lin_cae preset
    val = lambda s: float(ops.convert_to_numpy(sched(s)))  # noqa: E731
    assert val(0) == 0.0
    np.testing.assert_allclose(val(5000), 5e-5, rtol=1e-6)
    np.testing.assert_allclose(val(10000), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(val(405000), 0.5 * (1e-4 + 1e-6), rtol=1e-5)
    np.testing.assert_allclose(val(799999), 1e-6, rtol=1e-3)


def test_lr_schedule_under_jit_and_config():
    sched = WarmupDecay(1e-4, 1e-6, 100, 1000)
    fn = compile_traced(lambda s: sched(s))
    got = [float(ops.convert_to_numpy(fn(ops.convert_to_tensor(s, "int32")))) for s in
           (0, 50, 100, 550, 999)]
    ref = [official_lr(s, 1e-4, 1e-6, 100, 1000, "cosine") for s in (0, 50, 100, 550, 999)]
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-12)
    clone = WarmupDecay.from_config(sched.get_config())
    assert clone.get_config() == sched.get_config()
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(sched))
    assert isinstance(restored, WarmupDecay)
    with pytest.raises(ValueError):
        WarmupDecay(warmup_steps=1000, total_steps=1000)
    with pytest.raises(ValueError):
        WarmupDecay(decay="step")


def test_lr_schedule_drives_keras_optimizer():
    sched = WarmupDecay(1e-2, 1e-4, warmup_steps=4, total_steps=10)
    opt = keras.optimizers.SGD(learning_rate=sched)
    v = keras.Variable(np.zeros(1, "float32"))
    opt.build([v])
    seen = []
    for _ in range(8):
        before = float(ops.convert_to_numpy(v)[0])
        opt.apply([ops.ones((1,))], [v])
        seen.append(before - float(ops.convert_to_numpy(v)[0]))
    ref = [official_lr(s, 1e-2, 1e-4, 4, 10, "cosine") for s in range(8)]
    np.testing.assert_allclose(seen, ref, rtol=1e-4, atol=1e-9)


def test_ema_decay_formula_matches_official():
    # measure the official decay: shadow 0, parameter 1 -> shadow = 1 - decay after one update
    for momentum, warmup in [(0.9999, True), (0.9999, False), (0.5, True)]:
        for n in [1, 2, 5, 50, 1000, 200000]:
            p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
            ema = ExponentialMovingAverage([p], decay=momentum, use_num_updates=warmup)
            if warmup:
                ema.num_updates = n - 1
            with torch.no_grad():
                p.fill_(1.0)
            ema.update()
            ref = 1.0 - ema.shadow_params[0].item()
            np.testing.assert_allclose(float(ops.convert_to_numpy(ema_decay(n, momentum, warmup))),
                                       ref, rtol=1e-6)
    np.testing.assert_allclose(float(ops.convert_to_numpy(ema_decay(1))), 2.0 / 11.0, rtol=1e-6)
    with pytest.raises(ValueError):
        ema_decay(1, momentum=1.5)


@pytest.mark.parametrize("every", [1, 10])
def test_ema_update_matches_official_every_n(every):
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 4)).astype("float32"), rng.standard_normal(5).astype("float32")]
    tparams = [torch.nn.Parameter(torch.from_numpy(x.copy())) for x in init]
    official = ExponentialMovingAverage(tparams, decay=0.9999, use_num_updates=True)
    weights = [keras.Variable(x) for x in init]
    shadows = [keras.Variable(x) for x in init]
    for it in range(1, 36):  # `it` = global_step after the optimizer step
        new = [rng.standard_normal(x.shape).astype("float32") for x in init]
        with torch.no_grad():
            for p, x in zip(tparams, new):
                p.copy_(torch.from_numpy(x))
        for w, x in zip(weights, new):
            w.assign(x)
        if it % every == 0:  # CAETrainer.update_ema
            official.update()
        ema_update(shadows, weights, it, momentum=0.9999, every=every)
        for s, r in zip(shadows, official.shadow_params):
            np.testing.assert_allclose(ops.convert_to_numpy(s), r.numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"it {it}")
    assert official.num_updates == 35 // every


def test_ema_update_formula_and_jit():
    shadow = [keras.Variable(np.full((2,), 4.0, "float32"))]
    w = [ops.convert_to_tensor(np.full((2,), 1.0, "float32"))]
    d = float(ops.convert_to_numpy(ema_update(shadow, w, 3, momentum=0.9, every=1, warmup=False)))
    assert math.isclose(d, 0.9, rel_tol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(shadow[0]), 0.9 * 4.0 + 0.1 * 1.0, rtol=1e-6)
    # not a multiple of `every` (and step 0): untouched
    before = ops.convert_to_numpy(shadow[0]).copy()
    for step in (0, 7):
        d = float(ops.convert_to_numpy(ema_update(shadow, w, step, every=10)))
        assert d == 1.0
        np.testing.assert_array_equal(ops.convert_to_numpy(shadow[0]), before)
    # decay from a tensor step under the backend's compiler (10th update at step 100)
    fn = compile_traced(lambda s: ops.where(
        ops.equal(ops.mod(s, 10), 0), ema_decay(ops.floor_divide(s, 10)), 1.0))
    vals = [float(ops.convert_to_numpy(fn(ops.convert_to_tensor(s, "int32")))) for s in
            (100, 105, 10000000)]
    np.testing.assert_allclose(vals, [11.0 / 20.0, 1.0, 0.9999], rtol=1e-6)
    with pytest.raises(ValueError):
        ema_update(shadow, w + w, 1)
    with pytest.raises(ValueError):
        ema_update(shadow, w, 1, every=0)


def test_ema_update_traced():
    """ema_update with a tensor step inside the backend's compiled function."""
    init = np.full((3,), 2.0, "float32")
    shadow = keras.Variable(init)
    w = np.zeros((3,), "float32")
    if BACKEND == "jax":
        import jax

        @jax.jit
        def run(shadow_value, step):
            with keras.StatelessScope(state_mapping=[(shadow, shadow_value)]) as scope:
                ema_update([shadow], [w], step, every=10)
            return scope.get_current_value(shadow)

        out_skip = run(init, np.int32(15))
        out_upd = run(init, np.int32(20))
    else:
        run = compile_traced(lambda step: ema_update([shadow], [w], step, every=10))
        run(ops.convert_to_tensor(15, "int32"))
        out_skip = ops.convert_to_numpy(shadow).copy()
        run(ops.convert_to_tensor(20, "int32"))
        out_upd = ops.convert_to_numpy(shadow)
    np.testing.assert_array_equal(np.asarray(out_skip), init)
    d = 3.0 / 12.0  # 2nd update (step 20, every 10): min(0.9999, 3 / 12)
    np.testing.assert_allclose(np.asarray(out_upd), d * 2.0, rtol=1e-6)
