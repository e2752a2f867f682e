"""Streaming decode: latent frames in as they arrive, audio blocks out, bounded latency and memory.

`LatentStreamer` decodes windows of `chunk` latent frames that overlap by `overlap` frames and
crossfades them with `models.chunking.crossfade_weights`, the formula `LinCAE.decode` uses for
latents longer than its chunk; the last window ends on the last frame, as there. So `n` frames
streamed in packets of any sizes give the audio of `model.decode(frames, noise=decode_noise(model,
items, n, seed), max_chunk_seconds=chunk * samples_per_latent / sample_rate)` up to float
rounding (`long_audio.decode_noise` draws noise per latent frame from `(seed, item, frame)`, so
it does not depend on the packets).

Latency: the first block comes once `chunk` frames have arrived (or at `close`); from then on
the output runs `chunk` latent frames behind the input, minus `n_fft - hop_size` samples.
Memory: the last `chunk` frames (and their noise when given), one decoded window and one
overlap accumulator, whatever the stream length.

Examples:
```python
streamer = LatentStreamer(model, chunk=16, seed=0)
for packet in packets:                  # (batch, frames, latent_channels), any number of frames
    play(streamer.push(packet))         # (batch, samples), possibly 0 samples
play(streamer.close())                  # the rest
```
"""

import numpy as np
from keras import ops

from keras_lincae.long_audio import decode_noise
from keras_lincae.models import validation
from keras_lincae.models.chunking import blend, crossfade_weights, default_overlap, window_starts

__all__ = ["LatentStreamer", "stream_decode"]


class LatentStreamer:
    """Decode a stream of latent frames block by block (see the module docstring).

    Args:
        model: a `LinCAE`.
        chunk: int >= 2, 16. Latent frames per decoded window (`samples_per_latent` samples each).
        overlap: int or None. Frames shared by neighbouring windows, in [1, chunk - 1], and
            more than `(n_fft - hop_size) / samples_per_latent`; None: `default_overlap(chunk)`,
            what `LinCAE.decode` uses.
        steps: int, 1. Consistency sampling steps.
        seed: int or None. Noise seed for `decode_noise` draws; None draws a fresh one. Ignored
            when every `push` brings its own noise.

    `push(frames, noise=None)` takes `(batch, n, latent_channels)` or
    `(batch, channels, n, latent_channels)` frames (n >= 0, the same leading shape every time)
    and returns the audio that became final, `(batch, samples)` or `(batch, channels, samples)`
    float32 NumPy. `close()` returns the rest; the blocks put end to end are
    `decoded_length(total frames)` samples long.
    """

    def __init__(self, model, chunk=16, overlap=None, steps=1, seed=None):
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 2:
            raise ValueError(f"chunk must be an integer >= 2 (latent frames), got {chunk!r}")
        self.model, self.chunk = model, int(chunk)
        self.unit, self.edge = model.samples_per_latent, model.frontend.n_fft - model.hop_size
        overlap = default_overlap(self.chunk) if overlap is None else overlap
        if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or not (
            1 <= overlap < self.chunk and overlap * self.unit > self.edge
        ):
            raise ValueError(f"overlap must be an integer in [1, {self.chunk - 1}] frames covering more than "
                             f"{self.edge} samples, got {overlap!r}")
        self.overlap, self.step = int(overlap), self.chunk - int(overlap)
        self.steps = validation.check_steps(steps)
        self.seed = (int(np.random.SeedSequence().entropy % (validation.MAX_SEED + 1)) if seed is None
                     else validation.check_seed(seed))
        self._lead = None  # leading shape of the frames: (batch,) or (batch, channels)
        self._latents = None  # (items, <= chunk, C): the last frames received
        self._noise = None  # list per step of (items, time_downsampling * frames, 2 * hop, data_channels)
        self._received = 0  # frames pushed so far
        self._next = 0  # start frame of the next regular window
        self._pending = None  # (start, audio (items, span), fade-in weights (span,)) of the last window
        self._sum = self._weight = None  # accumulator of finished windows from sample `_emitted` on
        self._emitted = 0
        self._closed = False

    # ----------------------------------------------------------------------------- input
    def _check_frames(self, frames, noise):
        """-> float32 `(items, n, C)` frames and the per-step noise list (or None)."""
        frames = np.asarray(frames)
        if frames.dtype.kind != "f":
            raise TypeError(f"latent frames must be floating point, got dtype {frames.dtype}")
        if frames.ndim not in (3, 4) or frames.shape[-1] != self.model.latent_channels:
            raise ValueError(f"latent frames must have shape (batch, frames, {self.model.latent_channels}) or "
                             f"(batch, channels, frames, {self.model.latent_channels}), got {frames.shape}")
        lead = frames.shape[:-2]
        if self._lead is not None and lead != self._lead:
            raise ValueError(f"latent frames must keep the leading shape {self._lead} of the first packet, got {lead}")
        if min(lead) < 1:
            raise ValueError(f"latent frames have an empty batch or channel axis: shape {frames.shape}")
        if not np.all(np.isfinite(frames)):
            raise ValueError("latent frames contain NaN or infinite values")
        n, items = frames.shape[-2], int(np.prod(lead))
        if noise is not None:
            draws = list(noise) if isinstance(noise, (list, tuple)) else [noise]
            shape = (items, n * self.model.time_downsampling, 2 * self.model.hop_size, self.model.data_channels)
            if len(draws) != self.steps:
                raise ValueError(f"got {len(draws)} noise draws for a {self.steps}-step decode")
            draws = [np.asarray(d, np.float32).reshape((items,) + tuple(np.shape(d))[-3:]) for d in draws]
            if any(d.shape != shape or not np.all(np.isfinite(d)) for d in draws):
                raise ValueError(f"noise must be finite and shaped {shape} for these frames")
            noise = draws
        if self._received and (noise is None) != (self._noise is None):
            raise ValueError("give noise with every packet or with none")
        self._lead = lead
        return frames.astype(np.float32, copy=False).reshape((items,) + frames.shape[-2:]), noise

    def push(self, frames, noise=None):
        """Add latent frames (and optionally their noise, one draw per step); -> final audio block."""
        if self._closed:
            raise ValueError("the stream is closed")
        frames, noise = self._check_frames(frames, noise)
        first_packet = self._latents is None
        self._latents = frames if first_packet else np.concatenate([self._latents, frames], axis=1)
        if noise is not None:
            self._noise = noise if first_packet else [np.concatenate(p, axis=1) for p in zip(self._noise, noise)]
        self._received += frames.shape[1]
        while self._received >= self._next + self.chunk:
            self._add_window(self._next)
            self._next += self.step
        self._keep_last(self.chunk)
        if self._pending is None:
            return self._block(0)
        start = self._pending[0]
        # The next window starts at `_next`, or at the last chunk if the stream ends first.
        safe = max(min(self._next, self._received - self.chunk), start + 1)
        return self._block(safe * self.unit + self.edge)

    def close(self):
        """End the stream: decode the last window; -> the rest of the audio."""
        if self._closed:
            raise ValueError("the stream is closed")
        if not self._received:
            raise ValueError("no latent frames were pushed")
        total = self._received
        if self._pending is None:  # shorter than a window: one decode, as `LinCAE.decode` does
            self._add_window(0, frames=total)
        elif total - self.chunk > self._pending[0]:
            self._add_window(total - self.chunk)
        self._finish_pending(None)
        block = self._block(self.model.decoded_length(total))
        self._closed = True
        self._latents = self._noise = self._sum = self._weight = None
        return block

    # --------------------------------------------------------------------------- windows
    def _keep_last(self, frames):
        offset = self._latents.shape[1] - frames
        if offset > 0:
            self._latents = self._latents[:, offset:]
            if self._noise is not None:
                td = self.model.time_downsampling
                self._noise = [n[:, offset * td :] for n in self._noise]

    def _window_noise(self, start, frames):
        items = self._latents.shape[0]
        if self._noise is None:
            return [decode_noise(self.model, items, frames, self.seed, first_frame=start, step=k)
                    for k in range(self.steps)]
        td, offset = self.model.time_downsampling, start - (self._received - self._latents.shape[1])
        return [n[:, offset * td : (offset + frames) * td] for n in self._noise]

    def _add_window(self, start, frames=None):
        """Decode frames `start ... start + frames - 1` (default `chunk`); it becomes the pending window."""
        frames = frames or self.chunk
        offset = start - (self._received - self._latents.shape[1])
        latents = self._latents[:, offset : offset + frames]
        audio = self.model.decode(latents, steps=self.steps, noise=self._window_noise(start, frames),
                                  max_chunk_seconds=None)
        audio = np.asarray(ops.convert_to_numpy(audio), np.float32)
        previous = None if self._pending is None else self._pending[0]
        if frames < self.chunk:
            fade_in = np.ones(audio.shape[-1], np.float32)
        else:
            fade_in = crossfade_weights(start, self.chunk, self.unit, self.edge, previous=previous)
        self._finish_pending(start)
        self._pending = (start, audio, fade_in)

    def _finish_pending(self, following):
        """Give the pending window its final weights (next window at `following`) and add it."""
        if self._pending is None:
            return
        start, audio, weight = self._pending
        if following is not None:
            weight = np.minimum(weight, crossfade_weights(start, self.chunk, self.unit, self.edge,
                                                          following=following))
        offset = start * self.unit
        end = offset + audio.shape[-1]
        if self._sum is None:
            self._sum = np.zeros((audio.shape[0], 0), np.float32)
            self._weight = np.zeros((0,), np.float32)
        grow = end - self._emitted - self._sum.shape[-1]
        if grow > 0:
            self._sum = np.pad(self._sum, ((0, 0), (0, grow)))
            self._weight = np.pad(self._weight, (0, grow))
        lo, cut = max(offset - self._emitted, 0), max(self._emitted - offset, 0)  # skip what was emitted
        self._sum[:, lo:] += (audio * weight)[:, cut:]
        self._weight[lo:] += weight[cut:]
        self._pending = None

    def _block(self, stop):
        """Emit samples `_emitted ... stop - 1`: the finished windows plus the pending one."""
        items = 1 if self._latents is None else self._latents.shape[0]
        count = max(0, stop - self._emitted)
        if self._sum is None:
            self._sum, self._weight = np.zeros((items, 0), np.float32), np.zeros((0,), np.float32)
        total = np.zeros((items, count), np.float32)
        weight = np.zeros((count,), np.float32)
        have = min(count, self._sum.shape[-1])
        total[:, :have], weight[:have] = self._sum[:, :have], self._weight[:have]
        if self._pending is not None:
            start, audio, fade_in = self._pending
            lo = start * self.unit - self._emitted
            if lo < count:
                total[:, max(lo, 0):] += (audio * fade_in)[:, max(-lo, 0) : count - lo]
                weight[max(lo, 0):] += fade_in[max(-lo, 0) : count - lo]
        self._sum, self._weight = self._sum[:, have:], self._weight[have:]
        self._emitted += count
        return blend(total, weight).reshape(self._lead + (count,))

    def buffered(self):
        """`(latent frames, audio samples)` held now (bounded by `chunk` frames and about two windows)."""
        frames = 0 if self._latents is None else self._latents.shape[1]
        samples = (0 if self._sum is None else self._sum.shape[-1]) + (
            0 if self._pending is None else self._pending[1].shape[-1])
        return frames, samples


def stream_decode(model, packets, chunk=16, overlap=None, steps=1, seed=None):
    """Yield the audio blocks of `LatentStreamer` for an iterable of frame packets, then the rest."""
    streamer = LatentStreamer(model, chunk=chunk, overlap=overlap, steps=steps, seed=seed)
    for packet in packets:
        yield streamer.push(packet)
    yield streamer.close()
