import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import keras_lincae
from keras_lincae.testing import official_oracle as oracle


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    official = oracle.build_official(oracle.REDUCED_GENERATOR, seed=1)
    path = tmp_path_factory.mktemp("rel") / "1511f18a_weights"
    oracle.write_release(official, str(path), oracle.REDUCED_GENERATOR)
    return str(path)


def test_missing_files_are_named(tmp_path, release):
    with pytest.raises(FileNotFoundError, match="generator_kwargs_last.yaml"):
        keras_lincae.convert_official_checkpoint(str(tmp_path))


def test_mismatched_shapes_are_reported(tmp_path, release):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in os.listdir(release):
        (bad / name).write_bytes(open(os.path.join(release, name), "rb").read())
    state = torch.load(bad / "autoencoder_inference_model_last.pth", weights_only=True)
    key = "generator.encoder.conv_inp.weight"
    state[key] = torch.zeros(3, 2, 3, 3)
    torch.save(state, bad / "autoencoder_inference_model_last.pth")
    with pytest.raises(ValueError, match="conv_inp.weight"):
        keras_lincae.convert_official_checkpoint(str(bad))
    del state[key]
    torch.save(state, bad / "autoencoder_inference_model_last.pth")
    with pytest.raises(ValueError, match="1 missing"):
        keras_lincae.convert_official_checkpoint(str(bad))
    (bad / "autoencoder_inference_model_last.pth").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Cannot read official checkpoint"):
        keras_lincae.convert_official_checkpoint(str(bad))


def test_convert_script_writes_a_preset(tmp_path, release):
    out = tmp_path / "preset"
    script = os.path.join(os.path.dirname(__file__), "..", "recipes", "convert_checkpoint.py")
    result = subprocess.run(
        [sys.executable, script, release, str(out)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    model = keras_lincae.LinCAE.from_preset(str(out))
    assert model.scale_factor == 15.0  # m2l release hash
    missing = subprocess.run(
        [sys.executable, script, str(tmp_path / "nowhere"), str(tmp_path / "x")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "missing" in missing.stderr
    assert not (tmp_path / "x").exists()
