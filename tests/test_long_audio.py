"""Chunked encode / decode of long audio (`keras_lincae.long_audio`)."""

import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, to_numpy

from keras_lincae.long_audio import (
    FORMAT_VERSION,
    ChunkedLatents,
    chunk_layout,
    decode_long,
    decode_long_blocks,
    decode_noise,
    encode_long,
)


class FrameLocalModel:
    """A context-free stand-in with `LinCAE`'s sizes: each latent frame is a fixed linear map of its
    own 4096 samples and decodes back through the transpose plus a slice of its noise block.

    Chunked and unchunked processing of this model agree exactly when windows, latent-grid alignment,
    noise sharing and crossfade weights are right, which isolates the bookkeeping from the context
    dependence of the real network (GroupNorm and attention over the whole time axis).
    """

    def __init__(self, model, seed=0):
        self._model = model
        rng = np.random.default_rng(seed)
        self.weights = (rng.standard_normal((model.samples_per_latent, model.latent_channels)) / 64).astype("float32")

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode(self, audio):
        audio = np.asarray(audio)
        frames, unit = self._model.latent_length(audio.shape[-1]), self._model.samples_per_latent
        return audio[:, : frames * unit].reshape(audio.shape[0], frames, unit) @ self.weights

    def decode(self, latents, steps=1, seed=None, noise=None):
        batch, frames, _ = latents.shape
        unit = self._model.samples_per_latent
        blocks = np.asarray(noise).reshape(batch, frames, -1)[:, :, :unit]
        out = (np.asarray(latents) @ self.weights.T + 0.1 * blocks).reshape(batch, frames * unit)
        return np.pad(out, ((0, 0), (0, self._model.decoded_length(frames) - frames * unit)))


def _unchunked(model, items, seed):
    """Reference: the whole `(items, samples)` signal through `autoencode`'s framing, one pass."""
    length = items.shape[-1]
    front, back = model.autoencode_padding(length)
    frames = model.latent_length(front + length + back)
    padded = np.pad(items, ((0, 0), (front, back)))
    latents = to_numpy(model.encode(padded))
    audio = to_numpy(model.decode(latents, seed=seed, noise=decode_noise(model, items.shape[0], frames, seed)))
    return latents, audio[:, front : front + length]


def test_chunk_layout(tiny_model):
    unit = tiny_model.samples_per_latent
    assert chunk_layout(tiny_model, 1000, chunk_seconds=1.0) == (1000, 1000)
    assert chunk_layout(tiny_model, 10**6, chunk_seconds=None) == (10**6, 10**6)
    chunk, step = chunk_layout(tiny_model, 10**6, chunk_seconds=1.0, overlap=0.25)
    frames = round(tiny_model.sample_rate / unit)
    assert chunk == frames * unit and step == (frames - int(frames * 0.25)) * unit
    assert chunk_layout(tiny_model, 10**6, chunk_seconds=0.2, overlap=0.25) == (2 * unit, unit)
    assert chunk_layout(tiny_model, 10**6, chunk_seconds=0.2, overlap=0.0) == (2 * unit, 2 * unit)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="chunk_seconds"):
            chunk_layout(tiny_model, 10**6, chunk_seconds=bad)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="overlap"):
            chunk_layout(tiny_model, 10**6, overlap=bad)


@pytest.mark.parametrize(
    "chunk_seconds, overlap, stereo", [(0.2, 0.25, True), (0.3, 0.5, True), (0.3, 0.0, False), (0.1, 0.25, False)]
)
def test_chunking_is_exact_for_a_context_free_model(tiny_model, chunk_seconds, overlap, stereo):
    model = FrameLocalModel(tiny_model)
    length = 50_000
    audio = music_like(length, batch=4, seed=1)
    if stereo:
        audio = audio.reshape(2, 2, length)
    chunked = encode_long(model, audio, chunk_seconds=chunk_seconds, overlap=overlap, batch_size=3)
    assert chunked.latents.shape[: audio.ndim - 1] == audio.shape[:-1] and chunked.num_chunks > 2
    ref_latents, ref_audio = _unchunked(model, audio.reshape(4, length), seed=3)
    # Every chunk's latents are the unchunked latents of the same frames (one latent grid).
    step_frames = chunked.step_samples // model.samples_per_latent
    for c in range(chunked.num_chunks):
        lat = chunked.latents.reshape(4, chunked.num_chunks, -1, model.latent_channels)[:, c]
        n = min(lat.shape[1], ref_latents.shape[1] - c * step_frames)
        np.testing.assert_allclose(lat[:, :n], ref_latents[:, c * step_frames : c * step_frames + n], atol=1e-6)
    out = decode_long(model, chunked, seed=3, batch_size=2)
    assert out.shape == audio.shape
    np.testing.assert_allclose(out.reshape(4, length), ref_audio, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch_size, length", [(1, None), (3, None), (4, 30_000)])
def test_decode_long_blocks_are_decode_long_in_pieces(tiny_model, batch_size, length):
    model = FrameLocalModel(tiny_model)
    chunked = encode_long(model, music_like(60_000, batch=4, seed=4).reshape(2, 2, 60_000), chunk_seconds=0.3,
                          overlap=0.5, batch_size=3)
    whole = decode_long(model, chunked, seed=2, batch_size=batch_size, length=length)
    blocks = list(decode_long_blocks(model, chunked, seed=2, batch_size=batch_size, length=length))
    assert len(blocks) == -(-4 * min(chunked.num_chunks, -(-(length or 60_000) // chunked.step_samples)) // batch_size)
    assert all(b.shape[:2] == (2, 2) for b in blocks)
    # No block holds more than the chunks of one model call: memory does not grow with the length.
    assert max(b.shape[-1] for b in blocks) <= (batch_size // 4 + 1) * chunked.chunk_samples
    np.testing.assert_array_equal(np.concatenate(blocks, axis=-1), whole)
    with pytest.raises(ValueError, match="steps"):  # checked when called, not when iterated
        decode_long_blocks(model, chunked, steps=0)


def test_decode_noise_per_step(tiny_model):
    first = decode_noise(tiny_model, 2, 5, seed=1)
    np.testing.assert_array_equal(decode_noise(tiny_model, 2, 5, seed=1, step=0), first)
    again = decode_noise(tiny_model, 2, 3, seed=1, first_frame=2, step=1)
    np.testing.assert_array_equal(decode_noise(tiny_model, 2, 5, seed=1, step=1)[:, 2 * tiny_model.time_downsampling :],
                                  again)
    assert np.abs(again - first[:, 2 * tiny_model.time_downsampling :]).min() > 0  # a new draw per step


# The tiny-model tests share one window shape (chunk_seconds=0.2: 8192-sample chunks in 13824-sample
# windows) and one batch size, so that jax and tensorflow compile one encode and one decode.
CHUNK = 0.2
BATCH = 4


def test_single_chunk_equals_autoencode(tiny_model):
    length = 8192
    audio = music_like(length, batch=BATCH, seed=2).reshape(BATCH // 2, 2, length)
    chunked = encode_long(tiny_model, audio, chunk_seconds=CHUNK, batch_size=BATCH)
    assert chunked.num_chunks == 1 and chunked.chunk_samples == length
    out = decode_long(tiny_model, chunked, seed=5, batch_size=BATCH)
    assert out.shape == audio.shape and out.dtype == np.float32
    front, back = tiny_model.autoencode_padding(length)
    frames = tiny_model.latent_length(front + length + back)
    ref = to_numpy(tiny_model.autoencode(audio, seed=5, noise=decode_noise(tiny_model, BATCH, frames, 5)))
    scale = np.abs(ref).max()
    assert scale > 0
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4 * scale)


def test_chunked_tiny_model_stereo(tiny_model):
    from keras import ops

    length = 12_000
    audio = music_like(length, batch=2, seed=3).reshape(1, 2, length)
    seen = []
    chunked = encode_long(tiny_model, ops.convert_to_tensor(audio), chunk_seconds=CHUNK, batch_size=BATCH,
                          progress=lambda *a: seen.append(a))
    assert chunked.num_chunks == 2 and chunked.channels == 2
    assert chunked.latents.shape == (1, 2, 2, 3, tiny_model.latent_channels)
    assert seen == [("encode", 4, 4)]
    out = decode_long(tiny_model, chunked, seed=1, batch_size=BATCH, progress=lambda *a: seen.append(a))
    assert seen[-1] == ("decode", 4, 4)
    assert out.shape == audio.shape and np.all(np.isfinite(out))
    scale = np.abs(out).max()
    assert scale > 0
    # Chunks that start after `length` are not decoded; the rest is the same computation.
    short = decode_long(tiny_model, chunked, seed=1, length=1000, batch_size=BATCH)
    assert short.shape == (1, 2, 1000)
    np.testing.assert_allclose(short, out[..., :1000], rtol=0, atol=1e-4 * scale)
    other = decode_long(tiny_model, chunked, seed=2, length=1000, batch_size=BATCH)
    assert np.abs(other - short).max() > 1e-3 * scale
    # `like` reuses the chunking of other latents of the same length; channels are independent.
    mono = encode_long(tiny_model, audio[:, 1], chunk_seconds=None, batch_size=BATCH, like=chunked)
    assert (mono.chunk_samples, mono.step_samples) == (chunked.chunk_samples, chunked.step_samples)
    np.testing.assert_allclose(mono.latents, chunked.latents[:, 1], rtol=0, atol=1e-4)


def test_decode_long_passes_steps_and_seed():
    calls = []

    class Recorder(FrameLocalModel):
        def decode(self, latents, steps=1, seed=None, noise=None):
            calls.append((steps, seed, np.asarray(noise).shape))
            return super().decode(latents, steps, seed, noise)

    from keras_lincae import LinCAE

    model = Recorder(LinCAE.from_preset("lin_cae_tiny", load_weights=False))
    chunked = encode_long(model, music_like(12_000, batch=1), chunk_seconds=CHUNK, batch_size=3)
    decode_long(model, chunked, steps=3, seed=7, batch_size=3)
    assert calls == [(3, 7, (3, 24, 2 * model.hop_size, model.data_channels))]


@pytest.fixture(scope="module")
def small_chunked(tiny_model):
    return encode_long(tiny_model, music_like(9000, batch=1), chunk_seconds=CHUNK, batch_size=BATCH)


def test_chunked_latents_dict_round_trip(small_chunked):
    chunked = small_chunked
    back = ChunkedLatents.from_dict(chunked.to_dict())
    assert back.layout() == chunked.layout()
    np.testing.assert_array_equal(back.latents, chunked.latents)
    values = chunked.to_dict()
    del values["step_samples"]
    with pytest.raises(ValueError, match="missing"):
        ChunkedLatents.from_dict(values)
    values = chunked.to_dict()
    values["length"] = np.int64(10**6)
    with pytest.raises(ValueError, match="chunks"):
        ChunkedLatents.from_dict(values)
    with pytest.raises(ValueError, match="shape"):
        chunked.with_latents(chunked.latents[:, :1])


def test_newer_or_malformed_format_version_is_refused(small_chunked):
    values = small_chunked.to_dict()
    del values["length"]  # a newer format may have other fields: its version is what is reported
    values["format_version"] = np.int64(FORMAT_VERSION + 1)
    newer = rf"written by a newer keras_lincae \(format_version {FORMAT_VERSION + 1} > {FORMAT_VERSION}\)"
    with pytest.raises(ValueError, match=newer):
        ChunkedLatents.from_dict(values)
    for bad in (np.int64(0), np.float64(1.0), np.array([1, 1]), np.str_("1")):
        values = dict(small_chunked.to_dict(), format_version=bad)
        with pytest.raises(ValueError, match="malformed format_version"):
            ChunkedLatents.from_dict(values)


@pytest.mark.parametrize(
    "audio, kwargs, error, match",
    [
        (np.full((1, 5000), np.nan, "float32"), {}, ValueError, "NaN"),
        (np.ones((1, 5000), "int32"), {}, TypeError, "floating"),
        (np.zeros((1, 0), "float32"), {}, ValueError, "empty"),
        (np.zeros((0, 5000), "float32"), {}, ValueError, "empty"),
        (np.zeros((5000,), "float32"), {}, ValueError, "shape"),
        (np.zeros((1, 5000), "float32"), {"batch_size": 0}, ValueError, "batch_size"),
        (np.zeros((1, 5000), "float32"), {"chunk_seconds": -1.0}, ValueError, "chunk_seconds"),
        (np.zeros((1, 5000), "float32"), {"overlap": 1.0}, ValueError, "overlap"),
        (np.zeros((1, 5000), "float32"), {"like": "x"}, ValueError, "like"),
    ],
)
def test_encode_long_bad_input(tiny_model, audio, kwargs, error, match):
    with pytest.raises(error, match=match):
        encode_long(tiny_model, audio, **kwargs)


def test_decode_long_bad_input(tiny_model, small_chunked):
    chunked = small_chunked
    with pytest.raises(TypeError, match="ChunkedLatents"):
        decode_long(tiny_model, chunked.latents)
    with pytest.raises(ValueError, match="steps"):
        decode_long(tiny_model, chunked, steps=0)
    with pytest.raises(ValueError, match="seed"):
        decode_long(tiny_model, chunked, seed=1.5)
    with pytest.raises(ValueError, match="length"):
        decode_long(tiny_model, chunked, length=10**6)
    bad = chunked.with_latents(np.full_like(chunked.latents, np.inf))
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_long(tiny_model, bad)
    wrong = ChunkedLatents(chunked.latents[..., :8], chunked.length, chunked.chunk_samples,
                           chunked.step_samples, chunked.sample_rate)
    with pytest.raises(ValueError, match="channels"):
        decode_long(tiny_model, wrong)
    resampled = ChunkedLatents(chunked.latents, chunked.length, chunked.chunk_samples,
                               chunked.step_samples, 48000)
    with pytest.raises(ValueError, match="Hz"):
        decode_long(tiny_model, resampled)
