"""Shared test data and weight helpers: non-trivial random weights, tensors to NumPy, music-like audio."""

import keras
import numpy as np


def randomize_weights(model, seed=0):
    """Give every weight of `model` (a layer or model) a non-trivial value; returns `model`.

    The default init zeroes many output layers; norm gains (`gamma`) and the encoder's
    `freq_gain` get `1 + 0.1 N(0, 1)`, every other weight `N(0, 1) / sqrt(fan_in)`.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "gamma" in variable.path or "freq_gain" in variable.path:
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 16
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        variable.assign(value.astype("float32"))
    return model


def to_numpy(x):
    """A backend tensor (or array) as a NumPy array."""
    return keras.ops.convert_to_numpy(x)


def music_like(num_samples, batch=1, seed=0, sample_rate=44100):
    """Band-limited test audio: a few decaying harmonic notes plus soft noise, `(batch, samples)`."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    out = np.zeros((batch, num_samples))
    for b in range(batch):
        for _ in range(3):
            f0 = rng.uniform(80, 800)
            for h in range(1, 5):
                out[b] += rng.uniform(0.02, 0.1) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6))
        out[b] *= np.exp(-t * rng.uniform(0.5, 3))
        noise = rng.standard_normal(num_samples + 3)
        out[b] += 0.002 * (noise[3:] + 3 * noise[2:-1] + 3 * noise[1:-2] + noise[:-3])  # no Nyquist content
    return out.astype("float32")
