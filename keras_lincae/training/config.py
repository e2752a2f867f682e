"""The training configuration: one frozen, validated `TrainConfig` built from YAML + overrides.

Configs are YAML mappings of `TrainConfig` fields; `extends: <name>` chains overlays onto a
parent (the packaged ones, in `keras_lincae/training/configs/`, all lead to `base.yaml`, the
official hyper-parameters). `model:` holds `LinCAE` field overrides. A config is resolved once::

    config = resolve_config("tiny", [parse_override("steps=50")])    # fresh run
    config = resume_config(run_dir, overrides)                       # saved config + resumable keys

Fields shared with the model (`seed`, `steps`, `ema_momentum`, `ema_every`) default to
`keras_lincae.models.lincae.TRAINING_DEFAULTS`.
"""

import copy
import dataclasses
import difflib
import importlib.resources
import math
import os
import re
from typing import Any

import yaml

from keras_lincae.backend_dispatch import tensorflow_available
from keras_lincae.models.lincae import ARCHITECTURE_DEFAULTS, TRAINING_DEFAULTS
from keras_lincae.models.validation import MAX_SEED
from keras_lincae.training.schedules import DECAYS, WarmupDecay

CONFIG_DIR = importlib.resources.files("keras_lincae.training") / "configs"
SAVED_CONFIG = "config.yaml"  # a run directory's resolved config

# Keys a resumed run may change; every other key must match the run's saved config.
RESUMABLE_KEYS = ("steps", "checkpoint_every", "keep_checkpoints", "export_preset_every", "log_every",
                  "num_log_examples", "data_resume", "data_skip_limit", "devices", "cpu_replicas", "tpu",
                  "distribution", "model_parallel", "data", "max_minutes", "input_pipeline",
                  "data_reader")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (validated by `from_dict`; change with `replace`)."""

    preset: str = "lin_cae"  # architecture: built-in preset name or preset directory (trained from scratch)
    init_weights: Any = None  # fine-tune: a preset (name or directory) with the same architecture whose weights start the run
    model: dict = dataclasses.field(default_factory=dict)  # LinCAE config overrides (mode, gain_*, mix_weight_*, ...)
    seed: int = TRAINING_DEFAULTS["seed"]
    steps: int = TRAINING_DEFAULTS["total_steps"]  # optimizer updates
    batch_size: int = 20  # clips per optimizer update, summed over replicas and accumulation steps
    clip_frames: int = 64  # spectrogram frames per training clip
    learning_rate: float = 1e-4
    final_learning_rate: float = 1e-6
    warmup_steps: int = 10_000
    lr_decay: Any = "cosine"
    beta_1: float = 0.9
    beta_2: float = 0.999
    ema_momentum: Any = TRAINING_DEFAULTS["ema_momentum"]  # None: no EMA
    ema_every: int = TRAINING_DEFAULTS["ema_every"]  # optimizer updates between EMA updates
    grad_accum: int = 1
    dtype_policy: Any = None  # None (float32), "mixed_bfloat16" or "mixed_float16"
    data: Any = None  # list of folders; None: the embedded synthetic train split
    data_weights: Any = None
    musdb_stems: Any = True
    silence_rms_db: Any = -60.0
    shuffle_buffer: int = 256
    input_pipeline: str = "auto"  # "tf.data", "python" (numpy batches, no TensorFlow) or "auto": tf.data if TF imports
    data_reader: str = "soundfile"  # "soundfile" (crops read from disk) or "memory" (each file decoded once, kept in RAM)
    data_resume: str = "auto"  # "skip" (exact), "reseed" (fast), "auto": skip up to data_skip_limit batches
    data_skip_limit: int = 20_000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    export_preset_every: int = 0
    max_minutes: Any = None  # this process stops (checkpointed) at the first step after N minutes; --resume continues
    log_every: int = 100
    num_log_examples: int = 4
    distribution: str = "none"
    devices: Any = None
    model_parallel: int = 2
    cpu_replicas: Any = None
    tpu: Any = None
    jit_compile: Any = "auto"

    @classmethod
    def from_dict(cls, mapping):
        """A validated `TrainConfig` from a mapping of fields (missing ones take the defaults).

        Integral floats of integer fields (`steps: 1e5`) become ints; `model.*` values get their
        type checked here and their range by `LinCAE`. Raises ValueError naming the field.
        """
        unknown = sorted(set(mapping) - set(FIELDS))
        if unknown:
            raise ValueError(f"Unknown config keys {unknown}")
        values = dict(copy.deepcopy(DEFAULTS), **copy.deepcopy(dict(mapping)))
        _check(values)
        return cls(**values)

    def replace(self, **changes):
        """A validated copy with `changes`."""
        return self.from_dict(dict(self.to_dict(), **changes))

    def to_dict(self):
        """The fields as plain YAML/JSON values, in declaration order."""
        return copy.deepcopy({name: getattr(self, name) for name in FIELDS})

    def lincae_fields(self):
        """`LinCAE` config fields for this run: `model` plus the trainer's seed, horizon and EMA.

        The model's counter advances once per micro-batch, so its horizons are in micro-steps.
        """
        fields = dict(self.model, seed=self.seed, total_steps=self.steps * self.grad_accum,
                      ema_momentum=self.ema_momentum, ema_every=self.ema_every * self.grad_accum)
        if self.dtype_policy:
            fields["dtype"] = self.dtype_policy
        return fields

    def schedule(self):
        """The learning-rate schedule, a function of the optimizer update."""
        return WarmupDecay(learning_rate=self.learning_rate, final_learning_rate=self.final_learning_rate,
                           warmup_steps=self.warmup_steps, total_steps=self.steps, decay=self.lr_decay)

    def stream_options(self):
        """Keyword arguments of `keras_lincae.data.audio_dataset` / `audio_batches` (besides seed)."""
        return dict(weights=self.data_weights, musdb_stems=self.musdb_stems, silence_rms_db=self.silence_rms_db,
                    shuffle_buffer=self.shuffle_buffer, reader=self.data_reader)

    @property
    def pipeline(self):
        """`"tf.data"` or `"python"`: the input pipeline asked for, "auto" resolved."""
        if self.input_pipeline == "auto":
            return "tf.data" if tensorflow_available() else "python"
        return self.input_pipeline


FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
DEFAULTS = TrainConfig().to_dict()


# ------------------------------------------------------------------------------------- YAML
def _yaml_loader():
    """PyYAML's safe loader that also reads `3e-4` and `1e5` as floats (YAML 1.2; PyYAML
    follows YAML 1.1, where a float needs a dot, and returns the string '3e-4')."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return Loader


def _load_yaml(text):
    return yaml.load(text, Loader=_yaml_loader())


def _read_yaml(source):
    """The mapping in `source` (a path or a packaged `Traversable`)."""
    if isinstance(source, str):
        with open(source) as f:
            text = f.read()
    else:
        text = source.read_text()
    data = _load_yaml(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a config must be a mapping")
    return data


def write_yaml(path, data):
    """Write `data` to `path` atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)


def config_names():
    """The packaged config names, sorted."""
    return sorted(f.name[:-5] for f in CONFIG_DIR.iterdir() if f.name.endswith(".yaml"))


def config_path(name):
    """The config given by name (`tiny`, `lin_cae`, ...; a packaged `Traversable`) or file path."""
    if os.path.isfile(name):
        return name
    packaged = CONFIG_DIR / f"{name}.yaml"
    if not packaged.is_file():
        raise ValueError(f"Unknown config {name!r}: give one of {config_names()} or a YAML file path")
    return packaged


def _parent(source, name):
    """The config `extends: name` names: a sibling file of a config file, else by name."""
    if isinstance(source, str):
        sibling = os.path.join(os.path.dirname(source), f"{name}.yaml")
        if os.path.isfile(sibling):
            return sibling
    return config_path(name)


def _deep_update(base, overlay):
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_config(name):
    """The unvalidated mapping of config `name`: DEFAULTS, then the `extends:` chain, then it."""
    chain, source = [], config_path(name)
    while source is not None:
        data = _read_yaml(source)
        chain.append(data)
        parent = data.pop("extends", None)
        source = _parent(source, parent) if parent else None
    config = copy.deepcopy(DEFAULTS)
    for data in reversed(chain):
        _deep_update(config, data)
    return config


# -------------------------------------------------------------------------------- overrides
def parse_override(text):
    """`key=value` (YAML value, `3e-4` a float; dotted keys reach into `model`) -> `(keys, value)`."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), _load_yaml(value)
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"--set {key.strip()}: {value!r} is not a YAML value ({reason})") from None


def apply_overrides(mapping, overrides):
    """`mapping` (a dict, changed in place) with the `(keys, value)` overrides set."""
    for keys, value in overrides:
        if keys[0] not in DEFAULTS:
            raise ValueError(f"Unknown config key {keys[0]!r}; known: {', '.join(sorted(DEFAULTS))}")
        if len(keys) > 1 and not isinstance(DEFAULTS[keys[0]], dict):
            raise ValueError(f"config key {'.'.join(keys)}: {keys[0]} has no sub-keys (only model.* has)")
        target = mapping
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        target[keys[-1]] = value
    return mapping


def resolve_config(name, overrides=()):
    """The `TrainConfig` of config `name` (packaged name or YAML path) with `overrides`."""
    return TrainConfig.from_dict(apply_overrides(load_config(name), overrides))


def merge_resumed_config(saved, given):
    """The saved mapping updated with the keys given explicitly on resume (`given`); keys
    outside `RESUMABLE_KEYS` may only repeat their saved value."""
    merged = copy.deepcopy(saved)
    for key, value in given.items():
        if key in RESUMABLE_KEYS:
            merged[key] = value
        elif saved.get(key) != value:
            raise ValueError(
                f"--resume: {key} is {saved[key]!r} in the saved run but {value!r} now; only "
                f"{', '.join(RESUMABLE_KEYS)} may change when resuming")
    return merged


def resumed_mapping(run_dir, overrides=()):
    """The unvalidated mapping saved in `run_dir`, with the resumable keys among `overrides` changed."""
    saved = os.path.join(run_dir, SAVED_CONFIG)
    if not os.path.isfile(saved):
        raise FileNotFoundError(f"--resume: {saved} not found (no run to resume in {os.path.abspath(run_dir)})")
    return merge_resumed_config(_read_yaml(saved), apply_overrides({}, overrides))


def resume_config(run_dir, overrides=()):
    """The `TrainConfig` saved in `run_dir`, with the resumable keys among `overrides` changed."""
    return TrainConfig.from_dict(resumed_mapping(run_dir, overrides))


# ------------------------------------------------------------------------------- validation
_POSITIVE_INT = ("a positive integer", True, lambda v: v >= 1)
_COUNT = ("an integer >= 0", True, lambda v: v >= 0)
_POSITIVE = ("a positive number", False, lambda v: v > 0)
_FRACTION = ("a number in [0, 1)", False, lambda v: 0 <= v < 1)
# Numeric fields: (what the value must be, integer?, range test); every value must be finite.
NUMERIC_KEYS = dict(
    seed=(f"an integer in [0, {MAX_SEED}]", True, lambda v: 0 <= v <= MAX_SEED),
    steps=_POSITIVE_INT,
    batch_size=_POSITIVE_INT,
    clip_frames=_POSITIVE_INT,
    learning_rate=_POSITIVE,
    final_learning_rate=("a number >= 0", False, lambda v: v >= 0),
    warmup_steps=_COUNT,
    beta_1=_FRACTION,
    beta_2=_FRACTION,
    ema_momentum=("a number in (0, 1)", False, lambda v: 0 < v < 1),
    ema_every=_POSITIVE_INT,
    grad_accum=_POSITIVE_INT,
    silence_rms_db=("a level in dBFS", False, lambda v: True),
    shuffle_buffer=_COUNT,
    data_skip_limit=_COUNT,
    checkpoint_every=_POSITIVE_INT,
    keep_checkpoints=("an integer >= 0 (0 keeps all)", True, lambda v: v >= 0),
    export_preset_every=("an integer >= 0 (0: never)", True, lambda v: v >= 0),
    max_minutes=_POSITIVE,
    log_every=_POSITIVE_INT,
    num_log_examples=_COUNT,
    devices=_POSITIVE_INT,
    model_parallel=_POSITIVE_INT,
    cpu_replicas=_POSITIVE_INT,
)
NULLABLE_KEYS = ("ema_momentum", "silence_rms_db", "max_minutes", "devices", "cpu_replicas")
CHOICES = dict(
    jit_compile=(("auto", True, False), "auto, true or false"),
    dtype_policy=((None, "float32", "mixed_bfloat16", "mixed_float16", "bfloat16"),
                  "mixed_bfloat16, mixed_float16 or float32"),
    data_resume=(("auto", "skip", "reseed"), "auto, skip or reseed"),
    input_pipeline=(("auto", "tf.data", "python"), "auto, tf.data or python"),
    data_reader=(("soundfile", "memory"), "soundfile or memory"),
)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_number(key, value, what, integer, test, nullable=False):
    """`value` as an int (`integer`) or number passing `test`; raise ValueError naming `key`."""
    if value is None and nullable:
        return None
    number = _is_number(value)
    if number and integer and float(value).is_integer():
        value = int(value)
    if not number or (integer and not isinstance(value, int)) or not test(value):
        raise ValueError(f"{key} must be {what}{' or null' if nullable else ''}, got {value!r}")
    return value


def _checked_model(model):
    """The `model.*` overrides with their types checked against the LinCAE fields' defaults
    (LinCAE checks ranges); lists of integers and integral numbers normalised."""
    if not isinstance(model, dict):
        raise ValueError(f"model must be a mapping of LinCAE fields, got {model!r}")
    fields = dict(ARCHITECTURE_DEFAULTS, **TRAINING_DEFAULTS)
    unknown = sorted(set(model) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see LinCAE's fields in keras_lincae.models.lincae"
        raise ValueError(f"Unknown model keys {unknown}: {hint}")
    checked = {}
    for key, value in model.items():
        default, name = fields[key], f"model.{key}"
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be true or false, got {value!r}")
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
        elif isinstance(default, (list, tuple)):
            if not isinstance(value, (list, tuple)) or not all(_is_number(v) and float(v).is_integer() for v in value):
                raise ValueError(f"{name} must be a list of integers, got {value!r}")
            value = [int(v) for v in value]
        else:  # a number, or None (ema_momentum)
            integer = isinstance(default, int)
            what = "an integer" if integer else "a number"
            value = _checked_number(name, value, what, integer, lambda v: True, nullable=default is None)
        checked[key] = value
    return checked


def _check(c):
    """Validate (and normalise in place) the field values `c`; raise ValueError naming a field."""
    for key, (what, integer, test) in NUMERIC_KEYS.items():
        c[key] = _checked_number(key, c[key], what, integer, test, nullable=key in NULLABLE_KEYS)
    c["model"] = _checked_model(c["model"])
    for key in ("preset", "init_weights", "tpu"):
        if not (isinstance(c[key], str) or (c[key] is None and key != "preset")):
            raise ValueError(f"{key} must be a string, got {c[key]!r}")
    data = c["data"]
    if not (data is None or isinstance(data, str) or (isinstance(data, list) and all(isinstance(d, str) for d in data))):
        raise ValueError(f"data must be a folder or a list of folders, got {data!r}")
    weights = c["data_weights"]
    if weights is not None and not (isinstance(weights, list) and all(_is_number(w) and w >= 0 for w in weights)):
        raise ValueError(f"data_weights must be a list of numbers >= 0, got {weights!r}")
    stems = c["musdb_stems"]
    if not (isinstance(stems, bool) or (isinstance(stems, list) and all(isinstance(s, str) for s in stems))):
        raise ValueError(f"musdb_stems must be true, false or a list of stem names, got {stems!r}")
    if c["lr_decay"] not in DECAYS:
        raise ValueError(f"lr_decay must be one of {', '.join(map(str, DECAYS))}, got {c['lr_decay']!r}")
    for key, (allowed, names) in CHOICES.items():
        if c[key] not in allowed:
            raise ValueError(f"{key} must be {names}, got {c[key]!r}")
    if c["batch_size"] % c["grad_accum"]:
        raise ValueError(f"batch_size {c['batch_size']} is not divisible by grad_accum {c['grad_accum']}")
    if c["lr_decay"] in ("cosine", "linear") and c["steps"] <= c["warmup_steps"]:
        raise ValueError(
            f"steps ({c['steps']}) must exceed warmup_steps ({c['warmup_steps']}); "
            "for a short run pass e.g. --set warmup_steps=10")
    if c["input_pipeline"] == "tf.data" and not tensorflow_available():
        raise ValueError("input_pipeline tf.data needs TensorFlow (pip install tensorflow-cpu); "
                         "input_pipeline: python trains without it")
