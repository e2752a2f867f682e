"""The training losses: pseudo-Huber (the official consistency objective), and for the one-step
warm start (`objective="one_step_spectral"`) the phase-blind multi-resolution spectral loss, the
phase-aware complex spectral convergence and the per-clip log-energy (level) distance."""

import math

import numpy as np
from keras import ops

# (n_fft, hop) pairs: n_fft = 4 * hop, so frames are stacked hop-sized blocks (no gather).
SPECTRAL_RESOLUTIONS = ((2048, 512), (1024, 256), (512, 128), (256, 64))
SPECTRAL_POWER_FLOOR = 1e-7


def _stft(audio, n_fft, hop):
    """`(batch, samples)` -> real, imag `(batch, frames, n_fft // 2 + 1)` Hann-windowed STFT.

    Zero-padded by `n_fft - hop` on both sides so every sample lies in `n_fft / hop` frames.
    """
    pad = n_fft - hop
    audio = ops.pad(audio, ((0, 0), (pad, pad)))
    blocks_per_frame = n_fft // hop
    num_blocks = audio.shape[-1] // hop
    num_frames = num_blocks - blocks_per_frame + 1
    blocks = ops.reshape(audio[:, : num_blocks * hop], (-1, num_blocks, hop))
    frames = ops.concatenate([blocks[:, k : k + num_frames] for k in range(blocks_per_frame)], axis=-1)
    window = 0.5 - 0.5 * ops.cos(2.0 * 3.141592653589793 * ops.arange(n_fft, dtype="float32") / n_fft)
    return ops.rfft(frames * window)


def _stft_magnitude(audio, n_fft, hop):
    """`(batch, samples)` -> `(batch, frames, n_fft // 2 + 1)` |STFT|, power floored (finite gradient at 0)."""
    real, imag = _stft(audio, n_fft, hop)
    return ops.sqrt(ops.maximum(real * real + imag * imag, SPECTRAL_POWER_FLOOR))


def complex_spectral_convergence(prediction, target, n_fft=2048, hop=512):
    """`||STFT(prediction) - STFT(target)|| / ||STFT(target)||` over the whole batch (Frobenius).

    Phase-aware: a right magnitude with a wrong phase costs up to 2, silence 1, so it rewards
    phase that is coherent with the input where the latents determine it. `prediction`,
    `target`: `(batch, samples)`, same length. Returns a scalar.
    """
    xr, xi = _stft(ops.cast(prediction, "float32"), n_fft, hop)
    yr, yi = _stft(ops.cast(target, "float32"), n_fft, hop)
    error = ops.sum(ops.square(yr - xr) + ops.square(yi - xi))
    return ops.sqrt(error) / ops.sqrt(ops.sum(ops.square(yr) + ops.square(yi)) + SPECTRAL_POWER_FLOOR)


def log_energy_distance(prediction, target):
    """Batch mean of `|ln E(prediction) - ln E(target)|`, `E` a clip's energy (sum of squares).

    The level error alone, phase-blind and per clip (1 dB of level is 0.23; spectral convergence
    pools the batch, so it barely sees a quiet clip's level). Energies are floored like the
    spectral powers, so silent clips stay finite. `(batch, samples)` each; returns a scalar.
    """

    def log_energy(audio):
        return ops.log(ops.sum(ops.square(ops.cast(audio, "float32")), axis=-1) + SPECTRAL_POWER_FLOOR)

    return ops.mean(ops.abs(log_energy(prediction) - log_energy(target)))


def multi_resolution_spectral_loss(prediction, target, log_weight=1.0, resolutions=SPECTRAL_RESOLUTIONS):
    """Mean over resolutions of spectral convergence + `log_weight` * mean |log|X| - log|Y||.

    Phase-blind (magnitudes only), so a decoder that invents phase is not punished
    for it. Spectral convergence pools the batch (silent clips, e.g. gain 0, stay
    finite). `prediction`, `target`: `(batch, samples)`, same length. Returns a scalar.
    """
    prediction = ops.cast(prediction, "float32")
    target = ops.cast(target, "float32")
    total = 0.0
    for n_fft, hop in resolutions:
        x = _stft_magnitude(prediction, n_fft, hop)
        y = _stft_magnitude(target, n_fft, hop)
        convergence = ops.sqrt(ops.sum(ops.square(y - x))) / ops.sqrt(ops.sum(ops.square(y)))
        log_distance = ops.mean(ops.abs(ops.log(x) - ops.log(y)))
        total = total + convergence + log_weight * log_distance
    return total / len(resolutions)


def pseudo_huber_loss(target, prediction, weights, c):
    """Official consistency loss: weighted batch mean of a pseudo-Huber on whole examples.

    Per example `i` with `D` elements: `d_i = sum((target_i - prediction_i)^2)`,
    `c' = c * sqrt(D)`, `l_i = sqrt(d_i + c'^2) - c'` (NaN -> 0), times `weights[i]`.
    `target`, `prediction`: `(batch, ...)`; `weights`: `(batch,)`. Returns a scalar.
    """
    target = ops.convert_to_tensor(target)
    prediction = ops.convert_to_tensor(prediction)
    if tuple(target.shape[1:]) != tuple(prediction.shape[1:]):
        raise ValueError(f"Shape mismatch: {target.shape} vs {prediction.shape}.")
    scaled_c = c * math.sqrt(int(np.prod(target.shape[1:])))
    squared = ops.sum(ops.square(target - prediction), axis=tuple(range(1, len(target.shape))))
    loss = ops.nan_to_num(ops.sqrt(squared + scaled_c**2) - scaled_c)
    return ops.mean(loss * ops.reshape(ops.cast(weights, loss.dtype), (-1,)))
