"""Audio metrics in plain NumPy (float64), with the settings of the official evaluation.

SI-SDR and SNR are not zero-mean and use ``eps = 1e-8`` as auraloss does; MR-STFT is auraloss'
``MultiResolutionSTFTLoss`` with its defaults; relative L2 is ``|p - t| / (|t| + 1e-8)``. Audio
is ``(batch, samples)`` or ``(samples,)``; per-example metrics return ``(batch,)``, or a scalar
for 1-D input. ``keras_lincae.evaluation.linearity`` scores an encoder/decoder pair with them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from keras_lincae.evaluation.checks import audio_pair, check_audible_reference, check_same_shape
from keras_lincae.evaluation.checks import float_array, unbatch

EPS = 1e-8
MRSTFT_FFT_SIZES = (1024, 2048, 512)
MRSTFT_HOP_SIZES = (120, 240, 50)
MRSTFT_WIN_LENGTHS = (600, 1200, 240)
MAG_SNR_FFT_SIZE = 2048  # the STFT of magnitude_snr
MAG_SNR_HOP = 512


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
    est, ref, was_1d = audio_pair(estimate, reference)
    check_audible_reference(ref)
    alpha = np.sum(est * ref, axis=-1) / (np.sum(ref**2, axis=-1) + eps)
    target = alpha[:, None] * ref
    noise = est - target
    ratio = np.sum(target**2, axis=-1) / (np.sum(noise**2, axis=-1) + eps)
    return unbatch(10.0 * np.log10(ratio + eps), was_1d)


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
    est, ref, was_1d = audio_pair(estimate, reference)
    check_audible_reference(ref)
    ratio = np.sum(ref**2, axis=-1) / (np.sum((est - ref) ** 2, axis=-1) + eps)
    return unbatch(10.0 * np.log10(ratio + eps), was_1d)


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


def magnitude_snr(estimate, reference, n_fft: int = MAG_SNR_FFT_SIZE, hop: int = MAG_SNR_HOP,
                  eps: float = EPS, best_gain: bool = False):
    """Magnitude-spectrogram SNR in dB (higher is better): phase-blind reconstruction quality.

    ``10 log10(sum |Y|^2 / sum (|Y| - |X|)^2)`` with ``|STFT|`` (Hann ``n_fft``, hop ``hop``,
    centred reflect padding) of the reference ``Y`` and the estimate ``X``. A consistency decoder
    invents phase, so this (with MR-STFT) judges its reconstructions; SI-SDR goes beside it.
    An estimate that is too quiet where it is unsure scores higher, so ``best_gain=True`` scores
    ``g |X|`` with the least-squares gain ``g = sum |X||Y| / sum |X|^2``: the spectrogram's shape
    only (read it beside `level_db`).

    Args:
        estimate, reference: ``(batch, samples)`` or ``(samples,)``, more than ``n_fft // 2`` samples.
    Returns:
        ``(batch,)`` (scalar for 1-D input).
    """
    est, ref, was_1d = audio_pair(estimate, reference)
    if est.shape[1] <= n_fft // 2:
        raise ValueError(f"signals of {est.shape[1]} samples are too short for FFT size {n_fft}.")
    values = np.empty(est.shape[0])
    for b in range(est.shape[0]):
        x_mag = _stft_magnitude(est[b], n_fft, hop, n_fft, 0.0)
        y_mag = _stft_magnitude(ref[b], n_fft, hop, n_fft, 0.0)
        if best_gain:
            x_mag = x_mag * (np.sum(x_mag * y_mag) / (np.sum(x_mag**2) + eps))
        values[b] = 10.0 * np.log10((np.sum(y_mag**2) + eps) / (np.sum((y_mag - x_mag) ** 2) + eps))
    return unbatch(values, was_1d)


def level_db(estimate, reference, eps: float = EPS):
    """RMS level of ``estimate`` relative to ``reference`` in dB (0: as loud; no better direction).

    Args:
        estimate, reference: ``(batch, samples)`` or ``(samples,)``.
    Returns:
        ``(batch,)`` (scalar for 1-D input).
    """
    est, ref, was_1d = audio_pair(estimate, reference)
    return unbatch(10.0 * np.log10((np.mean(est**2, axis=1) + eps) / (np.mean(ref**2, axis=1) + eps)), was_1d)


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
    est, ref, was_1d = audio_pair(estimate, reference)
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
    return unbatch(total / len(fft_sizes), was_1d)


def relative_l2_error(prediction, target, eps: float = EPS):
    """``|prediction - target| / (|target| + eps)`` over all non-batch axes.

    Args:
        prediction, target: ``(batch, ...)`` of equal shape.

    Returns:
        ``(batch,)``.
    """
    p = float_array(prediction, "prediction")
    t = float_array(target, "target")
    check_same_shape(p, t, "prediction", "target")
    if p.ndim < 1 or p.shape[0] == 0:
        raise ValueError(f"prediction must have a batch axis, got shape {p.shape}.")
    p = p.reshape(p.shape[0], -1)
    t = t.reshape(t.shape[0], -1)
    return np.linalg.norm(p - t, axis=-1) / (np.linalg.norm(t, axis=-1) + eps)


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
    x = float_array(values, "values").reshape(-1)
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
