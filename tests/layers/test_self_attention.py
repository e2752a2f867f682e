"""SelfAttention: the standard layer checks, residual identity at zero init, attention axes."""

import numpy as np
import pytest

from keras_lincae.layers.self_attention import SelfAttention
from keras_lincae.testing.helpers import randomize_weights, to_numpy
from keras_lincae.testing.test_case import run_layer_test


def attention_kwargs(**overrides):
    return dict(dict(channels=8, heads=2, normalize=True, use_2d=False, zero_init=True), **overrides)


@pytest.mark.parametrize("shape,use_2d", [((2, 5, 8), False), ((2, 3, 4, 8), True)])
def test_layer_checks(rng, shape, use_2d):
    x = rng.standard_normal(shape).astype("float32")
    _, outputs = run_layer_test(SelfAttention, attention_kwargs(use_2d=use_2d), x, expected_output_shape=shape,
                   expected_num_trainable_weights=6)
    outputs = to_numpy(outputs)  # randomized weights: a non-trivial function of the input
    assert outputs.shape == shape and np.all(np.isfinite(outputs)) and outputs.std() > 0


def test_zero_init_is_the_identity(rng):
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    np.testing.assert_array_equal(to_numpy(SelfAttention(**attention_kwargs())(x)), x)


def test_2d_attends_over_frequency_within_each_frame(rng):
    """Changing one time frame changes only that frame's output (2-D); in 1-D every step sees it.
    (No GroupNorm here: its statistics span all frames.)"""
    x = rng.standard_normal((1, 4, 6, 8)).astype("float32")
    layer = SelfAttention(**attention_kwargs(use_2d=True, normalize=False))
    layer(x)
    randomize_weights(layer, seed=1)
    changed = x.copy()
    changed[:, 2] += 1.0
    delta = np.abs(to_numpy(layer(changed)) - to_numpy(layer(x))).max(axis=(0, 2, 3))
    assert delta[2] > 1e-3 and np.all(delta[[0, 1, 3]] == 0), delta
    flat = SelfAttention(**attention_kwargs(normalize=False))
    sequence = x[:, 0]
    flat(sequence)
    randomize_weights(flat, seed=1)
    changed = sequence.copy()
    changed[:, 2] += 1.0
    delta = np.abs(to_numpy(flat(changed)) - to_numpy(flat(sequence))).max(axis=(0, 2))
    assert np.all(delta > 1e-4), delta


def test_channels_must_divide_into_heads():
    with pytest.raises(ValueError, match=r"channels \(6\) must be divisible by heads \(4\)"):
        SelfAttention(**attention_kwargs(channels=6, heads=4))
