"""The training run loop: `Trainer` builds a run directory's model and trains it with `model.fit`.

`recipes/train.py` is a thin command line over `train(config, run_dir, resume)`. One model
definition (`LinCAE`, whose `compute_loss` holds the whole objective) is trained with
`model.fit` on every backend; what changes per backend is the distribution engine
(`keras_lincae.backend_dispatch.distribute`).

Run directory layout::

    RUN_DIR/config.yaml            the resolved config (a resumed run reads it back and records the keys it changed)
    RUN_DIR/checkpoints/ckpt-*.npz atomic checkpoints (see `checkpoint.Checkpointer`)
    RUN_DIR/logs/                  TensorBoard events (losses, learning rate, gain range, audio)
    RUN_DIR/preset/                final preset, EMA weights swapped in
    RUN_DIR/presets/step_N/        presets written every `export_preset_every` steps
"""

import errno
import json
import math
import os
import time

import keras
import numpy as np

from keras_lincae.training.builders import (build_dataset, build_model, build_optimizer, data_sources,
                                            finalize_input_iterators, first_batch, init_from_preset,
                                            resume_plan)
from keras_lincae.training.callbacks import CheckpointCallback, TrainingMonitor
from keras_lincae.training.checkpoint import Checkpointer
from keras_lincae.training.config import SAVED_CONFIG, write_yaml
from keras_lincae.backend_dispatch.distribute import setup_distribution


class Trainer:
    """Builds everything for a run directory and trains (fresh or resumed)."""

    def __init__(self, config, run_dir, resume=False, distributor=None, verbose=True, run_eagerly=False):
        """`config`: the run's `TrainConfig` (on `resume`, from `config.resume_config(run_dir)`);
        `run_eagerly`: no graph compilation (fastest for a few steps on a CPU)."""
        self.run_dir = os.path.abspath(run_dir)
        self.verbose = verbose
        self.config = c = config
        ckpt_dir = os.path.join(self.run_dir, "checkpoints")
        latest = Checkpointer(ckpt_dir).latest()
        if not resume and latest is not None:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (latest step {latest[0]}): pass --resume to "
                "continue that run, or choose another --out")
        self.checkpointer = Checkpointer(ckpt_dir, keep=c.keep_checkpoints)
        self.accum = c.grad_accum
        self.dist = distributor or setup_distribution(
            c.distribution, num_devices=c.devices, model_parallel=c.model_parallel,
            cpu_replicas=c.cpu_replicas, tpu=c.tpu)
        if self.dist.is_chief:
            os.makedirs(self.run_dir, exist_ok=True)
            self.checkpointer.clean_temporaries()
            write_yaml(os.path.join(self.run_dir, SAVED_CONFIG), c.to_dict())  # on resume: with the keys changed now
        if c.max_minutes is not None and self.dist.world_size > 1:
            raise ValueError("max_minutes stops each process on its own clock, which would leave DDP processes "
                             "waiting for each other; bound a multi-process run with --steps instead")
        micro_batch = c.batch_size // self.accum
        if micro_batch % self.dist.num_replicas:
            raise ValueError(
                f"batch_size / grad_accum = {micro_batch} clips per step cannot be split over "
                f"{self.dist.num_replicas} replicas")
        if micro_batch // self.dist.num_replicas < 2:
            raise ValueError(
                f"each replica gets {micro_batch // self.dist.num_replicas} clip(s) per step; Lin-CAE "
                "needs at least 2 to form mixtures: raise batch_size or lower grad_accum")

        if hasattr(self.dist, "configure"):  # JAX: the distribution must exist before variables
            self.dist.configure(build_model_fn=lambda: build_model(c.preset, c.lincae_fields()))
        with self.dist.scope():
            keras.utils.set_random_seed(c.seed)
            self.model = build_model(c.preset, c.lincae_fields())
            self.dist.install_replica_hooks(self.model)
            self.model.compile(optimizer=build_optimizer(c.schedule(), c.beta_1, c.beta_2, self.accum),
                               jit_compile=c.jit_compile, run_eagerly=run_eagerly)
            self.model.optimizer.build(self.model.trainable_variables)
        self.start_micro = 0
        self.resumed_from = None
        latest = self.checkpointer.latest() if resume else None
        if latest is not None:
            with self.dist.scope():
                meta = self.checkpointer.restore(self.model, latest[1])
            self.start_micro = int(meta["batches_consumed"])
            self.resumed_from = latest
        elif c.init_weights:
            with self.dist.scope():
                init_from_preset(self.model, c.init_weights)
        self.dist.after_build(self.model)
        self.total_micro = c.steps * self.accum
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
        every = self.config.export_preset_every
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
            model.save_to_preset(path, overwrite=True, training_step=self.step, training_config=self.config.to_dict(),
                                 weights="ema" if model.ema_weights else "raw")
        finally:
            if model.ema_weights:
                for w, value in zip(sources, saved):
                    w.assign(value)
        self._log(f"[preset] {path} ({'EMA' if model.ema_weights else 'raw'} weights, step {self.step})")
        return path

    # --------------------------------------------------------------------------------- train
    def _clip_stream(self):
        """This process's clip stream after the consumed batches, and how it continues ("skip" or
        "reseed", see `builders.resume_plan`)."""
        c = self.config
        per_process = c.batch_size // self.accum // self.dist.world_size
        mode, seed, skip = resume_plan(c.data_resume, c.data_skip_limit, self.start_micro,
                                       self.dist.shard_seed(c.seed))
        dataset = build_dataset(data_sources(c.data), c.clip_frames, self.model, per_process, seed, c.pipeline,
                                skip=skip, **c.stream_options())
        return dataset, mode

    def fit(self, dataset=None):
        """Train up to `config.steps` (or `max_minutes`); return the final preset path, or None
        when the time limit stopped the run (checkpointed).

        `dataset`: the batches after the consumed ones, in place of the config's clip stream
        (`model.fit` input of `(batch_size // grad_accum, clip_samples)` batches).
        """
        c = self.config
        self.micro = self.start_micro
        if self.start_micro >= self.total_micro:
            self._log(f"Nothing to do: the run is at step {self.step} of {c.steps}")
        mode = "given"
        if dataset is None:
            dataset, mode = self._clip_stream()
        examples = None
        if self.dist.is_chief and c.num_log_examples:
            examples = first_batch(build_dataset(data_sources(c.data), c.clip_frames, self.model, c.num_log_examples,
                                                 c.seed + 1, c.pipeline, **c.stream_options()))
        self.monitor = TrainingMonitor(c.schedule(), self.start_micro, self.total_micro, self.accum, c.log_every,
                                       max_minutes=c.max_minutes, log_dir=os.path.join(self.run_dir, "logs"),
                                       examples=examples, chief=self.dist.is_chief, progress=self.verbose)
        spe = c.checkpoint_every * self.accum
        epochs = math.ceil(self.total_micro / spe)
        initial_epoch = self.start_micro // spe
        where = (f"resumed from step {self.start_micro // self.accum} ({self.resumed_from[1]}, data: {mode})"
                 if self.resumed_from else "fresh start")
        self._log(f"Training {c.preset} ({self.model.mode}) for {c.steps} steps, batch {c.batch_size} "
                  f"({self.dist.describe()}, grad_accum {self.accum}, dtype {self.model.dtype_policy.name}); {where}")
        if self.start_micro < self.total_micro:
            self.model.fit(dataset, epochs=epochs, initial_epoch=initial_epoch, steps_per_epoch=spe, verbose=0,
                           shuffle=False,  # the input pipelines shuffle (seeded) themselves
                           callbacks=[self.monitor, CheckpointCallback(self.checkpoint, self.monitor, spe)])
            finalize_input_iterators()  # fit's iterator, possibly mid-stream, while `dataset` lives
        self.checkpoint(final=True)
        if self.monitor.out_of_time:
            self._log(f"\nTime limit ({c.max_minutes} min) reached at step {self.step} of {c.steps}; "
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


def train(config, run_dir, resume=False, verbose=True):
    """Train per `config` (a `TrainConfig`) in `run_dir` (fresh or `resume`d); return the final preset path."""
    trainer = Trainer(config, run_dir, resume=resume, verbose=verbose)
    if resume and trainer.resumed_from is None:
        trainer._log(f"--resume: no checkpoint in {trainer.checkpointer.directory} yet; starting at step 0")
    try:
        return trainer.fit()
    finally:
        trainer.dist.shutdown()
