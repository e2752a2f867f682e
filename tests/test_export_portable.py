"""ONNX and LiteRT exports (`--format onnx|litert`): encode and the 1-step decode, on every backend.

One tiny preset is saved from the current backend; the ONNX export goes through the
library and the LiteRT export through the recipe's command line (both in TensorFlow
subprocesses unless the current backend is tensorflow), once each per module. The
outputs of onnxruntime and the LiteRT interpreter are compared with Keras on the
current backend, for two batch sizes and lengths (the axes are dynamic).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_lincae import LinCAE
from keras_lincae.export import EXPORT_INFO_FILE, export
from keras_lincae.testing.helpers import music_like, randomize_weights, to_numpy

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "export.py")
CASES = [(1, 13230), (3, 6000)]  # (batch, samples)
TOLERANCE = 1e-4  # relative L2 error against Keras (float32 differences between backends)
QUIET_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def relative_error(out, ref, label):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert out.shape == ref.shape, (label, out.shape, ref.shape)
    error = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    peak = float(np.abs(out - ref).max() / np.abs(ref).max())
    print(f"{keras.backend.backend()} {label}: rel L2 {error:.2e}, max abs / max |ref| {peak:.2e}")
    return error


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=5)


@pytest.fixture(scope="module")
def exports(tmp_path_factory, model):
    """`{format: version directory}`: onnx by the library, litert by the recipe (at the same time)."""
    workdir = tmp_path_factory.mktemp("portable")
    preset = model.save_to_preset(str(workdir / "preset"))
    out = str(workdir / "models")
    recipe = subprocess.Popen(
        [sys.executable, RECIPE, preset, out, "--format", "litert", "--name", "lincae_litert"],
        env=QUIET_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        onnx_dir = export(preset, out, format="onnx")
    finally:
        stdout, stderr = recipe.communicate()
    assert recipe.returncode == 0, f"recipes/export.py --format litert failed:\n{stderr[-3000:]}"
    litert_dir = stdout.strip().splitlines()[-1]
    return dict(onnx=onnx_dir, litert=litert_dir)


@pytest.fixture(scope="module")
def cases(model):
    """Inputs and Keras references (current backend) per `(batch, samples)` case."""
    data = []
    hop, td = model.hop_size, model.time_downsampling
    for i, (batch, n) in enumerate(CASES):
        rng = np.random.default_rng(40 + i)
        # A noise floor keeps every bin above float32 rounding (see tests/test_export.py).
        audio = music_like(n, batch=batch, seed=50 + i) + 0.01 * rng.standard_normal((batch, n)).astype("float32")
        latents = to_numpy(model.encode(audio))
        noise = rng.standard_normal((batch, td * latents.shape[1], 2 * hop, model.data_channels)).astype("float32")
        data.append(dict(audio=audio, latents=latents, noise=noise,
                         decoded=to_numpy(model.decode(latents, noise=noise))))
    return data


def test_onnx_layout_and_dynamic_axes(exports, model):
    import onnxruntime

    assert sorted(os.listdir(exports["onnx"])) == ["decode.onnx", "encode.onnx", EXPORT_INFO_FILE]
    with open(os.path.join(exports["onnx"], EXPORT_INFO_FILE)) as f:
        info = json.load(f)
    assert info["format"] == "onnx" and info["signatures"] == ["encode", "decode"] and info["steps"] == 1
    encode = onnxruntime.InferenceSession(os.path.join(exports["onnx"], "encode.onnx"))
    decode = onnxruntime.InferenceSession(os.path.join(exports["onnx"], "decode.onnx"))
    shapes = {i.name: i.shape for s in (encode, decode) for i in s.get_inputs() + s.get_outputs()}
    assert set(shapes) == {"audio", "latents", "noise"}
    assert all(isinstance(d, str) for d in shapes["audio"])  # batch and length are dynamic
    assert shapes["noise"][2:] == [2 * model.hop_size, model.data_channels]
    assert shapes["latents"][2] == model.latent_channels


def test_onnxruntime_matches_keras(exports, cases):
    import onnxruntime

    encode = onnxruntime.InferenceSession(os.path.join(exports["onnx"], "encode.onnx"))
    decode = onnxruntime.InferenceSession(os.path.join(exports["onnx"], "decode.onnx"))
    for case in cases:
        latents = encode.run(None, {"audio": case["audio"]})[0]
        assert relative_error(latents, case["latents"], f"onnx encode {case['audio'].shape}") <= TOLERANCE
        audio = decode.run(None, {"latents": case["latents"], "noise": case["noise"]})[0]
        assert relative_error(audio, case["decoded"], f"onnx decode {case['audio'].shape}") <= TOLERANCE


def test_litert_interpreter_matches_keras(exports, cases):
    from ai_edge_litert.interpreter import Interpreter

    assert sorted(os.listdir(exports["litert"])) == ["lincae.tflite", EXPORT_INFO_FILE]
    interpreter = Interpreter(model_path=os.path.join(exports["litert"], "lincae.tflite"))
    assert interpreter.get_signature_list() == {
        "encode": {"inputs": ["audio"], "outputs": ["latents"]},
        "decode": {"inputs": ["latents", "noise"], "outputs": ["audio"]},
    }
    encode, decode = interpreter.get_signature_runner("encode"), interpreter.get_signature_runner("decode")
    for case in cases:
        latents = encode(audio=case["audio"])["latents"]
        assert relative_error(latents, case["latents"], f"litert encode {case['audio'].shape}") <= TOLERANCE
        audio = decode(latents=case["latents"], noise=case["noise"])["audio"]
        assert relative_error(audio, case["decoded"], f"litert decode {case['audio'].shape}") <= TOLERANCE


@pytest.mark.parametrize("export_format", ["onnx", "litert"])
def test_multi_step_decode_is_refused(tmp_path, export_format):
    message = f"the {export_format} export holds the 1-step decode only; use --format saved_model"
    with pytest.raises(ValueError, match=message):
        export("lin_cae_tiny", str(tmp_path), format=export_format, steps=2)
    result = subprocess.run(
        [sys.executable, RECIPE, "lin_cae_tiny", str(tmp_path), "--format", export_format, "--steps", "2"],
        env=QUIET_ENV, capture_output=True, text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"export.py: error: {message} for a 2-step decode\n"
    assert os.listdir(tmp_path) == []


def test_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="format must be one of saved_model, onnx, litert, got 'tflite'"):
        export("lin_cae_tiny", str(tmp_path), format="tflite")
