"""RAdam must follow torch.optim.RAdam step by step (the official optimizer)."""

import keras
import numpy as np
import pytest
import torch
from keras import ops

from keras_lincae.training.optimizers import RAdam
from keras_lincae.training.schedules import WarmupDecay

BACKEND = keras.backend.backend()
STEPS = 20
SHAPES = [(3, 4), (5,), (2, 3, 2)]


def make_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype("float32") for s in SHAPES]
    # gradients of very different scales per step, including sign flips
    grads = [
        [(rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 1)).astype("float32") for s in SHAPES]
        for _ in range(STEPS)
    ]
    return params, grads


def torch_trajectory(params, grads, lr, **kwargs):
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    opt = torch.optim.RAdam(tparams, lr=lr, **kwargs)
    traj = []
    for step_grads in grads:
        for p, g in zip(tparams, step_grads):
            p.grad = torch.from_numpy(g.copy())
        opt.step()
        traj.append([p.detach().numpy().copy() for p in tparams])
    return traj


def keras_trajectory(params, grads, optimizer):
    kvars = [keras.Variable(p) for p in params]
    optimizer.build(kvars)
    traj = []
    for step_grads in grads:
        optimizer.apply([ops.convert_to_tensor(g) for g in step_grads], kvars)
        traj.append([ops.convert_to_numpy(v) for v in kvars])
    return traj


def assert_same(traj, ref, atol=1e-6):
    assert len(traj) == len(ref)
    for step, (a, b) in enumerate(zip(traj, ref), start=1):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=f"step {step}")


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
def test_matches_torch_radam_defaults(lr):
    params, grads = make_problem()
    ref = torch_trajectory(params, grads, lr)
    assert_same(keras_trajectory(params, grads, RAdam(learning_rate=lr)), ref)


@pytest.mark.parametrize("decoupled", [False, True])
def test_matches_torch_radam_weight_decay(decoupled):
    params, grads = make_problem(1)
    ref = torch_trajectory(params, grads, 1e-2, weight_decay=0.1, decoupled_weight_decay=decoupled)
    opt = RAdam(learning_rate=1e-2, weight_decay=0.1, decoupled_weight_decay=decoupled)
    assert_same(keras_trajectory(params, grads, opt), ref)


def test_first_steps_are_unrectified():
    # rho_t <= 5 for t <= 5 (beta_2 = 0.999): plain bias-corrected momentum step,
    # so the very first update is exactly lr * g whatever the gradient scale.
    _, grads = make_problem(2)
    params = [np.zeros(s, "float32") for s in SHAPES]
    traj = keras_trajectory(params, grads[:1], RAdam(learning_rate=1e-2))
    for p1, g in zip(traj[0], grads[0]):
        np.testing.assert_allclose(-p1, 1e-2 * g, rtol=1e-5, atol=1e-12)


def test_matches_torch_with_official_lr_schedule():
    # the LR used at optimizer step s is schedule(s), as the official trainer
    # sets the torch LR from global_step before each step.
    params, grads = make_problem(3)
    sched = WarmupDecay(1e-2, 1e-4, warmup_steps=5, total_steps=STEPS)
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    topt = torch.optim.RAdam(tparams, lr=1e-2)
    ref = []
    for s, step_grads in enumerate(grads):
        for group in topt.param_groups:
            group["lr"] = float(ops.convert_to_numpy(sched(s)))
        for p, g in zip(tparams, step_grads):
            p.grad = torch.from_numpy(g.copy())
        topt.step()
        ref.append([p.detach().numpy().copy() for p in tparams])
    assert_same(keras_trajectory(params, grads, RAdam(learning_rate=sched)), ref)


def test_jit_compiled_update_matches_torch():
    params, grads = make_problem(4)
    ref = torch_trajectory(params, grads, 1e-2)
    opt = RAdam(learning_rate=1e-2)
    kvars = [keras.Variable(p) for p in params]
    opt.build(kvars)
    traj = []
    if BACKEND == "jax":
        import jax

        @jax.jit
        def step(opt_vars, train_vars, g):
            return opt.stateless_apply(opt_vars, g, train_vars)

        opt_vars = [v.value for v in opt.variables]
        train_vars = [v.value for v in kvars]
        for step_grads in grads:
            train_vars, opt_vars = step(opt_vars, train_vars, [np.asarray(g) for g in step_grads])
            traj.append([np.asarray(v) for v in train_vars])
    else:
        if BACKEND == "tensorflow":
            import tensorflow as tf

            apply = tf.function(lambda g: opt.apply(g, kvars), jit_compile=True)
        else:
            apply = lambda g: opt.apply(g, kvars)  # noqa: E731  (torch: eager)
        for step_grads in grads:
            apply([ops.convert_to_tensor(g) for g in step_grads])
            traj.append([ops.convert_to_numpy(v) for v in kvars])
    assert_same(traj, ref)


def test_config_roundtrip():
    opt = RAdam(learning_rate=3e-4, beta_1=0.8, beta_2=0.99, epsilon=1e-6,
                weight_decay=0.01, decoupled_weight_decay=True, clipnorm=1.0)
    cfg = opt.get_config()
    assert cfg["epsilon"] == 1e-6 and cfg["weight_decay"] == 0.01
    assert cfg["decoupled_weight_decay"] is True
    clone = RAdam.from_config(cfg)
    for key in ("beta_1", "beta_2", "epsilon", "weight_decay", "decoupled_weight_decay",
                "clipnorm"):
        assert clone.get_config()[key] == cfg[key]
    default = RAdam().get_config()
    assert (default["beta_1"], default["beta_2"], default["epsilon"]) == (0.9, 0.999, 1e-8)
    assert default["weight_decay"] == 0.0 and default["decoupled_weight_decay"] is False
    sched_opt = RAdam(learning_rate=WarmupDecay())
    restored = RAdam.from_config(sched_opt.get_config())
    assert isinstance(restored._learning_rate, WarmupDecay)
    assert restored._learning_rate.get_config() == WarmupDecay().get_config()
    with pytest.raises(ValueError):
        RAdam(beta_1=1.0)
    with pytest.raises(ValueError):
        RAdam(weight_decay=-1.0)


def test_fit_with_model():
    # end-to-end: a Keras model trained with RAdam (compiled train step) decreases its loss
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    y = x @ rng.standard_normal((4, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=RAdam(learning_rate=0.05), loss="mse", jit_compile="auto")
    hist = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.2 * hist.history["loss"][0]
