"""The training recipe's logic: configs, model/optimizer/data builders, callbacks, run loop.

`recipes/train.py` is a thin command line over `train(config, run_dir, resume)`. One model
definition (`LinCAE`, whose `compute_loss` holds the whole objective) is trained with
`model.fit` on every backend; what changes per backend is the distribution engine
(`keras_lincae.training.distribute`).

Run directory layout::

    RUN_DIR/config.yaml            the resolved config (a resumed run reads it back and records the keys it changed)
    RUN_DIR/checkpoints/ckpt-*.npz atomic checkpoints (see `checkpoint.Checkpointer`)
    RUN_DIR/logs/                  TensorBoard events (losses, learning rate, gain range, audio)
    RUN_DIR/preset/                final preset, EMA weights swapped in
    RUN_DIR/presets/step_N/        presets written every `export_preset_every` steps
"""

import copy
import difflib
import errno
import json
import math
import os
import re
import sys
import time

import keras
import numpy as np

from keras_lincae.models.validation import MAX_SEED

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

# Keys a resumed run may change; every other key must match the run's saved config.
RESUMABLE_KEYS = ("steps", "checkpoint_every", "keep_checkpoints", "export_preset_every", "log_every",
                  "num_log_examples", "data_resume", "data_skip_limit", "devices", "cpu_replicas", "tpu",
                  "distribution", "model_parallel", "data", "max_minutes", "input_pipeline",
                  "data_reader")

DEFAULTS = dict(
    preset="lin_cae",  # architecture: built-in preset name or preset directory (trained from scratch)
    init_weights=None,  # fine-tune: a preset (name or directory) with the same architecture whose weights start the run
    model={},  # LinCAE config overrides (mode, gain_*, mix_weight_*, ...)
    seed=42,
    steps=800_000,  # optimizer updates
    batch_size=20,  # clips per optimizer update, summed over replicas and accumulation steps
    clip_frames=64,  # spectrogram frames per training clip
    learning_rate=1e-4,
    final_learning_rate=1e-6,
    warmup_steps=10_000,
    lr_decay="cosine",
    beta_1=0.9,
    beta_2=0.999,
    ema_momentum=0.9999,
    ema_every=10,
    grad_accum=1,
    dtype_policy=None,  # None (float32), "mixed_bfloat16" or "mixed_float16"
    data=None,  # list of folders; None: the embedded synthetic train split
    data_weights=None,
    musdb_stems=True,
    silence_rms_db=-60.0,
    shuffle_buffer=256,
    input_pipeline="auto",  # "tf.data", "python" (numpy batches, no TensorFlow) or "auto": tf.data if TF imports
    data_reader="soundfile",  # "soundfile" (crops read from disk) or "memory" (each file decoded once, kept in RAM)
    data_resume="auto",  # "skip" (exact), "reseed" (fast), "auto": skip up to data_skip_limit batches
    data_skip_limit=20_000,
    checkpoint_every=5000,
    keep_checkpoints=3,
    export_preset_every=0,
    max_minutes=None,  # this process stops (checkpointed) at the first step after N minutes; --resume continues
    log_every=100,
    num_log_examples=4,
    distribution="none",
    devices=None,
    model_parallel=2,
    cpu_replicas=None,
    tpu=None,
    jit_compile="auto",
)


# ------------------------------------------------------------------------------------ configs
def _deep_update(base, overlay):
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _yaml_loader():
    """PyYAML's safe loader that also reads `3e-4` and `1e5` as floats (YAML 1.2; PyYAML
    follows YAML 1.1, where a float needs a dot, and returns the string '3e-4')."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return Loader


def _load_yaml(text_or_file):
    import yaml

    return yaml.load(text_or_file, Loader=_yaml_loader())


def _read_yaml(path):
    with open(path) as f:
        data = _load_yaml(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping")
    return data


def config_path(name):
    """Path of a config given by name (`tiny`, `lin_cae`, ...) or file path."""
    if os.path.isfile(name):
        return name
    path = os.path.join(CONFIG_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        names = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))
        raise ValueError(f"Unknown config {name!r}: give one of {names} or a YAML file path")
    return path


def load_config(name):
    """DEFAULTS, then the overlay chain (`extends:`), then the named config."""
    chain, path = [], config_path(name)
    while path is not None:
        data = _read_yaml(path)
        chain.append(data)
        parent = data.pop("extends", None)
        if parent:
            sibling = os.path.join(os.path.dirname(path), f"{parent}.yaml")
            path = sibling if os.path.isfile(sibling) else config_path(parent)
        else:
            path = None
    config = copy.deepcopy(DEFAULTS)
    for data in reversed(chain):
        _deep_update(config, data)
    return config


def parse_override(text):
    """`key=value` (YAML value, `3e-4` a float; dotted keys reach into `model`) -> `(keys, value)`."""
    import yaml

    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), _load_yaml(value)
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"--set {key.strip()}: {value!r} is not a YAML value ({reason})") from None


def apply_overrides(config, overrides):
    for keys, value in overrides:
        if keys[0] not in DEFAULTS:
            raise ValueError(f"Unknown config key {keys[0]!r}; known: {', '.join(sorted(DEFAULTS))}")
        if len(keys) > 1 and not isinstance(DEFAULTS[keys[0]], dict):
            raise ValueError(f"config key {'.'.join(keys)}: {keys[0]} has no sub-keys (only model.* has)")
        target = config
        for k in keys[:-1]:
            target = target.setdefault(k, {})
        target[keys[-1]] = value
    return config


_POSITIVE_INT = ("a positive integer", True, lambda v: v >= 1)
_COUNT = ("an integer >= 0", True, lambda v: v >= 0)
_POSITIVE = ("a positive number", False, lambda v: v > 0)
_FRACTION = ("a number in [0, 1)", False, lambda v: 0 <= v < 1)
# Numeric config keys: (what the value must be, integer?, range test); every value must be finite.
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


def _check_model_keys(model):
    """Types of the `model.*` overrides, against the LinCAE fields' defaults (LinCAE checks ranges)."""
    from keras_lincae.models.lincae import ARCHITECTURE_DEFAULTS, TRAINING_DEFAULTS

    if not isinstance(model, dict):
        raise ValueError(f"model must be a mapping of LinCAE fields, got {model!r}")
    fields = dict(ARCHITECTURE_DEFAULTS, **TRAINING_DEFAULTS)
    unknown = sorted(set(model) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see LinCAE's fields in keras_lincae.models.lincae"
        raise ValueError(f"Unknown model keys {unknown}: {hint}")
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
            model[key] = [int(v) for v in value]
        else:  # a number, or None (ema_momentum)
            integer = isinstance(default, int)
            what = "an integer" if integer else "a number"
            model[key] = _checked_number(name, value, what, integer, lambda v: True, nullable=default is None)


def check_config(config):
    """Validate a resolved config: the type and range of every key; raise ValueError naming it.

    Integral floats (`steps: 1e5`) of integer keys become ints; `model.*` values get their type
    checked here and their range by `LinCAE`.
    """
    from keras_lincae.training.schedules import _DECAYS

    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"Unknown config keys {unknown}")
    for key, (what, integer, test) in NUMERIC_KEYS.items():
        config[key] = _checked_number(key, config[key], what, integer, test, nullable=key in NULLABLE_KEYS)
    _check_model_keys(config["model"])
    for key in ("preset", "init_weights", "tpu"):
        if not (isinstance(config[key], str) or (config[key] is None and key != "preset")):
            raise ValueError(f"{key} must be a string, got {config[key]!r}")
    data = config["data"]
    if not (data is None or isinstance(data, str) or
            (isinstance(data, list) and all(isinstance(d, str) for d in data))):
        raise ValueError(f"data must be a folder or a list of folders, got {data!r}")
    weights = config["data_weights"]
    if weights is not None and not (isinstance(weights, list) and all(_is_number(w) and w >= 0 for w in weights)):
        raise ValueError(f"data_weights must be a list of numbers >= 0, got {weights!r}")
    stems = config["musdb_stems"]
    if not (isinstance(stems, bool) or (isinstance(stems, list) and all(isinstance(s, str) for s in stems))):
        raise ValueError(f"musdb_stems must be true, false or a list of stem names, got {stems!r}")
    if config["jit_compile"] not in ("auto", True, False):
        raise ValueError(f"jit_compile must be auto, true or false, got {config['jit_compile']!r}")
    if config["lr_decay"] not in _DECAYS:
        raise ValueError(f"lr_decay must be one of {', '.join(map(str, _DECAYS))}, got {config['lr_decay']!r}")
    if config["batch_size"] % config["grad_accum"]:
        raise ValueError(f"batch_size {config['batch_size']} is not divisible by grad_accum {config['grad_accum']}")
    if config["lr_decay"] in ("cosine", "linear") and config["steps"] <= config["warmup_steps"]:
        raise ValueError(
            f"steps ({config['steps']}) must exceed warmup_steps ({config['warmup_steps']}); "
            "for a short run pass e.g. --set warmup_steps=10")
    if config["dtype_policy"] not in (None, "float32", "mixed_bfloat16", "mixed_float16", "bfloat16"):
        raise ValueError(f"dtype_policy must be mixed_bfloat16, mixed_float16 or float32, got {config['dtype_policy']!r}")
    if config["data_resume"] not in ("auto", "skip", "reseed"):
        raise ValueError(f"data_resume must be auto, skip or reseed, got {config['data_resume']!r}")
    if config["input_pipeline"] not in ("auto", "tf.data", "python"):
        raise ValueError(f"input_pipeline must be auto, tf.data or python, got {config['input_pipeline']!r}")
    if config["data_reader"] not in ("soundfile", "memory"):
        raise ValueError(f"data_reader must be soundfile or memory, got {config['data_reader']!r}")
    if input_pipeline(config) == "tf.data" and not _tensorflow_available():
        raise ValueError("input_pipeline tf.data needs TensorFlow (pip install tensorflow-cpu); "
                         "input_pipeline: python trains without it")
    return config


# ----------------------------------------------------------------------------------- builders
def build_model(config):
    """A freshly initialised `LinCAE` with the recipe's training fields."""
    from keras_lincae import LinCAE

    accum = config["grad_accum"]
    overrides = dict(config["model"])
    # The model's counter advances once per micro-batch: its horizons are in micro-steps.
    overrides.update(
        seed=int(config["seed"]),
        total_steps=int(config["steps"]) * accum,
        ema_momentum=config["ema_momentum"],
        ema_every=int(config["ema_every"]) * accum,
    )
    if config["dtype_policy"]:
        overrides["dtype"] = config["dtype_policy"]
    return LinCAE.from_preset(config["preset"], load_weights=False, **overrides)


def init_from_preset(model, preset):
    """Copy the weights of `preset` (same architecture) into a freshly built `model`.

    The step counter stays at 0 (every schedule starts afresh) and the EMA shadows start from
    the copied weights. Raises ValueError naming the first mismatching architecture field.
    """
    from keras_lincae import LinCAE
    from keras_lincae.models.lincae import ARCHITECTURE_DEFAULTS

    source = LinCAE.from_preset(preset)
    for key in ARCHITECTURE_DEFAULTS:
        mine, theirs = (_plain(m.get_config().get(key)) for m in (model, source))
        if mine != theirs:
            raise ValueError(f"init_weights {preset!r}: its {key} is {theirs!r}, the run's model has {mine!r}")
    for part in ("frontend", "encoder", "decoder"):
        for dst, src in zip(getattr(model, part).weights, getattr(source, part).weights, strict=True):
            dst.assign(keras.ops.convert_to_numpy(src.value))
    sources = model.encoder.trainable_weights + model.decoder.trainable_weights
    for shadow, w in zip(model.ema_weights, sources):
        shadow.assign(np.array(keras.ops.convert_to_numpy(w.value)))


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def build_schedule(config):
    from keras_lincae.training.schedules import WarmupDecay

    return WarmupDecay(
        learning_rate=config["learning_rate"],
        final_learning_rate=config["final_learning_rate"],
        warmup_steps=config["warmup_steps"],
        total_steps=config["steps"],
        decay=config["lr_decay"],
    )


class _MicroStepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Evaluates a schedule at `micro_step // accum` (Keras evaluates schedules at micro-steps
    when `gradient_accumulation_steps` is set)."""

    def __init__(self, schedule, accum):
        self.schedule, self.accum = schedule, int(accum)

    def __call__(self, step):
        return self.schedule(keras.ops.floor_divide(step, self.accum))

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule), "accum": self.accum}


def build_optimizer(config):
    """RAdam (torch-aligned) on the official warm-up + cosine schedule; accumulation if asked."""
    from keras_lincae.training.optimizers import RAdam

    schedule = build_schedule(config)
    accum = config["grad_accum"]
    kwargs = {}
    if accum > 1:
        schedule = _MicroStepSchedule(schedule, accum)
        kwargs["gradient_accumulation_steps"] = accum
    return RAdam(learning_rate=schedule, beta_1=config["beta_1"], beta_2=config["beta_2"], **kwargs)


def data_sources(config):
    if config["data"]:
        data = config["data"]
        return [data] if isinstance(data, str) else list(data)
    from keras_lincae.data.synth import ensure_default_dataset

    return [str(ensure_default_dataset() / "train")]


def _tensorflow_available():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def input_pipeline(config):
    """`"tf.data"` or `"python"`: the pipeline `config["input_pipeline"]` asks for, "auto" resolved."""
    choice = config["input_pipeline"]
    if choice == "auto":
        return "tf.data" if _tensorflow_available() else "python"
    return choice


def build_dataset(config, model, batch, seed, skip_batches=0):
    """The clip stream of this process, `(batch, clip_samples)` float32 batches after the consumed
    ones: a `tf.data.Dataset` or a generator of numpy arrays (`input_pipeline`)."""
    from keras_lincae.data import audio_batches, audio_dataset, clip_samples_for_frames

    clip_samples = clip_samples_for_frames(config["clip_frames"], hop=model.hop_size, n_fft_factor=model.n_fft_factor)
    mode = config["data_resume"]
    if mode == "auto":
        mode = "skip" if skip_batches <= config["data_skip_limit"] else "reseed"
    if mode == "reseed" and skip_batches:
        seed = int(np.random.SeedSequence([seed, skip_batches]).generate_state(1)[0] & 0x7FFFFFFF)
    skip = skip_batches if mode == "skip" else 0
    kwargs = dict(seed=seed, weights=config["data_weights"], musdb_stems=config["musdb_stems"],
                  silence_rms_db=config["silence_rms_db"], shuffle_buffer=config["shuffle_buffer"],
                  reader=config["data_reader"])
    if input_pipeline(config) == "python":
        batches = audio_batches(data_sources(config), clip_samples, batch, skip=skip, **kwargs)
        if keras.backend.backend() == "tensorflow":  # a static batch size, which Keras' generator adapter drops
            import tensorflow as tf

            spec = tf.TensorSpec((batch, clip_samples), tf.float32)
            return tf.data.Dataset.from_generator(lambda: batches, output_signature=spec), mode
        return ((clips,) for clips in batches), mode  # Keras takes generators of (inputs,) tuples
    ds = audio_dataset(data_sources(config), clip_samples, batch, **kwargs)
    return (ds.skip(skip) if skip else ds), mode


def first_batch(dataset):
    """The first batch of `build_dataset`'s stream as a numpy array (a generator is closed after it,
    which stops its reading threads and frees its in-memory audio)."""
    stream = iter(dataset)
    batch = next(stream)
    if hasattr(stream, "close"):
        stream.close()
    return np.asarray(batch[0] if isinstance(batch, tuple) else batch)


# ---------------------------------------------------------------------------------- callbacks
class TrainingMonitor(keras.callbacks.Callback):
    """Progress bar (loss, steps/s, ETA), TensorBoard scalars and audio, stop at the last step.

    `micro_step` counts batches (optimizer updates x grad_accum). Keras' per-batch `loss` is the
    running mean since the epoch began; the logged loss is the mean over each logging interval.
    """

    def __init__(self, config, start_micro, total_micro, accum, log_dir=None, examples=None, chief=True,
                 progress=True):
        super().__init__()
        limit = config.get("max_minutes")
        self.time_limit_s = None if limit is None else 60.0 * limit
        self.out_of_time = False
        self.progress = progress
        self.config, self.accum = config, accum
        self.micro, self.total_micro = start_micro, total_micro
        self.start_micro = start_micro
        self.chief = chief
        self.examples = examples
        self.schedule = build_schedule(config)
        self.writer = None
        if chief and log_dir and _tensorflow_available():  # TensorBoard files are written with tf.summary
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(log_dir)
        self.progbar = None
        self.history = []  # (step, interval mean loss)

    def on_train_begin(self, logs=None):
        self.t0 = self.t_log = time.time()
        self.epoch_batches, self.sum_at_log, self.batches_at_log = 0, 0.0, 0
        self.micro_at_log = self.micro
        if self.chief and self.progress:
            self.progbar = keras.utils.Progbar(self.total_micro // self.accum, stateful_metrics=["loss", "steps/s", "lr"])

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_batches, self.sum_at_log, self.batches_at_log = 0, 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        self.micro += 1
        self.epoch_batches += 1
        if self.micro >= self.total_micro:
            self.model.stop_training = True
        elif self.time_limit_s is not None and self.micro % self.accum == 0 and time.time() - self.t0 >= self.time_limit_s:
            self.model.stop_training = self.out_of_time = True
        log_every = self.config["log_every"] * self.accum
        due = self.micro % log_every == 0 or self.micro >= self.total_micro
        if not self.chief or not due or not logs or "loss" not in logs:
            return
        running = float(keras.ops.convert_to_numpy(logs["loss"]))
        total = running * self.epoch_batches
        n = self.epoch_batches - self.batches_at_log
        loss = (total - self.sum_at_log) / max(n, 1)
        self.sum_at_log, self.batches_at_log = total, self.epoch_batches
        now = time.time()
        steps = (self.micro - self.micro_at_log) / self.accum
        rate = steps / max(now - self.t_log, 1e-9)
        self.t_log, self.micro_at_log = now, self.micro
        step = self.micro // self.accum
        lr = float(keras.ops.convert_to_numpy(self.schedule(max(step - 1, 0))))  # the last update's
        self.history.append((step, loss))
        if self.progbar is not None:
            self.progbar.update(step, values=[("loss", loss), ("steps/s", rate), ("lr", lr)])
        if self.writer is not None:
            import tensorflow as tf

            lo, hi = self.model.gain_range_at(self.micro)
            with self.writer.as_default(step=step):
                tf.summary.scalar("loss/consistency", loss)
                tf.summary.scalar("learning_rate", lr)
                tf.summary.scalar("gain/min", lo)
                tf.summary.scalar("gain/max", hi)
                tf.summary.scalar("steps_per_second", rate)
            self.writer.flush()

    def log_audio(self, step):
        if self.writer is None or self.examples is None or not len(self.examples):
            return
        import tensorflow as tf

        sr = int(self.model.sample_rate)
        recon = keras.ops.convert_to_numpy(self.model.autoencode(self.examples, seed=0))
        with self.writer.as_default(step=step):
            if step == 0 or not getattr(self, "_logged_inputs", False):
                tf.summary.audio("audio/input", self.examples[..., None], sr, max_outputs=len(self.examples))
                self._logged_inputs = True
            tf.summary.audio("audio/reconstruction", np.clip(recon, -1, 1)[..., None], sr,
                             max_outputs=len(self.examples))
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()


class CheckpointCallback(keras.callbacks.Callback):
    """Checkpoint (+ audio, periodic preset) at every multiple of `checkpoint_every` steps, counted
    from step 0, so a run resumed mid-interval keeps the same checkpoint and preset steps."""

    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer
        self.every_micro = trainer.config["checkpoint_every"] * trainer.accum

    def on_train_batch_end(self, batch, logs=None):
        micro = self.trainer.monitor.micro  # the monitor runs first and counts this batch
        if micro % self.every_micro == 0:
            self.model  # noqa: B018  (on JAX, reading `model` syncs the training state into it)
            self.trainer.checkpoint()


# --------------------------------------------------------------------------------------- run
class Trainer:
    """Builds everything for a run directory and trains (fresh or resumed)."""

    def __init__(self, config, run_dir, resume=False, distributor=None, verbose=True):
        """`config`: a full config for a fresh run; with `resume`, only the keys to change."""
        from keras_lincae.training.checkpoint import Checkpointer
        from keras_lincae.training.distribute import setup_distribution

        self.run_dir = os.path.abspath(run_dir)
        self.verbose = verbose
        saved = os.path.join(self.run_dir, "config.yaml")
        ckpt_dir = os.path.join(self.run_dir, "checkpoints")
        latest = Checkpointer(ckpt_dir).latest()
        if resume:
            if not os.path.isfile(saved):
                raise FileNotFoundError(f"--resume: {saved} not found (no run to resume in {self.run_dir})")
            config = merge_resumed_config(_read_yaml(saved), config)
        elif latest is not None:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest step {latest[0]}): pass --resume to "
                "continue that run, or choose another --out")
        self.config = check_config(config)
        c = self.config
        self.checkpointer = Checkpointer(ckpt_dir, keep=c["keep_checkpoints"])
        self.accum = c["grad_accum"]
        self.dist = distributor or setup_distribution(
            c["distribution"], num_devices=c["devices"], model_parallel=c["model_parallel"],
            cpu_replicas=c["cpu_replicas"], tpu=c["tpu"])
        if self.dist.is_chief:
            os.makedirs(self.run_dir, exist_ok=True)
            self.checkpointer.clean_temporaries()
            _write_yaml(saved, c)  # on resume: with the keys changed now (e.g. a longer --steps)
        if c.get("max_minutes") is not None and self.dist.world_size > 1:
            raise ValueError("max_minutes stops each process on its own clock, which would leave DDP processes "
                             "waiting for each other; bound a multi-process run with --steps instead")
        micro_batch = c["batch_size"] // self.accum
        if micro_batch % self.dist.num_replicas:
            raise ValueError(
                f"batch_size / grad_accum = {micro_batch} clips per step cannot be split over "
                f"{self.dist.num_replicas} replicas")
        if micro_batch // self.dist.num_replicas < 2:
            raise ValueError(
                f"each replica gets {micro_batch // self.dist.num_replicas} clip(s) per step; Lin-CAE "
                "needs at least 2 to form mixtures: raise batch_size or lower grad_accum")

        if hasattr(self.dist, "configure"):  # JAX: the distribution must exist before variables
            self.dist.configure(build_model_fn=lambda: build_model(c))
        with self.dist.scope():
            keras.utils.set_random_seed(int(c["seed"]))
            self.model = build_model(c)
            self.dist.install_replica_hooks(self.model)
            self.model.compile(optimizer=build_optimizer(c), jit_compile=c["jit_compile"])
            self.model.optimizer.build(self.model.trainable_variables)
        self.start_micro = 0
        self.resumed_from = None
        latest = self.checkpointer.latest() if resume else None
        if latest is not None:
            with self.dist.scope():
                meta = self.checkpointer.restore(self.model, latest[1])
            self.start_micro = int(meta["batches_consumed"])
            self.resumed_from = latest
        elif c["init_weights"]:
            with self.dist.scope():
                init_from_preset(self.model, c["init_weights"])
        self.dist.after_build(self.model)
        self.total_micro = c["steps"] * self.accum
        self.last_saved = self.start_micro // self.accum if latest is not None else None
        self.last_exported = self.last_saved

    # -------------------------------------------------------------------------------- pieces
    @property
    def step(self):
        return self.micro // self.accum

    def _log(self, text):
        if self.verbose and self.dist.is_chief:
            print(text, flush=True)

    def checkpoint(self, final=False):
        """Checkpoint at the current step (chief writes; everyone waits)."""
        self.micro = int(keras.ops.convert_to_numpy(self.model.training_step))
        step = self.step
        if self.dist.is_chief and step != self.last_saved:
            meta = dict(batches_consumed=self.micro, grad_accum=self.accum, backend=keras.backend.backend(),
                        keras_version=keras.__version__, distribution=self.dist.describe(),
                        time=time.strftime("%Y-%m-%dT%H:%M:%S"))
            try:
                path = self.checkpointer.save(self.model, step, meta)
            except OSError as error:
                self.checkpointer.clean_temporaries()  # no partial file left taking space
                hint = "free some space" if error.errno == errno.ENOSPC else "fix that"
                raise OSError(error.errno, f"cannot write the checkpoint of step {step} in "
                                           f"{self.checkpointer.directory}: {error.strerror or error}; "
                                           f"{hint}, then continue with --resume") from error
            self.last_saved = step
            self._log(f"\n[checkpoint] step {step}: {path}")
            self.monitor.log_audio(step)
        every = self.config["export_preset_every"]
        if every and self.dist.is_chief and not final and (self.last_exported or 0) // every < step // every:
            self.export_preset(os.path.join(self.run_dir, "presets", f"step_{step}"))
            self.last_exported = step
        self.dist.barrier()

    def export_preset(self, path):
        """Write a preset with the EMA weights swapped in (the training weights are restored)."""
        model = self.model
        if model.ema_weights:
            sources = model.encoder.trainable_weights + model.decoder.trainable_weights
            saved = [np.array(keras.ops.convert_to_numpy(w.value)) for w in sources]
            model.use_ema_weights()
        try:
            model.save_to_preset(path, overwrite=True, training_step=self.step, training_config=self.config,
                                 weights="ema" if model.ema_weights else "raw")
        finally:
            if model.ema_weights:
                for w, value in zip(sources, saved):
                    w.assign(value)
        self._log(f"[preset] {path} ({'EMA' if model.ema_weights else 'raw'} weights, step {self.step})")
        return path

    # --------------------------------------------------------------------------------- train
    def fit(self):
        c = self.config
        self.micro = self.start_micro
        if self.start_micro >= self.total_micro:
            self._log(f"Nothing to do: the run is at step {self.step} of {c['steps']}")
        per_process = c["batch_size"] // self.accum // self.dist.world_size
        dataset, mode = build_dataset(c, self.model, per_process, self.dist.shard_seed(int(c["seed"])),
                                      skip_batches=self.start_micro)
        examples = None
        if self.dist.is_chief and c["num_log_examples"]:
            ex_ds, _ = build_dataset(dict(c, data_resume="skip"), self.model, c["num_log_examples"], int(c["seed"]) + 1)
            examples = first_batch(ex_ds)
        self.monitor = TrainingMonitor(c, self.start_micro, self.total_micro, self.accum,
                                       log_dir=os.path.join(self.run_dir, "logs"), examples=examples,
                                       chief=self.dist.is_chief, progress=self.verbose)
        spe = c["checkpoint_every"] * self.accum
        epochs = math.ceil(self.total_micro / spe)
        initial_epoch = self.start_micro // spe
        where = (f"resumed from step {self.start_micro // self.accum} ({self.resumed_from[1]}, data: {mode})"
                 if self.resumed_from else "fresh start")
        self._log(f"Training {c['preset']} ({self.model.mode}) for {c['steps']} steps, batch {c['batch_size']} "
                  f"({self.dist.describe()}, grad_accum {self.accum}, dtype {self.model.dtype_policy.name}); {where}")
        if self.start_micro < self.total_micro:
            self.model.fit(dataset, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=spe, verbose=0,
                           shuffle=False,  # the input pipelines shuffle (seeded) themselves
                           callbacks=[self.monitor, CheckpointCallback(self)])
        self.checkpoint(final=True)
        if self.monitor.out_of_time:
            self._log(f"\nTime limit ({c['max_minutes']} min) reached at step {self.step} of {c['steps']}; "
                      f"checkpointed. Continue with: python recipes/train.py --out {self.run_dir} --resume")
            self.dist.barrier()
            return None
        preset = None
        if self.dist.is_chief:
            preset = self.export_preset(os.path.join(self.run_dir, "preset"))
            with open(os.path.join(self.run_dir, "loss_history.json"), "w") as f:
                json.dump(self.monitor.history, f)
        self.dist.barrier()
        return preset


def merge_resumed_config(saved, given):
    """The saved config updated with the keys given explicitly on resume (`given`); keys
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


def _write_yaml(path, data):
    import yaml

    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)


def train(config, run_dir, resume=False, verbose=True):
    """Train per `config` in `run_dir` (fresh or `resume`d); return the final preset path."""
    trainer = Trainer(config, run_dir, resume=resume, verbose=verbose)
    if resume and trainer.resumed_from is None:
        trainer._log(f"--resume: no checkpoint in {trainer.checkpointer.directory} yet; starting at step 0")
    try:
        return trainer.fit()
    finally:
        trainer.dist.shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use recipes/train.py")
