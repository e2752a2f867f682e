"""LinCAEEncoder: the standard layer checks, frame arithmetic, tanh bound, bad arguments."""

import numpy as np
import pytest

from keras_lincae.models.encoder import LinCAEEncoder, bottleneck_freq_dim
from keras_lincae.testing.helpers import randomize_weights, to_numpy
from keras_lincae.testing.test_case import run_layer_test

TINY_ENCODER = dict(
    layers_list=[1, 1, 1, 1, 1], attention_list=[0, 0, 1, 1, 1], multipliers_list=[1, 2, 4, 4, 4],
    base_channels=8, data_channels=2, bottleneck_base_channels=32, num_bottleneck_layers=1,
    bottleneck_channels=16, hop=32, freq_downsample_list=[1, 0, 0, 0], normalization=True,
    pre_normalize_downsampling_encoder=True, pre_normalize_2d_to_1d=True, frequency_scaling=True,
    dropout_rate=0.0, min_res_dropout=16, init_as_zero=True, activation_bottleneck="tanh",
    padding_mode="zeros",
)


def representation(rng, frames, batch=2):
    """A random `(batch, frames, 2 * hop, 2)` representation (hop 32)."""
    return rng.standard_normal((batch, frames, 64, 2)).astype("float32")


def test_layer_checks(rng):
    layer, latents = run_layer_test(LinCAEEncoder, TINY_ENCODER, representation(rng, 16),
                                    expected_output_shape=(2, 2, 16), call_kwargs=dict(training=False))
    assert np.abs(to_numpy(latents)).max() < 1.0  # tanh bottleneck
    assert layer.freq_dim == bottleneck_freq_dim(32, [1, 0, 0, 0]) == 64 // 4 // 8


@pytest.mark.parametrize("frames,latent_frames", [(8, 1), (13, 2), (17, 3), (24, 3)])
def test_each_time_downsampling_maps_n_to_half_rounded_up(rng, frames, latent_frames):
    encoder = LinCAEEncoder(**TINY_ENCODER)
    assert encoder.compute_output_shape((2, frames, 64, 2)) == (2, latent_frames, 16)
    assert to_numpy(encoder(representation(rng, frames))).shape == (2, latent_frames, 16)


def test_linear_bottleneck_is_unbounded(rng):
    encoder = LinCAEEncoder(**dict(TINY_ENCODER, activation_bottleneck="linear"))
    x = 30.0 * representation(rng, 8)
    encoder(x)
    randomize_weights(encoder, seed=2)
    assert np.abs(to_numpy(encoder(x))).max() > 1.0


@pytest.mark.parametrize("overrides,match", [
    (dict(activation_bottleneck="relu"), "activation_bottleneck must be 'tanh' or 'linear'"),
    (dict(freq_downsample_list=[1, 0, 0]), "one entry per level transition"),
    (dict(hop=4), "hop=4 is too small"),
])
def test_bad_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        LinCAEEncoder(**dict(TINY_ENCODER, **overrides))
