"""Shared helpers of test_evaluation.py and test_demo_page.py: a tiny preset, a tiny dataset,
stand-in models and a way to run the recipes in-process."""

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_recipe(name):
    """Import ``recipes/<name>.py`` as a module (recipes/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tiny_preset(folder, seed=0):
    """Save a randomly initialised ``lin_cae_tiny`` (non-trivial weights) as a preset folder."""
    from keras_lincae.testing.helpers import randomize_weights
    from keras_lincae import LinCAE

    model = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=seed)
    model.save_to_preset(os.fspath(folder))
    return Path(folder)


def make_tiny_musdb(root, num_songs=2, seconds=2.0, broken=True):
    """A MUSDB18-HQ-style folder of ``num_songs`` synthetic songs; returns the folder of songs.

    With ``broken=True`` a song without a vocals stem is added (it must be reported as skipped).
    """
    from keras_lincae.data.synth import make_synthetic_dataset

    root = Path(root)
    make_synthetic_dataset(root / "synth", num_songs=num_songs, seconds=seconds, seed=0,
                           num_test_songs=0, renderer="numpy")
    songs = root / "songs"
    shutil.copytree(root / "synth" / "train", songs)
    if broken:
        shutil.copytree(songs / "song_000", songs / "song_zz_no_vocals")
        (songs / "song_zz_no_vocals" / "vocals.wav").unlink()
    return songs


_SHARED = {}
MODELS = {}  # preset -> LinCAE, shared by the recipe runs of both test files (one compile each)


def shared_tiny_setup():
    """``(preset_dir, songs_dir)`` made once per test process (both test files use them)."""
    if "setup" not in _SHARED:
        root = Path(tempfile.mkdtemp(prefix="keras-lincae-eval-tests-"))
        atexit.register(shutil.rmtree, root, True)
        _SHARED["setup"] = (make_tiny_preset(root / "tiny_preset"), make_tiny_musdb(root / "data"))
    return _SHARED["setup"]


class LinearStandIn:
    """A linear 'autoencoder': frames of ``hop`` samples times an orthogonal matrix."""

    def __init__(self, hop=64, seed=0):
        rng = np.random.default_rng(seed)
        self.hop = hop
        self.w = np.linalg.qr(rng.standard_normal((hop, hop)))[0]

    def _frames(self, x):
        x = np.asarray(x, np.float64)
        pad = -x.shape[1] % self.hop
        return np.pad(x, ((0, 0), (0, pad))).reshape(x.shape[0], -1, self.hop)

    def encode(self, x):
        return self._frames(x) @ self.w

    def decode(self, z):
        z = np.asarray(z, np.float64)
        return (z @ self.w.T).reshape(z.shape[0], -1)


class NonLinearStandIn(LinearStandIn):
    """The same map through a saturating, offset non-linearity (not additive, not homogeneous)."""

    def encode(self, x):
        return np.tanh(8.0 * super().encode(x) + 0.1)

    def decode(self, z):
        z = np.asarray(z, np.float64)
        return super().decode(np.arctanh(np.clip(z, -0.999, 0.999)) / 8.0 + 0.02 * z**2)
