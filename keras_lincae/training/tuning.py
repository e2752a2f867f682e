"""Hyper-parameter search over Lin-CAE sizes with keras-tuner, on any Keras backend.

``recipes/tune.py`` is a thin command-line wrapper around this module.

What is searched: the latent channel count ``bottleneck_channels`` (and, with
``tune_widths=True``, ``base_channels`` and ``bottleneck_base_channels``) of a base preset
(``lin_cae_tiny`` by default). Every trial builds the model from the preset config with the
trial's sizes, trains it for a few steps on random clips of the training songs (``model.fit``:
the whole Lin-CAE objective is the model's ``compute_loss``), saves it as a preset in its trial
folder, reloads that preset and scores it on held-out songs.

The objective (``keras_tuner.Objective("score", "min")``, see :func:`trial_score`)::

    score = val_loss_ratio + lambda_add * (enc_add + dec_add) + lambda_hom * dec_hom

* ``val_loss_ratio = val_loss / val_loss_init``: the consistency loss (``model.evaluate``, no
  augmentation) on the held-out mixtures ``u + v`` after training, divided by the same loss of
  the same architecture before training. Both evaluations start from the model's initial seed state (the
  trained model is evaluated after a reload of its preset), so they see the same noise draws:
  a paired, dimensionless ratio (1 = no progress) comparable across architectures;
* ``enc_add``: encoder additivity error ``|E(u) + E(v) - E(u + v)| / |E(u + v)|`` (relative L2,
  ``keras_lincae.evaluation.metrics.encoder_additivity``) with ``u`` the vocals and ``v`` the
  accompaniment (sum of the other stems) of held-out songs;
* ``dec_add``: decoder additivity, the MR-STFT distance between ``D(E(u) + E(v))`` and
  ``D(E(u + v))`` (``keras_lincae.evaluation.metrics.decoder_additivity``);
* ``dec_hom``: decoder homogeneity error ``10 ** (-SNR / 20)``, i.e. the relative L2 error of
  ``D(a z)`` against ``a D(z)``, averaged over the gains ``a`` (``decoder_homogeneity`` gives the
  SNR in dB).

All terms are averaged over the held-out clips; lower is better for each. Decoding uses one fixed
starting noise (``keras_lincae.evaluation.ModelFunctions``), so the metrics are deterministic.
Reported besides (not in the score): ``val_loss``, ``val_loss_init``, ``enc_hom`` (encoder
homogeneity, relative L2), ``dec_hom_snr_db``, ``add_si_sdr_db`` (SI-SDR of ``D(E(u) + E(v))``
against ``u + v``), ``params``, ``train_steps`` and ``seconds``.

The tuner folder ``directory/project_name`` is resumable: keras-tuner's oracle keeps every trial
(``trial_*/trial.json``), so running the same search again skips the finished trials, re-runs an
interrupted one and continues up to ``max_trials`` (which may be raised). The search settings are
stored in ``tune_settings.json`` there; resuming with different settings is refused (use
``overwrite=True`` to start over). After the search, ``trials.md`` / ``trials.csv`` (one row per
trial, best first) and ``best.json`` are written beside it, and the best trial's preset can be
copied to a preset folder with :func:`write_best_preset`.

Examples:
```python
from keras_lincae.training import tuning

settings = tuning.TuneSettings(latent_sizes=(8, 16, 32), steps=20, max_trials=3)
data = tuning.load_tuning_data(settings)           # synthetic songs by default
tuner = tuning.make_tuner(settings, "tune_runs", data=data)
tuner.search()
rows = tuning.summary_rows(tuner)
tuning.write_summary(tuner, rows)
print(tuning.format_markdown(rows))
tuning.write_best_preset(tuner, "saved_models/tuned_tiny")
```
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

try:
    import keras_tuner
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_lincae.training.tuning needs keras-tuner (and tensorboard on the TensorFlow backend): "
        "pip install 'keras-lincae[tune]'  (or: pip install keras-tuner tensorboard)"
    ) from err

import keras

from keras_lincae.data import SILENCE_RMS_DB, load_clips, rms_db
from keras_lincae.evaluation import linearity as L

__all__ = [
    "TUNERS",
    "OBJECTIVE_NAME",
    "SCORE_TERMS",
    "TuneSettings",
    "TuningData",
    "trial_score",
    "load_tuning_data",
    "sample_training_clips",
    "linearity_metrics",
    "LinCAEHyperModel",
    "LinCAETuner",
    "make_tuner",
    "summary_rows",
    "format_markdown",
    "format_csv",
    "write_summary",
    "best_trial",
    "write_best_preset",
]

TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVE_NAME = "score"
SCORE_TERMS = ("val_loss_ratio", "enc_add", "dec_add", "dec_hom")
SETTINGS_FILE = "tune_settings.json"
TRIAL_PRESET = "preset"
TRIAL_RESULT = "result.json"
# Settings that may change when a search is resumed (they do not change what a trial means).
RESUMABLE_CHANGES = ("max_trials", "verbose", "jit_compile", "run_eagerly")


def _objective():
    return keras_tuner.Objective(OBJECTIVE_NAME, direction="min")


@dataclass
class TuneSettings:
    """Everything that defines a search (stored in the tuner folder to guard resumes).

    Args:
        preset: str, "lin_cae_tiny". Base architecture (a built-in name or preset folder; only
            its config is used, never its weights).
        tuner: str, "random". One of ``TUNERS``: ``random`` (``RandomSearch``), ``bayesian``
            (``BayesianOptimization``) or ``hyperband`` (``Hyperband``; its budget unit, an
            "epoch", is ``steps`` training steps).
        latent_sizes: ints, (8, 16, 32, 64). Choices of ``bottleneck_channels``.
        tune_widths: bool, False. Also search ``base_channels`` and ``bottleneck_base_channels``.
        base_channels, bottleneck_base_channels: ints. Their choices when ``tune_widths``.
        max_trials: int, 4. Trials to run in total (a cap for hyperband).
        max_epochs, factor: ints, 3 and 3. Hyperband's largest budget (in units of ``steps``)
            and reduction factor.
        steps: int, 8. Training steps per trial (per hyperband epoch).
        batch_size: int, 2. Clips per training batch (>= 2: the Lin-CAE objective mixes them).
        clip_frames: int, 16. Clip length in STFT frames, a multiple of the model's time
            downsampling (16 frames = 9,728 samples = 0.22 s at the default hop 512).
        learning_rate: float, 1e-3. RAdam learning rate.
        lambda_add, lambda_hom: floats, 1.0. Weights of the additivity and homogeneity terms of
            the score (see the module docstring).
        gains: floats, ``linearity.DEFAULT_GAINS``. Gains of the homogeneity metrics.
        val_clips: int, 4. Held-out (vocals, accompaniment) clip pairs.
        seed: int, 0. Seeds the initial weights (the same for every trial), the training clips
            and the decoding noise.
        data: str or None. Dataset folder in MUSDB18-HQ layout with ``train/`` and ``test/``
            song folders; None: the embedded synthetic dataset
            (``keras_lincae.data.synth.ensure_default_dataset``).
        jit_compile: "auto", True or False. Passed to ``model.compile``.
        run_eagerly: bool, False. Passed to ``model.compile`` (no compilation at all: fastest
            for very short trials on a CPU).
        verbose: int, 1. keras-tuner's progress display (0: quiet).
    """

    preset: str = "lin_cae_tiny"
    tuner: str = "random"
    latent_sizes: Sequence[int] = (8, 16, 32, 64)
    tune_widths: bool = False
    base_channels: Sequence[int] = (4, 8, 16)
    bottleneck_base_channels: Sequence[int] = (16, 32, 64)
    max_trials: int = 4
    max_epochs: int = 3
    factor: int = 3
    steps: int = 8
    batch_size: int = 2
    clip_frames: int = 16
    learning_rate: float = 1e-3
    lambda_add: float = 1.0
    lambda_hom: float = 1.0
    gains: Sequence[float] = L.DEFAULT_GAINS
    val_clips: int = 4
    seed: int = 0
    data: str | None = None
    jit_compile: object = "auto"
    run_eagerly: bool = False
    verbose: int = 1

    def __post_init__(self):
        for name in ("latent_sizes", "base_channels", "bottleneck_base_channels"):
            values = [int(v) for v in getattr(self, name)]
            if not values or min(values) < 1 or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct positive integers, got {values}")
            setattr(self, name, values)
        self.gains = [float(g) for g in self.gains]
        if not self.gains:
            raise ValueError("gains must not be empty")
        if self.tuner not in TUNERS:
            raise ValueError(f"tuner must be one of {list(TUNERS)}, got {self.tuner!r}")
        for name in ("max_trials", "steps", "max_epochs", "val_clips", "clip_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.batch_size) < 2:
            raise ValueError(f"batch_size must be >= 2 (the objective mixes clips), got {self.batch_size}")
        if int(self.factor) < 2:
            raise ValueError(f"factor must be >= 2, got {self.factor}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.lambda_add < 0 or self.lambda_hom < 0:
            raise ValueError("lambda_add and lambda_hom must be >= 0")
        if self.jit_compile not in ("auto", True, False):
            raise ValueError(f"jit_compile must be 'auto', True or False, got {self.jit_compile!r}")
        if self.data is not None:
            self.data = os.path.abspath(os.path.expanduser(os.fspath(self.data)))

    def to_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def total_steps(self):
        """The model's ``total_steps`` (schedule length): the largest training budget of a trial."""
        return self.steps * (self.max_epochs if self.tuner == "hyperband" else 1)


def trial_score(metrics, lambda_add=1.0, lambda_hom=1.0):
    """The tuning objective (lower is better).

    ``val_loss_ratio + lambda_add * (enc_add + dec_add) + lambda_hom * dec_hom``; see the module
    docstring for each term.

    Args:
        metrics: dict holding the ``SCORE_TERMS``.
        lambda_add, lambda_hom: floats, 1.0. Weights of the linearity terms.

    Returns:
        float.
    """
    return float(
        metrics["val_loss_ratio"]
        + lambda_add * (metrics["enc_add"] + metrics["dec_add"])
        + lambda_hom * metrics["dec_hom"]
    )


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


@dataclass
class TuningData:
    """Training audio and held-out clip pairs.

    ``sources``: 1-D float32 arrays (the training songs' mixtures and stems) to crop clips from;
    ``u`` / ``v``: held-out vocals / accompaniment clips ``(val_clips, clip_samples)`` float32.
    """

    sources: list
    u: np.ndarray
    v: np.ndarray
    clip_samples: int
    info: dict = field(default_factory=dict)

    @property
    def val_audio(self):
        """The clips ``model.evaluate`` sees: the held-out mixtures ``u + v``."""
        return (self.u + self.v).astype(np.float32)


def _clip_samples(settings):
    from keras_lincae import LinCAE
    from keras_lincae.data import clip_samples_for_frames

    model = LinCAE.from_preset(settings.preset, load_weights=False)
    down = model.time_downsampling
    if settings.clip_frames % down:
        raise ValueError(
            f"clip_frames must be a multiple of the model's time downsampling ({down}), "
            f"got {settings.clip_frames}")
    return clip_samples_for_frames(settings.clip_frames, model.hop_size, model.n_fft_factor)


def _songs(data_root, split, clip):
    """Whole mono songs of ``data_root/split`` at least ``clip`` samples long (``Clip`` list)."""
    folder = os.path.join(data_root, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{folder} not found: the tuning data folder needs train/ and test/ song folders "
            "(MUSDB18-HQ layout)")
    return load_clips(folder, target="vocals", clip_seconds=None, min_samples=clip)[0]


def load_tuning_data(settings):
    """Load the training sources and the held-out clip pairs of ``settings.data``.

    Training sources are every mixture and stem of ``train/`` (mono). Held-out pairs come from
    ``test/``: consecutive windows of ``clip_samples`` where both the vocals ``u`` and the
    accompaniment ``v`` (the other stems summed) are above -50 dBFS, taken round-robin over the
    songs until ``settings.val_clips`` pairs are found.

    Returns:
        ``TuningData``.

    Raises:
        FileNotFoundError / ValueError: missing folders, no songs, too few usable windows.
    """
    root = settings.data
    if root is None:
        from keras_lincae.data.synth import ensure_default_dataset

        root = os.fspath(ensure_default_dataset())
    clip = _clip_samples(settings)
    sources = [a for song in _songs(root, "train", clip) for a in (song.mixture, *song.stems.values())]
    windows = []
    for song in _songs(root, "test", clip):
        u, v = song.target, song.accompaniment
        song_windows = []
        for start in range(0, u.shape[-1] - clip + 1, clip):
            pu, pv = u[start : start + clip], v[start : start + clip]
            if rms_db(pu) > SILENCE_RMS_DB and rms_db(pv) > SILENCE_RMS_DB:
                song_windows.append((pu, pv))
        windows.append(song_windows)
    pairs = [w[i] for i in range(max(map(len, windows), default=0)) for w in windows if i < len(w)]
    if len(pairs) < settings.val_clips:
        raise ValueError(
            f"only {len(pairs)} held-out windows of {clip} samples with audible vocals and "
            f"accompaniment in {root}/test, {settings.val_clips} wanted: lower --val-clips")
    pairs = pairs[: settings.val_clips]
    u = np.stack([p[0] for p in pairs]).astype(np.float32)
    v = np.stack([p[1] for p in pairs]).astype(np.float32)
    return TuningData(sources, u, v, clip, info={"data": root, "train_sources": len(sources)})


def sample_training_clips(data, count, seed):
    """``count`` random non-silent crops ``(count, clip_samples)`` of the training sources."""
    rng = np.random.default_rng(seed)
    clip = data.clip_samples
    out = np.empty((count, clip), np.float32)
    for i in range(count):
        for _ in range(50):
            source = data.sources[int(rng.integers(len(data.sources)))]
            start = int(rng.integers(source.shape[-1] - clip + 1))
            crop = source[start : start + clip]
            if rms_db(crop) > SILENCE_RMS_DB:
                break
        out[i] = crop
    return out


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def linearity_metrics(model, u, v, gains=L.DEFAULT_GAINS, seed=0, batch_size=8):
    """Linearity of ``model`` on clip pairs ``u``, ``v`` ``(batch, samples)``, averaged over clips.

    Returns:
        dict: ``enc_add`` (relative L2), ``dec_add`` (MR-STFT), ``dec_hom`` (relative L2 error,
        ``10 ** (-SNR / 20)``), ``dec_hom_snr_db``, ``enc_hom`` (relative L2),
        ``add_si_sdr_db`` (SI-SDR of ``D(E(u) + E(v))`` vs ``u + v``); all floats.
    """
    from keras_lincae.evaluation import ModelFunctions

    fns = ModelFunctions(model, steps=1, seed=seed, batch_size=batch_size)
    n = u.shape[-1]
    enc_add = L.encoder_additivity(fns.encode, u, v)
    dec_add = L.decoder_additivity(fns.encode, fns.decode, u, v)
    snr_db = L.decoder_homogeneity(fns.decode, fns.encode(u), gains=gains, n_samples=n)
    enc_hom = L.encoder_homogeneity(fns.encode, u, gains=gains)
    return {
        "enc_add": float(np.mean(enc_add)),
        "dec_add": float(np.mean(dec_add["mrstft"])),
        "dec_hom": float(np.mean(10.0 ** (-snr_db / 20.0))),
        "dec_hom_snr_db": float(np.mean(snr_db)),
        "enc_hom": float(np.mean(enc_hom)),
        "add_si_sdr_db": float(np.mean(dec_add["si_sdr"])),
    }


# ----------------------------------------------------------------------------------------------
# HyperModel and Tuner
# ----------------------------------------------------------------------------------------------


class LinCAEHyperModel(keras_tuner.HyperModel):
    """Builds an untrained ``LinCAE`` from the base preset config with a trial's sizes.

    Args:
        settings: ``TuneSettings``.
    """

    def __init__(self, settings, **kwargs):
        super().__init__(name="lincae", **kwargs)
        self.settings = settings

    def sizes(self, hp):
        """The searched config fields of ``hp``: ``{"bottleneck_channels": ..., ...}``."""
        s = self.settings
        sizes = {"bottleneck_channels": hp.Choice("bottleneck_channels", s.latent_sizes)}
        if s.tune_widths:
            sizes["base_channels"] = hp.Choice("base_channels", s.base_channels)
            sizes["bottleneck_base_channels"] = hp.Choice(
                "bottleneck_base_channels", s.bottleneck_base_channels)
        return sizes

    def build(self, hp):
        from keras_lincae import LinCAE

        keras.utils.set_random_seed(self.settings.seed)  # the same initial draw for every trial
        return LinCAE.from_preset(
            self.settings.preset, load_weights=False, total_steps=self.settings.total_steps,
            **self.sizes(hp))


class LinCAETuner(keras_tuner.Tuner):
    """A keras-tuner ``Tuner`` whose trials train a ``LinCAE`` and score it on linearity too.

    ``run_trial`` (see the module docstring for the objective): build the trial's model, measure
    the validation loss before training, train ``steps`` steps (hyperband: ``steps`` per epoch,
    continuing from the parent trial's preset when it names one), save the model as a preset in
    the trial folder (``trial_<id>/preset``), reload it, and return its metrics.

    Args:
        oracle: a keras-tuner ``Oracle`` with objective ``score`` (min).
        settings: ``TuneSettings``.
        data: ``TuningData``.
        **kwargs: ``directory``, ``project_name``, ``overwrite`` (as for every keras-tuner tuner).
    """

    def __init__(self, oracle, settings, data, **kwargs):
        super().__init__(oracle, hypermodel=LinCAEHyperModel(settings), **kwargs)
        self.settings = settings
        self.data = data
        self.trials_run = []  # trial ids run by this instance (the rest were reloaded)

    def _populate_initial_space(self):
        # Declare the search space without building a model (keras-tuner's default builds one).
        hp = self.oracle.get_space()
        self.hypermodel.sizes(hp)
        self.oracle.update_space(hp)

    def _compile(self, model):
        from keras_lincae.training.optimizers import RAdam

        model.compile(optimizer=RAdam(self.settings.learning_rate),
                      jit_compile=self.settings.jit_compile, run_eagerly=self.settings.run_eagerly)
        return model

    def trial_preset_dir(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), TRIAL_PRESET)

    def _evaluate(self, model):
        val = self.data.val_audio
        return float(model.evaluate(val, batch_size=len(val), verbose=0))

    def run_trial(self, trial, *args, **kwargs):
        from keras_lincae import LinCAE

        s, hp = self.settings, trial.hyperparameters
        start = time.time()
        self.trials_run.append(trial.trial_id)
        model = self._compile(self.hypermodel.build(hp))
        val_loss_init = self._evaluate(model)
        epochs, first = hp.values.get("tuner/epochs", 1), hp.values.get("tuner/initial_epoch", 0)
        parent = hp.values.get("tuner/trial_id")
        if parent is not None:  # hyperband: continue training the parent trial's model
            model.optimizer.build(model.trainable_variables)  # so its saved state loads too
            model.load_weights(os.path.join(self.trial_preset_dir(parent), "model.weights.h5"))
        train_steps = (epochs - first) * s.steps
        clips = sample_training_clips(self.data, train_steps * s.batch_size, seed=[s.seed, first])
        history = model.fit(clips, batch_size=s.batch_size, epochs=1, shuffle=False, verbose=0)
        preset = model.save_to_preset(self.trial_preset_dir(trial.trial_id), overwrite=True,
                                      tuning_trial=trial.trial_id)

        trained = self._compile(LinCAE.from_preset(preset))  # fresh seed state: paired with init
        metrics = {"val_loss": self._evaluate(trained), "val_loss_init": val_loss_init}
        metrics["val_loss_ratio"] = metrics["val_loss"] / val_loss_init
        metrics.update(linearity_metrics(trained, self.data.u, self.data.v, s.gains, seed=s.seed,
                                         batch_size=max(2, len(self.data.u))))
        bad = sorted(k for k, x in metrics.items() if not math.isfinite(x))
        if bad:
            raise keras_tuner.errors.FailedTrialError(f"non-finite metrics: {bad}")
        metrics[OBJECTIVE_NAME] = trial_score(metrics, s.lambda_add, s.lambda_hom)
        metrics["train_loss"] = float(history.history["loss"][-1])
        metrics["params"] = float(model.count_params())
        metrics["train_steps"] = float(epochs * s.steps)
        metrics["seconds"] = time.time() - start
        with open(os.path.join(self.get_trial_dir(trial.trial_id), TRIAL_RESULT), "w") as f:
            json.dump({"hyperparameters": hp.values, "metrics": metrics, "preset": preset}, f, indent=1)
        return metrics


def _check_settings(project_dir, settings, overwrite):
    """Store ``settings`` in the tuner folder, or compare them with the stored ones."""
    path = os.path.join(project_dir, SETTINGS_FILE)
    current = settings.to_dict()
    if os.path.exists(path) and not overwrite:
        with open(path) as f:
            stored = json.load(f)
        diff = {k: (stored.get(k), v) for k, v in current.items()
                if k not in RESUMABLE_CHANGES and stored.get(k) != v}
        if diff:
            lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(
                f"{project_dir} holds a search with other settings ({lines}); resume it with the "
                "same settings, choose another --dir, or pass --overwrite to start over")
    os.makedirs(project_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(current, f, indent=1)


def make_tuner(settings, directory, data=None, project_name="lincae_tune", overwrite=False):
    """The tuner of ``settings.tuner`` in ``directory/project_name`` (resumed if it exists).

    Args:
        settings: ``TuneSettings``.
        directory: str. Parent folder of the tuner folder.
        data: ``TuningData`` or None (then ``load_tuning_data(settings)``).
        project_name: str, "lincae_tune".
        overwrite: bool, False. Delete an existing search instead of resuming it.

    Returns:
        ``LinCAETuner``; call ``.search()``.
    """
    directory = os.path.abspath(os.fspath(directory))
    project_dir = os.path.join(directory, project_name)
    if overwrite and os.path.isdir(project_dir):
        import shutil

        shutil.rmtree(project_dir)
    _check_settings(project_dir, settings, overwrite=False)
    if data is None:
        data = load_tuning_data(settings)
    oracles = keras_tuner.oracles
    common = dict(objective=_objective(), seed=settings.seed)
    if settings.tuner == "random":
        oracle = oracles.RandomSearchOracle(max_trials=settings.max_trials, **common)
    elif settings.tuner == "bayesian":
        oracle = oracles.BayesianOptimizationOracle(max_trials=settings.max_trials, **common)
    else:
        oracle = oracles.HyperbandOracle(max_epochs=settings.max_epochs, factor=settings.factor,
                                         **common)
        oracle.max_trials = settings.max_trials  # a cap on the brackets' trials
    tuner = LinCAETuner(oracle, settings, data, directory=directory,
                        project_name=project_name, overwrite=False)
    tuner.oracle.max_trials = settings.max_trials  # the stored state does not hold it
    if not settings.verbose:
        tuner.oracle.verbose = 0
    return tuner


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

_METRIC_COLUMNS = ("score", "val_loss", "val_loss_ratio", "enc_add", "dec_add", "dec_hom",
                   "enc_hom", "dec_hom_snr_db", "add_si_sdr_db", "params", "train_steps", "seconds")


def _status(trial):
    status = trial.status
    return getattr(status, "value", status)


def summary_rows(tuner):
    """One dict per trial, finished trials by score (best first), then the others by id."""
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        row = {"trial": trial_id, "status": str(_status(trial))}
        values = trial.hyperparameters.values
        for name in ("bottleneck_channels", "base_channels", "bottleneck_base_channels"):
            if name in values:
                row[name] = values[name]
        if "tuner/epochs" in values:  # hyperband: budget in units of `steps`, parent trial
            row["hb_epochs"] = values["tuner/epochs"]
            row["hb_parent"] = values.get("tuner/trial_id", "")
        for name in _METRIC_COLUMNS:
            if trial.metrics.exists(name):
                row[name] = trial.metrics.get_last_value(name)
        rows.append(row)
    scored = sorted((r for r in rows if r.get("score") is not None), key=lambda r: r["score"])
    return scored + [r for r in rows if r.get("score") is None]


def _columns(rows):
    names = []
    for row in rows:
        names.extend(k for k in row if k not in names)
    return names


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def format_markdown(rows):
    """The trials as a Markdown table (the best trial marked with ``*``)."""
    if not rows:
        return "(no trials)\n"
    cols = _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for i, row in enumerate(rows):
        cells = [_fmt(row.get(c)) for c in cols]
        if i == 0 and row.get("score") is not None:
            cells[0] += " *"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_csv(rows):
    """The trials as CSV (full precision)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def best_trial(tuner):
    """The finished trial with the lowest score; raises RuntimeError if none finished."""
    best = tuner.oracle.get_best_trials(1)
    if not best or not best[0].metrics.exists(OBJECTIVE_NAME):
        failures = [f"trial {t.trial_id} ({_status(t)}): {(t.message or '').strip().splitlines()[-1:]}"
                    for t in tuner.oracle.trials.values()]
        raise RuntimeError("no trial finished; " + ("; ".join(failures) or "no trial ran"))
    return best[0]


def write_summary(tuner, rows=None):
    """Write ``trials.md``, ``trials.csv`` and ``best.json`` in the tuner folder; return paths."""
    rows = summary_rows(tuner) if rows is None else rows
    project_dir = tuner.project_dir
    paths = {"markdown": os.path.join(project_dir, "trials.md"),
             "csv": os.path.join(project_dir, "trials.csv"),
             "best": os.path.join(project_dir, "best.json")}
    s = tuner.settings
    header = (f"# Lin-CAE tuning: {s.tuner} search, {len(rows)} trials\n\n"
              f"score = val_loss_ratio + {s.lambda_add:g} * (enc_add + dec_add) + "
              f"{s.lambda_hom:g} * dec_hom (lower is better; best first, marked *)\n\n")
    with open(paths["markdown"], "w") as f:
        f.write(header + format_markdown(rows))
    with open(paths["csv"], "w") as f:
        f.write(format_csv(rows))
    try:
        best = best_trial(tuner)
        info = {"trial": best.trial_id, "hyperparameters": best.hyperparameters.values,
                "score": best.score, "preset": tuner.trial_preset_dir(best.trial_id)}
    except RuntimeError as e:
        info = {"error": str(e)}
    with open(paths["best"], "w") as f:
        json.dump(info, f, indent=1)
    return paths


def write_best_preset(tuner, preset_dir):
    """Copy the best trial's trained model to ``preset_dir`` as a preset; return its path.

    The preset's ``metadata.json`` records the trial, its sizes and metrics, and the objective.
    """
    from keras_lincae import LinCAE

    best = best_trial(tuner)
    model = LinCAE.from_preset(tuner.trial_preset_dir(best.trial_id))
    metrics = {name: best.metrics.get_last_value(name) for name in _METRIC_COLUMNS
               if best.metrics.exists(name)}
    s = tuner.settings
    return model.save_to_preset(
        os.fspath(preset_dir),
        overwrite=True,
        tuning={
            "trial": best.trial_id,
            "tuner": s.tuner,
            "hyperparameters": {k: v for k, v in best.hyperparameters.values.items()},
            "metrics": metrics,
            "objective": (f"val_loss_ratio + {s.lambda_add:g} * (enc_add + dec_add) + "
                          f"{s.lambda_hom:g} * dec_hom"),
            "tuner_dir": tuner.project_dir,
        },
    )
