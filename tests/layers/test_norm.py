"""GroupNorm: the standard layer checks, same results and weights as keras.layers.GroupNormalization,
per-group statistics, accuracy on large maps, the official group rule."""

import keras
import numpy as np
import pytest

from keras_lincae.layers.norm import GroupNorm, group_norm
from keras_lincae.testing.helpers import to_numpy
from keras_lincae.testing.test_case import run_layer_test


def _reference(x, groups, gamma, beta, eps=1e-5):
    grouped = x.astype("float64").reshape(x.shape[0], -1, groups, x.shape[-1] // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    var = grouped.var(axis=(1, 3), keepdims=True)
    return ((grouped - mean) / np.sqrt(var + eps)).reshape(x.shape) * gamma + beta


def _layer(layer_cls, shape, rng, **kwargs):
    layer = layer_cls(**kwargs)
    layer.build(shape)
    layer.gamma.assign((1 + 0.1 * rng.standard_normal(shape[-1])).astype("float32"))
    layer.beta.assign((0.1 * rng.standard_normal(shape[-1])).astype("float32"))
    return layer


def test_matches_keras_group_normalization(rng):
    x = rng.standard_normal((2, 12, 10, 16)).astype("float32")
    ours = _layer(GroupNorm, x.shape, rng, groups=4, epsilon=1e-5)
    theirs = keras.layers.GroupNormalization(groups=4, epsilon=1e-5)
    theirs.build(x.shape)
    for a, b in zip(theirs.weights, ours.weights):
        assert a.path.split("/")[-1] == b.path.split("/")[-1]
        a.assign(b)
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(theirs(x)), atol=2e-5)
    x1d = rng.standard_normal((3, 7, 16)).astype("float32")  # (batch, time, channels)
    np.testing.assert_allclose(to_numpy(ours(x1d)), _reference(x1d, 4, to_numpy(ours.gamma), to_numpy(ours.beta)),
                               atol=2e-5)


def test_accurate_on_large_maps_with_offset(rng):
    """A level-1 sized map with mean 3, std 0.5 (Keras' E[x^2]-E[x]^2 is off by ~5e-4 on TF)."""
    x = (3.0 + 0.5 * rng.standard_normal((1, 430, 256, 32))).astype("float32")
    layer = _layer(GroupNorm, x.shape, rng, groups=8, epsilon=1e-5)
    err = np.abs(to_numpy(layer(x)) - _reference(x, 8, to_numpy(layer.gamma), to_numpy(layer.beta))).max()
    assert err < 5e-5, err


def test_group_rule_config_and_bfloat16(rng):
    layer = group_norm(256, name="n")
    assert layer.groups == 32 and group_norm(64).groups == 16 and layer.epsilon == 1e-5
    assert GroupNorm.from_config(layer.get_config()).get_config() == layer.get_config()
    mixed = GroupNorm(groups=2, epsilon=1e-5, dtype="mixed_bfloat16")
    y = mixed(rng.standard_normal((2, 5, 8)).astype("float32"))
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"


@pytest.mark.parametrize("shape", [(2, 6, 5, 8), (3, 7, 8)])
def test_layer_checks(rng, shape):
    x = (2.0 + 3.0 * rng.standard_normal(shape)).astype("float32")
    _, outputs = run_layer_test(GroupNorm, dict(groups=4, epsilon=1e-5), x, expected_output_shape=shape,
                   expected_num_trainable_weights=2, expected_num_non_trainable_weights=0)
    outputs = to_numpy(outputs)  # randomized weights: a non-trivial function of the input
    assert outputs.shape == shape and np.all(np.isfinite(outputs)) and outputs.std() > 0


def test_each_group_is_standardised(rng):
    """With unit gain and zero bias every (example, group) has mean 0 and variance 1 over
    positions and the group's channels, whatever the groups' own offsets and scales."""
    offsets = np.repeat(rng.uniform(-5, 5, (2, 1, 1, 4)), 3, axis=-1)
    scales = np.repeat(rng.uniform(0.1, 10, (2, 1, 1, 4)), 3, axis=-1)
    x = (offsets + scales * rng.standard_normal((2, 9, 7, 12))).astype("float32")
    y = to_numpy(GroupNorm(groups=4, epsilon=1e-5)(x)).reshape(2, -1, 4, 3)
    np.testing.assert_allclose(y.mean(axis=(1, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(1, 3)), 1.0, atol=1e-3)


def test_channels_not_divisible_into_groups():
    with pytest.raises(ValueError, match="10 channels are not divisible into 4 groups"):
        GroupNorm(groups=4, epsilon=1e-5, name="n").build((None, 3, 10))


def _gradients(layer, x, weight):
    """d sum(weight * layer(x)) / d (x, gamma, beta), as numpy, on the active backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def objective(x, gamma, beta):
            out, _ = layer.stateless_call([gamma, beta], [], x)
            return (out * weight).sum()

        return [np.asarray(g) for g in jax.grad(objective, argnums=(0, 1, 2))(x, layer.gamma.value, layer.beta.value)]
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * weight)
        return [g.numpy() for g in tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])]
    import torch

    x = torch.tensor(x, requires_grad=True)
    (layer(x) * torch.from_numpy(weight)).sum().backward()
    return [t.grad.numpy() for t in (x, layer.gamma.value, layer.beta.value)]


@pytest.mark.parametrize("shape, groups", [((2, 6, 5, 8), 4), ((3, 40, 16), 8)])
def test_gradients_match_float64_autograd(rng, shape, groups):
    """The gradients (torch: the closed form in `backend_dispatch`) equal float64 autograd of the
    textbook formula, on a map with an offset."""
    import torch

    x = (3.0 + 0.5 * rng.standard_normal(shape)).astype("float32")
    weight = rng.standard_normal(shape).astype("float32")
    layer = _layer(GroupNorm, shape, rng, groups=groups, epsilon=1e-5)
    ours = _gradients(layer, x, weight)
    ref = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
           for a in (x, to_numpy(layer.gamma), to_numpy(layer.beta))]
    grouped = ref[0].reshape(shape[0], -1, groups, shape[-1] // groups)
    mean = grouped.mean(dim=(1, 3), keepdim=True)
    var = grouped.var(dim=(1, 3), keepdim=True, unbiased=False)
    out = ((grouped - mean) / torch.sqrt(var + 1e-5)).reshape(shape) * ref[1] + ref[2]
    (out * torch.from_numpy(weight.astype("float64"))).sum().backward()
    for name, a, b in zip(("x", "gamma", "beta"), ours, ref):
        b = b.grad.numpy()
        np.testing.assert_allclose(a, b, atol=2e-5 * np.abs(b).max(), rtol=0, err_msg=name)
