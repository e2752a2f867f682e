"""LatentPyramid: the standard layer checks and the shapes of each pyramid level."""

import numpy as np

from keras_lincae.models.latent_pyramid import LatentPyramid
from keras_lincae.testing.helpers import randomize_weights, to_numpy
from keras_lincae.testing.test_case import run_layer_test

TINY_PYRAMID = dict(
    layers_list=[1, 1, 1, 1, 1], attention_list=[0, 0, 1, 1, 1], multipliers_list=[1, 2, 4, 4, 4],
    base_channels=8, bottleneck_base_channels=32, bottleneck_channels=16, cond_channels=32, hop=32,
    freq_downsample_list=[1, 0, 0, 0], num_bottleneck_layers=1, normalization=True, dropout_rate=0.0,
    min_res_dropout=16, init_as_zero=True, padding_mode="zeros",
)


def pyramid_shapes(batch, latent_frames):
    """Finest level first: the encoder's levels, `(batch, frames, freq, channels)` (hop 32)."""
    frames = 8 * latent_frames
    return [(batch, frames, 64, 8), (batch, frames, 16, 16), (batch, frames // 2, 8, 32),
            (batch, frames // 4, 4, 32), (batch, frames // 8, 2, 32)]


def test_layer_checks(rng):
    latents = rng.uniform(-1, 1, (2, 3, 16)).astype("float32")
    _, levels = run_layer_test(LatentPyramid, TINY_PYRAMID, latents, expected_output_shape=pyramid_shapes(2, 3),
                               call_kwargs=dict(training=False))
    levels = [to_numpy(level) for level in levels]  # one conditioning tensor per decoder level
    assert [level.shape for level in levels] == list(pyramid_shapes(2, 3))
    assert all(np.all(np.isfinite(level)) and level.std() > 0 for level in levels)


def test_levels_follow_their_own_example_only(rng):
    """Every level changes when an example's latents change, and only for that example
    (GroupNorm statistics are per example)."""
    latents = rng.uniform(-1, 1, (2, 6, 16)).astype("float32")
    pyramid = LatentPyramid(**TINY_PYRAMID)
    pyramid(latents)
    randomize_weights(pyramid, seed=5)
    changed = latents.copy()
    changed[1, -1] += 0.5
    before, after = ([to_numpy(level) for level in pyramid(z)] for z in (latents, changed))
    assert [level.shape for level in before] == pyramid_shapes(2, 6)
    for old, new in zip(before, after):
        assert np.abs(new[1] - old[1]).max() > 1e-4
        np.testing.assert_allclose(new[0], old[0], atol=1e-6)
