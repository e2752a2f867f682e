"""Shared test setup: the backend comes from KERAS_BACKEND (jax, tensorflow or torch)."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import torch  # noqa: E402  (import torch before tensorflow, as Keras' own conftest does)

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def randomize_weights(model, seed=0):
    """Give every weight a non-trivial value (the default init zeroes many output layers)."""
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


@pytest.fixture(scope="session")
def tiny_model():
    from keras_lincae import LinCAE

    model = LinCAE.from_preset("lin_cae_tiny", load_weights=False)
    return randomize_weights(model, seed=0)


def to_numpy(x):
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
