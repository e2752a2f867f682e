"""NoiseLevelEmbedding: the standard layer checks, positional frequencies, Fourier features."""

import math

import numpy as np
import pytest

from keras_lincae.layers.noise_embedding import NoiseLevelEmbedding
from keras_lincae.testing.helpers import to_numpy
from keras_lincae.testing.test_case import run_layer_test

SIGMAS = np.log(np.array([0.002, 0.5, 80.0], "float32")) / 4


@pytest.mark.parametrize("use_fourier,non_trainable", [(False, 0), (True, 1)])
def test_layer_checks(use_fourier, non_trainable):
    kwargs = dict(embedding_size=16, use_fourier=use_fourier, fourier_scale=0.2, max_positions=10000)
    layer, out = run_layer_test(NoiseLevelEmbedding, kwargs, SIGMAS, expected_output_shape=(3, 16),
                                expected_num_trainable_weights=0,
                                expected_num_non_trainable_weights=non_trainable)
    out = to_numpy(out)
    np.testing.assert_allclose(out[:, :8] ** 2 + out[:, 8:] ** 2, 1.0, atol=1e-6)  # [sin, cos] pairs


def test_positional_frequencies():
    """`w_k = max_positions ** (-k / (n/2 - 1))`: from 1 down to 1 / max_positions."""
    layer = NoiseLevelEmbedding(embedding_size=8, use_fourier=False, fourier_scale=0.2, max_positions=100)
    out = to_numpy(layer(SIGMAS))
    frequencies = 100.0 ** (-np.arange(4) / 3)
    np.testing.assert_allclose(out, np.concatenate([np.sin(SIGMAS[:, None] * frequencies),
                                                    np.cos(SIGMAS[:, None] * frequencies)], -1), atol=1e-6)


def test_fourier_features_use_the_stored_weights():
    layer = NoiseLevelEmbedding(embedding_size=64, use_fourier=True, fourier_scale=0.2, max_positions=10000)
    out = to_numpy(layer(SIGMAS))
    weights = to_numpy(layer.fourier_weights)
    assert weights.shape == (32,) and not layer.fourier_weights.trainable
    assert 0.1 < weights.std() < 0.3  # drawn with std fourier_scale
    projected = SIGMAS[:, None] * weights * 2 * math.pi
    np.testing.assert_allclose(out, np.concatenate([np.sin(projected), np.cos(projected)], -1), atol=1e-5)
