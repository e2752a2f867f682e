"""ConsistencyDecoder: the standard layer checks, consistency boundary, conditioning."""

import numpy as np

from keras_lincae.models.decoder import ConsistencyDecoder
from keras_lincae.testing.helpers import randomize_weights, to_numpy
from keras_lincae.testing.test_case import run_layer_test

TINY_DECODER = dict(
    base_channels=8, layers_list=[1, 1, 1, 1, 1], multipliers_list=[1, 2, 4, 4, 4],
    attention_list=[0, 0, 1, 1, 1], freq_downsample_list=[1, 0, 0, 0], layers_list_encoder=[1, 1, 1, 1, 1],
    attention_list_encoder=[0, 0, 1, 1, 1], bottleneck_base_channels=32, bottleneck_channels=16,
    num_bottleneck_layers=1, hop=32, data_channels=2, cond_channels=32, heads=4, use_fourier=False,
    fourier_scale=0.2, normalization=True, dropout_rate=0.0, min_res_dropout=16, frequency_scaling=True,
    sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, init_as_zero=True, padding_mode="zeros",
)


def decoder_inputs(rng, batch=2, latent_frames=2, sigma=(0.5, 80.0)):
    """`(noisy, sigma, latents)`: noisy `(batch, 8 * latent_frames, 64, 2)` (hop 32)."""
    noisy = rng.standard_normal((batch, 8 * latent_frames, 64, 2)).astype("float32")
    latents = rng.uniform(-1, 1, (batch, latent_frames, 16)).astype("float32")
    return noisy, np.asarray(sigma, "float32"), latents


def randomized_decoder(rng):
    decoder = ConsistencyDecoder(**TINY_DECODER)
    decoder(*decoder_inputs(rng))
    return randomize_weights(decoder, seed=6)


def test_layer_checks(rng):
    """Under mixed precision the output stays float32: `c_skip * noisy` is added in float32."""
    _, outputs = run_layer_test(ConsistencyDecoder, TINY_DECODER, decoder_inputs(rng), expected_output_shape=(2, 16, 64, 2),
                   call_kwargs=dict(training=False), expected_mixed_output_dtype="float32")
    outputs = to_numpy(outputs)  # randomized weights: a non-trivial function of the input
    assert outputs.shape == (2, 16, 64, 2) and np.all(np.isfinite(outputs)) and outputs.std() > 0


def test_output_is_the_input_at_sigma_min(rng):
    """Consistency boundary: `c_skip = 1`, `c_out = 0` at `sigma_min`, whatever the weights."""
    decoder = randomized_decoder(rng)
    noisy, _, latents = decoder_inputs(rng)
    out = to_numpy(decoder(noisy, np.full((2,), 0.002, "float32"), latents))
    np.testing.assert_allclose(out, noisy, atol=1e-5)


def test_latents_and_noise_level_condition_the_output(rng):
    decoder = randomized_decoder(rng)
    noisy, sigma, latents = decoder_inputs(rng)
    reference = to_numpy(decoder(noisy, sigma, latents))
    assert np.abs(to_numpy(decoder(noisy, sigma, -latents)) - reference).max() > 1e-3
    assert np.abs(to_numpy(decoder(noisy, sigma * 0.5, latents)) - reference).max() > 1e-3
    pyramid = decoder.latent_pyramid(latents)
    np.testing.assert_allclose(to_numpy(decoder.denoise(noisy, sigma, pyramid)), reference, atol=1e-6)
