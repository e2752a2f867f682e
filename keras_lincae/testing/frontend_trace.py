"""The frontend traced with unknown lengths (as the SavedModel export traces it) against its
static path, on TensorFlow.

Usage: `python -m keras_lincae.testing.frontend_trace AUDIO.npy` (KERAS_BACKEND=tensorflow)
prints `relative_error=<float>`.
"""

import sys

import numpy as np

from keras_lincae.layers.frontend import ScaledComplexSTFT

HOP = 128


def traced_frontend_error(audio):
    """`(2, samples)` audio -> max |traced - static| / max |static| of the inverse STFT after
    checking that the traced and static representations are identical."""
    import tensorflow as tf

    fe = ScaledComplexSTFT(hop_size=HOP, n_fft_factor=4, alpha_rescale=0.65, beta_rescale=0.34, sample_rate=44100)
    fwd = tf.function(fe.to_representation, input_signature=[tf.TensorSpec((None, None), tf.float32)])
    inv = tf.function(fe.to_waveform, input_signature=[tf.TensorSpec((None, None, 2 * HOP, 2), tf.float32)])
    rep, static_rep = fwd(audio).numpy(), fe.to_representation(audio).numpy()
    assert rep.shape == static_rep.shape == (2, fe.num_frames(audio.shape[1]), 2 * HOP, 2), rep.shape
    assert np.array_equal(rep, static_rep)
    wave, static_wave = inv(rep).numpy(), fe.to_waveform(rep).numpy()
    assert wave.shape == static_wave.shape == (2, fe.num_samples(rep.shape[1])), wave.shape
    return float(np.abs(wave - static_wave).max() / np.abs(static_wave).max())


if __name__ == "__main__":
    print(f"relative_error={traced_frontend_error(np.load(sys.argv[1]))!r}")
