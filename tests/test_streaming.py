"""Streaming decode (`keras_lincae.streaming`): same audio as the offline chunked decode, any packets."""

import numpy as np
import pytest
from keras_lincae.testing.helpers import to_numpy

from keras_lincae.long_audio import decode_noise
from keras_lincae.models.chunking import crossfade_weights, window_starts
from keras_lincae.streaming import LatentStreamer, stream_decode

CHUNK = 8  # two frames of overlap, so the last window can overlap two others (15 frames: 0, 6, 7)


def _latents(lead, frames, seed=0, channels=16):  # lin_cae_tiny's latent channels
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, lead + (frames, channels)).astype("float32")


def _offline(model, latents, seed, chunk=CHUNK, steps=1):
    """`LinCAE.decode` chunked into `chunk`-frame windows with the per-frame noise of `decode_noise`."""
    items = int(np.prod(latents.shape[:-2]))
    frames = latents.shape[-2]
    noise = [decode_noise(model, items, frames, seed, step=k) for k in range(steps)]
    seconds = chunk * model.samples_per_latent / model.sample_rate
    return to_numpy(model.decode(latents, steps=steps, noise=noise, max_chunk_seconds=seconds))


def _stream(model, latents, sizes, seed, **kwargs):
    packets, first = [], 0
    for size in sizes:
        packets.append(latents[..., first : first + size, :])
        first += size
    assert first == latents.shape[-2]
    blocks = list(stream_decode(model, packets, chunk=kwargs.pop("chunk", CHUNK), seed=seed, **kwargs))
    return np.concatenate(blocks, axis=-1)


def test_window_layout_and_weights_sum_to_one():
    assert window_starts(20, 8, 2) == [0, 6, 12]
    assert window_starts(15, 8, 2) == [0, 6, 7]
    unit, edge, chunk = 16, 6, 8
    starts = window_starts(15, chunk, 2)
    total = np.zeros(15 * unit + edge)
    for i, first in enumerate(starts):
        weight = crossfade_weights(first, chunk, unit, edge, starts[i - 1] if i else None,
                                   starts[i + 1] if i < len(starts) - 1 else None)
        assert weight.shape == (chunk * unit + edge,) and 0 <= weight.min() and weight.max() <= 1
        if i:  # nothing from the inexact first samples of a window inside an overlap
            assert np.all(weight[:edge] == 0)
        total[first * unit : first * unit + weight.size] += weight
    # Two neighbours' ramps sum to one; three overlapping windows are normalised by the sum (`blend`).
    assert np.all(total > 0)
    np.testing.assert_allclose(total[: 7 * unit], 1.0, atol=1e-6)


@pytest.mark.parametrize("frames, lead", [(15, (2,)), (20, (1, 2)), (8, (2,)), (5, (1,))])
def test_stream_equals_offline_chunked_decode(tiny_model, frames, lead):
    latents = _latents(lead, frames, seed=frames)
    reference = _offline(tiny_model, latents, seed=7)
    out = _stream(tiny_model, latents, [3, 0, 1, frames - 4], seed=7)
    assert out.shape == reference.shape == lead + (tiny_model.decoded_length(frames),)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6)


def test_output_does_not_depend_on_the_packets(tiny_model):
    latents = _latents((2,), 23, seed=1)
    one_by_one = _stream(tiny_model, latents, [1] * 23, seed=3)
    all_at_once = _stream(tiny_model, latents, [23], seed=3)
    uneven = _stream(tiny_model, latents, [9, 2, 0, 12], seed=3)
    np.testing.assert_allclose(one_by_one, all_at_once, rtol=0, atol=1e-6)
    np.testing.assert_allclose(uneven, all_at_once, rtol=0, atol=1e-6)
    assert not np.allclose(_stream(tiny_model, latents, [23], seed=4), all_at_once, atol=1e-3)  # seed matters


def test_multi_step_and_given_noise_match_offline(tiny_model):
    latents = _latents((1,), 13, seed=2)
    two_steps = _stream(tiny_model, latents, [5, 8], seed=9, steps=2)
    np.testing.assert_allclose(two_steps, _offline(tiny_model, latents, seed=9, steps=2), rtol=0, atol=1e-6)
    td, bins = tiny_model.time_downsampling, 2 * tiny_model.hop_size
    noise = np.random.default_rng(0).standard_normal((1, 13 * td, bins, 2), "float32")
    streamer = LatentStreamer(tiny_model, chunk=CHUNK)
    blocks = [streamer.push(latents[:, :6], noise=noise[:, : 6 * td]), streamer.push(latents[:, 6:], noise=noise[:, 6 * td :])]
    out = np.concatenate(blocks + [streamer.close()], axis=-1)
    seconds = CHUNK * tiny_model.samples_per_latent / tiny_model.sample_rate
    np.testing.assert_allclose(out, to_numpy(tiny_model.decode(latents, noise=noise, max_chunk_seconds=seconds)),
                               rtol=0, atol=1e-6)


def test_latency_and_bounded_buffers(tiny_model):
    unit = tiny_model.samples_per_latent
    edge = tiny_model.frontend.n_fft - tiny_model.hop_size
    chunk = 4
    streamer = LatentStreamer(tiny_model, chunk=chunk, seed=0)
    latents = _latents((1,), 60, seed=3)
    sizes, held = [], []
    for frame in range(60):
        sizes.append(streamer.push(latents[:, frame : frame + 1]).shape[-1])
        held.append(streamer.buffered())
    # Nothing before `chunk` frames; then the output runs `chunk` frames (less `edge` samples) behind the input.
    assert sizes[: chunk - 1] == [0] * (chunk - 1) and sizes[chunk - 1] == unit + edge
    emitted = np.cumsum(sizes)
    for frames in range(chunk, 61):
        assert (frames - chunk) * unit + edge <= emitted[frames - 1] <= (frames - chunk + 1) * unit + edge
    span = tiny_model.decoded_length(chunk)
    assert max(frames for frames, _ in held) == chunk  # one window of latents
    assert max(samples for _, samples in held) <= 2 * span  # one window of audio plus its overlap
    assert held[-1] == held[-1 - 3 * streamer.step]  # periodic: no growth with the stream length
    assert streamer.close().shape[-1] == tiny_model.decoded_length(60) - emitted[-1]


@pytest.mark.parametrize(
    "push, match",
    [
        (lambda s: s.push(np.zeros((1, 3, 32), "float32")), r"shape \(batch, frames, 16\)"),
        (lambda s: s.push(np.full((1, 3, 16), np.nan, "float32")), "NaN"),
        (lambda s: s.push(np.zeros((1, 3, 16), "int32")), "floating point"),
        (lambda s: (s.push(np.zeros((1, 3, 16), "float32")), s.push(np.zeros((2, 3, 16), "float32"))),
         "leading shape"),
        (lambda s: s.close(), "no latent frames"),
        (lambda s: (s.push(np.zeros((1, 3, 16), "float32")), s.close(), s.push(np.zeros((1, 1, 16), "float32"))),
         "closed"),
        (lambda s: s.push(np.zeros((1, 3, 16), "float32"), noise=np.zeros((1, 3, 8, 2), "float32")), "noise"),
    ],
)
def test_bad_frames_are_one_line_errors(tiny_model, push, match):
    with pytest.raises((ValueError, TypeError), match=match) as error:
        push(LatentStreamer(tiny_model, chunk=CHUNK, seed=0))
    assert "\n" not in str(error.value)


def test_bad_settings(tiny_model):
    for kwargs, match in (({"chunk": 1}, "chunk"), ({"chunk": 8, "overlap": 8}, "overlap"),
                          ({"chunk": 8, "overlap": 0}, "overlap"), ({"steps": 0}, "steps"), ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=match):
            LatentStreamer(tiny_model, **kwargs)
