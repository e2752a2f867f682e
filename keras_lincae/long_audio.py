"""Audio of any length: chunked encode / decode with an overlap-add linear crossfade.

The official inference code cuts long audio into chunks of `max_chunk_size` samples that overlap by
`overlap_percentage` (0.25), encodes every chunk on its own, decodes every chunk back to its own
length and stitches the chunks with a linear crossfade over each overlap. We keep that scheme and
add three things so that chunked results match an unchunked `LinCAE.autoencode`:

1. Every chunk reconstructs all of its samples. A chunk spanning `S` samples is encoded from a
   window that reaches `n_fft - hop` samples before it and to a whole number of latent frames
   after it (`LinCAE.autoencode_padding(S)`); the window takes the real neighbouring audio where
   there is some and zeros outside the signal. The decoded window is cropped back to the span, so
   the inexact first / last `n_fft - hop` samples of the inverse STFT are never used.
2. Chunk span and step are whole latent frames (`samples_per_latent`, 4096 samples), so the latent
   frames of every chunk sit on the same grid as the latents of the whole signal.
3. Decoder noise is drawn per latent frame of that grid from `(seed, item, frame)`; two chunks
   that overlap decode their common frames from the same noise, and an unchunked decode can use
   the same noise (`decode_noise`). The draws come from NumPy, so one seed gives the same noise on
   every backend.

Audio no longer than one chunk (or `chunk_seconds=None`) is a single chunk whose window is exactly
the padded audio of `LinCAE.autoencode`.

Memory: the input and the output are NumPy arrays; besides them only `batch_size` chunk windows,
their latents and noise are alive at a time, and the per-chunk latents (64x smaller than mono
audio, x 1/(1 - overlap)). Peak memory therefore grows with duration only through the input and
output arrays themselves.

Examples:
```python
from keras_lincae import LinCAE
from keras_lincae.long_audio import encode_long, decode_long

model = LinCAE.from_preset("lin_cae_tiny", load_weights=False)
chunked = encode_long(model, song, chunk_seconds=10.0)   # song: (batch, channels, samples)
audio = decode_long(model, chunked, seed=0)               # same shape as song
```
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from keras_lincae.models import validation

__all__ = [
    "ChunkedLatents",
    "chunk_layout",
    "decode_long",
    "decode_long_blocks",
    "decode_noise",
    "encode_long",
]

FORMAT_VERSION = 1


@dataclasses.dataclass
class ChunkedLatents:
    """Latents of audio encoded chunk by chunk, with what `decode_long` needs to rebuild it.

    Attributes:
        latents: float32 NumPy array `(batch, chunks, frames, latent_channels)` for
            `(batch, samples)` audio, `(batch, channels, chunks, frames, latent_channels)` for
            `(batch, channels, samples)` audio. Latents are scaled like `LinCAE.encode`, so they
            can be added, scaled and subtracted as they are (see `keras_lincae.arithmetic`).
        length: int. Samples of the encoded audio (the decoded length).
        chunk_samples: int. Samples spanned by one chunk.
        step_samples: int. Samples between the starts of two chunks
            (`chunk_samples - step_samples` samples are crossfaded).
        sample_rate: int. Sample rate of the audio the latents describe.
        channels: int or None. Channels axis of the audio, None for `(batch, samples)` audio.
    """

    latents: np.ndarray
    length: int
    chunk_samples: int
    step_samples: int
    sample_rate: int
    channels: int | None = None

    @property
    def num_chunks(self):
        return int(self.latents.shape[-3])

    @property
    def overlap_samples(self):
        return self.chunk_samples - self.step_samples

    def layout(self):
        """Everything but the latents: two `ChunkedLatents` can be combined when layouts match."""
        return (self.length, self.chunk_samples, self.step_samples, self.sample_rate, self.channels)

    def with_latents(self, latents):
        """A copy holding `latents` (same shape) with this layout."""
        latents = np.asarray(latents, dtype=np.float32)
        if latents.shape != self.latents.shape:
            raise ValueError(f"latents must keep the shape {self.latents.shape}, got {latents.shape}")
        return dataclasses.replace(self, latents=latents)

    def to_dict(self):
        """Plain arrays and numbers (for `np.savez`); `from_dict` reverses it."""
        return dict(
            format_version=np.int64(FORMAT_VERSION),
            latents=self.latents,
            length=np.int64(self.length),
            chunk_samples=np.int64(self.chunk_samples),
            step_samples=np.int64(self.step_samples),
            sample_rate=np.int64(self.sample_rate),
            channels=np.int64(-1 if self.channels is None else self.channels),
        )

    @classmethod
    def from_dict(cls, values):
        """Rebuild from `to_dict()` output (or an opened `.npz`); raises ValueError if malformed
        or written by a newer keras_lincae (a `format_version` above `FORMAT_VERSION`)."""
        if "format_version" in values:
            version = np.asarray(values["format_version"])
            if version.ndim != 0 or not np.issubdtype(version.dtype, np.integer) or version < 1:
                raise ValueError(f"chunked latents have a malformed format_version: {values['format_version']!r}")
            if version > FORMAT_VERSION:
                raise ValueError(f"chunked latents were written by a newer keras_lincae (format_version "
                                 f"{int(version)} > {FORMAT_VERSION}): upgrade keras_lincae to read them")
        missing = [k for k in ("latents", "length", "chunk_samples", "step_samples", "sample_rate")
                   if k not in values]
        if missing:
            raise ValueError(f"chunked latents are missing the fields {missing}")
        try:
            channels = int(values["channels"]) if "channels" in values else -1
            chunked = cls(
                latents=np.asarray(values["latents"], dtype=np.float32),
                length=int(values["length"]),
                chunk_samples=int(values["chunk_samples"]),
                step_samples=int(values["step_samples"]),
                sample_rate=int(values["sample_rate"]),
                channels=None if channels < 0 else channels,
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"chunked latents have malformed fields: {error}") from error
        chunked.check()
        return chunked

    def check(self):
        """Raise ValueError when the fields contradict each other."""
        rank = 4 if self.channels is None else 5
        if self.latents.ndim != rank:
            raise ValueError(
                f"chunked latents must have rank {rank} "
                f"({'(batch, chunks, frames, C)' if rank == 4 else '(batch, channels, chunks, frames, C)'}),"
                f" got shape {self.latents.shape}"
            )
        if self.channels is not None and self.latents.shape[1] != self.channels:
            raise ValueError(f"latents have {self.latents.shape[1]} channels, the layout says {self.channels}")
        if min(self.latents.shape) < 1:
            raise ValueError(f"chunked latents are empty: shape {self.latents.shape}")
        if self.length < 1 or self.sample_rate < 1:
            raise ValueError(f"length and sample_rate must be positive, got {self.length}, {self.sample_rate}")
        if not 1 <= self.step_samples <= self.chunk_samples:
            raise ValueError(
                f"need 1 <= step_samples <= chunk_samples, got {self.step_samples}, {self.chunk_samples}"
            )
        expected = _num_chunks(self.length, self.chunk_samples, self.step_samples)
        if self.num_chunks != expected:
            raise ValueError(
                f"{self.length} samples in chunks of {self.chunk_samples} every {self.step_samples} "
                f"make {expected} chunks, the latents hold {self.num_chunks}"
            )
        if not np.all(np.isfinite(self.latents)):
            raise ValueError("latents contain NaN or infinite values")


def _num_chunks(length, chunk_samples, step_samples):
    return 1 + max(0, -(-(length - chunk_samples) // step_samples))


def chunk_layout(model, num_samples, chunk_seconds=10.0, overlap=0.25):
    """`(chunk_samples, step_samples)` that `encode_long` uses for `num_samples` samples.

    The chunk spans `round(chunk_seconds * sample_rate / samples_per_latent)` latent frames (at
    least one); `int(frames * overlap)` of them overlap the next chunk (at least one when
    `overlap > 0` and the chunk has two frames or more). Audio that fits in one chunk, and
    `chunk_seconds=None`, gives a single chunk spanning the whole audio.
    """
    num_samples = int(num_samples)
    if num_samples < 1:
        raise ValueError(f"audio is empty: {num_samples} samples")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float, np.number)) or not (
        0.0 <= float(overlap) < 1.0
    ):
        raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
    if chunk_seconds is None:
        return num_samples, num_samples
    if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, (int, float, np.number)) or not (
        math.isfinite(chunk_seconds) and chunk_seconds > 0
    ):
        raise ValueError(f"chunk_seconds must be a positive finite number or None, got {chunk_seconds!r}")
    unit = model.samples_per_latent
    frames = max(1, int(round(float(chunk_seconds) * model.sample_rate / unit)))
    if num_samples <= frames * unit:
        return num_samples, num_samples
    overlap_frames = int(frames * float(overlap))
    if overlap > 0 and frames > 1:
        overlap_frames = min(max(overlap_frames, 1), frames - 1)
    return frames * unit, (frames - overlap_frames) * unit


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _audio_array(audio):
    """Validate audio in NumPy (no backend copy of a long file): -> float32 `(items, samples)`, channels."""
    if not isinstance(audio, np.ndarray):
        from keras import ops

        audio = ops.convert_to_numpy(audio)
    if audio.dtype.kind != "f":
        raise TypeError(f"audio must be floating point, got dtype {audio.dtype}")
    if audio.ndim not in (2, 3):
        raise ValueError(
            "audio must have shape (batch, samples) or (batch, channels, samples); "
            f"got rank {audio.ndim} with shape {audio.shape}"
        )
    if min(audio.shape[:-1]) < 1:
        raise ValueError(f"audio has an empty batch or channel axis: shape {audio.shape}")
    if audio.shape[-1] < 1:
        raise ValueError("audio is empty: 0 samples")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite values")
    channels = None if audio.ndim == 2 else int(audio.shape[1])
    return np.asarray(audio, dtype=np.float32).reshape(-1, audio.shape[-1]), channels


def _window(audio, item, start, size):
    """`audio[item, start:start + size]` with zeros outside the signal."""
    out = np.zeros((size,), dtype=np.float32)
    lo, hi = max(start, 0), min(start + size, audio.shape[-1])
    if hi > lo:
        out[lo - start : hi - start] = audio[item, lo:hi]
    return out


def _batches(pairs, batch_size):
    for i in range(0, len(pairs), batch_size):
        yield pairs[i : i + batch_size]


def encode_long(model, audio, chunk_seconds=10.0, overlap=0.25, batch_size=1, progress=None, like=None):
    """Encode audio of any length chunk by chunk.

    Args:
        model: a `LinCAE`.
        audio: float `(batch, samples)` or `(batch, channels, samples)` at `model.sample_rate`
            (NumPy or backend tensor). Channels are encoded independently.
        chunk_seconds: float or None, 10.0. Chunk span, rounded to whole latent frames; None
            encodes everything as one chunk (identical to `LinCAE.autoencode`'s framing).
        overlap: float in [0, 1), 0.25. Fraction of a chunk crossfaded with the next one.
        batch_size: int, 1. Chunk windows per model call (bounds peak memory).
        progress: optional callable `progress(stage, done, total)` called with stage `"encode"`
            after every batch (`done`, `total` count chunk windows).
        like: optional `ChunkedLatents` of audio with the same number of samples; its chunking
            is reused (instead of `chunk_seconds` and `overlap`), so the two can be combined.
    Returns:
        `ChunkedLatents`; `latents` is `(batch, chunks, frames, C)` or
        `(batch, channels, chunks, frames, C)`.
    """
    items, channels = _audio_array(audio)
    batch_size = _check_batch_size(batch_size)
    num_items, length = items.shape
    if like is None:
        chunk, step = chunk_layout(model, length, chunk_seconds, overlap)
    elif not isinstance(like, ChunkedLatents) or like.length != length:
        raise ValueError(
            f"like must be ChunkedLatents of audio with {length} samples, got "
            f"{like.length if isinstance(like, ChunkedLatents) else type(like).__name__}"
        )
    else:
        chunk, step = like.chunk_samples, like.step_samples
    front, back = model.autoencode_padding(chunk)
    window = front + chunk + back
    frames = model.latent_length(window)
    num_chunks = _num_chunks(length, chunk, step)
    latents = np.zeros((num_items, num_chunks, frames, model.latent_channels), dtype=np.float32)
    pairs = [(c, i) for c in range(num_chunks) for i in range(num_items)]
    done = 0
    for group in _batches(pairs, batch_size):
        windows = np.zeros((batch_size, window), dtype=np.float32)  # fixed shape: one compilation
        for row, (c, i) in enumerate(group):
            windows[row] = _window(items, i, c * step - front, window)
        encoded = np.asarray(_to_numpy(model.encode(windows)))
        for row, (c, i) in enumerate(group):
            latents[i, c] = encoded[row]
        done += len(group)
        if progress is not None:
            progress("encode", done, len(pairs))
    if channels is not None:
        latents = latents.reshape((-1, channels) + latents.shape[1:])
    return ChunkedLatents(latents, length, chunk, step, int(model.sample_rate), channels)


def decode_noise(model, num_items, num_frames, seed, first_frame=0, step=0):
    """Standard-normal decoder noise for latent frames `first_frame ...` of `num_items` items.

    Shaped like `LinCAE.decode`'s `noise` argument, `(num_items, time_downsampling * num_frames,
    2 * hop_size, data_channels)`. Each latent frame's block is drawn from `(seed, item, frame)`
    (from `(seed, item, frame, step)` for the re-noising draw of sampling step `step >= 1`), so
    any window of frames gets the same values whichever call asks for it:
    `model.autoencode(audio, seed=s, noise=decode_noise(model, items, frames, s))` uses the noise
    that `decode_long(..., seed=s)` uses for every chunk.
    """
    seed = validation.check_seed(seed)
    return np.stack([_frame_noise(model, item, first_frame, num_frames, seed, step) for item in range(num_items)])


def _frame_noise(model, item, first_frame, num_frames, seed, step=0):
    """Noise of one item for latent frames `first_frame ... first_frame + num_frames - 1`."""
    block = (model.time_downsampling, 2 * model.hop_size, model.data_channels)
    out = np.empty((num_frames,) + block, dtype=np.float32)
    for frame in range(num_frames):
        key = [seed % (1 << 64), item, first_frame + frame] + ([step] if step else [])
        out[frame] = np.random.default_rng(key).standard_normal(block, dtype=np.float32)
    return out.reshape((num_frames * block[0],) + block[1:])


def _to_numpy(tensor):
    from keras import ops

    return ops.convert_to_numpy(tensor)


def decode_long(model, chunked_latents, steps=1, seed=None, batch_size=1, length=None, progress=None):
    """Decode `ChunkedLatents` back to audio, stitching chunks with a linear crossfade.

    Every chunk window is decoded and cropped to its span; over each overlap the earlier chunk
    fades out and the later one fades in along linear ramps that sum to one, as in the
    official overlap-add. The first decoder noise comes from `decode_noise` (shared by
    overlapping chunks); with `steps > 1` the later re-noising draws come from `LinCAE.decode`'s
    own seed handling and differ between chunks.

    Args:
        model: the `LinCAE` that encoded the latents (or one with the same architecture).
        chunked_latents: `ChunkedLatents` from `encode_long` (or from latent arithmetic on it).
        steps: int, 1. Consistency sampling steps.
        seed: int or None. Noise seed; None draws a fresh one.
        batch_size: int, 1. Chunk windows per model call.
        length: int or None. Samples to return (at most the encoded length); None returns
            `chunked_latents.length`.
        progress: optional callable `progress("decode", done, total)`.
    Returns:
        float32 NumPy audio `(batch, length)` or `(batch, channels, length)`.
    """
    blocks = decode_long_blocks(model, chunked_latents, steps, seed, batch_size, length, progress)
    out = np.empty(chunked_latents.latents.shape[:-3] + (length or chunked_latents.length,), np.float32)
    done = 0
    for block in blocks:
        out[..., done : done + block.shape[-1]] = block
        done += block.shape[-1]
    return out


def decode_long_blocks(model, chunked_latents, steps=1, seed=None, batch_size=1, length=None, progress=None):
    """`decode_long`'s audio as it is decoded, in order: an iterator of float32 blocks
    `(batch, n)` or `(batch, channels, n)` whose concatenation is `decode_long`'s output.

    Arguments as in `decode_long` (checked before this returns). A block is yielded after each
    model call, holding every sample no later chunk overlaps; only the audio of about
    `batch_size / items + 1` chunks is kept, so memory does not grow with the length.
    """
    if not isinstance(chunked_latents, ChunkedLatents):
        raise TypeError(
            f"decode_long needs the ChunkedLatents returned by encode_long, got {type(chunked_latents).__name__}"
        )
    chunked_latents.check()
    steps = validation.check_steps(steps)
    batch_size = _check_batch_size(batch_size)
    seed = int(np.random.SeedSequence().entropy % (validation.MAX_SEED + 1)) if seed is None else validation.check_seed(seed)
    if chunked_latents.sample_rate != model.sample_rate:
        raise ValueError(
            f"latents describe {chunked_latents.sample_rate} Hz audio, the model runs at {model.sample_rate} Hz"
        )
    if length is None:
        length = chunked_latents.length
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not (
        1 <= length <= chunked_latents.length
    ):
        raise ValueError(f"length must be an integer in [1, {chunked_latents.length}], got {length!r}")
    chunk, step = chunked_latents.chunk_samples, chunked_latents.step_samples
    num_chunks, frames, latent_channels = chunked_latents.latents.shape[-3:]
    if latent_channels != model.latent_channels:
        raise ValueError(
            f"latents have {latent_channels} channels on the last axis, this model expects {model.latent_channels}"
        )
    front, back = model.autoencode_padding(chunk)
    if model.latent_length(front + chunk + back) != frames:
        raise ValueError(
            f"chunks of {chunk} samples need {model.latent_length(front + chunk + back)} latent frames "
            f"with this model, the latents have {frames}"
        )
    if num_chunks > 1 and step % model.samples_per_latent:
        raise ValueError(f"step_samples must be a multiple of {model.samples_per_latent}, got {step}")
    return _decoded_blocks(model, chunked_latents, steps, seed, batch_size, int(length), progress)


def _decoded_blocks(model, chunked_latents, steps, seed, batch_size, length, progress):
    """The generator behind `decode_long_blocks` (arguments already checked)."""
    chunk, step = chunked_latents.chunk_samples, chunked_latents.step_samples
    lead = chunked_latents.latents.shape[:-3]
    items = chunked_latents.latents.reshape((-1,) + chunked_latents.latents.shape[-3:])
    num_items, num_chunks, frames, latent_channels = items.shape
    front = model.autoencode_padding(chunk)[0]
    fade = chunk - step
    ramp_in = (np.arange(fade, dtype=np.float32) + 0.5) / max(fade, 1)
    step_frames = step // model.samples_per_latent
    needed = min(num_chunks, -(-length // step))  # chunks that start before `length`
    pairs = [(c, i) for c in range(needed) for i in range(num_items)]
    pending = np.zeros((num_items, 0), np.float32)  # summed audio from sample `emitted` on
    emitted = done = 0
    for group in _batches(pairs, batch_size):
        z = np.zeros((batch_size, frames, latent_channels), dtype=np.float32)
        noise = np.zeros(
            (batch_size, frames * model.time_downsampling, 2 * model.hop_size, model.data_channels),
            dtype=np.float32,
        )
        for row, (c, i) in enumerate(group):
            z[row] = items[i, c]
            noise[row] = _frame_noise(model, i, c * step_frames, frames, seed)
        decoded = _to_numpy(model.decode(z, steps=steps, seed=seed % (1 << 31), noise=noise))
        for row, (c, i) in enumerate(group):
            piece = np.array(decoded[row, front : front + chunk], dtype=np.float32)
            if fade and c > 0:
                piece[:fade] *= ramp_in
            if fade and c < num_chunks - 1:
                piece[-fade:] *= ramp_in[::-1]
            start = c * step - emitted
            stop = min(c * step + chunk, length) - emitted
            if stop > pending.shape[1]:
                pending = np.pad(pending, ((0, 0), (0, stop - pending.shape[1])))
            if stop > start:
                pending[i, start:stop] += piece[: stop - start]
        done += len(group)
        if progress is not None:
            progress("decode", done, len(pairs))
        finished = (done // num_items) * step if done < len(pairs) else length  # the next chunk starts there
        count = max(0, min(finished, length) - emitted)
        yield pending[:, :count].reshape(lead + (count,))
        pending, emitted = pending[:, count:], emitted + count
