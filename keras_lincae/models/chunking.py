"""Chunked `encode` / `decode` of long inputs, so memory stays flat in the length."""

import numpy as np
from keras import ops

from keras_lincae.models.sampler import sample_steps

MAX_CHUNK_SECONDS = 20.0  # default of encode / decode / autoencode (settable per call)


def chunk_frames(model, max_chunk_seconds):
    """Latent frames per chunk for `max_chunk_seconds` (None: no chunking)."""
    if max_chunk_seconds is None:
        return None
    if isinstance(max_chunk_seconds, bool) or not isinstance(max_chunk_seconds, (int, float)) or not (
        0 < max_chunk_seconds < float("inf")
    ):
        raise ValueError(f"max_chunk_seconds must be a positive number or None, got {max_chunk_seconds!r}")
    return max(2, int(round(max_chunk_seconds * model.sample_rate / model.samples_per_latent)))


def encode_chunked(model, encode, audio, chunk):
    """Encode `chunk` latent frames at a time on the whole signal's frame grid; concatenate.

    `encode`: the compiled `(batch, window)` -> latents function; `audio`: `(batch, samples)`.
    Returns `(batch, latent_length(samples), latent_channels)`.
    """
    total = model.latent_length(audio.shape[-1])
    window = model.frontend.num_samples(chunk * model.time_downsampling)
    audio = ops.convert_to_numpy(audio)
    pieces = []
    for first in range(0, total, chunk):
        part = audio[:, first * model.samples_per_latent :][:, :window]
        part = np.pad(part, ((0, 0), (0, window - part.shape[-1])))  # fixed shape: one compilation
        pieces.append(ops.convert_to_numpy(encode(part))[:, : min(chunk, total - first)])
    return ops.convert_to_tensor(np.concatenate(pieces, axis=1))


def decode_chunked(model, latents, draws, chunk):
    """Decode `chunk`-frame windows overlapping by a quarter; crossfade them linearly.

    Inside an overlap, each window's first and last `n_fft - hop` samples (inexact inverse
    STFT) get zero weight; linear ramps summing to one cover the rest of the overlap.
    `latents`: `(batch, frames, latent_channels)`; `draws` as in `sampler.sample`.
    Returns `(batch, decoded_length(frames))`.
    """
    frames = int(latents.shape[1])
    unit, edge = model.samples_per_latent, model.frontend.n_fft - model.hop_size
    td, span = model.time_downsampling, model.decoded_length(chunk)
    starts = window_starts(frames, chunk, default_overlap(chunk))
    out = np.zeros((int(latents.shape[0]), model.decoded_length(frames)), np.float32)
    total_weight = np.zeros(out.shape[-1], np.float32)
    for i, first in enumerate(starts):
        window = [d[:, first * td : (first + chunk) * td] for d in draws]
        piece = ops.convert_to_numpy(sample_steps(model, latents[:, first : first + chunk], window))
        weight = crossfade_weights(first, chunk, unit, edge, starts[i - 1] if i > 0 else None,
                                   starts[i + 1] if i < len(starts) - 1 else None)
        offset = first * unit
        out[:, offset : offset + span] += piece * weight
        total_weight[offset : offset + span] += weight
    return ops.convert_to_tensor(blend(out, total_weight))


def default_overlap(chunk):
    """Latent frames shared by two neighbouring windows of `chunk` frames: a quarter, at least 1."""
    return max(1, chunk // 4)


def window_starts(frames, chunk, overlap):
    """First latent frame of every window over `frames > chunk` frames; the last ends at `frames`."""
    return list(range(0, frames - chunk, chunk - overlap)) + [frames - chunk]


def crossfade_weights(first, chunk, unit, edge, previous=None, following=None):
    """Weights `(chunk * unit + edge,)` of the window decoded from frames `first ... first + chunk - 1`.

    Inside an overlap the window's first / last `edge` (`n_fft - hop_size`) samples, where the
    inverse STFT is inexact, get zero weight and linear ramps cover the rest of the overlap;
    elsewhere the weight is one. `previous` / `following`: start frames of the neighbouring
    windows (None: none). Overlapping windows are summed with these weights and divided by the
    summed weight (`blend`). `keras_lincae.streaming` uses the same weights.
    """
    span = chunk * unit + edge
    t = np.arange(span, dtype=np.float32)
    weight = np.ones(span, np.float32)
    if previous is not None:  # fade in over the exact part of the overlap with the previous window
        ramp = (chunk - first + previous) * unit - edge
        weight = np.minimum(weight, np.clip((t - edge) / ramp, 0.0, 1.0))
    if following is not None:
        ramp = (chunk - following + first) * unit - edge
        weight = np.minimum(weight, np.clip((span - edge - t) / ramp, 0.0, 1.0))
    return weight


def blend(weighted_sum, weight_sum):
    """Crossfaded audio from the weighted sum of overlapping windows and their summed weights."""
    return weighted_sum / np.maximum(weight_sum, 1e-12)
