"""The fixed input and noise of the shipped-preset regression test (tests/data/shipped_outputs.npz)."""

import numpy as np

SECONDS = 0.5


def reference_input(sample_rate=44100):
    """`(1, samples)` float32: three decaying harmonic notes."""
    t = np.arange(int(SECONDS * sample_rate)) / sample_rate
    notes = [np.exp(-3 * t) * np.sin(2 * np.pi * f * k * t) / k for f in (220.0, 330.0, 495.0) for k in (1, 2, 3)]
    return (0.2 * np.sum(notes, axis=0))[None].astype("float32")


def reference_noise(model, latent_frames):
    """Standard-normal 1-step decode noise (seed 0) for `latent_frames` frames."""
    shape = (1, latent_frames * model.time_downsampling, 2 * model.hop_size, model.data_channels)
    return np.random.default_rng(0).standard_normal(shape).astype("float32")
