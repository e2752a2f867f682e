"""Scaled complex STFT: audio <-> the 2-channel spectrogram representation the model sees."""

import keras
import numpy as np
from keras import ops


def periodic_hann(length):
    """Periodic Hann window `(length,)` (the `torch.hann_window` / scipy `fftbins` default)."""
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype("float32")


def inverse_window(window, hop):
    """Synthesis window: `window / sum_k window[n + k*hop]**2` (steady-state normalisation)."""
    length = window.shape[0]
    overlaps = -(-length // hop)
    padded = np.pad(window.astype(np.float64) ** 2, (0, overlaps * hop - length))
    denom = np.tile(padded.reshape(overlaps, hop).sum(axis=0), overlaps)[:length]
    return (window / denom).astype("float32")


@keras.saving.register_keras_serializable(package="keras_lincae")
class ScaledComplexSTFT(keras.layers.Layer):
    """Amplitude-compressed complex STFT and its window-normalised inverse.

    Forward: plain framing (no centre padding) with a periodic Hann window of
    `n_fft_factor * hop_size` samples, keep the first `2 * hop_size` bins (the
    Nyquist bin is dropped), compress each bin to `beta * |X|**alpha * exp(i angle X)`
    and stack real and imaginary parts as 2 channels.

    Inverse: pad the Nyquist bin with zeros, undo the compression, inverse FFT,
    multiply by the synthesis window and overlap-add. The round trip is exact
    (float32 precision) except in the first and last `n_fft - hop` samples,
    and samples after the last full frame are dropped; see
    `LinCAE.autoencode` for the padding rule that returns every sample.

    Args:
        hop_size: int. Frame step in samples.
        n_fft_factor: int. Window length = `n_fft_factor * hop_size`.
        alpha_rescale: float. Magnitude exponent.
        beta_rescale: float. Magnitude gain.
        sample_rate: int. Sample rate the model expects.

    Call arguments (`to_representation`):
        audio: `(batch, samples)` float32.
    Returns `(batch, frames, 2 * hop_size, 2)` with
    `frames = (samples - n_fft) // hop_size + 1`.
    """

    def __init__(
        self,
        hop_size,
        n_fft_factor,
        alpha_rescale,
        beta_rescale,
        sample_rate,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.hop_size = int(hop_size)
        self.n_fft_factor = int(n_fft_factor)
        self.alpha_rescale = float(alpha_rescale)
        self.beta_rescale = float(beta_rescale)
        self.sample_rate = int(sample_rate)
        self.n_fft = self.hop_size * self.n_fft_factor
        self.num_bins = 2 * self.hop_size
        window = periodic_hann(self.n_fft)
        self._analysis_window = window
        self._synthesis_window = inverse_window(window, self.hop_size)

    def build(self, input_shape=None):
        self.built = True

    def num_frames(self, num_samples):
        """Frames produced for `num_samples` samples (0 when too short)."""
        return max(0, (int(num_samples) - self.n_fft) // self.hop_size + 1)

    def num_samples(self, num_frames):
        """Samples returned by the inverse for `num_frames` frames."""
        return (int(num_frames) - 1) * self.hop_size + self.n_fft

    def _frames(self, audio):
        """`(batch, samples)` -> `(batch, frames, n_fft)` without centre padding."""
        hop, fac = self.hop_size, self.n_fft_factor
        if audio.shape[-1] is None:  # length unknown while tracing (e.g. SavedModel export)
            num_frames = ops.maximum((ops.shape(audio)[-1] - self.n_fft) // hop + 1, 0)
        else:
            num_frames = self.num_frames(audio.shape[-1])
        num_blocks = num_frames + fac - 1
        blocks = ops.reshape(audio[:, : num_blocks * hop], (-1, num_blocks, hop))
        return ops.concatenate(
            [blocks[:, k : k + num_frames] for k in range(fac)], axis=-1
        )

    def _overlap_add(self, frames):
        """`(batch, frames, n_fft)` -> `(batch, (frames - 1) * hop + n_fft)`."""
        hop, fac = self.hop_size, self.n_fft_factor
        num_frames = frames.shape[1]
        if num_frames is None:  # frame count unknown while tracing
            num_frames = ops.shape(frames)[1]
        parts = ops.reshape(frames, (-1, num_frames, fac, hop))
        total = None
        for k in range(fac):
            shifted = ops.pad(parts[:, :, k], ((0, 0), (k, fac - 1 - k), (0, 0)))
            total = shifted if total is None else total + shifted
        return ops.reshape(total, (-1, (num_frames + fac - 1) * hop))

    def _rescale(self, real, imag, exponent, gain):
        """Complex `gain * |z|**exponent * exp(i angle z)` on real/imag parts."""
        magnitude = ops.sqrt(real * real + imag * imag)
        nonzero = magnitude > 0
        safe = ops.where(nonzero, magnitude, ops.ones_like(magnitude))
        factor = ops.where(nonzero, gain * ops.power(safe, exponent - 1.0), 0.0)
        return real * factor, imag * factor

    def to_representation(self, audio):
        """`(batch, samples)` audio -> `(batch, frames, 2 * hop, 2)` representation."""
        audio = ops.cast(audio, "float32")
        frames = self._frames(audio) * self._analysis_window
        real, imag = ops.rfft(frames)
        real = real[..., : self.num_bins]
        imag = imag[..., : self.num_bins]
        real, imag = self._rescale(real, imag, self.alpha_rescale, self.beta_rescale)
        return ops.stack([real, imag], axis=-1)

    def to_waveform(self, representation):
        """`(batch, frames, 2 * hop, 2)` representation -> `(batch, samples)` audio."""
        representation = ops.cast(representation, "float32")
        real = representation[..., 0] / self.beta_rescale
        imag = representation[..., 1] / self.beta_rescale
        real, imag = self._rescale(real, imag, 1.0 / self.alpha_rescale, 1.0)
        real = ops.pad(real, ((0, 0), (0, 0), (0, 1)))
        imag = ops.pad(imag, ((0, 0), (0, 0), (0, 1)))
        frames = ops.irfft((real, imag), fft_length=self.n_fft)
        return self._overlap_add(frames * ops.convert_to_tensor(self._synthesis_window, "float32"))

    def call(self, audio):
        return self.to_representation(audio)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else self.num_frames(samples)
        return (input_shape[0], frames, self.num_bins, 2)

    def get_config(self):
        config = super().get_config()
        config.update(
            hop_size=self.hop_size,
            n_fft_factor=self.n_fft_factor,
            alpha_rescale=self.alpha_rescale,
            beta_rescale=self.beta_rescale,
            sample_rate=self.sample_rate,
        )
        return config
