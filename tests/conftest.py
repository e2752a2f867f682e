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

from keras_lincae.testing.helpers import randomize_weights  # noqa: E402


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_model():
    from keras_lincae import LinCAE

    model = LinCAE.from_preset("lin_cae_tiny", load_weights=False)
    return randomize_weights(model, seed=0)
