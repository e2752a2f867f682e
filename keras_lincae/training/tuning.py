"""Hyper-parameter search over Lin-CAE sizes: its settings, data, objective and metrics.

``recipes/tune.py`` is a thin command-line wrapper around this module,
``keras_lincae.training.tuner`` (the keras-tuner classes that run the trials) and
``keras_lincae.training.tuning_report`` (the trial tables and the best preset).

What is searched: the latent channel count ``bottleneck_channels`` (and, with
``tune_widths=True``, ``base_channels`` and ``bottleneck_base_channels``) of a base preset
(``lin_cae_tiny`` by default). Every trial trains the preset's architecture with the trial's
sizes for a few steps on random clips of the training songs through the training recipe's
``Trainer`` (``keras_lincae.training.tuner.trial_config``: RAdam on the warm-up/decay schedule,
the model's EMA, one seed; its run folder is the trial folder, so its final preset is ``trial_<id>/preset``), then
reloads that preset and scores it on held-out songs.

The objective (``keras_tuner.Objective("score", "min")``, see :func:`trial_score`)::

    score = val_loss_ratio + lambda_add * (enc_add + dec_add) + lambda_hom * dec_hom

* ``val_loss_ratio = val_loss / val_loss_init``: the consistency loss (``model.evaluate``, no
  augmentation) on the held-out mixtures ``u + v`` after training, divided by the same loss of
  the same architecture before training. Both evaluations start from the model's initial seed state (the
  trained model is evaluated after a reload of its preset), so they see the same noise draws:
  a paired, dimensionless ratio (1 = no progress) comparable across architectures;
* ``enc_add``: encoder additivity error ``|E(u) + E(v) - E(u + v)| / |E(u + v)|`` (relative L2,
  ``keras_lincae.evaluation.linearity.encoder_additivity``) with ``u`` the vocals and ``v`` the
  accompaniment (sum of the other stems) of held-out songs;
* ``dec_add``: decoder additivity, the MR-STFT distance between ``D(E(u) + E(v))`` and
  ``D(E(u + v))`` (``keras_lincae.evaluation.linearity.decoder_additivity``);
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
copied to a preset folder (``keras_lincae.training.tuning_report``).

Examples:
```python
from keras_lincae.training import tuner as lincae_tuner, tuning, tuning_report

settings = tuning.TuneSettings(latent_sizes=(8, 16, 32), steps=20, max_trials=3)
data = tuning.load_tuning_data(settings)           # synthetic songs by default
tuner = lincae_tuner.make_tuner(settings, "tune_runs", data=data)
tuner.search()
rows = tuning_report.summary_rows(tuner)
tuning_report.write_summary(tuner, rows)
print(tuning_report.format_markdown(rows))
tuning_report.write_best_preset(tuner, "saved_models/tuned_tiny")
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from keras_lincae.data import SILENCE_RMS_DB, load_clips, rms_db
from keras_lincae.evaluation import ModelFunctions
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
]

TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVE_NAME = "score"
SCORE_TERMS = ("val_loss_ratio", "enc_add", "dec_add", "dec_hom")
SETTINGS_FILE = "tune_settings.json"
TRIAL_PRESET = "preset"
TRIAL_RESULT = "result.json"
# Settings that may change when a search is resumed (they do not change what a trial means).
RESUMABLE_CHANGES = ("max_trials", "verbose", "jit_compile", "run_eagerly")


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
