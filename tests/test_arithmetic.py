"""Latent arithmetic (`keras_lincae.arithmetic`): exact latent combinations and one-decode audio helpers."""

import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, to_numpy

from keras_lincae.arithmetic import (
    mix,
    mix_audio,
    scale,
    scale_audio,
    separate,
    separate_audio,
    silence_latents,
)
from keras_lincae.long_audio import decode_noise, encode_long

# Two items per model call (one stereo clip, or two mono ones) of one length, so that jax and
# tensorflow compile one encode and one decode for the whole file.
LENGTH = 8192


def _decode_like_autoencode(model, latents, seed):
    """Decode `(items, frames, C)` latents of `LENGTH`-sample audio and crop like `autoencode`."""
    front, _ = model.autoencode_padding(LENGTH)
    noise = decode_noise(model, latents.shape[0], latents.shape[1], seed)
    return to_numpy(model.decode(latents, seed=seed, noise=noise))[:, front : front + LENGTH]


def _encode_like_autoencode(model, audio):
    front, back = model.autoencode_padding(LENGTH)
    return to_numpy(model.encode(np.pad(audio, ((0, 0), (front, back)))))


@pytest.fixture(scope="module")
def clips(tiny_model):
    """Two pairs of mono clips (`(2, LENGTH)` each) and their latents with `autoencode`'s framing."""
    audio = music_like(LENGTH, batch=4, seed=11)
    u, v = audio[:2], audio[2:]
    return u, v, _encode_like_autoencode(tiny_model, u), _encode_like_autoencode(tiny_model, v)


def test_latent_mix_scale_separate_are_exact_combinations(tiny_model, clips):
    from keras import ops

    u, v = clips[2], clips[3]
    z_u = ops.convert_to_tensor(u)
    mixed = mix([z_u, ops.convert_to_tensor(v)], [0.7, -0.3])
    assert tuple(mixed.shape) == u.shape
    np.testing.assert_allclose(to_numpy(mixed), 0.7 * u - 0.3 * v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(mix([u, v])), u + v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(scale(z_u, 2.5)), 2.5 * u, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(to_numpy(separate(z_u, v)), u - v, rtol=1e-6, atol=1e-6)
    # Decoding the mix (same seed) equals decoding the summed latents.
    np.testing.assert_allclose(
        to_numpy(tiny_model.decode(mixed, seed=3)), to_numpy(tiny_model.decode(0.7 * u - 0.3 * v, seed=3)),
        rtol=0, atol=1e-5,
    )


def test_mix_audio_equals_decoding_summed_latents(tiny_model, clips):
    u, v = clips[0].reshape(1, 2, LENGTH), clips[1].reshape(1, 2, LENGTH)  # stereo in, stereo out
    out = mix_audio(tiny_model, [u, v], gains=[0.5, 2.0], seed=4, batch_size=2)
    assert out.shape == u.shape
    expected = _decode_like_autoencode(tiny_model, 0.5 * clips[2] + 2.0 * clips[3], seed=4).reshape(u.shape)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_separate_and_scale_audio_equal_decoding_combined_latents(tiny_model, clips):
    mixture, accompaniment, z_mix, z_acc = clips
    out = separate_audio(tiny_model, mixture, accompaniment, seed=6, batch_size=2)
    expected = _decode_like_autoencode(tiny_model, z_mix - z_acc, seed=6)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    out = scale_audio(tiny_model, mixture, 0.25, seed=6, batch_size=2)
    expected = _decode_like_autoencode(tiny_model, 0.25 * z_mix, seed=6)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_chunked_latents_arithmetic(tiny_model):
    audio = music_like(12_000, batch=2, seed=5)
    a = encode_long(tiny_model, audio[:1], chunk_seconds=0.2, batch_size=2)
    b = encode_long(tiny_model, audio[1:], chunk_seconds=0.2, batch_size=2)
    mixed = mix([a, b], [1.0, 0.5])
    assert mixed.layout() == a.layout()
    np.testing.assert_allclose(mixed.latents, a.latents + 0.5 * b.latents, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(separate(a, b).latents, a.latents - b.latents, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scale(a, -2.0).latents, -2.0 * a.latents, rtol=1e-6, atol=1e-6)
    other = encode_long(tiny_model, audio[1:], chunk_seconds=None, batch_size=2)
    with pytest.raises(ValueError, match="shapes differ|chunked differently"):
        mix([a, other])
    with pytest.raises(ValueError, match="ChunkedLatents"):
        mix([a, a.latents[0]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda z: mix([]), "empty"),
        (lambda z: mix(z), "list or tuple"),
        (lambda z: mix([z, z[:, :1]]), "shapes differ"),
        (lambda z: mix([z, z], [1.0]), "2 latents"),
        (lambda z: mix([z, z], [1.0, float("nan")]), "finite"),
        (lambda z: mix([z, z], [1.0, float("inf")]), "finite"),
        (lambda z: mix([z, z], [1.0, "2"]), "real number"),
        (lambda z: mix([z, z], [True, 1.0]), "real number"),
        (lambda z: mix([z, z], "11"), "sequence"),
        (lambda z: mix([z, np.full_like(z, np.nan)]), "NaN"),
        (lambda z: mix([z, np.zeros((1, 0, 16), "float32")]), "non-empty"),
        (lambda z: mix([z, np.ones(z.shape, "int32")]), "floating"),
        (lambda z: scale(z, float("nan")), "finite"),
        (lambda z: scale(z, None), "real number"),
        (lambda z: separate(z, z[:, :, :8]), "shapes differ"),
    ],
)
def test_latent_arithmetic_bad_input(call, match):
    z = np.ones((1, 3, 16), "float32")
    with pytest.raises(ValueError, match=match):
        call(z)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m, x: mix_audio(m, []), "non-empty"),
        (lambda m, x: mix_audio(m, x), "list or tuple"),
        (lambda m, x: mix_audio(m, [x, x.reshape(1, 2, -1)]), "batch/channel"),
        (lambda m, x: mix_audio(m, [x, x], [1.0, float("nan")]), "finite"),
        (lambda m, x: mix_audio(m, [x[0]]), "shape"),
        (lambda m, x: mix_audio(m, [x, np.full_like(x, np.nan)]), "NaN"),
        (lambda m, x: mix_audio(m, [x[:, :0]]), "empty"),
        (lambda m, x: scale_audio(m, x, float("inf")), "finite"),
        (lambda m, x: separate_audio(m, x[:, :100], x), "longer"),
        (lambda m, x: separate_audio(m, x, x[:1]), "batch/channel"),
    ],
)
def test_audio_helpers_bad_input(tiny_model, call, match):
    x = music_like(200, batch=2, seed=0)
    with pytest.raises(ValueError, match=match):
        call(tiny_model, x)


def test_affine_arithmetic_works_relative_to_the_encoding_of_silence(tiny_model, clips):
    u, v = clips[2], clips[3]
    origin = to_numpy(silence_latents(tiny_model, u))
    silence = _encode_like_autoencode(tiny_model, np.zeros((1, LENGTH), np.float32))
    np.testing.assert_allclose(origin, np.broadcast_to(silence, u.shape), atol=1e-6)
    assert np.abs(origin).max() > 1e-3  # this encoder is affine: silence is not the zero latent
    np.testing.assert_allclose(to_numpy(separate(u, v, origin)), u - v + origin, atol=1e-5)
    np.testing.assert_allclose(to_numpy(mix([u, v], [0.5, 2.0], origin)), 0.5 * u + 2.0 * v - 1.5 * origin, atol=1e-5)
    np.testing.assert_allclose(to_numpy(scale(u, 0.0, origin)), origin, atol=1e-6)  # gain 0 gives silence
    # The audio helpers decode the same combination.
    out = separate_audio(tiny_model, clips[0], clips[1], seed=6, batch_size=2, affine=True)
    expected = _decode_like_autoencode(tiny_model, u - v + origin, seed=6)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_affine_arithmetic_on_chunked_latents(tiny_model):
    audio = music_like(12_000, batch=2, seed=5)
    a = encode_long(tiny_model, audio[:1], chunk_seconds=0.2, batch_size=2)
    b = encode_long(tiny_model, audio[1:], chunk_seconds=0.2, batch_size=2)
    origin = silence_latents(tiny_model, a)
    silence = encode_long(tiny_model, np.zeros((1, 12_000), np.float32), like=a)
    np.testing.assert_allclose(origin.latents, silence.latents, atol=1e-6)
    np.testing.assert_allclose(separate(a, b, origin).latents, a.latents - b.latents + silence.latents, atol=1e-5)
