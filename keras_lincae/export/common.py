"""What every export format shares: argument checks, the numbers a client needs, the atomic write."""

import json
import os
import re
import shutil
import tempfile

from keras_lincae import entry
from keras_lincae.fs import give_usual_mode

EXPORT_INFO_FILE = "lincae_export.json"
FORMATS = ("saved_model", "onnx", "litert")
SAVED_MODEL_ENDPOINTS = ("encode", "decode", "autoencode", "separate", "serving_default")
PORTABLE_ENDPOINTS = ("encode", "decode")  # ONNX and LiteRT: the 1-step decode, explicit noise


def noise_frames(model, num_samples, steps=1):
    """Axis-1 length of the `autoencode` / `separate` noise for `num_samples` samples.

    Equals `steps * td * ceil((num_samples + n_fft - hop) / (td * hop))`, the
    spectrogram frames of the audio after `model.autoencode_padding`.
    """
    front, back = model.autoencode_padding(num_samples)
    return steps * model.frontend.num_frames(front + num_samples + back)


def export_info(model, export_format="saved_model", steps=1):
    """Numbers a client needs to shape its requests (written beside the exported model)."""
    import keras

    hop, n_fft, td = model.hop_size, model.frontend.n_fft, model.time_downsampling
    noise_shape = dict(decode=f"(batch, {steps} * {td} * latent_frames, {2 * hop}, {model.data_channels})")
    if export_format == "saved_model":
        noise_shape["autoencode"] = (
            f"(batch, {steps} * {td} * ceil((samples + {n_fft - hop}) / {td * hop}), "
            f"{2 * hop}, {model.data_channels})"
        )
    return dict(
        format=export_format,
        sample_rate=int(model.sample_rate),
        hop_size=int(hop),
        n_fft=int(n_fft),
        time_downsampling=int(td),
        latent_channels=int(model.latent_channels),
        data_channels=int(model.data_channels),
        scale_factor=float(model.scale_factor),
        steps=int(steps),
        signatures=list(SAVED_MODEL_ENDPOINTS if export_format == "saved_model" else PORTABLE_ENDPOINTS),
        noise_shape=noise_shape,
        decode_length=f"({td} * latent_frames - 1) * {hop} + {n_fft}",
        min_encode_samples=int(n_fft),
        keras_version=keras.__version__,
    )


def check_export_arguments(out_dir, name="lincae", version=1, steps=1, overwrite=False, what="out_dir",
                           export_format="saved_model"):
    """Check the arguments of an export without Keras or the model; return the version directory.

    Raises ValueError (format, name, version, steps), FileExistsError (an export already
    there), NotADirectoryError or PermissionError (`out_dir`, called `what`, cannot hold it).
    """
    if export_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {export_format!r}")
    check_steps(steps)
    if steps != 1 and export_format != "saved_model":
        raise ValueError(
            f"the {export_format} export holds the 1-step decode only; "
            f"use --format saved_model for a {steps}-step decode"
        )
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


def check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def write_atomically(version_dir, write, info, info_dir=""):
    """Run `write(staging_dir)`, add `info` as `info_dir/EXPORT_INFO_FILE`, rename into `version_dir`.

    The staging directory is a hidden sibling (TF Serving ignores non-numeric names); an
    existing `version_dir` is replaced only once the new export is complete.
    """
    model_dir = os.path.dirname(version_dir)
    version = os.path.basename(version_dir)
    os.makedirs(model_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir)
    give_usual_mode(staging)  # mkdtemp's 0700 would hide the model from a server user
    old = None
    try:
        write(staging)
        os.makedirs(os.path.join(staging, info_dir), exist_ok=True)
        with open(os.path.join(staging, info_dir, EXPORT_INFO_FILE), "w") as f:
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
