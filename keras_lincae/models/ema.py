"""Exponential moving average of the weights (official rule: warm-up, one update every N steps)."""

import keras
import numpy as np
from keras import ops

from keras_lincae.backend_dispatch import value_if_known


def add_shadow_weights(layer, sources):
    """Non-trainable copies of the variables `sources` on `layer` (named `ema_<path>`)."""
    shadows = [
        layer.add_weight(
            shape=w.shape,
            initializer=keras.initializers.Constant(0.0),
            trainable=False,
            name="ema_" + w.path.replace("/", "_"),
        )
        for w in sources
    ]
    for shadow, w in zip(shadows, sources):
        shadow.assign(np.array(ops.convert_to_numpy(w)))  # a copy: never share buffers
    return shadows


def ema_decay(num_updates, momentum=0.9999, warmup=True):
    """EMA decay of the ``num_updates``-th update (1-based; scalar, may be a tensor).

    ``min(momentum, (1 + n) / (10 + n))`` with warm-up, else ``momentum``.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"`momentum` must be in [0, 1], got {momentum}.")
    if not warmup:
        return ops.convert_to_tensor(float(momentum), "float32")
    n = ops.cast(num_updates, "float32")
    return ops.minimum(float(momentum), (1.0 + n) / (10.0 + n))


def ema_update(shadow_variables, variables, step, momentum=0.9999, every=1, warmup=True):
    """One EMA step on ``shadow_variables`` towards ``variables`` (official rule).

    Call after each optimizer update with ``step`` = number of optimizer updates
    done so far (``optimizer.iterations`` after ``apply``).  The shadows move
    only when ``step > 0`` and ``step % every == 0``; that update is the
    ``n = step // every``-th one and uses ``d = ema_decay(n)``:
    ``shadow <- d * shadow + (1 - d) * w``.  Otherwise ``d = 1`` (no change),
    so the function is traceable with a tensor ``step`` (run eagerly, it skips the
    shadows between updates).  Initialise the
    shadows as copies of the initial weights.

    Args:
        shadow_variables: list of ``keras.Variable``.
        variables: list of tensors/variables with matching shapes.
        step: scalar int (python or tensor).
        every: update period (``ema_update_every``, 10 in lin_cae).

    Returns:
        the decay that was used (scalar tensor; 1 when nothing changed).
    """
    shadow_variables = list(shadow_variables)
    variables = list(variables)
    if len(shadow_variables) != len(variables):
        raise ValueError(
            f"Got {len(shadow_variables)} shadow variables for {len(variables)} variables."
        )
    if every < 1:
        raise ValueError(f"`every` must be >= 1, got {every}.")
    step = ops.cast(step, "int32")
    n = ops.floor_divide(step, every)
    active = ops.logical_and(step > 0, ops.equal(ops.mod(step, every), 0))
    decay = ops.where(active, ema_decay(n, momentum, warmup), 1.0)
    known = value_if_known(active)
    if known is not None and not known:  # run eagerly between updates: nothing to do
        return decay
    for shadow, w in zip(shadow_variables, variables):
        d = ops.cast(decay, shadow.dtype)
        shadow.assign(d * shadow + (1.0 - d) * ops.cast(w, shadow.dtype))
    return decay
