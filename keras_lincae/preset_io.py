"""Reading and writing presets: `config.json` + `model.weights.h5` + `metadata.json`."""

import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile

import keras

from keras_lincae import hub
from keras_lincae.preset_folder import (
    CONFIG_FILE,
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_CHECKSUM,
    WEIGHTS_FILE,
    acquire_lock,
    finish_interrupted_saves,
    is_saved_preset,
    pause,
    recover_preset,
    release_lock,
    retire_backup,
    wait_for_save,
)
from keras_lincae import presets
from keras_lincae.fs import cache_root
from keras_lincae.fs import give_usual_mode
from keras_lincae.models.official_checkpoint import RELEASE_FILES, convert_release

REPO_PRESETS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "saved_models")
# Where a (non-editable) wheel installs the shipped presets: pyproject.toml `data-files`.
INSTALLED_PRESETS_DIR = os.path.join(sys.prefix, "share", "keras_lincae", "saved_models")


def shipped_preset_dir(name):
    """The folder of shipped preset `name`: the source tree's `saved_models/`, else the installed copy."""
    for root in (REPO_PRESETS_DIR, INSTALLED_PRESETS_DIR):
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return os.path.join(REPO_PRESETS_DIR, name)


def cache_dir():
    """Where converted official presets are kept (`$KERAS_LINCAE_CACHE` or ~/.cache/keras_lincae)."""
    return str(cache_root() / "presets")


def file_sha256(path):
    """Hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def check_save_target(preset_dir, overwrite=False, flag="overwrite=True"):
    """Raise ValueError unless a preset may be saved to `preset_dir`; True when it replaces one.

    Accepted: a new or empty folder, or (with `overwrite`) an existing preset. `flag` is what
    the error tells the user to pass to replace a preset.
    """
    if not os.path.lexists(preset_dir):
        return False
    if not os.path.isdir(preset_dir):
        raise ValueError(f"Cannot save a preset to {preset_dir}: it is a file, not a folder")
    if not os.listdir(preset_dir):
        return False
    if not is_saved_preset(preset_dir):
        raise ValueError(
            f"Cannot save a preset to {preset_dir}: it is not empty and is not a preset; choose an empty or new folder")
    if not overwrite:
        raise ValueError(
            f"Cannot save a preset to {preset_dir}: a preset is already there; pass {flag} to replace it")
    return True


def save_preset(model, preset_dir, overwrite=False, **metadata):
    """Write `model` as a preset directory atomically; returns its absolute path.

    Refuses a regular file, a non-empty folder that is not a preset, and (unless `overwrite`)
    an existing preset. Overwriting replaces only `PRESET_FILES`; other files in the folder
    (e.g. a README.md model card) are kept. Saves to one place are serialised by a lock file
    `.<name>.lock` (a concurrent save fails; a dead process's lock is taken over).

    Files are written into a fresh staging sibling `.<name>.staging-*`, then swapped in with
    two renames (old preset -> `.<name>.old-*/preset`, staging -> `preset_dir`), and the user's
    files are moved over from the old preset. A process killed at any point leaves the
    previous preset or the new one; the next save or load finishes the job (`recover_preset`).
    """
    from keras_lincae import __version__

    preset_dir = os.path.realpath(preset_dir)
    parent, base = os.path.split(preset_dir)
    check_save_target(preset_dir, overwrite)
    os.makedirs(parent, exist_ok=True)
    held = acquire_lock(preset_dir)
    try:
        finish_interrupted_saves(preset_dir)
        replacing = check_save_target(preset_dir, overwrite)  # again: another save may have finished
        staging = tempfile.mkdtemp(prefix=f".{base}.staging-", dir=parent)
        give_usual_mode(staging)
        try:
            _write_json(os.path.join(staging, CONFIG_FILE), keras.saving.serialize_keras_object(model))
            model.save_weights(os.path.join(staging, WEIGHTS_FILE))
            pause("staged_weights")
            info = dict(
                keras_lincae_version=__version__,
                keras_version=keras.__version__,
                backend=keras.backend.backend(),
                sample_rate=model.sample_rate,
                scale_factor=model.scale_factor,
                latent_channels=model.latent_channels,
                parameter_count=int(model.count_params()),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            )
            info.update({k: v for k, v in metadata.items() if v is not None})
            info["format_version"] = FORMAT_VERSION
            info[WEIGHTS_CHECKSUM] = file_sha256(os.path.join(staging, WEIGHTS_FILE))
            _write_json(os.path.join(staging, METADATA_FILE), info)
            backup = None
            if replacing:
                backup = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
                os.rename(preset_dir, os.path.join(backup, "preset"))
            pause("between_renames")
            os.rename(staging, preset_dir)  # also replaces an empty folder
            if backup is not None:
                retire_backup(backup, preset_dir)
        finally:
            if os.path.exists(staging):
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        release_lock(held)
    return preset_dir


def _is_preset_dir(path):
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def _is_release_dir(path):
    return os.path.isfile(os.path.join(path, RELEASE_FILES["weights"]))


def _accepted_forms():
    return (
        f"a built-in name ({', '.join(presets.list_presets())}), a preset directory "
        "(config.json + model.weights.h5 + metadata.json), an official release directory "
        "(autoencoder_inference_model_last.pth + *_kwargs_last.yaml), or hf://owner/repo[/subdir]"
    )


def _official_builtin(name, model_class):
    """Directory of a converted official preset, converting a download into the cache once
    (as a `model_class`; without one, None until it is converted)."""
    cached = os.path.join(cache_dir(), name)
    if _is_preset_dir(cached):
        return cached
    if model_class is None:
        return None
    src = hub.download_official_release(name, cached)
    convert_release(model_class, src, cached, name=name)
    return cached


def _is_shipped_name(source):
    """Whether `source` can name a folder of `saved_models/` (no separators, `.` or `..`)."""
    return source not in (".", "..") and not any(sep and sep in source for sep in (os.sep, os.altsep, "/"))


def resolve_preset(source, load_weights=True, model_class=None):
    """Turn `source` into a preset directory, or None for a built-in config; see `_accepted_forms`.
    An official built-in is converted into the cache as a `model_class` (`LinCAE`); without
    one it gives None until converted."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"preset must be a string or path, got {type(source).__name__}")
    source = os.fspath(source)
    if not source:
        raise ValueError(f"Unknown preset '': the name is empty. Accepted: {_accepted_forms()}.")
    if source.startswith("hf://"):
        return hub.download(source)
    recover_preset(source)  # a save killed midway: put the previous preset back
    if os.path.isdir(source):
        return source
    if not _is_shipped_name(source):
        raise ValueError(f"Unknown preset {source!r}: no such folder. Accepted: {_accepted_forms()}.")
    shipped = shipped_preset_dir(source)
    if _is_preset_dir(shipped):
        return shipped
    if source not in presets.BUILTIN_PRESETS:
        raise ValueError(f"Unknown preset {source!r}. Accepted: {_accepted_forms()}.")
    if presets.BUILTIN_PRESETS[source]["official_folder"] and load_weights:
        return _official_builtin(source, model_class)
    return None


def _read_metadata(directory):
    """`metadata.json` as a dict ({} when absent); refuses a format newer than this code reads."""
    path = os.path.join(directory, METADATA_FILE)
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"Preset {directory} has an unreadable {METADATA_FILE}: {error}") from error
    if not isinstance(info, dict):
        raise ValueError(f"Preset {directory} has an unreadable {METADATA_FILE}: not a JSON object")
    version = info.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"Preset {directory}: format_version in {METADATA_FILE} must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        from keras_lincae import __version__

        raise ValueError(
            f"Preset {directory} has format_version {version}, newer than this keras_lincae "
            f"({__version__}, format_version {FORMAT_VERSION}) reads; upgrade keras_lincae")
    return info


def _type_matches(value, default):
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, list) and (not default or all(_type_matches(v, default[0]) for v in value))
    return isinstance(value, type(default))


def _check_config_types(cls, config, directory):
    """Raise ValueError naming the first field of `config.json` whose type differs from its default's."""
    defaults = dict(cls.default_config(), name="", trainable=True)
    for key, value in config.items():
        if key in defaults and not _type_matches(value, defaults[key]):
            default = defaults[key]
            expected = "list" if isinstance(default, (list, tuple)) else type(default).__name__
            raise ValueError(
                f"Preset {directory}: {CONFIG_FILE} field {key!r} is {value!r} ({type(value).__name__}), "
                f"expected {expected} like the default {default!r}")


def _build_from_directory(cls, directory, load_weights, overrides):
    metadata = _read_metadata(directory)
    try:
        with open(os.path.join(directory, CONFIG_FILE)) as f:
            serialized = json.load(f)
        config = dict(serialized["config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"Preset {directory} has an unreadable {CONFIG_FILE}: {error}") from error
    _check_config_types(cls, config, directory)
    config.update(overrides)
    model = cls.from_config(config)
    model.build()
    if load_weights:
        weights = os.path.join(directory, WEIGHTS_FILE)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Preset {directory} has no {WEIGHTS_FILE}")
        expected = metadata.get(WEIGHTS_CHECKSUM)
        actual = file_sha256(weights) if expected is not None else None
        if actual != expected:
            raise ValueError(
                f"Preset weights {weights} are corrupt, truncated or do not match the saved ones: "
                f"checksum {actual} does not match {METADATA_FILE} ({expected})")
        try:
            model.load_weights(weights)
        except Exception as error:
            raise ValueError(
                f"Preset weights {weights} are corrupt, truncated or do not match the config: {error}"
            ) from error
    return model


def _folder_identity(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def load_preset(cls, source, load_weights=True, **overrides):
    """Build a model from a preset source (see `LinCAE.from_preset`)."""
    directory = resolve_preset(source, load_weights, model_class=cls)
    if directory is None:
        config = dict(presets.BUILTIN_PRESETS[os.fspath(source)]["config"])
        config.update(overrides)
        model = cls(**config)
        model.build()
        if load_weights and presets.BUILTIN_PRESETS[os.fspath(source)]["official_folder"] is None:
            raise RuntimeError(
                f"Built-in preset {source!r} has no weights to load: no folder {source!r} in "
                f"{REPO_PRESETS_DIR} or {INSTALLED_PRESETS_DIR}; use load_weights=False for a fresh model")
        return model
    if not _is_preset_dir(directory):
        if _is_release_dir(directory):
            if overrides:
                raise ValueError("config overrides are not supported when converting a release folder")
            model = convert_release(cls, directory)
            if not load_weights:
                fresh = cls(**model.get_config())
                fresh.build()
                return fresh
            return model
        raise ValueError(f"{directory} is neither a preset nor an official release. Accepted: {_accepted_forms()}.")
    identity = _folder_identity(directory)
    try:
        return _build_from_directory(cls, directory, load_weights, overrides)
    except (OSError, ValueError):
        # A save replaced the folder while it was read: read the new preset once more.
        if not wait_for_save(directory) and _folder_identity(directory) == identity:
            raise
    return _build_from_directory(cls, directory, load_weights, overrides)
