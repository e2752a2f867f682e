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
    td, step = model.time_downsampling, chunk - max(1, chunk // 4)
    starts = list(range(0, frames - chunk, step)) + [frames - chunk]
    span = model.decoded_length(chunk)
    out = np.zeros((int(latents.shape[0]), model.decoded_length(frames)), np.float32)
    total_weight = np.zeros(out.shape[-1], np.float32)
    t = np.arange(span, dtype=np.float32)
    for i, first in enumerate(starts):
        window = [d[:, first * td : (first + chunk) * td] for d in draws]
        piece = ops.convert_to_numpy(sample_steps(model, latents[:, first : first + chunk], window))
        weight = np.ones(span, np.float32)
        if i > 0:  # fade in over the exact part of the overlap with the previous window
            ramp = (chunk - first + starts[i - 1]) * unit - edge
            weight = np.minimum(weight, np.clip((t - edge) / ramp, 0.0, 1.0))
        if i < len(starts) - 1:
            ramp = (chunk - starts[i + 1] + first) * unit - edge
            weight = np.minimum(weight, np.clip((span - edge - t) / ramp, 0.0, 1.0))
        offset = first * unit
        out[:, offset : offset + span] += piece * weight
        total_weight[offset : offset + span] += weight
    return ops.convert_to_tensor(out / np.maximum(total_weight, 1e-12))
