"""Parity with the official PyTorch implementation (PyPI `linear-cae`) used as an oracle."""

import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, to_numpy

import keras_lincae
from keras_lincae.testing import official_oracle as oracle
from keras_lincae.testing.official_oracle import PARITY_MAX_RELATIVE_ERROR, max_relative_error


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    official = oracle.build_official(oracle.REDUCED_GENERATOR, seed=0)
    release = tmp_path_factory.mktemp("release") / "0a3afbec_weights"
    oracle.write_release(official, str(release), oracle.REDUCED_GENERATOR)
    preset = tmp_path_factory.mktemp("preset") / "converted"
    model = keras_lincae.convert_official_checkpoint(str(release), str(preset))
    return official, model, release, preset


def test_parameter_counts_match(converted):
    official, model, _, _ = converted
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == sum(p.numel() for p in official.parameters())
    assert model.scale_factor == 33.0  # from the release folder's hash


def test_full_lin_cae_parameter_count():
    model = keras_lincae.LinCAE.from_preset("lin_cae", load_weights=False)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 58_185_026
    assert model.latent_length(441_000) == 108


@pytest.mark.parametrize("num_samples", [30_000, 45_056])
def test_encode_and_one_step_decode_match_official(converted, num_samples):
    official, model, _, _ = converted
    audio = music_like(num_samples, batch=2, seed=3)
    latents = to_numpy(model.encode(audio))
    expected = oracle.official_encode(official, audio)
    assert latents.shape == expected.shape
    assert max_relative_error(latents, expected) <= PARITY_MAX_RELATIVE_ERROR

    noise = np.random.default_rng(4).standard_normal(
        (2, latents.shape[1] * 8, 1024, 2)
    ).astype("float32")
    decoded = to_numpy(model.decode(expected, noise=noise))
    reference = oracle.official_decode_1step(official, expected, noise)
    assert decoded.shape == reference.shape
    assert max_relative_error(decoded, reference) <= PARITY_MAX_RELATIVE_ERROR


def test_converted_preset_reloads_identically(converted):
    _, model, _, preset = converted
    reloaded = keras_lincae.LinCAE.from_preset(str(preset))
    audio = music_like(20_000, seed=5)
    np.testing.assert_array_equal(to_numpy(model.encode(audio)), to_numpy(reloaded.encode(audio)))


def test_release_directory_loads_directly(converted):
    official, _, release, _ = converted
    model = keras_lincae.LinCAE.from_preset(str(release))
    audio = music_like(20_000, seed=6)
    expected = oracle.official_encode(official, audio)
    assert max_relative_error(to_numpy(model.encode(audio)), expected) <= PARITY_MAX_RELATIVE_ERROR
