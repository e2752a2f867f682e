"""Evaluation metrics for Lin-CAE (METHOD.md section 4), in plain NumPy.

Every metric works on results already brought back from the model, so it is the
same under every Keras backend. Arithmetic is float64 throughout.

Audio is ``(batch, samples)`` or ``(samples,)``. Per-example metrics return an
array of shape ``(batch,)``, or a float64 scalar when the input was 1-D.

The linearity metrics take plain callables, so any model can be scored:

* ``encode(audio)``: ``(batch, samples)`` -> latents ``(batch, ...)``;
* ``decode(latents)``: ``(batch, ...)`` -> audio ``(batch, samples')``.

Both take and return NumPy arrays; decoding must be deterministic (fixed seed),
as in the official evaluation. Decoded audio longer than the reference is
trimmed to the reference length, as the official evaluation does.

Settings follow the official evaluation (``linear_cae.metrics`` and the
``TestModelCallback`` of ``bernardo-torres/linear-autoencoders``):

* SI-SDR and SNR are not zero-mean and use ``eps = 1e-8`` as in auraloss:
  ``10 log10(|t|^2 / (|e|^2 + eps) + eps)``; a perfect copy therefore gives a
  large finite value instead of ``inf``;
* MR-STFT is auraloss' ``MultiResolutionSTFTLoss`` defaults: FFT sizes
  (1024, 2048, 512), hops (120, 240, 50), Hann windows (600, 1200, 240),
  spectral convergence + mean L1 of natural-log magnitudes, each weight 1,
  averaged over resolutions;
* relative L2 error is ``|p - t| / (|t| + 1e-8)`` over all non-batch axes;
* effective rank is ``exp(entropy(s / sum(s)))`` of the singular values of the
  (frames, channels) latent matrix, uncentred and unnormalised;
* the silence latent norm is the L2 norm over time of each latent channel of
  ``encode(zeros)``, averaged over channels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = [
    "DEFAULT_GAINS",
    "MRSTFT_FFT_SIZES",
    "MRSTFT_HOP_SIZES",
    "MRSTFT_WIN_LENGTHS",
    "si_sdr",
    "snr",
    "multi_resolution_stft_distance",
    "relative_l2_error",
    "encoder_homogeneity",
    "decoder_homogeneity",
    "encoder_additivity",
    "decoder_additivity",
    "separation_by_subtraction",
    "effective_rank",
    "silence_latent_norm",
    "mean_confidence_interval",
]

EPS = 1e-8
DEFAULT_GAINS = (0.25, 0.5, 0.75, 1.1)
MRSTFT_FFT_SIZES = (1024, 2048, 512)
MRSTFT_HOP_SIZES = (120, 240, 50)
MRSTFT_WIN_LENGTHS = (600, 1200, 240)

ArrayFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(x)):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise ValueError(
            f"{name} contains non-finite values ({n_nan} NaN, {n_inf} inf)."
        )


def _to_array(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} cannot be converted to a float array: {err}") from None
    _check_finite(arr, name)
    return arr


def _audio_batch(x, name: str) -> tuple[np.ndarray, bool]:
    """Return ``(array (batch, samples), was_1d)`` after checks."""
    arr = _to_array(x, name)
    if arr.ndim == 1:
        arr, was_1d = arr[None, :], True
    elif arr.ndim == 2:
        was_1d = False
    else:
        raise ValueError(
            f"{name} must have shape (batch, samples) or (samples,), got {arr.shape}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    return arr, was_1d


def _audio_pair(estimate, reference):
    est, est_1d = _audio_batch(estimate, "estimate")
    ref, ref_1d = _audio_batch(reference, "reference")
    if est.shape != ref.shape:
        raise ValueError(
            "estimate and reference must have the same shape, got "
            f"{np.shape(estimate)} and {np.shape(reference)}."
        )
    return est, ref, est_1d and ref_1d


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}."
        )


def _out(values: np.ndarray, was_1d: bool):
    return values[0] if was_1d else values


def _check_silent_reference(ref: np.ndarray) -> None:
    energy = np.sum(ref**2, axis=-1)
    silent = np.flatnonzero(energy == 0.0)
    if silent.size:
        raise ValueError(
            "reference is silent (all zeros) for batch item(s) "
            f"{silent.tolist()}; SI-SDR/SNR are undefined there. Drop silent clips "
            "before scoring."
        )


def _gains(gains: Sequence[float]) -> np.ndarray:
    g = np.asarray(gains, dtype=np.float64).reshape(-1)
    if g.size == 0:
        raise ValueError("gains must contain at least one value.")
    _check_finite(g, "gains")
    return g


def _call(fn: ArrayFn, x: np.ndarray, name: str) -> np.ndarray:
    out = _to_array(fn(x), name)
    if out.ndim == 0 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must keep the batch axis first (batch {x.shape[0]}), "
            f"got shape {out.shape}."
        )
    return out


def _decode(decode: ArrayFn, z: np.ndarray, n_samples: int | None, name: str):
    """Decode ``z`` to (batch, samples), trimmed to ``n_samples`` if given."""
    y = _call(decode, z, name)
    if y.ndim != 2:
        raise ValueError(f"{name} must return audio of shape (batch, samples), got {y.shape}.")
    if n_samples is not None:
        if y.shape[1] < n_samples:
            raise ValueError(
                f"{name} returned {y.shape[1]} samples, fewer than the "
                f"{n_samples} of the reference."
            )
        y = y[:, :n_samples]
    return y


# --------------------------------------------------------------------------
# Signal metrics
# --------------------------------------------------------------------------


def si_sdr(estimate, reference, eps: float = EPS):
    """Scale-invariant SDR in dB (not zero-mean, official/auraloss form).

    Args:
        estimate, reference: ``(batch, samples)`` or ``(samples,)``.
        eps: stabiliser; a perfect copy scores about ``10 log10(|s|^2 / eps)``.

    Returns:
        ``(batch,)`` (scalar for 1-D input).

    Raises:
        ValueError: shape mismatch, NaN/inf, or an all-zero reference.
    """
    est, ref, was_1d = _audio_pair(estimate, reference)
    _check_silent_reference(ref)
    alpha = np.sum(est * ref, axis=-1) / (np.sum(ref**2, axis=-1) + eps)
    target = alpha[:, None] * ref
    noise = est - target
    ratio = np.sum(target**2, axis=-1) / (np.sum(noise**2, axis=-1) + eps)
    return _out(10.0 * np.log10(ratio + eps), was_1d)


def snr(estimate, reference, eps: float = EPS):
    """Signal-to-noise ratio in dB (not zero-mean, official/auraloss form).

    Args:
        estimate, reference: ``(batch, samples)`` or ``(samples,)``.
        eps: stabiliser; a perfect copy scores about ``10 log10(|s|^2 / eps)``.

    Returns:
        ``(batch,)`` (scalar for 1-D input).

    Raises:
        ValueError: shape mismatch, NaN/inf, or an all-zero reference.
    """
    est, ref, was_1d = _audio_pair(estimate, reference)
    _check_silent_reference(ref)
    ratio = np.sum(ref**2, axis=-1) / (np.sum((est - ref) ** 2, axis=-1) + eps)
    return _out(10.0 * np.log10(ratio + eps), was_1d)


def _hann_periodic(n: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _stft_magnitude(x: np.ndarray, n_fft: int, hop: int, win_length: int, eps: float):
    """|STFT| of a 1-D signal, centred with reflect padding; ``(frames, bins)``."""
    window = np.zeros(n_fft)
    left = (n_fft - win_length) // 2
    window[left : left + win_length] = _hann_periodic(win_length)
    pad = n_fft // 2
    padded = np.pad(x, pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spec = np.fft.rfft(frames * window, axis=-1)
    return np.sqrt(np.maximum(spec.real**2 + spec.imag**2, eps))


def magnitude_snr(estimate, reference, n_fft: int = 2048, hop: int = 512, eps: float = EPS):
    """Magnitude-spectrogram SNR in dB (higher is better): phase-blind reconstruction quality.

    ``10 log10(sum |Y|^2 / sum (|Y| - |X|)^2)`` with ``|STFT|`` (Hann ``n_fft``, hop ``hop``,
    centred reflect padding) of the reference ``Y`` and the estimate ``X``. A consistency decoder
    invents phase, so this (with MR-STFT) judges its reconstructions; SI-SDR goes beside it.

    Args:
        estimate, reference: ``(batch, samples)`` or ``(samples,)``, more than ``n_fft // 2`` samples.
    Returns:
        ``(batch,)`` (scalar for 1-D input).
    """
    est, ref, was_1d = _audio_pair(estimate, reference)
    if est.shape[1] <= n_fft // 2:
        raise ValueError(f"signals of {est.shape[1]} samples are too short for FFT size {n_fft}.")
    values = np.empty(est.shape[0])
    for b in range(est.shape[0]):
        x_mag = _stft_magnitude(est[b], n_fft, hop, n_fft, 0.0)
        y_mag = _stft_magnitude(ref[b], n_fft, hop, n_fft, 0.0)
        values[b] = 10.0 * np.log10((np.sum(y_mag**2) + eps) / (np.sum((y_mag - x_mag) ** 2) + eps))
    return _out(values, was_1d)


def multi_resolution_stft_distance(
    estimate,
    reference,
    fft_sizes: Sequence[int] = MRSTFT_FFT_SIZES,
    hop_sizes: Sequence[int] = MRSTFT_HOP_SIZES,
    win_lengths: Sequence[int] = MRSTFT_WIN_LENGTHS,
    w_sc: float = 1.0,
    w_log_mag: float = 1.0,
    w_lin_mag: float = 0.0,
    eps: float = EPS,
    pool_spectral_convergence: bool = False,
):
    """Multi-resolution STFT distance (lower is better), official settings.

    Per resolution: ``w_sc * |Y - X|_F / |Y|_F + w_log_mag * mean|log X - log Y|
    + w_lin_mag * mean|X - Y|`` with ``X = sqrt(max(|STFT(estimate)|^2, eps))``
    (Hann window, centred reflect padding); averaged over resolutions.

    Args:
        estimate, reference: ``(batch, samples)`` or ``(samples,)``; ``samples``
            must exceed ``max(fft_sizes) // 2``.
        pool_spectral_convergence: if True, the spectral-convergence norms are
            taken over the whole batch (as the official torch metric does, so
            its per-example values depend on the batch); default per example.

    Returns:
        ``(batch,)`` (scalar for 1-D input).
    """
    est, ref, was_1d = _audio_pair(estimate, reference)
    if not (len(fft_sizes) == len(hop_sizes) == len(win_lengths)) or not fft_sizes:
        raise ValueError("fft_sizes, hop_sizes and win_lengths must be non-empty and equally long.")
    n_samples = est.shape[1]
    if n_samples <= max(fft_sizes) // 2:
        raise ValueError(
            f"signals of {n_samples} samples are too short for FFT size "
            f"{max(fft_sizes)} (need more than {max(fft_sizes) // 2})."
        )
    batch = est.shape[0]
    total = np.zeros(batch)
    for n_fft, hop, win in zip(fft_sizes, hop_sizes, win_lengths):
        if win > n_fft or hop <= 0:
            raise ValueError(f"bad resolution: fft {n_fft}, hop {hop}, window {win}.")
        sc_num = np.zeros(batch)
        sc_den = np.zeros(batch)
        log_term = np.zeros(batch)
        lin_term = np.zeros(batch)
        for b in range(batch):
            x_mag = _stft_magnitude(est[b], n_fft, hop, win, eps)
            y_mag = _stft_magnitude(ref[b], n_fft, hop, win, eps)
            sc_num[b] = np.sum((y_mag - x_mag) ** 2)
            sc_den[b] = np.sum(y_mag**2)
            log_term[b] = np.mean(np.abs(np.log(x_mag) - np.log(y_mag)))
            lin_term[b] = np.mean(np.abs(x_mag - y_mag))
        if pool_spectral_convergence:
            sc = np.full(batch, np.sqrt(sc_num.sum()) / np.sqrt(sc_den.sum()))
        else:
            sc = np.sqrt(sc_num) / np.sqrt(sc_den)
        total += w_sc * sc + w_log_mag * log_term + w_lin_mag * lin_term
    return _out(total / len(fft_sizes), was_1d)


def relative_l2_error(prediction, target, eps: float = EPS):
    """``|prediction - target| / (|target| + eps)`` over all non-batch axes.

    Args:
        prediction, target: ``(batch, ...)`` of equal shape.

    Returns:
        ``(batch,)``.
    """
    p = _to_array(prediction, "prediction")
    t = _to_array(target, "target")
    _same_shape(p, t, "prediction", "target")
    if p.ndim < 1 or p.shape[0] == 0:
        raise ValueError(f"prediction must have a batch axis, got shape {p.shape}.")
    p = p.reshape(p.shape[0], -1)
    t = t.reshape(t.shape[0], -1)
    return np.linalg.norm(p - t, axis=-1) / (np.linalg.norm(t, axis=-1) + eps)


# --------------------------------------------------------------------------
# Linearity metrics
# --------------------------------------------------------------------------


def encoder_homogeneity(encode: ArrayFn, audio, gains: Sequence[float] = DEFAULT_GAINS):
    """Relative L2 error of ``Enc(a x)`` vs ``a Enc(x)`` (lower is better).

    Args:
        encode: audio ``(batch, samples)`` -> latents ``(batch, ...)``.
        audio: ``(batch, samples)`` or ``(samples,)``.
        gains: the gains ``a``.

    Returns:
        ``(n_gains, batch)`` (``(n_gains,)`` for 1-D audio).
    """
    x, was_1d = _audio_batch(audio, "audio")
    g = _gains(gains)
    z = _call(encode, x, "encode(audio)")
    out = np.stack(
        [relative_l2_error(_call(encode, a * x, f"encode({a:g} * audio)"), a * z) for a in g]
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
    z = _to_array(latents, "latents")
    if z.ndim < 2:
        raise ValueError(f"latents must have shape (batch, ...), got {z.shape}.")
    g = _gains(gains)
    y = _decode(decode, z, n_samples, "decode(latents)")
    rows = []
    for a in g:
        y_a = _decode(decode, a * z, n_samples, f"decode({a:g} * latents)")
        _same_shape(y_a, y, f"decode({a:g} * latents)", "decode(latents)")
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
    u, u_1d = _audio_batch(u, "u")
    v, _ = _audio_batch(v, "v")
    _same_shape(u, v, "u", "v")
    z_sum = _call(encode, u, "encode(u)") + _call(encode, v, "encode(v)")
    z_mix = _call(encode, u + v, "encode(u + v)")
    return _out(relative_l2_error(z_sum, z_mix), u_1d)


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
    u, u_1d = _audio_batch(u, "u")
    v, _ = _audio_batch(v, "v")
    _same_shape(u, v, "u", "v")
    n = u.shape[1]
    mix = u + v
    z_u = _call(encode, u, "encode(u)")
    z_v = _call(encode, v, "encode(v)")
    z_mix = _call(encode, mix, "encode(u + v)")
    dec_sum = _decode(decode, z_u + z_v, n, "decode(z_u + z_v)")
    dec_mix = _decode(decode, z_mix, n, "decode(z_{u+v})")
    return {
        "mrstft": _out(multi_resolution_stft_distance(dec_sum, dec_mix, **mrstft_kwargs), u_1d),
        "si_sdr": _out(si_sdr(dec_sum, mix), u_1d),
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
    mix, was_1d = _audio_batch(mixture, "mixture")
    acc, _ = _audio_batch(accompaniment, "accompaniment")
    tgt, _ = _audio_batch(target, "target")
    _same_shape(mix, acc, "mixture", "accompaniment")
    _same_shape(mix, tgt, "mixture", "target")
    z = _call(encode, mix, "encode(mixture)") - _call(encode, acc, "encode(accompaniment)")
    est = _decode(decode, z, mix.shape[1], "decode(z_mix - z_acc)")
    return {
        "si_sdr": _out(si_sdr(est, tgt), was_1d),
        "mrstft": _out(multi_resolution_stft_distance(est, tgt, **mrstft_kwargs), was_1d),
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
    z = _to_array(latents, "latents")
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
    z = _call(encode, x, "encode(silence)")
    if z.ndim < 2:
        raise ValueError(f"encode(silence) must return (batch, ...), got shape {z.shape}.")
    z = np.moveaxis(z, channel_axis, -1)
    z = z.reshape(z.shape[0], -1, z.shape[-1])  # (1, time, channels)
    return float(np.mean(np.linalg.norm(z, axis=1)))


# --------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------


def mean_confidence_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of a Student-t confidence interval.

    Args:
        values: any shape; flattened.
        confidence: in (0, 1).

    Returns:
        ``(mean, half_width)``; ``half_width`` is NaN for a single value.
    """
    from scipy import stats

    x = _to_array(values, "values").reshape(-1)
    if x.size == 0:
        raise ValueError("values is empty.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    mean = float(np.mean(x))
    n = x.size
    if n == 1:
        return mean, float("nan")
    sem = np.std(x, ddof=1) / np.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * sem)
    return mean, half
