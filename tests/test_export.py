"""SavedModel export for TF Serving (`keras_lincae.export`, `recipes/export.py`), on every backend.

One tiny preset is saved from a jax-built and one from a torch-built model (in
subprocesses with those backends). The jax preset is exported through the library
(in a TensorFlow subprocess unless the current backend is tensorflow), the torch
preset through the recipe's command line, once each per module. The Keras references
are computed here, on the current backend, with the same explicit noise.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, to_numpy

from keras_lincae import LinCAE
from keras_lincae.export import EXPORT_INFO_FILE, export_saved_model, noise_frames
from keras_lincae.testing.frontend_trace import traced_frontend_error

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
RECIPE = os.path.join(ROOT, "recipes", "export.py")
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
CASES = [(1, 13230), (3, 6000)]  # (batch, samples): 0.3 s and 0.14 s at 44.1 kHz
SIGNATURES = ("encode", "decode", "autoencode", "separate")
# Relative L2 error |served - keras| / |keras|. On the tensorflow backend the SavedModel
# must reproduce the Keras model (~1e-6 measured); on jax and torch the gap is the
# backends' float32 differences (~1e-5 ... 7e-5 measured for these random weights).
TOLERANCE = 1e-5 if keras.backend.backend() == "tensorflow" else 1e-4
QUIET_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

TF_ONLY_CLIENT = os.path.join(ROOT, "keras_lincae", "testing", "tf_only_client.py")  # run with `python -I`


def run(command, backend=None, **kwargs):
    env = QUIET_ENV if backend is None else dict(QUIET_ENV, KERAS_BACKEND=backend)
    return subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)


def check(result):
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def relative_error(out, ref):
    """Relative L2 error; also prints the max abs error relative to max |ref| (see -s)."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    error = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    print(f"  rel L2 {error:.2e}, max abs / max |ref| {np.abs(out - ref).max() / np.abs(ref).max():.2e}")
    return error


def noisy_music(num_samples, batch, seed):
    """`music_like` plus a little white noise.

    Band-limited audio leaves the bins near Nyquist at the float32 rounding floor,
    where the frontend's `|X| ** 0.65` turns rounding differences between
    backends into visible latent differences; a noise floor keeps every bin above it.
    """
    noise = np.random.default_rng(seed).standard_normal((batch, num_samples))
    return music_like(num_samples, batch=batch, seed=seed) + (0.01 * noise).astype("float32")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def presets(workdir):
    """Tiny presets saved by a jax- and by a torch-built model (two processes at once)."""
    paths = {b: str(workdir / f"preset_{b}") for b in ("jax", "torch")}
    procs = {
        b: subprocess.Popen(
            [sys.executable, "-m", "keras_lincae.testing.save_random_preset", paths[b], "--seed", str(seed)],
            env=dict(QUIET_ENV, KERAS_BACKEND=b), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for seed, b in enumerate(paths, start=1)
    }
    for b, proc in procs.items():
        _, err = proc.communicate()
        assert proc.returncode == 0, f"saving the {b} preset failed:\n{err[-3000:]}"
        with open(os.path.join(paths[b], "metadata.json")) as f:
            assert json.load(f)["backend"] == b
    return paths


@pytest.fixture(scope="module")
def exports(workdir, presets):
    """Version directories: the jax preset by the library, the torch preset by the recipe."""
    out = workdir / "models"
    stale = out / "lincae_torch" / "1"
    stale.mkdir(parents=True)
    (stale / "stale.txt").write_text("replaced by --overwrite")
    recipe = subprocess.Popen(  # runs while the library export below runs
        [sys.executable, RECIPE, presets["torch"], str(out), "--name", "lincae_torch", "--overwrite"],
        env=QUIET_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        main = export_saved_model(presets["jax"], str(out))
    finally:
        stdout, stderr = recipe.communicate()
    assert recipe.returncode == 0, f"recipes/export.py failed:\n{stderr[-3000:]}"
    torch_dir = str(stale)
    assert stdout.strip().splitlines()[-1] == torch_dir
    return dict(out=str(out), main=main, torch=torch_dir)


@pytest.fixture(scope="module")
def model(presets):
    return LinCAE.from_preset(presets["jax"])


@pytest.fixture(scope="module")
def cases(model):
    """Inputs and Keras references (current backend) for each `(batch, samples)` case."""
    data = {}
    hop, td, ch = model.hop_size, model.time_downsampling, model.data_channels
    for i, (batch, n) in enumerate(CASES):
        rng = np.random.default_rng(10 + i)
        target = noisy_music(n, batch, seed=20 + i)
        accompaniment = noisy_music(n, batch, seed=30 + i)
        mixture = target + accompaniment
        noise = rng.standard_normal((batch, noise_frames(model, n), 2 * hop, ch)).astype("float32")
        # encode/decode run on the audio padded as autoencode pads it: every Keras call
        # below has one of two shapes per case (one compilation each on jax/tensorflow).
        front, back = model.autoencode_padding(n)
        pad = ((0, 0), (front, back))
        padded = np.pad(target, pad)
        latents = to_numpy(model.encode(padded))
        decode_noise = rng.standard_normal((batch, td * latents.shape[1], 2 * hop, ch)).astype("float32")
        z = to_numpy(model.encode(np.pad(mixture, pad))) - to_numpy(model.encode(np.pad(accompaniment, pad)))
        data[f"case{i}"] = dict(
            inputs=dict(
                audio=target, padded=padded, noise=noise, latents=latents, decode_noise=decode_noise,
                mixture=mixture, accompaniment=accompaniment,
            ),
            refs=dict(
                encode=latents,
                decode=to_numpy(model.decode(latents, noise=decode_noise)),
                autoencode=to_numpy(model.autoencode(target, noise=noise)),
                separate=to_numpy(model.decode(z, noise=noise))[:, front : front + n],
            ),
        )
    return data


@pytest.fixture(scope="module")
def tf_only(workdir, exports, cases):
    """Outputs and error messages of the export served by a process that imports only tensorflow."""
    inputs = str(workdir / "inputs.npz")
    np.savez(inputs, **{f"{c}/{k}": v for c, d in cases.items() for k, v in d["inputs"].items()})
    outputs, report = str(workdir / "outputs.npz"), str(workdir / "report.json")
    check(run([sys.executable, "-I", TF_ONLY_CLIENT, inputs, exports["main"], outputs, report, *cases],
              cwd=str(workdir)))
    with open(report) as f:
        result = json.load(f)
    result["outputs"] = dict(np.load(outputs))
    return result


def test_layout_for_tf_serving(exports, model):
    out = exports["out"]
    assert sorted(os.listdir(out)) == ["lincae", "lincae_torch"]  # no staging or old directories left
    assert os.listdir(os.path.join(out, "lincae")) == ["1"]
    assert os.listdir(os.path.join(out, "lincae_torch")) == ["1"]
    for version_dir in (exports["main"], exports["torch"]):
        assert {"saved_model.pb", "variables", "assets.extra"} <= set(os.listdir(version_dir))
        assert not os.path.exists(os.path.join(version_dir, "stale.txt"))
        assert os.stat(version_dir).st_mode & 0o055 == 0o055 & ~_umask()  # readable by a server user
    with open(os.path.join(exports["main"], "assets.extra", EXPORT_INFO_FILE)) as f:
        info = json.load(f)
    assert info["hop_size"] == model.hop_size and info["n_fft"] == model.frontend.n_fft
    assert info["latent_channels"] == model.latent_channels and info["steps"] == 1
    assert info["signatures"] == ["encode", "decode", "autoencode", "separate", "serving_default"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_served_by_tensorflow_alone(tf_only):
    assert tf_only["modules"] == []  # neither keras nor keras_lincae was imported
    assert tf_only["signatures"] == sorted(SIGNATURES + ("serving_default",))


@pytest.mark.parametrize("name", SIGNATURES + ("serving_default",))
def test_outputs_match_keras(tf_only, cases, model, name):
    for case, data in cases.items():
        batch, n = data["inputs"]["audio"].shape
        ref = data["refs"]["autoencode" if name == "serving_default" else name]
        out = tf_only["outputs"][f"{case}/{name}"]
        assert out.shape[0] == batch
        if name in ("autoencode", "serving_default", "separate"):
            assert out.shape == (batch, n)
        print(f"{keras.backend.backend()} {name} batch={batch} samples={n}:")
        error = relative_error(out, ref)
        assert error <= TOLERANCE, (name, case, error)


def test_wrong_inputs_give_clear_errors(tf_only):
    errors = tf_only["errors"]
    assert all(errors.values()), {k: v for k, v in errors.items() if not v}
    # A served signature checks the rank (and the fixed sizes) of every input.
    expected = dict(
        encode_rank3="Shape of tensor audio [1,1,13230] is not compatible with expected shape [?,?]",
        encode_rank1="Shape of tensor audio [13230] is not compatible with expected shape [?,?]",
        autoencode_noise_rank3="Shape of tensor noise [1,32,1024] is not compatible with expected shape [?,?,1024,2]",
        decode_latents_rank2="Shape of tensor latents [4,16] is not compatible with expected shape [?,?,16]",
        decode_wrong_channels="Shape of tensor latents [1,4,15] is not compatible with expected shape [?,?,16]",
    )
    for label, message in expected.items():
        assert message in errors[label], errors[label]
    assert "audio is too short: at least 2048 samples" in errors["encode_too_short"]
    assert "noise axis 1 must be 1 * 8 * latent_frames" in errors["autoencode_wrong_noise_length"]
    assert "mixture and accompaniment must have the same shape" in errors["separate_shape_mismatch"]
    assert "audio contains NaN or infinite values" in errors["encode_nan"]


def test_saved_model_cli_show_lists_signatures(exports, model):
    result = check(run([SAVED_MODEL_CLI, "show", "--all", "--dir", exports["main"]]))
    text = result.stdout
    for name in SIGNATURES + ("serving_default",):
        assert f"signature_def['{name}']" in text
    c, hop = model.latent_channels, model.hop_size
    assert "inputs['audio'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, -1)" in text
    assert f"shape: (-1, -1, {c})" in text and f"shape: (-1, -1, {2 * hop}, 2)" in text
    assert "outputs['target']" in text and "outputs['latents']" in text


def test_saved_model_cli_run_with_npy_inputs(exports, cases, workdir):
    data = cases["case1"]
    files = {}
    for name in ("mixture", "accompaniment", "noise"):
        files[name] = str(workdir / f"cli_{name}.npy")
        np.save(files[name], data["inputs"][name])
    outdir = workdir / "cli_out"
    check(run([
        SAVED_MODEL_CLI, "run", "--dir", exports["main"], "--tag_set", "serve",
        "--signature_def", "separate", "--outdir", str(outdir),
        "--inputs", ";".join(f"{k}={v}" for k, v in files.items()),
    ]))
    print(f"{keras.backend.backend()} saved_model_cli separate:")
    assert relative_error(np.load(outdir / "target.npy"), data["refs"]["separate"]) <= TOLERANCE


def test_torch_preset_exported_by_recipe_matches(exports, presets, cases):
    import tensorflow as tf

    torch_model = LinCAE.from_preset(presets["torch"])
    served = tf.saved_model.load(exports["torch"])
    inputs = cases["case0"]["inputs"]
    audio = served.signatures["autoencode"](audio=tf.constant(inputs["audio"]), noise=tf.constant(inputs["noise"]))
    ref = to_numpy(torch_model.autoencode(inputs["audio"], noise=inputs["noise"]))
    print(f"{keras.backend.backend()} torch preset autoencode:")
    assert relative_error(audio["audio"].numpy(), ref) <= TOLERANCE


def test_refuses_existing_version_dir(exports, presets):
    with pytest.raises(FileExistsError, match="already holds an export.*overwrite"):
        export_saved_model(presets["jax"], exports["out"])
    result = run([sys.executable, RECIPE, presets["jax"], exports["out"]])
    assert result.returncode == 2
    assert "error:" in result.stderr and "already holds an export" in result.stderr
    assert os.path.isfile(os.path.join(exports["main"], "saved_model.pb"))  # untouched


def test_bad_arguments_and_missing_preset(workdir, presets):
    out = str(workdir / "bad")
    with pytest.raises(ValueError, match="Unknown preset"):
        export_saved_model(str(workdir / "no_such_preset"), out)
    with pytest.raises(ValueError, match="version must be a positive integer"):
        export_saved_model(presets["jax"], out, version=0)
    with pytest.raises(ValueError, match="name must be a plain directory name"):
        export_saved_model(presets["jax"], out, name="../x")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        export_saved_model(presets["jax"], out, steps=0)
    assert not os.path.exists(out)


@pytest.mark.parametrize("case", ["file", "read-only"])
def test_unusable_out_dir_is_refused_before_the_archive_is_built(tmp_path, monkeypatch, capsys, case):
    """By the library (naming `out_dir`) and the command line (one line, exit status 2)."""
    from keras_lincae import entry, export
    from keras_lincae.export import saved_model

    def too_late(*args, **kwargs):
        raise AssertionError("OUT_DIR must be checked before the model is loaded or traced")

    monkeypatch.setattr(saved_model, "build_export_archive", too_late)
    monkeypatch.setattr(LinCAE, "from_preset", too_late)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")  # the command line sets these two: restored after
    monkeypatch.setattr(entry, "_debug", False)
    out = tmp_path / "out"
    if case == "file":
        out.write_text("not a folder")
        error, message = NotADirectoryError, f"{out} is a file, not a folder"
    else:  # as root, a read-only folder is still writable: ask os.access
        out.mkdir()
        monkeypatch.setattr(os, "access", lambda path, mode: False)
        error, message = PermissionError, f"{out} is not writable"
    with pytest.raises(error, match=f"^out_dir .*: {message}$"):
        export_saved_model("lin_cae_tiny", str(out))
    assert export.main(["lin_cae_tiny", str(out)], prog="export.py") == 2
    assert capsys.readouterr().err == f"export.py: error: OUT_DIR {out}/lincae: {message}\n"
    assert export.main(["lin_cae_tiny", str(out), "--debug"], prog="export.py") == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.endswith(f"export.py: error: OUT_DIR {out}/lincae: {message}\n")


def test_usage_errors_are_one_line():
    result = run([sys.executable, RECIPE, "lin_cae_tiny", "out", "--version", "abc"])
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "export.py: error: argument --version: invalid int value: 'abc' (see --help)\n"


def test_corrupt_preset_is_refused(workdir, presets):
    corrupt = str(workdir / "preset_corrupt")
    shutil.copytree(presets["jax"], corrupt)
    weights = os.path.join(corrupt, "model.weights.h5")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    out = str(workdir / "corrupt_out")
    with pytest.raises(ValueError, match="corrupt, truncated or do not match"):
        export_saved_model(corrupt, out)
    model_dir = os.path.join(out, "lincae")
    assert not os.path.isdir(model_dir) or os.listdir(model_dir) == []  # nothing half-written


def test_frontend_traces_with_unknown_length(tmp_path):
    """The frontend's dynamic-length path (what the export traces) equals its static path."""
    audio = music_like(128 * 13 + 57, batch=2, seed=4)
    if keras.backend.backend() == "tensorflow":
        error = traced_frontend_error(audio)
    else:
        np.save(tmp_path / "audio.npy", audio)
        command = [sys.executable, "-m", "keras_lincae.testing.frontend_trace", str(tmp_path / "audio.npy")]
        output = check(run(command, backend="tensorflow")).stdout
        error = float(output.split("relative_error=")[-1].split()[0])
    assert error <= 1e-6
