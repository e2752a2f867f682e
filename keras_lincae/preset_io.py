"""Reading and writing presets: `config.json` + `model.weights.h5` + `metadata.json`."""

import datetime
import json
import os
import shutil
import sys
import tempfile
import time

import keras

from keras_lincae import presets
from keras_lincae.cache import cache_root
from keras_lincae.fs import give_usual_mode

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
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


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def _pause(stage):
    """Test hook: `KERAS_LINCAE_PRESET_PAUSE=<stage>:<seconds>` sleeps at that stage of a save."""
    hook = os.environ.get("KERAS_LINCAE_PRESET_PAUSE", "")
    if hook.partition(":")[0] == stage:
        time.sleep(float(hook.partition(":")[2] or 0))


def _siblings(preset_dir, kind):
    parent, base = os.path.split(preset_dir)
    prefix = f".{base}.{kind}-"
    return [os.path.join(parent, n) for n in os.listdir(parent) if n.startswith(prefix)] if os.path.isdir(parent) else []


def recover_preset(preset_dir):
    """Finish a save that was killed between its two renames: put the previous preset back.

    A save moves the old preset to `.<name>.old-*/preset` and then renames the finished
    staging folder into place; if `preset_dir` is missing but such a backup exists, the backup
    is restored. Returns True when something was restored.
    """
    preset_dir = os.path.abspath(preset_dir)
    if os.path.exists(preset_dir):
        return False
    for backup in sorted(_siblings(preset_dir, "old"), key=os.path.getmtime, reverse=True):
        if _is_preset_dir(os.path.join(backup, "preset")):
            os.rename(os.path.join(backup, "preset"), preset_dir)
            shutil.rmtree(backup, ignore_errors=True)
            return True
    return False


def save_preset(model, preset_dir, **metadata):
    """Write `model` as a preset directory atomically.

    Files are written into a staging sibling `.<name>.staging-*`, then swapped in with two
    renames (old preset -> `.<name>.old-*/preset`, staging -> `preset_dir`). A process
    killed at any point leaves the previous preset or the new one: a kill between the
    renames is repaired by `recover_preset`, which every load and save runs first.
    Staging folders of killed saves are removed by the next save to the same place.
    """
    from keras_lincae import __version__

    preset_dir = os.path.abspath(preset_dir)
    parent, base = os.path.split(preset_dir)
    os.makedirs(parent, exist_ok=True)
    recover_preset(preset_dir)
    for stale in _siblings(preset_dir, "staging") + _siblings(preset_dir, "old"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = tempfile.mkdtemp(prefix=f".{base}.staging-", dir=parent)
    give_usual_mode(staging)
    try:
        _write_json(os.path.join(staging, CONFIG_FILE), keras.saving.serialize_keras_object(model))
        model.save_weights(os.path.join(staging, WEIGHTS_FILE))
        _pause("staged_weights")
        info = dict(
            format_version=FORMAT_VERSION,
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
        _write_json(os.path.join(staging, METADATA_FILE), info)
        old = None
        if os.path.exists(preset_dir):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rename(preset_dir, os.path.join(old, "preset"))
        _pause("between_renames")
        os.rename(staging, preset_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return preset_dir


def _is_preset_dir(path):
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def _is_release_dir(path):
    from keras_lincae.convert import RELEASE_FILES

    return os.path.isfile(os.path.join(path, RELEASE_FILES["weights"]))


def _accepted_forms():
    return (
        f"a built-in name ({', '.join(presets.list_presets())}), a preset directory "
        "(config.json + model.weights.h5 + metadata.json), an official release directory "
        "(autoencoder_inference_model_last.pth + *_kwargs_last.yaml), or hf://owner/repo[/subdir]"
    )


def _download_hf(source):
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError(f"Loading {source} needs huggingface_hub: pip install huggingface_hub") from error
    parts = source[len("hf://"):].strip("/").split("/")
    if len(parts) < 2:
        raise ValueError(f"hf:// presets must look like hf://owner/repo[/subdir], got {source!r}")
    repo, subdir = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        root = huggingface_hub.snapshot_download(repo, allow_patterns=[f"{subdir}/*"] if subdir else None)
    except Exception as error:
        raise ConnectionError(f"Could not download {source} from the Hugging Face Hub: {error}") from error
    return os.path.join(root, subdir) if subdir else root


def _official_builtin(name, load_weights):
    """Directory of a converted official preset, converting a download into the cache once."""
    cached = os.path.join(cache_dir(), name)
    if _is_preset_dir(cached):
        return cached
    spec = presets.BUILTIN_PRESETS[name]
    try:
        src = _download_hf(f"hf://{presets.OFFICIAL_HF_REPO}/{spec['official_folder']}")
    except (ConnectionError, ImportError) as error:
        raise RuntimeError(
            f"The weights of built-in preset {name!r} are the official release "
            f"({presets.OFFICIAL_HF_REPO}, folder {spec['official_folder']}) and could not be fetched: {error}\n"
            f"If you have that folder on disk, convert it once with\n"
            f"  python recipes/convert_checkpoint.py PATH/{spec['official_folder']} {cached}\n"
            f"or load it directly with LinCAE.from_preset('PATH/{spec['official_folder']}'); "
            f"use load_weights=False for a randomly initialised model."
        ) from error
    from keras_lincae.convert import convert_official_checkpoint

    convert_official_checkpoint(src, cached, name=name)
    return cached


def resolve_preset(source, load_weights=True):
    """Turn `source` into `(directory or None, config overrides)`; see `_accepted_forms`."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"preset must be a string or path, got {type(source).__name__}")
    source = os.fspath(source)
    if source.startswith("hf://"):
        return _download_hf(source)
    recover_preset(source)  # a save killed between its renames left the previous preset aside
    if os.path.isdir(source):
        return source
    shipped = shipped_preset_dir(source)
    if source in presets.BUILTIN_PRESETS or os.path.isdir(shipped):
        if _is_preset_dir(shipped):
            return shipped
        if source in presets.BUILTIN_PRESETS and presets.BUILTIN_PRESETS[source]["official_folder"]:
            return None if not load_weights else _official_builtin(source, load_weights)
        return None
    raise ValueError(f"Unknown preset {source!r}. Accepted: {_accepted_forms()}.")


def load_preset(cls, source, load_weights=True, **overrides):
    """Build a model from a preset source (see `LinCAE.from_preset`)."""
    directory = resolve_preset(source, load_weights)
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
            from keras_lincae.convert import convert_official_checkpoint

            if overrides:
                raise ValueError("config overrides are not supported when converting a release folder")
            model = convert_official_checkpoint(directory)
            if not load_weights:
                fresh = cls(**model.get_config())
                fresh.build()
                return fresh
            return model
        raise ValueError(f"{directory} is neither a preset nor an official release. Accepted: {_accepted_forms()}.")
    try:
        with open(os.path.join(directory, CONFIG_FILE)) as f:
            serialized = json.load(f)
        config = dict(serialized["config"])
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"Preset {directory} has an unreadable {CONFIG_FILE}: {error}") from error
    config.update(overrides)
    model = cls.from_config(config)
    model.build()
    if load_weights:
        weights = os.path.join(directory, WEIGHTS_FILE)
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"Preset {directory} has no {WEIGHTS_FILE}")
        try:
            model.load_weights(weights)
        except Exception as error:
            raise ValueError(
                f"Preset weights {weights} are corrupt, truncated or do not match the config: {error}"
            ) from error
    return model
