"""The same preset gives the same numbers on jax, tensorflow and torch."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, randomize_weights, to_numpy

from keras_lincae import LinCAE

BACKENDS = ("jax", "tensorflow", "torch")


@pytest.fixture(scope="module")
def shared_case(tmp_path_factory):
    root = tmp_path_factory.mktemp("cross")
    model = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=11)
    preset = str(root / "preset")
    model.save_to_preset(preset)
    audio = music_like(14_000, batch=2, seed=12)
    latents = to_numpy(model.encode(audio))
    noise = np.random.default_rng(13).standard_normal((2, latents.shape[1] * 8, 1024, 2)).astype("float32")
    inputs = str(root / "inputs.npz")
    np.savez(inputs, audio=audio, latents=latents, noise=noise)
    here = dict(latents=latents, decoded=to_numpy(model.decode(latents, noise=noise)))
    return root, preset, inputs, here


def run_backend(backend, root, preset, inputs):
    out = str(root / f"{backend}.npz")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-m", "keras_lincae.testing.backend_outputs", preset, inputs, out], check=True,
                   env=env, timeout=600)
    return dict(np.load(out))


def test_all_backends_agree(shared_case):
    root, preset, inputs, here = shared_case
    current = keras.backend.backend()
    results = {current: here}
    for backend in BACKENDS:
        if backend != current:
            results[backend] = run_backend(backend, root, preset, inputs)
    for key in ("latents", "decoded"):
        reference = results[current][key]
        scale = np.abs(reference).max()
        assert scale > 1e-3
        for backend, result in results.items():
            error = np.abs(result[key] - reference).max() / scale
            assert error <= 1e-4, f"{key} on {backend} differs from {current} by {error:.2e}"
