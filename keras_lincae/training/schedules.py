"""Learning-rate schedule of the official Lin-CAE trainer.

* :class:`WarmupDecay` - linear warm-up from 0 to ``learning_rate`` over
  ``warmup_steps``, then cosine (default), linear or inverse-sqrt decay,
  evaluated at the optimizer step (``optimizer.iterations``, i.e. the number
  of updates already applied - the official trainer sets the LR from
  ``global_step`` before each update).

The weight EMA lives in ``keras_lincae.models.ema`` (the model applies it).
"""

import math

import keras
from keras import ops

DECAYS = ("cosine", "linear", "inverse_sqrt", None)


@keras.saving.register_keras_serializable(package="keras_lincae")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Official Lin-CAE learning-rate schedule (``CAETrainer.update_learning_rate``).

    For step ``s`` (the number of optimizer updates already done):

    * ``s < warmup_steps``: ``learning_rate * s / warmup_steps`` (0 at ``s = 0``).
    * otherwise, with ``D = total_steps - warmup_steps`` and
      ``k = (s - warmup_steps) mod D`` (the schedule restarts after
      ``total_steps``, as the official modulo does):

      - ``"cosine"``: ``final + (lr - final) * (1 + cos(pi * k / D)) / 2``
      - ``"linear"``: ``lr - (lr - final) * k / D``
      - ``"inverse_sqrt"``: ``lr * sqrt(warmup_steps) / sqrt(max(s, warmup_steps))``
      - ``None``: ``lr``.

    Defaults are the lin_cae preset: 1e-4 -> 1e-6, 10k warm-up, 800k steps.
    """

    def __init__(
        self,
        learning_rate=1e-4,
        final_learning_rate=1e-6,
        warmup_steps=10000,
        total_steps=800000,
        decay="cosine",
        name="warmup_decay",
    ):
        if decay not in DECAYS:
            raise ValueError(f"`decay` must be one of {DECAYS}, got {decay!r}.")
        if learning_rate < 0 or final_learning_rate < 0:
            raise ValueError("Learning rates must be >= 0.")
        if warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be >= 0, got {warmup_steps}.")
        if decay in ("cosine", "linear") and total_steps <= warmup_steps:
            raise ValueError(
                f"`total_steps` ({total_steps}) must exceed `warmup_steps` ({warmup_steps})."
            )
        if decay == "inverse_sqrt" and warmup_steps <= 0:
            raise ValueError("`inverse_sqrt` decay needs `warmup_steps` > 0.")
        self.learning_rate = float(learning_rate)
        self.final_learning_rate = float(final_learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = decay
        self.name = name

    def __call__(self, step):
        s = ops.cast(step, "float32")
        lr = self.learning_rate
        final = self.final_learning_rate
        w = float(self.warmup_steps)
        if self.decay in ("cosine", "linear"):
            span = float(self.total_steps - self.warmup_steps)
            k = ops.mod(s - w, span)
            if self.decay == "cosine":
                after = final + 0.5 * (lr - final) * (1.0 + ops.cos(k / span * math.pi))
            else:
                after = lr - (lr - final) * (k / span)
        elif self.decay == "inverse_sqrt":
            after = lr * math.sqrt(w) / ops.sqrt(ops.maximum(s, w))
        else:
            after = ops.full_like(s, lr)
        if self.warmup_steps == 0:
            return after
        return ops.where(s < w, lr * s / w, after)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "final_learning_rate": self.final_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
            "name": self.name,
        }

