"""The keras-tuner side of a Lin-CAE size search: the HyperModel, the Tuner whose trials train
through the training recipe's `Trainer`, and `make_tuner` (see `keras_lincae.training.tuning`)."""

import json
import math
import os
import shutil
import time

try:
    import keras_tuner
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_lincae.training.tuner needs keras-tuner (and tensorboard on the TensorFlow backend): "
        "pip install 'keras-lincae[tune]'  (or: pip install keras-tuner tensorboard)"
    ) from err

import keras

from keras_lincae import LinCAE
from keras_lincae.backend_dispatch import fit_input
from keras_lincae.training.builders import build_model
from keras_lincae.training.config import TrainConfig, resume_config
from keras_lincae.training.trainer import Trainer
from keras_lincae.training.tuning import (OBJECTIVE_NAME, RESUMABLE_CHANGES, SETTINGS_FILE, TRIAL_PRESET,
                                          TRIAL_RESULT, linearity_metrics, load_tuning_data,
                                          sample_training_clips, trial_score)


def _objective():
    return keras_tuner.Objective(OBJECTIVE_NAME, direction="min")


def trial_config(settings, sizes, steps):
    """The `TrainConfig` a trial trains with: the training recipe's run (RAdam, cosine decay from
    ``learning_rate`` without warm-up, the model's EMA default, one seed) of ``steps`` updates on
    the base preset with the trial's ``sizes`` (``{"bottleneck_channels": ..., ...}``)."""
    return TrainConfig.from_dict(dict(
        preset=settings.preset, model=dict(sizes), seed=settings.seed, steps=steps,
        batch_size=settings.batch_size, clip_frames=settings.clip_frames,
        learning_rate=settings.learning_rate, warmup_steps=0, checkpoint_every=settings.steps,
        keep_checkpoints=1, log_every=settings.steps, num_log_examples=0, input_pipeline="python",
        jit_compile=settings.jit_compile))


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
        """The trial's untrained model, as the trainer builds it (the same draw for every trial)."""
        config = trial_config(self.settings, self.sizes(hp), steps=self.settings.total_steps)
        keras.utils.set_random_seed(config.seed)
        return build_model(config.preset, config.lincae_fields())


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
        model.compile(jit_compile=self.settings.jit_compile, run_eagerly=self.settings.run_eagerly)
        return model

    def trial_preset_dir(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), TRIAL_PRESET)

    def _evaluate(self, model):
        val = self.data.val_audio
        return float(model.evaluate(val, batch_size=len(val), verbose=0))

    def _train(self, trial, config, parent):
        """Train the trial's run (`config`) in its folder, continuing `parent`'s run (hyperband)
        when given; return `(trainer, preset path)`."""
        s, run_dir = self.settings, self.get_trial_dir(trial.trial_id)
        shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)  # of an interrupted attempt
        if parent is not None:
            parent_dir = self.get_trial_dir(parent)
            shutil.copytree(os.path.join(parent_dir, "checkpoints"), os.path.join(run_dir, "checkpoints"),
                            dirs_exist_ok=True)
            config = resume_config(parent_dir).replace(steps=config.steps)
        trainer = Trainer(config, run_dir, resume=parent is not None, verbose=False, run_eagerly=s.run_eagerly)
        updates = (trainer.total_micro - trainer.start_micro) // trainer.accum
        first = trainer.start_micro // s.steps
        clips = sample_training_clips(self.data, updates * s.batch_size, seed=[s.seed, first])
        batches = (clips[i : i + s.batch_size] for i in range(0, len(clips), s.batch_size))
        try:
            return trainer, trainer.fit(fit_input(batches, s.batch_size, self.data.clip_samples))
        finally:
            trainer.dist.shutdown()

    def run_trial(self, trial, *args, **kwargs):
        s, hp = self.settings, trial.hyperparameters
        start = time.time()
        self.trials_run.append(trial.trial_id)
        epochs = hp.values.get("tuner/epochs", 1)
        config = trial_config(s, self.hypermodel.sizes(hp), steps=epochs * s.steps)
        keras.utils.set_random_seed(config.seed)  # the trainer's initial draw
        val_loss_init = self._evaluate(self._compile(build_model(config.preset, config.lincae_fields())))
        trainer, preset = self._train(trial, config, parent=hp.values.get("tuner/trial_id"))
        trained = self._compile(LinCAE.from_preset(preset))  # fresh seed state: paired with init
        metrics = {"val_loss": self._evaluate(trained), "val_loss_init": val_loss_init}
        metrics["val_loss_ratio"] = metrics["val_loss"] / val_loss_init
        metrics.update(linearity_metrics(trained, self.data.u, self.data.v, s.gains, seed=s.seed,
                                         batch_size=max(2, len(self.data.u))))
        bad = sorted(k for k, x in metrics.items() if not math.isfinite(x))
        if bad:
            raise keras_tuner.errors.FailedTrialError(f"non-finite metrics: {bad}")
        metrics[OBJECTIVE_NAME] = trial_score(metrics, s.lambda_add, s.lambda_hom)
        metrics["train_loss"] = float(trainer.monitor.history[-1][1])
        metrics["params"] = float(trainer.model.count_params())
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
