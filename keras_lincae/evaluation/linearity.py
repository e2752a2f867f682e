"""Linearity of an encoder/decoder pair (METHOD.md section 4), in plain NumPy (float64).

Homogeneity, additivity, separation by latent subtraction, effective rank and the latent norm
of silence. ``encode(audio (batch, samples)) -> latents (batch, ...)`` and ``decode(latents) ->
audio (batch, samples')`` are NumPy callables with deterministic decoding; decoded audio is
trimmed to the reference length, as the official evaluation does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from keras_lincae.evaluation.checks import ArrayFn, audio_batch, call_batched, check_same_shape
from keras_lincae.evaluation.checks import decode_to, float_array, gain_array, unbatch
from keras_lincae.evaluation.metrics import multi_resolution_stft_distance, relative_l2_error
from keras_lincae.evaluation.metrics import si_sdr, snr

DEFAULT_GAINS = (0.25, 0.5, 0.75, 1.1)  # the homogeneity gains a of the official evaluation


def encoder_homogeneity(encode: ArrayFn, audio, gains: Sequence[float] = DEFAULT_GAINS):
    """Relative L2 error of ``Enc(a x)`` vs ``a Enc(x)`` (lower is better).

    Args:
        encode: audio ``(batch, samples)`` -> latents ``(batch, ...)``.
        audio: ``(batch, samples)`` or ``(samples,)``.
        gains: the gains ``a``.

    Returns:
        ``(n_gains, batch)`` (``(n_gains,)`` for 1-D audio).
    """
    x, was_1d = audio_batch(audio, "audio")
    g = gain_array(gains)
    z = call_batched(encode, x, "encode(audio)")
    out = np.stack(
        [relative_l2_error(call_batched(encode, a * x, f"encode({a:g} * audio)"), a * z) for a in g]
    )
    return out[:, 0] if was_1d else out


def decoder_homogeneity(
    decode: ArrayFn,
    latents,
    gains: Sequence[float] = DEFAULT_GAINS,
    n_samples: int | None = None,
):
    """SNR (dB) of ``Dec(a z)`` against ``a Dec(z)`` (higher is better).

    Args:
        decode: latents ``(batch, ...)`` -> audio ``(batch, samples)``.
        latents: ``(batch, ...)``, e.g. ``encode(audio)``.
        gains: the gains ``a``.
        n_samples: trim decoded audio to this length (the clip length).

    Returns:
        ``(n_gains, batch)``.
    """
    z = float_array(latents, "latents")
    if z.ndim < 2:
        raise ValueError(f"latents must have shape (batch, ...), got {z.shape}.")
    g = gain_array(gains)
    y = decode_to(decode, z, n_samples, "decode(latents)")
    rows = []
    for a in g:
        y_a = decode_to(decode, a * z, n_samples, f"decode({a:g} * latents)")
        check_same_shape(y_a, y, f"decode({a:g} * latents)", "decode(latents)")
        rows.append(snr(y_a, a * y))
    return np.stack(rows)


def encoder_additivity(encode: ArrayFn, u, v):
    """Relative L2 error of ``Enc(u) + Enc(v)`` vs ``Enc(u + v)`` (lower is better).

    Args:
        encode: audio ``(batch, samples)`` -> latents ``(batch, ...)``.
        u, v: ``(batch, samples)`` or ``(samples,)``, same shape.

    Returns:
        ``(batch,)`` (scalar for 1-D input).
    """
    u, u_1d = audio_batch(u, "u")
    v, _ = audio_batch(v, "v")
    check_same_shape(u, v, "u", "v")
    z_sum = call_batched(encode, u, "encode(u)") + call_batched(encode, v, "encode(v)")
    z_mix = call_batched(encode, u + v, "encode(u + v)")
    return unbatch(relative_l2_error(z_sum, z_mix), u_1d)


def decoder_additivity(encode: ArrayFn, decode: ArrayFn, u, v, **mrstft_kwargs):
    """Decoder additivity of ``Dec(z_u + z_v)``.

    Args:
        encode, decode: see the module docstring.
        u, v: ``(batch, samples)`` or ``(samples,)``, same shape.
        **mrstft_kwargs: passed to :func:`multi_resolution_stft_distance`.

    Returns:
        dict with ``"mrstft"``: MR-STFT of ``Dec(z_u + z_v)`` vs ``Dec(z_{u+v})``
        (lower is better) and ``"si_sdr"``: SI-SDR (dB) of ``Dec(z_u + z_v)``
        vs ``u + v``; each ``(batch,)`` (scalar for 1-D input).
    """
    u, u_1d = audio_batch(u, "u")
    v, _ = audio_batch(v, "v")
    check_same_shape(u, v, "u", "v")
    n = u.shape[1]
    mix = u + v
    z_u = call_batched(encode, u, "encode(u)")
    z_v = call_batched(encode, v, "encode(v)")
    z_mix = call_batched(encode, mix, "encode(u + v)")
    dec_sum = decode_to(decode, z_u + z_v, n, "decode(z_u + z_v)")
    dec_mix = decode_to(decode, z_mix, n, "decode(z_{u+v})")
    return {
        "mrstft": unbatch(multi_resolution_stft_distance(dec_sum, dec_mix, **mrstft_kwargs), u_1d),
        "si_sdr": unbatch(si_sdr(dec_sum, mix), u_1d),
    }


def separation_by_subtraction(
    encode: ArrayFn, decode: ArrayFn, mixture, accompaniment, target, **mrstft_kwargs
):
    """Separation by latent subtraction: ``Dec(z_mix - z_acc)`` vs ``target``.

    Args:
        encode, decode: see the module docstring.
        mixture, accompaniment, target: ``(batch, samples)`` or ``(samples,)``,
            same shape (e.g. mixture = vocals + accompaniment, target = vocals).
        **mrstft_kwargs: passed to :func:`multi_resolution_stft_distance`.

    Returns:
        dict with ``"si_sdr"`` (dB, higher is better) and ``"mrstft"`` (lower is
        better), each ``(batch,)`` (scalar for 1-D input).
    """
    mix, was_1d = audio_batch(mixture, "mixture")
    acc, _ = audio_batch(accompaniment, "accompaniment")
    tgt, _ = audio_batch(target, "target")
    check_same_shape(mix, acc, "mixture", "accompaniment")
    check_same_shape(mix, tgt, "mixture", "target")
    z = call_batched(encode, mix, "encode(mixture)") - call_batched(encode, acc, "encode(accompaniment)")
    est = decode_to(decode, z, mix.shape[1], "decode(z_mix - z_acc)")
    return {
        "si_sdr": unbatch(si_sdr(est, tgt), was_1d),
        "mrstft": unbatch(multi_resolution_stft_distance(est, tgt, **mrstft_kwargs), was_1d),
    }


# --------------------------------------------------------------------------
# Latent-space metrics
# --------------------------------------------------------------------------


def effective_rank(latents, channel_axis: int = -1) -> float:
    """Entropy effective rank (Roy & Vetterli 2007) of a set of latent frames.

    All axes but ``channel_axis`` are flattened into rows, giving a
    ``(frames, channels)`` matrix (not centred, not normalised, as official);
    with singular values ``s`` and ``p = s / sum(s)``, the result is
    ``exp(-sum p log p)`` (``0 log 0 = 0``), between 1 and ``channels``.

    Args:
        latents: ``(frames, channels)``, ``(batch, frames, channels)``, ...
        channel_axis: the channel axis (-1 for channels-last latents, 1 for
            the official ``(batch, channels, frames)``).

    Returns:
        A float.
    """
    z = float_array(latents, "latents")
    if z.ndim < 2:
        raise ValueError(f"latents must have at least 2 axes, got shape {z.shape}.")
    z = np.moveaxis(z, channel_axis, -1).reshape(-1, z.shape[channel_axis])
    s = np.linalg.svd(z, compute_uv=False)
    total = s.sum()
    if total == 0.0:
        raise ValueError("latents are all zero; the effective rank is undefined.")
    p = s / total
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def silence_latent_norm(encode: ArrayFn, n_samples: int, channel_axis: int = -1) -> float:
    """Norm of the latent of digital silence (lower is better for Lin-CAE).

    Encodes ``zeros((1, n_samples))``; takes the L2 norm of each latent channel
    over the remaining (time) axes and averages over channels, as official.

    Args:
        encode: audio ``(batch, samples)`` -> latents ``(batch, ...)``.
        n_samples: clip length in samples.
        channel_axis: the channel axis of the latents.

    Returns:
        A float.
    """
    if int(n_samples) != n_samples or n_samples <= 0:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
    x = np.zeros((1, int(n_samples)))
    z = call_batched(encode, x, "encode(silence)")
    if z.ndim < 2:
        raise ValueError(f"encode(silence) must return (batch, ...), got shape {z.shape}.")
    z = np.moveaxis(z, channel_axis, -1)
    z = z.reshape(z.shape[0], -1, z.shape[-1])  # (1, time, channels)
    return float(np.mean(np.linalg.norm(z, axis=1)))
