"""Backend-agnostic training building blocks for Lin-CAE (consistency training).

Everything here is written with ``keras.ops`` / ``keras.random`` only, so each
function can be traced inside ``jax.jit``, ``tf.function`` or run eagerly on
torch.  Random functions take a ``keras.random.SeedGenerator`` (or any seed
accepted by ``keras.random``) so that they stay stateless under jit.

Contents
--------
Lin-CAE augmentation (METHOD.md section 3):

* :func:`mix_with_rolled` - ``w * x + (1 - w) * roll(x, 1, axis=0)``.
* :func:`sample_mix_weights` - ``w ~ U(0.5, 1)`` per example.
* :func:`make_artificial_mixtures` - append the mixtures to the batch.
* :func:`additive_latents` - replace the mixtures' latents by the same
  combination of the sources' latents.
* :func:`gain_range` / :func:`gain_probability` - gain annealing schedule.
* :func:`sample_gains`, :func:`cap_gains`, :func:`sample_capped_gains`,
  :func:`apply_gain`, :func:`remove_gain` - homogeneity gains.

M2L baseline augmentations: :func:`mixit_augmentation`,
:func:`scale_augmentation`, :func:`normalize_gain_augmentation`.

Consistency training: :func:`lognormal_index_probabilities`,
:func:`sample_noise_indices`, :func:`sigma_from_index`,
:func:`consistency_step_size`, :func:`step_index`, :func:`consistency_sigmas`,
:func:`consistency_loss_weight`,
:func:`add_noise`, :func:`pseudo_huber_loss`.
"""

import functools
import math

import numpy as np
from keras import ops
from keras import random as krandom

# Defaults of the official "lin_cae" configuration.
MIX_WEIGHT_MIN = 0.5
MIX_WEIGHT_MAX = 1.0
GAIN_PROB = 0.8
GAIN_MIN = 0.0
GAIN_MAX = 3.0
GAIN_ZERO_THRESHOLD = 0.05
GAIN_START_HOLD_FRACTION = 0.2
GAIN_END_ZERO_FRACTION = 0.1
PEAK_EPS = 1e-7

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0
P_MEAN = -1.1
P_STD = 2.0
SIGMA_DATA = 0.5
NUM_NOISE_BINS = 10000
BASE_STEP = 0.1
START_EXP = 1.0
END_EXP = 2.0
HUBER_C = 0.00054


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


def sample_mix_weights(
    batch_size, seed, minval=MIX_WEIGHT_MIN, maxval=MIX_WEIGHT_MAX, dtype="float32"
):
    """Per-example mixture weights ``w ~ U(minval, maxval)``; shape ``(batch_size,)``.

    Official: ``rand(batch) * 0.5 + 0.5``, i.e. ``U(0.5, 1)``.
    """
    if minval > maxval:
        raise ValueError(f"`minval` ({minval}) must not be larger than `maxval` ({maxval}).")
    return krandom.uniform((batch_size,), minval=minval, maxval=maxval, dtype=dtype, seed=seed)


def make_artificial_mixtures(x, seed, mix_weights="random"):
    """Append artificial mixtures to a batch of audio.

    Args:
        x: audio ``(batch, ...)``.
        seed: seed generator for the mixture weights.
        mix_weights: ``"random"`` (``w ~ U(0.5, 1)``, official default) or a
            python float used for every example (the official non-random mode
            uses 0.5).

    Returns:
        ``(x_aug, w)``: ``x_aug = concat([x, mix_with_rolled(x, w)])`` of shape
        ``(2 * batch, ...)`` and the weights ``(batch,)`` (or a scalar).
    """
    x = ops.convert_to_tensor(x)
    if mix_weights == "random":
        w = sample_mix_weights(_static_batch(x), seed, dtype=x.dtype)
    elif isinstance(mix_weights, (int, float)):
        _check_probability("mix_weights", mix_weights)
        w = ops.convert_to_tensor(float(mix_weights), dtype=x.dtype)
    else:
        raise ValueError(f"`mix_weights` must be 'random' or a float, got {mix_weights!r}.")
    return ops.concatenate([x, mix_with_rolled(x, w)], axis=0), w


def additive_latents(latents, weights, switch_prob=1.0, seed=None):
    """Impose additivity on the latents of a batch built by :func:`make_artificial_mixtures`.

    The first half of ``latents`` encodes the sources ``x``; the second half
    encodes the mixtures.  Per mixture, with probability ``switch_prob`` its
    latent is replaced by ``mix_with_rolled(z_sources, w)``; otherwise the
    encoder's own latent of the mixture is kept.

    Args:
        latents: ``(2 * batch, ...)``.
        weights: the mixture weights ``(batch,)`` (or scalar) used on the audio.
        switch_prob: probability per example (official ``prob_additivity_switch``,
            1.0 in the lin_cae configs).
        seed: seed generator; only needed when ``switch_prob < 1``.

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
        if seed is None:
            raise ValueError("`seed` is required when `switch_prob` < 1.")
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


def gain_range(
    step,
    total_steps,
    gain_min=GAIN_MIN,
    gain_max=GAIN_MAX,
    decay=True,
    start_hold_fraction=GAIN_START_HOLD_FRACTION,
    end_zero_fraction=GAIN_END_ZERO_FRACTION,
):
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


def gain_probability(
    step,
    total_steps,
    prob=GAIN_PROB,
    decay=False,
    start_hold_fraction=GAIN_START_HOLD_FRACTION,
    end_zero_fraction=GAIN_END_ZERO_FRACTION,
):
    """Probability of applying a random gain at ``step`` (official ``prob_decay``).

    Constant ``prob`` unless ``decay``: then ``prob`` until the hold end, cosine
    down to 0 at ``(1 - end_zero_fraction) * total_steps`` and 0 after.  All
    official presets use ``decay=False``.
    """
    _check_probability("prob", prob)
    step, start, end, cosine = _decay_window(
        step, total_steps, start_hold_fraction, end_zero_fraction
    )
    p0 = ops.convert_to_tensor(float(prob), "float32")
    if not decay:
        return p0
    return ops.where(step <= start, p0, ops.where(step >= end, ops.zeros_like(p0), p0 * cosine))


def sample_gains(
    batch_size,
    seed,
    gain_min=GAIN_MIN,
    gain_max=GAIN_MAX,
    prob=GAIN_PROB,
    zero_threshold=GAIN_ZERO_THRESHOLD,
    dtype="float32",
):
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


def sample_capped_gains(
    x,
    seed,
    gain_min=GAIN_MIN,
    gain_max=GAIN_MAX,
    prob=GAIN_PROB,
    zero_threshold=GAIN_ZERO_THRESHOLD,
    eps=PEAK_EPS,
):
    """:func:`sample_gains` for the batch of ``x`` followed by :func:`cap_gains`.

    Returns ``(batch,)`` gains for ``x`` (audio ``(batch, ...)``).
    """
    x = ops.convert_to_tensor(x)
    gains = sample_gains(
        _static_batch(x), seed, gain_min, gain_max, prob, zero_threshold, dtype=x.dtype
    )
    return cap_gains(gains, x, eps=eps)


def apply_gain(x, gains):
    """``x * gains`` with ``gains`` ``(batch,)`` broadcast over the other axes of ``x``."""
    x = ops.convert_to_tensor(x)
    return x * ops.cast(_per_example(gains, len(x.shape)), x.dtype)


def remove_gain(x, gains):
    """Inverse of :func:`apply_gain` (official ``GainScaler.inverse``, encoder mode only)."""
    x = ops.convert_to_tensor(x)
    return x / ops.cast(_per_example(gains, len(x.shape)), x.dtype)


# --------------------------------------------------------------------------
# M2L baseline augmentations
# --------------------------------------------------------------------------
def mixit_augmentation(x, seed, prob=0.5):
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


def normalize_gain_augmentation(x, seed, gain_min=0.1, gain_max=1.0):
    """Official ``normalize_gain_augmentation`` (off in every preset).

    Peak-normalise each row over the last axis, then multiply each example by a
    gain ``U(gain_min, gain_max)``.
    """
    _check_gain_bounds(gain_min, gain_max)
    x = ops.convert_to_tensor(x)
    x = x / ops.max(ops.abs(x), axis=-1, keepdims=True)
    g = krandom.uniform((_static_batch(x),), gain_min, gain_max, dtype=x.dtype, seed=seed)
    return apply_gain(x, g)


# --------------------------------------------------------------------------
# consistency training: noise levels
# --------------------------------------------------------------------------
def _sigma_of_fraction(frac, sigma_min, sigma_max, rho):
    a = sigma_min ** (1.0 / rho)
    b = sigma_max ** (1.0 / rho)
    return (a + frac * (b - a)) ** rho


@functools.lru_cache(maxsize=16)
def _index_table(num_bins, sigma_min, sigma_max, rho, p_mean, p_std):
    # bins j = 0 .. num_bins - 2 sit at the continuous index j / (num_bins - 1)
    j = np.arange(num_bins - 1, dtype=np.float64)
    sigma = _sigma_of_fraction(j / (num_bins - 1), sigma_min, sigma_max, rho)
    logpdf = -0.5 * ((np.log(sigma) - p_mean) / p_std) ** 2
    prob = np.exp(logpdf - logpdf.max())
    prob /= prob.sum()
    cdf = np.cumsum(prob)
    cdf[-1] = 1.0
    return prob, cdf


def lognormal_index_probabilities(
    num_bins=NUM_NOISE_BINS,
    sigma_min=SIGMA_MIN,
    sigma_max=SIGMA_MAX,
    rho=RHO,
    p_mean=P_MEAN,
    p_std=P_STD,
):
    """Probabilities ``(num_bins - 1,)`` (numpy float64) of the discrete noise bins.

    Bin ``j`` has sigma ``sigma_from_index(j / (num_bins - 1))`` and weight
    proportional to the normal pdf of ``log(sigma)`` with mean ``p_mean`` and
    std ``p_std`` (official ``Diffusion.get_sampling_weights(num_bins)``,
    normalised).
    """
    if num_bins < 2:
        raise ValueError(f"`num_bins` must be >= 2, got {num_bins}.")
    if p_std <= 0:
        raise ValueError(f"`p_std` must be positive, got {p_std}.")
    prob, _ = _index_table(
        int(num_bins), float(sigma_min), float(sigma_max), float(rho), float(p_mean), float(p_std)
    )
    return prob.copy()


def sample_noise_indices(
    batch_size,
    seed,
    num_bins=NUM_NOISE_BINS,
    sigma_min=SIGMA_MIN,
    sigma_max=SIGMA_MAX,
    rho=RHO,
    p_mean=P_MEAN,
    p_std=P_STD,
    use_lognormal=True,
    dtype="float32",
):
    """Continuous noise indices ``(batch_size,)`` in ``[0, 1)``.

    Official sampler: draw a bin ``j`` from :func:`lognormal_index_probabilities`
    (multinomial with replacement), then ``(j + u) / (num_bins - 1)`` with
    ``u ~ U(0, 1)``.  Here the bin is drawn by inverse CDF on a precomputed
    table (same distribution, and no ``(batch, num_bins)`` buffer).
    ``use_lognormal=False`` gives ``U(0, 1)``.
    """
    if not use_lognormal:
        return krandom.uniform((batch_size,), dtype=dtype, seed=seed)
    if num_bins < 2:
        raise ValueError(f"`num_bins` must be >= 2, got {num_bins}.")
    _, cdf = _index_table(
        int(num_bins), float(sigma_min), float(sigma_max), float(rho), float(p_mean), float(p_std)
    )
    cdf = ops.convert_to_tensor(cdf.astype(np.float32))
    u = krandom.uniform((batch_size,), dtype="float32", seed=seed)
    bins = ops.searchsorted(cdf, u, side="right")
    bins = ops.minimum(ops.cast(bins, "float32"), float(num_bins - 2))
    jitter = krandom.uniform((batch_size,), dtype="float32", seed=seed)
    return ops.cast((bins + jitter) / float(num_bins - 1), dtype)


def sigma_from_index(index, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO):
    """Karras noise level of a continuous index in ``[0, 1]`` (any shape).

    ``(sigma_min^(1/rho) + index * (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho``.
    """
    if sigma_min <= 0 or sigma_max <= 0 or rho <= 0:
        raise ValueError("`sigma_min`, `sigma_max` and `rho` must be positive.")
    index = ops.convert_to_tensor(index)
    if not str(index.dtype).startswith("float"):
        index = ops.cast(index, "float32")
    return _sigma_of_fraction(index, sigma_min, sigma_max, rho)


def consistency_step_size(
    step,
    total_steps,
    base_step=BASE_STEP,
    start_exp=START_EXP,
    end_exp=END_EXP,
    schedule="exponential",
):
    """Index step size at training ``step`` (official ``Diffusion.get_step_schedule``).

    ``"exponential"``: ``base_step ** (start_exp + (end_exp - start_exp) *
    min(step, total_steps) / total_steps)`` (the trainer clamps ``step`` at
    ``total_steps``); ``"constant"``: ``base_step ** end_exp``.
    ``total_steps=None`` uses the end exponent.  Returns a float32 scalar tensor.
    """
    if schedule not in ("exponential", "constant"):
        raise ValueError(f"`schedule` must be 'exponential' or 'constant', got {schedule!r}.")
    if base_step <= 0:
        raise ValueError(f"`base_step` must be positive, got {base_step}.")
    if schedule == "constant" or total_steps is None:
        return ops.convert_to_tensor(float(base_step) ** float(end_exp), "float32")
    if total_steps <= 0:
        raise ValueError(f"`total_steps` must be positive, got {total_steps}.")
    step = ops.minimum(ops.cast(step, "float32"), float(total_steps))
    exponent = start_exp + (end_exp - start_exp) * (step / float(total_steps))
    return ops.exp(exponent * math.log(base_step))


def step_index(index, step_size):
    """``max(index - step_size, 0)``: the teacher's (smaller) noise index."""
    index = ops.convert_to_tensor(index)
    return ops.maximum(index - ops.cast(step_size, index.dtype), 0.0)


def consistency_sigmas(index, step_size, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rho=RHO):
    """``(sigma, sigma_step)`` for indices ``(batch,)``: student and teacher noise levels."""
    sigma = sigma_from_index(index, sigma_min, sigma_max, rho)
    sigma_step = sigma_from_index(step_index(index, step_size), sigma_min, sigma_max, rho)
    return sigma, sigma_step


def consistency_loss_weight(sigma, sigma_step):
    """Per-example loss weight ``1 / (sigma - sigma_step)``."""
    return 1.0 / (sigma - sigma_step)


def add_noise(x, noise, sigma):
    """``x + sigma * noise`` with ``sigma`` ``(batch,)`` broadcast over ``x`` ``(batch, ...)``."""
    x = ops.convert_to_tensor(x)
    return x + ops.cast(_per_example(sigma, len(x.shape)), x.dtype) * noise


def pseudo_huber_loss(target, prediction, weights=None, c=HUBER_C, reduction="mean"):
    """Official consistency loss (pseudo-Huber on the whole example).

    Per example ``i``: ``d_i = sum((target_i - prediction_i)^2)`` over all
    non-batch axes, ``D`` = number of elements per example,
    ``c' = c * sqrt(D)``, ``l_i = sqrt(d_i + c'^2) - c'`` (NaNs -> 0), times
    ``weights[i]`` if given.  ``reduction="mean"`` averages over the batch,
    ``None`` returns ``(batch,)``.
    """
    if reduction not in ("mean", None):
        raise ValueError(f"`reduction` must be 'mean' or None, got {reduction!r}.")
    target = ops.convert_to_tensor(target)
    prediction = ops.convert_to_tensor(prediction)
    if tuple(target.shape[1:]) != tuple(prediction.shape[1:]):
        raise ValueError(f"Shape mismatch: {target.shape} vs {prediction.shape}.")
    dim = int(np.prod(target.shape[1:])) if len(target.shape) > 1 else 1
    cc = c * math.sqrt(dim)
    sq = ops.square(target - prediction)
    axes = tuple(range(1, len(sq.shape)))
    d = ops.sum(sq, axis=axes) if axes else sq
    loss = ops.nan_to_num(ops.sqrt(d + cc**2) - cc)
    if weights is not None:
        loss = loss * ops.reshape(ops.cast(weights, loss.dtype), (-1,))
    if reduction == "mean":
        return ops.mean(loss)
    return loss
