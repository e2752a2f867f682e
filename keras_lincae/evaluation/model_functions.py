"""A ``LinCAE`` as deterministic, cached NumPy ``encode`` / ``decode`` callables.

These are what ``keras_lincae.evaluation.linearity`` takes: the same zero padding as
``LinCAE.autoencode`` (or the chunked encode / decode of ``keras_lincae.long_audio``), one fixed
starting noise per latent length, fixed-size model calls (one compiled function per clip length)
and a cache so every metric reuses the same model calls.
"""

from __future__ import annotations

import hashlib

import keras
import numpy as np

from keras_lincae.backend_dispatch import compiles_per_input_shape
from keras_lincae.evaluation.linearity import DEFAULT_GAINS
from keras_lincae.evaluation.registry import METRIC_GROUPS
from keras_lincae.long_audio import ChunkedLatents, decode_long, encode_long


def _key(tag, x):
    """A cache key: ``tag`` with the shape, dtype and bytes of ``x``."""
    x = np.ascontiguousarray(x)
    return (tag, x.shape, x.dtype.str, hashlib.sha1(x.view(np.uint8)).hexdigest())


class ModelFunctions:
    """A ``LinCAE`` as the NumPy ``encode`` / ``decode`` callables ``keras_lincae.evaluation.metrics`` takes.

    * ``encode(audio (batch, n))`` pads the audio as ``LinCAE.autoencode`` does and returns the
      latents ``(batch, frames, channels)`` as float64;
    * ``decode(latents)`` returns float64 audio starting at the first input sample, at least as
      long as the encoded clip (the metrics trim it to the reference length). Every decode uses
      the same standard-normal starting noise per latent length (drawn with NumPy from ``seed``),
      shared by all batch items, so a clip's decode does not depend on the batch it is in (for
      ``steps > 1`` later noise draws come from ``seed`` per call, as ``LinCAE.decode`` does);
    * calls run in chunks of ``batch_size`` items; on JAX and TensorFlow the last chunk is padded
      with zeros to the full size, so each clip length compiles one function per direction
      (eager PyTorch needs no padding);
    * results are cached by the bytes of their input, and ``prefetch`` computes everything one
      evaluation batch needs in two batched calls (with ``steps=1``);
    * ``affine=True`` measures in coordinates centred on the encoding of silence: ``encode``
      returns ``Enc(x) - Enc(0)`` and ``decode(z)`` decodes ``z + Enc(0)`` (the affine latent
      arithmetic of ``keras_lincae.arithmetic``); reconstructions are unchanged;
    * ``chunk_seconds`` scores what ``lincae`` gives for long audio: clips are encoded with
      ``encode_long`` (latents ``(batch, chunks, frames, channels)``) and decoded with
      ``decode_long``, one item at a time so that every item decodes from the same noise.

    Args:
        model: a ``LinCAE``.
        steps: int, 1. Decoding steps.
        seed: int, 0. Seed of the decoding noise.
        batch_size: int, 8. Items per model call.
        affine: bool, False. Latents relative to ``Enc(silence)``.
        chunk_seconds: float or None. Encode and decode in chunks of this span (crossfaded as
            ``encode_long`` does by default); None: the whole clip in one model call.
    """

    def __init__(self, model, steps=1, seed=0, batch_size=8, affine=False, chunk_seconds=None):
        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.steps, self.seed, self.batch_size = int(steps), int(seed), int(batch_size)
        self.front = int(model.autoencode_padding(1)[0])
        self._pad_chunks = compiles_per_input_shape()
        self.affine = bool(affine)
        self.chunk_seconds = chunk_seconds
        self._layouts = {}  # chunks -> the longest ChunkedLatents layout encoded with that many
        self._cache = {}
        self._noise = {}
        self._origins = {}
        self.calls = {"encode": 0, "decode": 0}

    @property
    def sample_rate(self):
        return int(self.model.sample_rate)

    def clear_cache(self):
        self._cache.clear()

    # -- raw chunked model calls
    def _chunks(self, x, fn):
        n, b = x.shape[0], self.batch_size
        outs = []
        for i in range(0, n, b):
            part = x[i : i + b]
            pad = b - part.shape[0] if self._pad_chunks else 0
            if pad:
                part = np.concatenate([part, np.zeros((pad, *part.shape[1:]), part.dtype)])
            y = np.asarray(fn(part))
            outs.append(y[: y.shape[0] - pad])
        return np.concatenate(outs).astype(np.float64)

    def _encode_chunked(self, audio):
        chunked = encode_long(self.model, audio, self.chunk_seconds, batch_size=self.batch_size)
        known = self._layouts.get(chunked.num_chunks)
        if known is None or known.length < chunked.length:
            self._layouts[chunked.num_chunks] = chunked
        return chunked.latents.astype(np.float64)

    def _decode_chunked(self, latents, layout):
        """``(batch, chunks, frames, channels)`` -> ``(batch, samples)``, item by item."""
        items = [
            decode_long(self.model, ChunkedLatents(z[None], layout.length, layout.chunk_samples,
                                                   layout.step_samples, layout.sample_rate),
                        steps=self.steps, seed=self.seed, batch_size=self.batch_size)
            for z in latents
        ]
        return np.concatenate(items).astype(np.float64)

    def _encode_raw(self, audio):
        x = np.asarray(audio, np.float32)
        self.calls["encode"] += 1
        if self.chunk_seconds is not None:
            latents = self._encode_chunked(x)
            return latents - self._chunked_origin(x.shape[1]) if self.affine else latents
        front, back = self.model.autoencode_padding(x.shape[1])
        x = np.pad(x, ((0, 0), (front, back)))
        latents = self._chunks(x, lambda a: keras.ops.convert_to_numpy(self.model.encode(a)))
        return latents - self.origin(latents.shape[1]) if self.affine else latents

    def origin(self, frames):
        """``Enc(silence)`` for ``frames`` latent frames, ``(1, frames, channels)`` float64."""
        if frames not in self._origins:
            silence = np.zeros((1, self.model.decoded_length(frames)), np.float32)
            latents = keras.ops.convert_to_numpy(self.model.encode(silence))
            self._origins[frames] = latents.astype(np.float64)
        return self._origins[frames]

    def _chunked_origin(self, samples):
        """``Enc(silence)`` of ``samples`` samples, chunked: ``(1, chunks, frames, channels)``."""
        key = ("chunked", samples)
        if key not in self._origins:
            self._origins[key] = self._encode_chunked(np.zeros((1, samples), np.float32))
        return self._origins[key]

    def noise(self, frames):
        """The shared starting noise for ``frames`` latent frames: ``(1, ...)`` float32."""
        if frames not in self._noise:
            m = self.model
            shape = (1, frames * m.time_downsampling, 2 * m.hop_size, m.data_channels)
            rng = np.random.default_rng([self.seed, frames])
            self._noise[frames] = rng.standard_normal(shape).astype(np.float32)
        return self._noise[frames]

    def _decode_raw(self, latents):
        self.calls["decode"] += 1
        if self.chunk_seconds is not None:
            layout = self._layouts[latents.shape[1]]
            origin = self._chunked_origin(layout.length) if self.affine else 0.0
            return self._decode_chunked(np.asarray(latents + origin, np.float32), layout)
        z = latents + self.origin(latents.shape[1]) if self.affine else latents
        z = np.asarray(z, np.float32)
        noise = self.noise(int(z.shape[1]))

        def run(part):
            tiled = np.repeat(noise, part.shape[0], axis=0)
            y = self.model.decode(part, steps=self.steps, seed=self.seed, noise=tiled)
            return keras.ops.convert_to_numpy(y)

        return self._chunks(z, run)[:, self.front :]

    # -- cached public callables
    def _cached(self, tag, x, raw):
        x = np.asarray(x, np.float64)
        key = _key(tag, x)
        if key not in self._cache:
            self._cache[key] = raw(x)
        return self._cache[key]

    def encode(self, audio):
        return self._cached("encode", audio, self._encode_raw)

    def decode(self, latents):
        return self._cached("decode", latents, self._decode_raw)

    def _fill(self, tag, arrays, raw):
        todo, seen = [], set()
        for a in arrays:
            k = _key(tag, a)
            if k not in self._cache and k not in seen:
                seen.add(k)
                todo.append((k, a))
        if not todo:
            return
        shapes = {a.shape[1:] for _, a in todo}
        if len(shapes) > 1:  # cannot be stacked: one call each
            for k, a in todo:
                self._cache[k] = raw(a)
            return
        out = raw(np.concatenate([a for _, a in todo]))
        i = 0
        for k, a in todo:
            self._cache[k] = out[i : i + a.shape[0]]
            i += a.shape[0]

    def prefetch_encode(self, arrays):
        """Encode several ``(batch, n)`` float64 arrays of one length in one batched call."""
        self._fill("encode", [np.asarray(a, np.float64) for a in arrays], self._encode_raw)

    def prefetch_decode(self, arrays):
        """Decode several latent arrays in one batched call (``steps=1`` only; else no-op)."""
        if self.steps == 1:
            self._fill("decode", [np.asarray(a, np.float64) for a in arrays], self._decode_raw)

    def prefetch(self, mixture, target, accompaniment, gains=DEFAULT_GAINS, groups=None):
        """Compute, in two batched calls, the encodes and decodes ``evaluate_batch`` will ask for.

        The arrays are built exactly as ``keras_lincae.evaluation.metrics`` builds them (float64), so the
        metric functions find them in the cache. ``groups``: the metric groups to prepare for
        (default all).
        """
        groups = set(METRIC_GROUPS if groups is None else groups)
        x, u, v = (np.asarray(a, np.float64) for a in (mixture, target, accompaniment))
        g = np.asarray(gains, np.float64).reshape(-1)
        additivity = groups & {"encoder_additivity", "decoder_additivity"}
        enc = [x]
        if "encoder_homogeneity" in groups:
            enc += [a * x for a in g]
        if additivity:
            enc += [u, v, u + v]
        elif "separation" in groups:
            enc += [v]
        self.prefetch_encode(enc)
        z = self.encode(x)
        dec = []
        if groups & {"reconstruction", "decoder_homogeneity"}:
            dec.append(z)
        if "decoder_homogeneity" in groups:
            dec += [a * z for a in g]
        if "decoder_additivity" in groups:
            dec += [self.encode(u) + self.encode(v), self.encode(u + v)]
        if "separation" in groups:
            dec.append(z - self.encode(v))
        self.prefetch_decode(dec)
