"""The data augmentations of training: Lin-CAE mixtures, additivity and gains, and the
Music2Latent baseline's mix-it and scale augmentation (METHOD.md section 3).

Pure `keras.ops` / `keras.random` (traceable under `jax.jit` / `tf.function`); random functions
take a `keras.random.SeedGenerator`. Hyper-parameters come from the model's config.
"""

import math

from keras import ops
from keras import random as krandom

PEAK_EPS = 1e-7  # guards the gain cap 1 / peak of silent clips


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _check_probability(name, value):
    if isinstance(value, (int, float)) and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1], got {value}.")


def _check_gain_bounds(gain_min, gain_max):
    if (
        isinstance(gain_min, (int, float))
        and isinstance(gain_max, (int, float))
        and gain_min > gain_max
    ):
        raise ValueError(
            f"`gain_min` ({gain_min}) must not be larger than `gain_max` ({gain_max})."
        )


def _static_batch(x, name="x"):
    batch = x.shape[0]
    if batch is None:
        raise ValueError(f"`{name}` needs a static batch dimension, got shape {x.shape}.")
    return int(batch)


def _per_example(values, ndim):
    """Reshape ``(batch,)`` values to ``(batch, 1, ..., 1)`` with ``ndim`` dims."""
    values = ops.convert_to_tensor(values)
    if len(values.shape) == 0:
        return values
    return ops.reshape(values, (-1,) + (1,) * (ndim - 1))


# --------------------------------------------------------------------------
# artificial mixtures and additivity
# --------------------------------------------------------------------------
def mix_with_rolled(x, weights):
    """Combine each example with its predecessor in the batch.

    ``out[i] = w[i] * x[i] + (1 - w[i]) * x[i - 1]`` (index taken modulo the
    batch size), i.e. ``w * x + (1 - w) * roll(x, shift=1, axis=0)``: the same
    roll (shift +1 along the batch axis) that the official trainer uses for both
    the audio mixtures and the latent combination.

    Args:
        x: tensor ``(batch, ...)``: audio ``(batch, samples)`` /
            ``(batch, channels, samples)`` or latents ``(batch, frames, dim)``.
        weights: python float, scalar tensor, or tensor ``(batch,)``.

    Returns:
        tensor with the shape of ``x``.
    """
    x = ops.convert_to_tensor(x)
    w = ops.cast(_per_example(weights, len(x.shape)), x.dtype)
    return x * w + ops.roll(x, shift=1, axis=0) * (1.0 - w)


def sample_mix_weights(batch_size, seed, minval, maxval, dtype="float32"):
    """Per-example mixture weights ``w ~ U(minval, maxval)``; shape ``(batch_size,)``.

    Official: ``rand(batch) * 0.5 + 0.5``, i.e. ``U(0.5, 1)``.
    """
    if minval > maxval:
        raise ValueError(f"`minval` ({minval}) must not be larger than `maxval` ({maxval}).")
    return krandom.uniform((batch_size,), minval=minval, maxval=maxval, dtype=dtype, seed=seed)


def additive_latents(latents, weights, switch_prob, seed):
    """Impose additivity on the latents of a batch built by `mix_with_rolled` on the audio.

    The first half of ``latents`` encodes the sources ``x``; the second half
    encodes the mixtures.  Per mixture, with probability ``switch_prob`` its
    latent is replaced by ``mix_with_rolled(z_sources, w)``; otherwise the
    encoder's own latent of the mixture is kept.

    Args:
        latents: ``(2 * batch, ...)``.
        weights: the mixture weights ``(batch,)`` (or scalar) used on the audio.
        switch_prob: probability per example (official ``prob_additivity_switch``).
        seed: seed generator (unused when ``switch_prob >= 1``).

    Returns:
        ``(2 * batch, ...)`` latents: ``concat([z_src, mixed])``.
    """
    _check_probability("switch_prob", switch_prob)
    latents = ops.convert_to_tensor(latents)
    total = _static_batch(latents, "latents")
    if total % 2:
        raise ValueError(f"`latents` must have an even batch size, got {total}.")
    half = total // 2
    sources, mixtures = latents[:half], latents[half:]
    combined = mix_with_rolled(sources, weights)
    if isinstance(switch_prob, (int, float)) and switch_prob >= 1.0:
        # uniform draws in [0, 1) are always < 1: every example switches.
        mixed = combined
    else:
        keep = krandom.uniform((half,), dtype=latents.dtype, seed=seed) < switch_prob
        mask = _per_example(ops.cast(keep, latents.dtype), len(latents.shape))
        mixed = mask * combined + (1.0 - mask) * mixtures
    return ops.concatenate([sources, mixed], axis=0)


# --------------------------------------------------------------------------
# gains (implicit homogeneity)
# --------------------------------------------------------------------------
def _decay_window(step, total_steps, start_hold_fraction, end_zero_fraction):
    if total_steps <= 0:
        raise ValueError(f"`total_steps` must be positive, got {total_steps}.")
    if not 0.0 <= start_hold_fraction < 1.0 - end_zero_fraction <= 1.0:
        raise ValueError(
            "Need 0 <= start_hold_fraction < 1 - end_zero_fraction <= 1, got "
            f"start_hold_fraction={start_hold_fraction}, end_zero_fraction={end_zero_fraction}."
        )
    step = ops.cast(step, "float32")
    start = float(total_steps) * start_hold_fraction
    end = float(total_steps) * (1.0 - end_zero_fraction)
    progress = (step - start) / (end - start)
    cosine = 0.5 * (1.0 + ops.cos(progress * math.pi))
    return step, start, end, cosine


def gain_range(step, total_steps, gain_min, gain_max, decay, start_hold_fraction, end_zero_fraction):
    """Gain range ``(lo, hi)`` at training step ``step``.

    ``decay=True`` is the ``+++range-decay`` scaler (lin_cae): ``[gain_min,
    gain_max]`` up to ``start_hold_fraction * total_steps`` (inclusive), then
    both bounds move towards 1 with the same cosine factor
    ``c = (1 + cos(pi * progress)) / 2`` (``progress`` 0 -> 1 between the hold
    end and ``(1 - end_zero_fraction) * total_steps``):
    ``lo = 1 - (1 - gain_min) * c``, ``hi = 1 + (gain_max - 1) * c``; from
    that end point on (inclusive) the range is ``[1, 1]``.
    ``decay=False`` is the constant ``+++range`` scaler (lin_cae-2).

    Args:
        step: scalar (python number or tensor) - the optimizer step.
        total_steps: python int, total training steps (``trainer.max_steps``).

    Returns:
        two float32 scalar tensors ``(lo, hi)``.
    """
    _check_gain_bounds(gain_min, gain_max)
    step, start, end, cosine = _decay_window(
        step, total_steps, start_hold_fraction, end_zero_fraction
    )
    lo0 = ops.convert_to_tensor(float(gain_min), "float32")
    hi0 = ops.convert_to_tensor(float(gain_max), "float32")
    if not decay:
        return lo0, hi0
    one = ops.ones_like(lo0)
    lo = ops.where(step <= start, lo0, ops.where(step >= end, one, 1.0 - (1.0 - lo0) * cosine))
    hi = ops.where(step <= start, hi0, ops.where(step >= end, one, 1.0 + (hi0 - 1.0) * cosine))
    return lo, hi


def sample_gains(batch_size, seed, gain_min, gain_max, prob, zero_threshold, dtype="float32"):
    """Per-example gains ``(batch_size,)`` (before peak capping).

    With probability ``prob`` an example gets ``a ~ U(gain_min, gain_max)``
    (set to exactly 0 when ``a < zero_threshold``), otherwise gain 1.
    ``gain_min``/``gain_max``/``prob`` may be scalar tensors (e.g. from
    :func:`gain_range`).
    """
    _check_gain_bounds(gain_min, gain_max)
    _check_probability("prob", prob)
    if isinstance(zero_threshold, (int, float)) and zero_threshold < 0:
        raise ValueError(f"`zero_threshold` must be >= 0, got {zero_threshold}.")
    apply = krandom.uniform((batch_size,), dtype=dtype, seed=seed) < ops.cast(prob, dtype)
    u = krandom.uniform((batch_size,), dtype=dtype, seed=seed)
    lo = ops.cast(gain_min, dtype)
    hi = ops.cast(gain_max, dtype)
    gains = u * (hi - lo) + lo
    gains = ops.where(gains < zero_threshold, ops.zeros_like(gains), gains)
    return ops.where(apply, gains, ops.ones_like(gains))


def cap_gains(gains, x, eps=PEAK_EPS):
    """Cap gains so that ``|gain| * max|x[i]| <= 1`` per example.

    The peak is taken over all non-batch axes of ``x`` (channels and samples).
    The cap is ``1 / (peak + eps)``; the sign of the gain is kept.

    Args:
        gains: ``(batch,)``.
        x: audio ``(batch, ...)``.

    Returns:
        ``(batch,)`` capped gains.
    """
    x = ops.convert_to_tensor(x)
    gains = ops.cast(gains, x.dtype)
    axes = tuple(range(1, len(x.shape)))
    peak = ops.max(ops.abs(x), axis=axes) if axes else ops.abs(x)
    allowed = 1.0 / (peak + eps)
    magnitude = ops.minimum(ops.abs(gains), allowed)
    return ops.where(gains < 0, -magnitude, magnitude)


def apply_gain(x, gains):
    """``x * gains`` with ``gains`` ``(batch,)`` broadcast over the other axes of ``x``."""
    x = ops.convert_to_tensor(x)
    return x * ops.cast(_per_example(gains, len(x.shape)), x.dtype)


# --------------------------------------------------------------------------
# M2L baseline augmentations
# --------------------------------------------------------------------------
def mixit_augmentation(x, seed, prob):
    """Official ``mixit_augmentation`` (m2l): mix some examples with a random partner.

    A random permutation ``perm`` of the batch is drawn; each example is
    replaced, with probability ``prob`` (0.5 officially), by
    ``(x[i] + x[perm[i]]) / 2`` (``perm[i]`` may equal ``i``).  The batch size
    does not change.  Officially this runs on the raw audio batch before the
    trainer's mixture/gain logic.

    Args:
        x: audio ``(batch, ...)``.

    Returns:
        tensor with the shape of ``x``.
    """
    _check_probability("prob", prob)
    x = ops.convert_to_tensor(x)
    batch = _static_batch(x)
    perm = krandom.shuffle(ops.arange(batch, dtype="int32"), seed=seed)
    partner = ops.take(x, perm, axis=0)
    mask = ops.cast(krandom.uniform((batch,), dtype=x.dtype, seed=seed) < prob, x.dtype)
    mask = _per_example(mask, len(x.shape))
    return mask * ((x + partner) * 0.5) + (1.0 - mask) * x


def scale_augmentation(x, gains):
    """Official ``scale_augmentation`` (m2l): the audio scaled by capped gains.

    Officially the trainer computes ``rep(cap_gains(g, x) * x)`` with gains from
    the same gain scaler as Lin-CAE; this returns ``apply_gain(x, cap_gains(gains, x))``.
    NOTE: in the official trainer the scaled representation is only used when
    ``gain_equivariance`` names "student"/"teacher"; with m2l's
    ``gain_equivariance: null`` it is computed but not fed to the loss.
    """
    return apply_gain(x, cap_gains(gains, x))
