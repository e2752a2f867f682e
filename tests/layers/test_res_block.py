"""ResBlock: the standard layer checks, residual path, noise-level conditioning, dropout rule."""

import numpy as np
import pytest

from keras_lincae.layers.res_block import ResBlock
from keras_lincae.testing.helpers import randomize_weights, to_numpy
from keras_lincae.testing.test_case import run_layer_test


def block_kwargs(**overrides):
    return dict(dict(in_channels=8, out_channels=8, cond_channels=None, kernel_size=3, normalize=True,
                     leaky=False, attention=False, heads=2, use_2d=False, normalize_residual=False,
                     min_res_dropout=16, dropout_rate=0.0, init_as_zero=True, padding_mode="zeros"), **overrides)


@pytest.mark.parametrize("use_2d,attention,out_channels,cond", [
    (False, False, 8, None),
    (True, True, 16, 12),
    (False, True, 16, 12),
])
def test_layer_checks(rng, use_2d, attention, out_channels, cond):
    shape = (2, 6, 4, 8) if use_2d else (2, 6, 8)
    inputs = rng.standard_normal(shape).astype("float32")
    if cond is not None:
        inputs = (inputs, rng.standard_normal((2, cond)).astype("float32"))
    kwargs = block_kwargs(use_2d=use_2d, attention=attention, out_channels=out_channels, cond_channels=cond)
    _, outputs = run_layer_test(ResBlock, kwargs, inputs, expected_output_shape=shape[:-1] + (out_channels,))
    outputs = to_numpy(outputs)  # randomized weights: a non-trivial function of the input
    assert outputs.shape == shape[:-1] + (out_channels,) and np.all(np.isfinite(outputs)) and outputs.std() > 0


def test_zero_init_block_is_its_residual_path(rng):
    """With `init_as_zero`, conv2 (and the attention output) start at zero: the block is the
    identity when channels match, the 1x1 residual projection when they do not."""
    x = rng.standard_normal((2, 6, 8)).astype("float32")
    same = ResBlock(**block_kwargs(attention=True))
    np.testing.assert_array_equal(to_numpy(same(x)), x)
    wider = ResBlock(**block_kwargs(out_channels=16))
    np.testing.assert_allclose(to_numpy(wider(x)), to_numpy(wider.res_conv(x)), atol=1e-6)


def test_noise_level_embedding_shifts_the_output(rng):
    x = rng.standard_normal((2, 6, 4, 8)).astype("float32")
    emb = rng.standard_normal((2, 12)).astype("float32")
    block = ResBlock(**block_kwargs(cond_channels=12, use_2d=True))
    block(x, emb)
    randomize_weights(block, seed=3)
    assert np.abs(to_numpy(block(x, emb)) - to_numpy(block(x, 2 * emb))).max() > 1e-3
    assert tuple(block.proj_emb.kernel.shape) == (12, 8)


@pytest.mark.parametrize("time_steps,dropped", [(6, True), (20, False)])
def test_dropout_only_at_short_time_axes_and_in_training(rng, time_steps, dropped):
    x = rng.standard_normal((2, time_steps, 8)).astype("float32")
    block = ResBlock(**block_kwargs(dropout_rate=0.5, min_res_dropout=16))
    block(x)
    randomize_weights(block, seed=4)
    inference = to_numpy(block(x, training=False))
    np.testing.assert_array_equal(to_numpy(block(x)), inference)
    trained = to_numpy(block(x, training=True))
    assert (np.abs(trained - inference).max() > 1e-3) == dropped
