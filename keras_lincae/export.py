"""SavedModel export for TensorFlow Serving: `encode`, `decode`, `autoencode`, `separate`.

The archive is laid out the way `tensorflow_model_server` expects,
`OUT_DIR/<name>/<version>/{saved_model.pb, variables/, assets.extra/}`, and
every signature takes float32 tensors with a dynamic batch and length:

| signature         | inputs                                                     | outputs                           |
|-------------------|------------------------------------------------------------|-----------------------------------|
| `encode`          | `audio (B, N)`                                             | `latents (B, L, C)`               |
| `decode`          | `latents (B, L, C)`, `noise (B, steps*td*L, 2*hop, 2)`     | `audio (B, (td*L-1)*hop + n_fft)` |
| `autoencode`      | `audio (B, N)`, `noise (B, steps*F(N), 2*hop, 2)`          | `audio (B, N)`                    |
| `separate`        | `mixture (B, N)`, `accompaniment (B, N)`, `noise` as above | `target (B, N)`                   |
| `serving_default` | same as `autoencode`                                       | same as `autoencode`              |

`td` is `time_downsampling` (8), `C` the latent channels and
`F(N) = td * ceil((N + n_fft - hop) / (td * hop))` the spectrogram frames of the
zero-padded audio `autoencode` works on. The noise is an explicit standard-normal
input, so a request gives the same answer on every server; for a multi-step
export the per-step draws are concatenated along axis 1. The exact numbers of an
export are written to `assets.extra/lincae_export.json`.

The export needs the TensorFlow backend. `export_saved_model` given a preset
on another backend runs itself in a `KERAS_BACKEND=tensorflow` subprocess
(presets are backend-neutral); `python -m keras_lincae.export` and
`recipes/export.py` are the command line (`main`), which checks its arguments
and OUT_DIR before importing Keras and then runs under TensorFlow whatever
`KERAS_BACKEND` says. Importing this module imports no Keras. See `docs/serving.md`.
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from keras_lincae import entry
from keras_lincae.fs import give_usual_mode

PROG = "python -m keras_lincae.export"
EXPORT_INFO_FILE = "lincae_export.json"
ENDPOINTS = ("encode", "decode", "autoencode", "separate", "serving_default")
_ERROR_TYPES = {  # errors of the export subprocess, raised again with their type in the caller
    e.__name__: e for e in (ValueError, TypeError, FileExistsError, FileNotFoundError, NotADirectoryError,
                            PermissionError, OSError, ImportError, MemoryError, RuntimeError)
}


def noise_frames(model, num_samples, steps=1):
    """Axis-1 length of the `autoencode` / `separate` noise for `num_samples` samples.

    Equals `steps * td * ceil((num_samples + n_fft - hop) / (td * hop))`, the
    spectrogram frames of the audio after `model.autoencode_padding`.
    """
    front, back = model.autoencode_padding(num_samples)
    return steps * model.frontend.num_frames(front + num_samples + back)


def export_info(model, steps=1):
    """Numbers a client needs to shape its requests (written to `assets.extra/`)."""
    import keras

    hop, n_fft, td = model.hop_size, model.frontend.n_fft, model.time_downsampling
    return dict(
        sample_rate=int(model.sample_rate),
        hop_size=int(hop),
        n_fft=int(n_fft),
        time_downsampling=int(td),
        latent_channels=int(model.latent_channels),
        data_channels=int(model.data_channels),
        scale_factor=float(model.scale_factor),
        steps=int(steps),
        signatures=list(ENDPOINTS),
        noise_shape=dict(
            decode=f"(batch, {steps} * {td} * latent_frames, {2 * hop}, {model.data_channels})",
            autoencode=(
                f"(batch, {steps} * {td} * ceil((samples + {n_fft - hop}) / {td * hop}), "
                f"{2 * hop}, {model.data_channels})"
            ),
        ),
        decode_length=f"({td} * latent_frames - 1) * {hop} + {n_fft}",
        min_encode_samples=int(n_fft),
        keras_version=keras.__version__,
    )


def check_export_arguments(out_dir, name="lincae", version=1, steps=1, overwrite=False, what="out_dir"):
    """Check the arguments of `export_saved_model` without Keras or the model; return the version
    directory. Raises ValueError (name, version, steps), FileExistsError (an export already
    there), NotADirectoryError or PermissionError (`out_dir`, called `what`, cannot hold it)."""
    _check_steps(steps)
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"{what} must be a folder path, got {type(out_dir).__name__}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"name must be a plain directory name like 'lincae', got {name!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            f"version must be a positive integer (TF Serving's numeric version directory), got {version!r}"
        )
    model_dir = entry.check_writable_folder(os.path.join(os.fspath(out_dir), name), what)
    version_dir = os.path.join(model_dir, str(version))
    if os.path.lexists(version_dir):
        if not os.path.isdir(version_dir):
            raise FileExistsError(f"{version_dir} exists and is not a directory")
        if os.listdir(version_dir) and not overwrite:
            raise FileExistsError(
                f"{version_dir} already holds an export; pass overwrite=True (--overwrite) "
                f"to replace it, or choose another --version"
            )
    return version_dir


def _check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def export_saved_model(preset, out_dir, name="lincae", version=1, steps=1, overwrite=False):
    """Write a TF Serving SavedModel of a Lin-CAE model to `out_dir/name/version`.

    The write is atomic: the archive is built in a hidden sibling directory
    (TF Serving ignores non-numeric names) and renamed into place.

    Args:
        preset: a preset name or directory (anything `LinCAE.from_preset`
            accepts), or a `LinCAE` instance when the TensorFlow backend is active.
            On another backend a preset is exported by a `KERAS_BACKEND=tensorflow`
            subprocess.
        out_dir: str. The TF Serving model base path is `out_dir/name`.
        name: str, "lincae". Model name (the directory under `out_dir`).
        version: int, 1. Version directory.
        steps: int, 1. Consistency sampling steps of the decoding signatures.
        overwrite: bool, False. Replace an existing non-empty version directory.

    Returns:
        The absolute path of the version directory.

    Examples:
    ```python
    from keras_lincae.export import export_saved_model
    export_saved_model("saved_models/my_preset", "/srv/models")  # /srv/models/lincae/1
    ```
    """
    import keras

    version_dir = check_export_arguments(out_dir, name, version, steps, overwrite)
    if keras.backend.backend() != "tensorflow":
        if not isinstance(preset, (str, os.PathLike)):
            raise TypeError(
                "Exporting a model object needs KERAS_BACKEND=tensorflow; on the "
                f"{keras.backend.backend()} backend save it with model.save_to_preset(dir) "
                "and pass the directory"
            )
        from keras_lincae import LinCAE

        LinCAE.from_preset(preset)  # a missing or corrupt preset fails here, before TF starts
        _export_in_subprocess(preset, out_dir, name, version, steps, overwrite)
        return version_dir

    from keras_lincae import LinCAE

    model = preset if isinstance(preset, LinCAE) else LinCAE.from_preset(preset)
    archive = build_export_archive(model, steps=steps)
    model_dir = os.path.dirname(version_dir)
    os.makedirs(model_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir)
    give_usual_mode(staging)  # mkdtemp's 0700 would hide the model from a server user
    old = None
    try:
        archive.write_out(staging, options=_save_options(), verbose=False)
        info = export_info(model, steps)
        if isinstance(preset, (str, os.PathLike)):
            info["preset"] = os.fspath(preset)
        os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        with open(os.path.join(staging, "assets.extra", EXPORT_INFO_FILE), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        if os.path.lexists(version_dir):  # empty, or replaced with overwrite=True
            old = tempfile.mkdtemp(prefix=f".old-{version}-", dir=model_dir)
            os.rename(version_dir, os.path.join(old, "previous"))
        try:
            os.rename(staging, version_dir)
        except OSError:
            if old is not None:  # put the previous export back
                os.rename(os.path.join(old, "previous"), version_dir)
            raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return version_dir


def _export_in_subprocess(preset, out_dir, name, version, steps, overwrite):
    """Run `python -m keras_lincae.export` under TensorFlow; re-raise its error with its type."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        error_file = os.path.join(tmp, "error.json")
        command = [
            sys.executable, "-m", "keras_lincae.export", os.fspath(preset), os.fspath(out_dir),
            "--name", name, "--version", str(version), "--steps", str(steps),
            "--error-file", error_file,
        ] + (["--overwrite"] if overwrite else [])
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if os.path.isfile(error_file):
            with open(error_file) as f:
                error = json.load(f)
            raise _ERROR_TYPES.get(error["type"], RuntimeError)(error["message"])
        raise RuntimeError(
            f"The TensorFlow export subprocess failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )


def _save_options():
    import tensorflow as tf

    # No gradient functions: serving never differentiates (and tracing them is slow).
    return tf.saved_model.SaveOptions(experimental_custom_gradients=False)


def build_export_archive(model, steps=1):
    """A `keras.export.ExportArchive` tracking `model` with the five serving signatures."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("build_export_archive needs KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    _check_steps(steps)
    if not model.built:
        model.build()
    hop, n_fft, td = model.hop_size, model.frontend.n_fft, model.time_downsampling
    channels, data_channels = model.latent_channels, model.data_channels
    front = n_fft - hop

    def audio_spec(name):
        return tf.TensorSpec((None, None), tf.float32, name=name)

    latents_spec = tf.TensorSpec((None, None, channels), tf.float32, name="latents")
    noise_spec = tf.TensorSpec((None, None, 2 * hop, data_channels), tf.float32, name="noise")

    def check_audio(audio, what, min_samples):
        shape = tf.shape(audio)
        return [
            tf.debugging.assert_positive(shape[0], message=f"{what} has an empty batch"),
            tf.debugging.assert_greater_equal(
                shape[1], min_samples,
                message=f"{what} is too short: at least {min_samples} samples are needed",
            ),
            tf.debugging.assert_all_finite(audio, f"{what} contains NaN or infinite values"),
        ]

    # The encoder and the sampler are traced once each, into concrete functions
    # that every signature calls: the SavedModel holds one copy of each graph, and
    # re-tracing the signatures (`tf.saved_model.save` traces them again) is cheap.
    encoder = tf.function(
        lambda audio: model(audio, training=False), autograph=False
    ).get_concrete_function(audio_spec("audio"))

    def split_and_sample(latents, noise):
        frames = td * tf.shape(latents)[1]
        draws = [noise[:, k * frames : (k + 1) * frames] for k in range(steps)]
        return model.sample(latents, draws)

    sampler = tf.function(split_and_sample, autograph=False).get_concrete_function(latents_spec, noise_spec)

    def encode_fn(audio):
        with tf.control_dependencies(check_audio(audio, "audio", n_fft)):
            audio = tf.identity(audio)
        return encoder(audio)

    def sample(latents, noise):
        """Decode scaled latents with explicit draws, `steps` chunks concatenated on axis 1."""
        spec_frames = td * tf.shape(latents)[1]
        checks = [
            tf.debugging.assert_positive(tf.shape(latents)[1], message="latents have no frames"),
            tf.debugging.assert_equal(
                tf.shape(noise)[0], tf.shape(latents)[0],
                message="noise and latents must have the same batch size",
            ),
            tf.debugging.assert_equal(
                tf.shape(noise)[1], steps * spec_frames,
                message=(
                    f"noise axis 1 must be {steps} * {td} * latent_frames "
                    f"(steps * time_downsampling * frames) for this export"
                ),
            ),
            tf.debugging.assert_all_finite(noise, "noise contains NaN or infinite values"),
        ]
        with tf.control_dependencies(checks):
            noise = tf.identity(noise)
        return sampler(latents, noise)

    def decode_fn(latents, noise):
        with tf.control_dependencies(
            [tf.debugging.assert_all_finite(latents, "latents contain NaN or infinite values")]
        ):
            latents = tf.identity(latents)
        return sample(latents, noise)

    def pad(audio):
        """Zero padding of `LinCAE.autoencode`: `n_fft - hop` in front, whole latent frames at the end."""
        num_samples = tf.shape(audio)[1]
        frames = -((-(front + num_samples)) // hop)
        frames = -((-frames) // td) * td
        back = (frames - 1) * hop + n_fft - front - num_samples
        return tf.pad(audio, [[0, 0], [front, back]]), num_samples

    def autoencode_fn(audio, noise):
        with tf.control_dependencies(check_audio(audio, "audio", 1)):
            padded, num_samples = pad(audio)
        decoded = sample(encoder(padded), noise)
        return decoded[:, front : front + num_samples]

    def separate_fn(mixture, accompaniment, noise):
        checks = check_audio(mixture, "mixture", 1) + check_audio(accompaniment, "accompaniment", 1)
        checks.append(
            tf.debugging.assert_equal(
                tf.shape(mixture), tf.shape(accompaniment),
                message="mixture and accompaniment must have the same shape",
            )
        )
        with tf.control_dependencies(checks):
            mixture, num_samples = pad(mixture)
            accompaniment, _ = pad(accompaniment)
        # Two encoder calls, not one on the stacked batch: the latent difference
        # cancels most of each latent, so it would show the (tiny) numerical
        # difference between batch sizes.
        decoded = sample(encoder(mixture) - encoder(accompaniment), noise)
        return decoded[:, front : front + num_samples]

    endpoints = {
        "encode": (lambda audio: {"latents": encode_fn(audio)}, [audio_spec("audio")]),
        "decode": (
            lambda latents, noise: {"audio": decode_fn(latents, noise)},
            [latents_spec, noise_spec],
        ),
        "autoencode": (
            lambda audio, noise: {"audio": autoencode_fn(audio, noise)},
            [audio_spec("audio"), noise_spec],
        ),
        "separate": (
            lambda mixture, accompaniment, noise: {"target": separate_fn(mixture, accompaniment, noise)},
            [audio_spec("mixture"), audio_spec("accompaniment"), noise_spec],
        ),
    }
    archive = keras.export.ExportArchive()
    archive.track(model)
    # `write_out` makes the first endpoint `serving_default` too: `autoencode` goes first.
    for name in ("autoencode", "encode", "decode", "separate"):
        fn, signature = endpoints[name]
        archive.add_endpoint(name, _checking_shapes(fn, signature), input_signature=signature)
    return archive


def _checking_shapes(fn, signature):
    """`fn` behind run-time checks of its inputs' shapes against `signature`.

    A served signature does not check the rank of its inputs by itself: a loaded
    SavedModel (and TF Serving) hands a wrongly shaped tensor to the graph, which
    then fails somewhere inside the model. `EnsureShape` fails first, naming the
    input: "Shape of tensor audio [1,1,13230] is not compatible with expected
    shape [?,?]".
    """
    import tensorflow as tf

    def checked(*inputs):
        return fn(*(
            tf.ensure_shape(x, spec.shape, name=f"check_{spec.name}_shape")
            for x, spec in zip(inputs, signature)
        ))

    return checked


def build_parser(prog=PROG):
    """The command line's parser (one-line usage errors, `--debug`); imports no Keras."""
    parser = entry.ArgumentParser(
        prog=prog, description="Export a Lin-CAE preset as a TF Serving SavedModel (OUT_DIR/NAME/VERSION)."
    )
    parser.add_argument("preset", help="preset name or directory (from any backend)")
    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help="model base path parent: the export goes to OUT_DIR/NAME/VERSION")
    parser.add_argument("--name", default="lincae", help="model name (default: lincae)")
    parser.add_argument("--version", type=int, default=1, help="version directory (default: 1)")
    parser.add_argument("--steps", type=int, default=1, help="decoder sampling steps (default: 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty version")
    parser.add_argument("--error-file", help=argparse.SUPPRESS)
    entry.add_flags(parser, backend=False)
    return parser


def main(argv=None, prog=PROG):
    """Command line entry point; returns the exit status (2 for a refused or invalid export)."""
    args = build_parser(prog).parse_args(argv)
    return entry.run(lambda: _export_command(args, prog), prog)


def _export_command(args, prog):
    """Check the arguments and OUT_DIR, then export under TensorFlow; print the version directory."""
    entry.prepare(prog, debug=args.debug, needs_keras=False)
    try:
        check_export_arguments(args.out_dir, args.name, args.version, args.steps, args.overwrite, what="OUT_DIR")
        if importlib.util.find_spec("tensorflow") is None:
            raise ImportError("the SavedModel export needs TensorFlow (pip install tensorflow-cpu)")
        entry.prepare(prog, "tensorflow", args.debug)
        path = export_saved_model(args.preset, args.out_dir, name=args.name, version=args.version,
                                  steps=args.steps, overwrite=args.overwrite)
    except Exception as error:
        if args.error_file and entry.user_error_message(error) is not None:
            with open(args.error_file, "w") as f:
                json.dump({"type": type(error).__name__, "message": str(error)}, f)
        raise
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
