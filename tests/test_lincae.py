import inspect
import re

import keras
import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, randomize_weights, to_numpy

from keras_lincae import LinCAE
from keras_lincae.models.lincae import ARCHITECTURE_DEFAULTS, TRAINING_DEFAULTS

N = 12_000  # 20 frames -> 3 latent frames with the default hop 512


def test_shapes_and_lengths(tiny_model):
    audio = music_like(N, batch=2)
    latents = to_numpy(tiny_model.encode(audio))
    assert latents.shape == (2, tiny_model.latent_length(N), 16)
    assert tiny_model.latent_length(441_000) == 108
    audio_out = to_numpy(tiny_model.decode(latents, seed=0))
    assert audio_out.shape == (2, tiny_model.decoded_length(latents.shape[1]))
    assert tiny_model.samples_per_latent == 4096


def test_latents_are_scaled_by_scale_factor(tiny_model):
    scaled = LinCAE.from_config(dict(tiny_model.get_config(), scale_factor=33.0))
    scaled.build()
    scaled.set_weights(tiny_model.get_weights())
    audio = music_like(N)
    z1 = to_numpy(tiny_model.encode(audio))
    z33 = to_numpy(scaled.encode(audio))
    np.testing.assert_allclose(z33, 33.0 * z1, rtol=1e-5, atol=1e-6)
    noise = np.random.default_rng(0).standard_normal((1, z1.shape[1] * 8, 1024, 2)).astype("float32")
    np.testing.assert_allclose(
        to_numpy(scaled.decode(z33, noise=noise)), to_numpy(tiny_model.decode(z1, noise=noise)), atol=1e-5
    )


def test_multichannel_is_batched_and_restored(tiny_model):
    stereo = music_like(N, batch=4).reshape(2, 2, N)
    latents = to_numpy(tiny_model.encode(stereo))
    flat = to_numpy(tiny_model.encode(stereo.reshape(4, N)))
    assert latents.shape == (2, 2) + flat.shape[1:]
    np.testing.assert_allclose(latents.reshape(flat.shape), flat, atol=1e-5)
    frames = latents.shape[2]
    noise = np.random.default_rng(1).standard_normal((4, frames * 8, 1024, 2)).astype("float32")
    decoded = to_numpy(tiny_model.decode(latents, noise=noise))
    assert decoded.shape == (2, 2, tiny_model.decoded_length(frames))
    np.testing.assert_allclose(decoded.reshape(4, -1), to_numpy(tiny_model.decode(flat, noise=noise)), atol=1e-5)


@pytest.mark.parametrize("num_samples", [5_000, 4096 * 3, 4096 * 3 + 1, 17_777])
def test_autoencode_returns_every_sample(tiny_model, num_samples):
    audio = music_like(num_samples, batch=2, seed=2)
    out = to_numpy(tiny_model.autoencode(audio, seed=3))
    assert out.shape == audio.shape
    # The rule: pad n_fft - hop in front, zeros up to whole latent frames at the end, crop.
    front, back = tiny_model.autoencode_padding(num_samples)
    assert front == 1536
    padded_len = front + num_samples + back
    assert (padded_len - 2048) % 512 == 0 and ((padded_len - 2048) // 512 + 1) % 8 == 0
    assert front + num_samples <= padded_len - front  # the last sample is in the exact interior
    padded = np.pad(audio, ((0, 0), (front, back)))
    direct = to_numpy(tiny_model.decode(tiny_model.encode(padded), seed=3))
    np.testing.assert_allclose(out, direct[:, front : front + num_samples], atol=1e-5)


def test_autoencode_of_stereo(tiny_model):
    stereo = music_like(6000, batch=2).reshape(1, 2, 6000)
    assert tuple(tiny_model.autoencode(stereo, seed=0).shape) == (1, 2, 6000)


def test_seeds_and_steps(tiny_model):
    latents = tiny_model.encode(music_like(N))
    a = to_numpy(tiny_model.decode(latents, seed=1))
    b = to_numpy(tiny_model.decode(latents, seed=1))
    c = to_numpy(tiny_model.decode(latents, seed=2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4
    three = to_numpy(tiny_model.decode(latents, steps=3, seed=1))
    assert three.shape == a.shape and np.isfinite(three).all()
    assert np.abs(three - a).max() > 1e-4  # later steps re-noise and denoise again
    # Unseeded draws advance the model's seed generator.
    assert np.abs(to_numpy(tiny_model.decode(latents)) - to_numpy(tiny_model.decode(latents))).max() > 1e-4


def test_explicit_noise_is_the_starting_point(tiny_model):
    latents = tiny_model.encode(music_like(N))
    shape = (1, int(latents.shape[1]) * 8, 1024, 2)
    noise = np.random.default_rng(7).standard_normal(shape).astype("float32")
    a = to_numpy(tiny_model.decode(latents, noise=noise, seed=1))
    b = to_numpy(tiny_model.decode(latents, noise=noise, seed=2))
    np.testing.assert_array_equal(a, b)  # 1 step: the seed plays no role once noise is given
    second = np.random.default_rng(8).standard_normal(shape).astype("float32")
    two_a = to_numpy(tiny_model.decode(latents, steps=2, noise=[noise, second], seed=1))
    two_b = to_numpy(tiny_model.decode(latents, steps=2, noise=[noise, second], seed=2))
    np.testing.assert_array_equal(two_a, two_b)
    with pytest.raises(ValueError, match="3 noise draws"):
        tiny_model.decode(latents, steps=2, noise=[noise, noise, noise])
    assert np.abs(a - to_numpy(tiny_model.decode(latents, noise=-noise))).max() > 1e-4


def test_config_round_trip_gives_identical_outputs(tiny_model):
    config = tiny_model.get_config()
    assert config["bottleneck_channels"] == 16 and config["hop_size"] == 512
    clone = LinCAE.from_config(config)
    clone.build()
    clone.set_weights(tiny_model.get_weights())
    audio = music_like(N)
    np.testing.assert_array_equal(to_numpy(clone.encode(audio)), to_numpy(tiny_model.encode(audio)))
    assert clone.get_config() == config


def test_config_is_exactly_the_documented_constructor_arguments(tiny_model):
    parameters = dict(list(inspect.signature(LinCAE.__init__).parameters.items())[1:-1])
    assert set(tiny_model.get_config()) == set(parameters) | {"name", "trainable"}
    assert dict(ARCHITECTURE_DEFAULTS, **TRAINING_DEFAULTS) == {k: p.default for k, p in parameters.items()}
    assert list(TRAINING_DEFAULTS)[0] == "mode" and "scale_factor" in ARCHITECTURE_DEFAULTS
    documented = dict(re.findall(r"^        (\w+): [^,]+, (.+?)\.(?:\s|$)", LinCAE.__doc__, flags=re.M))
    for name, parameter in parameters.items():  # each argument in `Args:` with its default
        value = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
        assert documented.get(name) in (str(value), f'"{value}"'), name
    with pytest.raises(ValueError, match=r"\['hop', 'no_such_field'\]"):
        LinCAE(hop=512, no_such_field=1)


def test_keras_file_round_trip(tiny_model, tmp_path):
    path = str(tmp_path / "model.keras")
    tiny_model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, LinCAE)
    audio = music_like(N)
    latents = to_numpy(tiny_model.encode(audio))
    np.testing.assert_array_equal(to_numpy(loaded.encode(audio)), latents)
    np.testing.assert_array_equal(
        to_numpy(loaded.decode(latents, seed=4)), to_numpy(tiny_model.decode(latents, seed=4))
    )


def test_every_layer_has_config_and_build():
    model = LinCAE.from_preset("lin_cae_tiny", load_weights=False)
    layers = [model] + list(model._flatten_layers(include_self=False, recursive=True))
    for layer in layers:
        assert layer.built, layer.name
        config = layer.get_config()
        if layer is not model and type(layer).__module__.startswith("keras_lincae"):
            clone = type(layer).from_config(config)
            assert clone.get_config() == config


@pytest.mark.parametrize(
    "audio, error, match",
    [
        (np.zeros(N, "float32"), ValueError, "rank 1"),
        (np.zeros((1, 1, 1, N), "float32"), ValueError, "rank 4"),
        (np.zeros((1, N), "int16"), TypeError, "floating point"),
        (np.full((1, N), np.nan, "float32"), ValueError, "NaN"),
        (np.array([[0.0, np.inf] * (N // 2)], "float32"), ValueError, "infinite"),
        (np.zeros((1, 1000), "float32"), ValueError, "too short"),
        (np.zeros((0, N), "float32"), ValueError, "empty"),
    ],
)
def test_bad_audio_raises_clear_errors(tiny_model, audio, error, match):
    with pytest.raises(error, match=match):
        tiny_model.encode(audio)


def test_bad_latents_and_arguments(tiny_model):
    with pytest.raises(ValueError, match="channels on the last axis"):
        tiny_model.decode(np.zeros((1, 3, 8), "float32"))
    with pytest.raises(ValueError, match="NaN"):
        tiny_model.decode(np.full((1, 3, 16), np.nan, "float32"))
    with pytest.raises(ValueError, match="steps"):
        tiny_model.decode(np.zeros((1, 3, 16), "float32"), steps=0)
    with pytest.raises(ValueError, match="noise must have shape"):
        tiny_model.decode(np.zeros((1, 3, 16), "float32"), noise=np.zeros((1, 5, 1024, 2), "float32"))
    with pytest.raises(ValueError, match="seed"):
        tiny_model.decode(np.zeros((1, 3, 16), "float32"), seed=1.5)
    with pytest.raises(ValueError, match="empty"):
        tiny_model.autoencode(np.zeros((1, 0), "float32"))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(multipliers_list=[1, 2]), "multipliers_list"),
        (dict(freq_downsample_list=[1, 0]), "freq_downsample_list"),
        (dict(scale_factor=0.0), "scale_factor"),
        (dict(base_channels=1), "GroupNorm"),
        (dict(sigma_min=100.0), "sigma_min"),
        (dict(padding_mode="mirror"), "padding_mode"),
        (dict(no_such_field=1), "Unknown LinCAE config"),
    ],
)
def test_bad_architecture_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        LinCAE.from_preset("lin_cae_tiny", load_weights=False, **overrides)


def test_reflect_padding_mode_builds_and_runs():
    model = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False, padding_mode="reflect"))
    latents = to_numpy(model.encode(music_like(N)))
    assert np.isfinite(latents).all()


def test_decoder_latent_mixes_wait_for_the_main_path(tiny_model):
    """Each latent mix of the U-Net is computed when its block runs, not hoisted to the start
    (a TensorFlow graph runs every ready branch at once and holds the results: +1.1 GB at 10 s)."""
    from keras_lincae.backend_dispatch import computed_after

    decoder = tiny_model.decoder
    mixes = sum(len(level) for level in decoder.down_levels + decoder.up_levels) + 1
    noisy = np.zeros((1, 16, 2 * decoder.hop, decoder.data_channels), "float32")
    latents = np.zeros((1, 2, decoder.bottleneck_channels), "float32")
    sigma = np.ones((1,), "float32")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        graph = tf.function(decoder.denoise).get_concrete_function(
            noisy, sigma, decoder.latent_pyramid(latents)
        ).graph
        ordered = [
            op for op in graph.get_operations()
            if op.type == "Identity" and op.control_inputs and op.outputs[0].consumers()
        ]
        assert len(ordered) == mixes
    tensor = keras.ops.arange(6.0)
    np.testing.assert_array_equal(to_numpy(computed_after(tensor, keras.ops.ones((2,)))), np.arange(6.0))
