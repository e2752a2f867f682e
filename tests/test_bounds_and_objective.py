"""Bounded inference (steps, chunked long inputs), non-finite guards and the one-step objective."""

import keras
import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, to_numpy

from keras_lincae import LinCAE
from keras_lincae.backend_dispatch import compile_inference_function, no_gradient
from keras_lincae.models import losses, objective
from keras_lincae.models.validation import MAX_DECODE_STEPS

N = 12_000


def _noise(model, frames, seed=0, count=1):
    shape = (1, frames * model.time_downsampling, 2 * model.hop_size, model.data_channels)
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype("float32") for _ in range(count)]


@pytest.mark.parametrize("bad", [0, MAX_DECODE_STEPS + 1, 2.0, True])
def test_steps_are_bounded(tiny_model, bad):
    latents = to_numpy(tiny_model.encode(music_like(N)))
    with pytest.raises(ValueError, match="steps must be an integer in"):
        tiny_model.decode(latents, steps=bad)


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5])
def test_seed_out_of_range_is_a_value_error(tiny_model, bad):
    latents = to_numpy(tiny_model.encode(music_like(N)))
    with pytest.raises(ValueError, match="seed must be an integer in"):
        tiny_model.decode(latents, seed=bad)


def test_missing_audio_names_the_argument(tiny_model):
    with pytest.raises(TypeError, match="audio must be a float array"):
        tiny_model.encode(None)


def test_multi_step_decode_reuses_one_compiled_step(tiny_model):
    latents = to_numpy(tiny_model.encode(music_like(N)))
    draws = _noise(tiny_model, latents.shape[1], count=4)
    stepped = to_numpy(tiny_model.decode(latents, steps=4, noise=draws))
    fused_sampler = compile_inference_function(tiny_model, lambda z, *n: tiny_model.sample(z, list(n)))
    fused = to_numpy(fused_sampler(keras.ops.convert_to_tensor(latents), *draws))
    np.testing.assert_allclose(stepped, fused, atol=1e-5)
    tiny_model.decode(latents, steps=7, seed=0)
    assert ("decode", 4) not in tiny_model._compiled and ("decode", 7) not in tiny_model._compiled
    assert "sampler_step" in tiny_model._compiled


def test_long_encode_is_chunked_on_the_latent_grid(tiny_model):
    audio = music_like(4096 * 12 + 1000)
    whole = to_numpy(tiny_model.encode(audio, max_chunk_seconds=None))
    chunked = to_numpy(tiny_model.encode(audio, max_chunk_seconds=5 * 4096 / 44100))
    assert chunked.shape == whole.shape
    assert not np.allclose(chunked, whole)  # chunks were encoded on their own
    # The first chunk sees exactly its own audio: its frames away from the cut agree.
    first = to_numpy(tiny_model.encode(audio[:, : tiny_model.decoded_length(5)], max_chunk_seconds=None))
    np.testing.assert_allclose(chunked[:, :5], first, atol=1e-5)


def test_long_decode_is_chunked_and_crossfaded(tiny_model):
    latents = to_numpy(tiny_model.encode(music_like(4096 * 14), max_chunk_seconds=None))
    noise = _noise(tiny_model, latents.shape[1])
    whole = to_numpy(tiny_model.decode(latents, noise=noise, max_chunk_seconds=None))
    chunked = to_numpy(tiny_model.decode(latents, noise=noise, max_chunk_seconds=6 * 4096 / 44100))
    assert chunked.shape == whole.shape and np.isfinite(chunked).all()
    # Before the first overlap the first window alone is used: identical to its own decode.
    first = to_numpy(tiny_model.decode(latents[:, :6], noise=[n[:, : 6 * 8] for n in noise], max_chunk_seconds=None))
    cut = 5 * 4096  # windows of 6 frames every 5: the second starts at latent frame 5
    np.testing.assert_allclose(chunked[:, :cut], first[:, :cut], atol=1e-5)
    # After the last overlap only the last window counts.
    frames, span, edge = latents.shape[1], tiny_model.decoded_length(6), 1536
    starts = list(range(0, frames - 6, 5)) + [frames - 6]
    last = to_numpy(tiny_model.decode(latents[:, -6:], noise=[n[:, -6 * 8 :] for n in noise], max_chunk_seconds=None))
    tail = starts[-2] * 4096 + span - edge
    np.testing.assert_allclose(chunked[:, tail:], last[:, tail - starts[-1] * 4096 :], atol=1e-5)
    assert not np.allclose(chunked, whole)


def test_autoencode_of_long_audio_keeps_every_sample(tiny_model):
    audio = music_like(4096 * 9 + 77)
    out = to_numpy(tiny_model.autoencode(audio, seed=0, max_chunk_seconds=3 * 4096 / 44100))
    assert out.shape == audio.shape and np.isfinite(out).all()


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), "10"])
def test_bad_chunk_length(tiny_model, bad):
    with pytest.raises(ValueError, match="max_chunk_seconds"):
        tiny_model.encode(music_like(N), max_chunk_seconds=bad)


def test_overflowing_audio_raises_instead_of_nan_latents(tiny_model):
    with pytest.raises(ValueError, match="latents contains NaN or infinite values"):
        tiny_model.encode(np.full((1, N), 3e38, "float32"))


def test_out_of_range_latents_raise_instead_of_nan_audio(tiny_model):
    latents = to_numpy(tiny_model.encode(music_like(N)))
    with pytest.raises(ValueError, match="decoded audio contains NaN or infinite values"):
        tiny_model.decode(np.full_like(latents, 3e38), seed=0)


def test_spectral_loss_is_phase_blind_and_scale_aware():
    rng = np.random.default_rng(0)
    t = np.arange(8192) / 44100.0
    tone = np.sin(2 * np.pi * 440.0 * t)[None].astype("float32")
    shifted = np.sin(2 * np.pi * 440.0 * t + 1.3)[None].astype("float32")
    noise = (0.3 * rng.standard_normal((1, 8192))).astype("float32")
    same = float(to_numpy(losses.multi_resolution_spectral_loss(shifted, tone)))
    quieter = float(to_numpy(losses.multi_resolution_spectral_loss(0.5 * tone, tone)))
    other = float(to_numpy(losses.multi_resolution_spectral_loss(noise, tone)))
    assert same < quieter < other
    silent = to_numpy(losses.multi_resolution_spectral_loss(np.zeros_like(tone), np.zeros_like(tone)))
    assert np.isfinite(silent)


def test_complex_spectral_convergence_is_phase_aware():
    t = np.arange(8192) / 44100.0
    tone = np.sin(2 * np.pi * 440.0 * t)[None].astype("float32")
    shifted = np.sin(2 * np.pi * 440.0 * t + 1.3)[None].astype("float32")

    def distance(prediction, target=tone):
        return float(to_numpy(losses.complex_spectral_convergence(prediction, target)))

    # |1 - exp(1.3 i)| = 2 sin(0.65): a right magnitude with a wrong phase costs more than silence
    assert distance(tone) < 1e-3
    np.testing.assert_allclose(distance(0.5 * tone), 0.5, atol=1e-3)
    np.testing.assert_allclose(distance(np.zeros_like(tone)), 1.0, atol=1e-3)
    np.testing.assert_allclose(distance(shifted), 2 * np.sin(0.65), atol=0.02)
    assert distance(np.zeros_like(tone), np.zeros_like(tone)) == 0.0


def test_log_energy_distance_is_the_per_clip_level_error():
    t = np.arange(8192) / 44100.0
    tone = np.sin(2 * np.pi * 440.0 * t)[None].astype("float32")
    shifted = np.sin(2 * np.pi * 440.0 * t + 1.3)[None].astype("float32")

    def distance(prediction, target):
        return float(to_numpy(losses.log_energy_distance(prediction, target)))

    assert distance(shifted, tone) < 5e-3  # phase-blind (up to the partial periods at the ends)
    np.testing.assert_allclose(distance(0.5 * tone, tone), np.log(4.0), rtol=1e-4)  # 6 dB quieter
    np.testing.assert_allclose(distance(2.0 * tone, tone), np.log(4.0), rtol=1e-4)  # 6 dB louder
    # per clip, not pooled: a quiet clip 6 dB off counts as much as a loud one
    batch = np.concatenate([tone, 0.01 * tone])
    np.testing.assert_allclose(distance(batch * np.array([[1.0], [0.5]], "float32"), batch), np.log(4.0) / 2, rtol=1e-4)
    assert distance(np.zeros_like(tone), np.zeros_like(tone)) == 0.0


@pytest.mark.parametrize("term", ["spectral_phase_weight", "spectral_level_weight"])
def test_extra_terms_add_to_the_one_step_objective(term):
    """Same weights, same noise draw: the loss grows linearly in the term's weight."""
    values = []
    for weight in (0.0, 1.0, 2.0):
        keras.utils.set_random_seed(0)
        model = LinCAE.from_preset("lin_cae_tiny", load_weights=False, objective="one_step_spectral", **{term: weight})
        audio = music_like(model.decoded_length(2), batch=2)
        values.append(float(to_numpy(objective.training_loss(model, audio, model(audio), training=False))))
    assert values[1] - values[0] > 0.05
    np.testing.assert_allclose(values[2] - values[0], 2 * (values[1] - values[0]), rtol=1e-3)


@pytest.mark.parametrize("mode, extra", [("lin_cae", {}), ("m2l", {}), ("lin_cae", {"spectral_phase_weight": 1.0}),
                                         ("m2l", {"spectral_level_weight": 1.0})])
def test_one_step_spectral_objective_trains_the_one_step_decode(mode, extra):
    model = LinCAE.from_preset("lin_cae_tiny", load_weights=False, objective="one_step_spectral", mode=mode, **extra)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    clips = np.concatenate([music_like(model.decoded_length(2), batch=2, seed=s) for s in range(2)])
    history = model.fit(clips, batch_size=4, epochs=12, verbose=0, shuffle=False)
    loss = history.history["loss"]
    assert np.isfinite(loss).all() and loss[-1] < 0.8 * loss[0]
    assert int(to_numpy(model.training_step)) == 12


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective must be one of"):
        LinCAE.from_preset("lin_cae_tiny", load_weights=False, objective="regression")
    with pytest.raises(ValueError, match="spectral_phase_weight must be finite and >= 0"):
        LinCAE.from_preset("lin_cae_tiny", load_weights=False, spectral_phase_weight=-1.0)
    with pytest.raises(ValueError, match="spectral_level_weight must be finite and >= 0"):
        LinCAE.from_preset("lin_cae_tiny", load_weights=False, spectral_level_weight=float("nan"))


def test_consistency_target_context_computes_values_without_a_graph():
    """`no_gradient()` (the consistency target's context) keeps values; on torch it records no
    autograd graph (the target's activations are not kept alive); elsewhere it changes nothing."""
    weight = keras.Variable(np.array([2.0, -1.0], "float32"))
    with no_gradient():
        target = keras.ops.multiply(weight, 3.0)
    np.testing.assert_allclose(to_numpy(target), [6.0, -3.0])
    if keras.backend.backend() == "torch":
        assert not target.requires_grad and keras.ops.multiply(weight, 3.0).requires_grad
