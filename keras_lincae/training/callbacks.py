"""Callbacks of a training run: progress and TensorBoard logging, the time limit, checkpoints."""

import time

import keras
import numpy as np

from keras_lincae.backend_dispatch import tensorflow_available


class TrainingMonitor(keras.callbacks.Callback):
    """Progress bar (loss, steps/s, ETA), TensorBoard scalars and audio, stop at the last step.

    `micro` counts batches (optimizer updates x `accum`). Keras' per-batch `loss` is the running
    mean since the epoch began; the logged loss is the mean over each `log_every`-step interval.

    Args:
        schedule: the learning-rate schedule (a function of the update), for logging.
        start_micro, total_micro: ints. Batches consumed before this process, and in all.
        accum: int. Micro-batches per optimizer update.
        log_every: int. Optimizer updates between log lines.
        max_minutes: float or None. Stop (`out_of_time`) at the first update after this long.
        log_dir: str or None. TensorBoard folder (written when TensorFlow imports).
        examples: `(n, samples)` numpy clips whose reconstructions `log_audio` writes, or None.
        chief: bool. Only the chief process logs.
        progress: bool. Show a progress bar.
    """

    def __init__(self, schedule, start_micro, total_micro, accum, log_every, max_minutes=None, log_dir=None,
                 examples=None, chief=True, progress=True):
        super().__init__()
        self.time_limit_s = None if max_minutes is None else 60.0 * max_minutes
        self.out_of_time = False
        self.progress = progress
        self.schedule, self.accum, self.log_every = schedule, accum, log_every
        self.micro, self.total_micro = start_micro, total_micro
        self.chief = chief
        self.examples = examples
        self.logged_inputs = False
        self.writer = None
        if chief and log_dir and tensorflow_available():  # TensorBoard files are written with tf.summary
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
        due = self.micro % (self.log_every * self.accum) == 0 or self.micro >= self.total_micro
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
        """Write the examples (once) and their reconstructions at `step` to TensorBoard."""
        if self.writer is None or self.examples is None or not len(self.examples):
            return
        import tensorflow as tf

        sr = int(self.model.sample_rate)
        recon = keras.ops.convert_to_numpy(self.model.autoencode(self.examples, seed=0))
        with self.writer.as_default(step=step):
            if not self.logged_inputs:
                tf.summary.audio("audio/input", self.examples[..., None], sr, max_outputs=len(self.examples))
                self.logged_inputs = True
            tf.summary.audio("audio/reconstruction", np.clip(recon, -1, 1)[..., None], sr,
                             max_outputs=len(self.examples))
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()


class CheckpointCallback(keras.callbacks.Callback):
    """Calls `checkpoint()` at every multiple of `every_micro` batches, counted from step 0, so a
    run resumed mid-interval keeps the same checkpoint and preset steps.

    `monitor` (a `TrainingMonitor` that runs first) counts the batches.
    """

    def __init__(self, checkpoint, monitor, every_micro):
        super().__init__()
        self.checkpoint, self.monitor, self.every_micro = checkpoint, monitor, every_micro

    def on_train_batch_end(self, batch, logs=None):
        if self.monitor.micro % self.every_micro == 0:
            self.model  # noqa: B018  (on JAX, reading `model` syncs the training state into it)
            self.checkpoint()
