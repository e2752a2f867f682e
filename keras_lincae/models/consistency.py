"""Consistency-model maths: the Karras noise grid, preconditioning, noise-index sampling,
the annealed step size and noising (official `linear_cae.components.diffusion`).

Pure `keras.ops` / `keras.random`; every function traces under `jax.jit` and `tf.function`.
The hyper-parameters (`sigma_min`, `rho`, `p_mean`, ...) come from the model's config.
"""

import functools
import math

import numpy as np
from keras import ops
from keras import random as krandom

NUM_NOISE_BINS = 10000  # the official discretisation of the noise index for sampling


def _karras_sigma(index, sigma_min, sigma_max, rho):
    """`(s_min^(1/rho) + index (s_max^(1/rho) - s_min^(1/rho)))^rho` (Python floats or tensors)."""
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (lo + index * (hi - lo)) ** rho


def sampling_sigmas(steps, sigma_min, sigma_max, rho):
    """Noise levels visited by a `steps`-step decode, highest first: `steps + 1` Python floats.

    The Karras grid at index `1, (steps-1)/steps, ..., 0`; 1 step visits `[sigma_max, sigma_min]`.
    """
    return [float(_karras_sigma(i / steps, sigma_min, sigma_max, rho)) for i in range(steps, -1, -1)]


def sigma_from_index(index, sigma_min, sigma_max, rho):
    """Karras noise level of continuous indices in `[0, 1]` (any shape, float32 when integer)."""
    if sigma_min <= 0 or sigma_max <= 0 or rho <= 0:
        raise ValueError("`sigma_min`, `sigma_max` and `rho` must be positive.")
    index = ops.convert_to_tensor(index)
    if not str(index.dtype).startswith("float"):
        index = ops.cast(index, "float32")
    return _karras_sigma(index, sigma_min, sigma_max, rho)


def preconditioning(sigma, sigma_min, sigma_data):
    """Consistency-model scalings `(c_skip, c_out, c_in)`, each shaped like `sigma` `(batch,)`.

    `c_skip = sd^2 / ((s - s_min)^2 + sd^2)`, `c_out = sd (s - s_min) / sqrt(sd^2 + s^2)`,
    `c_in = 1 / sqrt(s^2 + sd^2)`; `c_skip = 1`, `c_out = 0` at `s = s_min`.
    """
    shifted = sigma - sigma_min
    c_skip = sigma_data**2 / (shifted**2 + sigma_data**2)
    c_out = sigma_data * shifted / ops.sqrt(sigma_data**2 + sigma**2)
    c_in = 1.0 / ops.sqrt(sigma**2 + sigma_data**2)
    return c_skip, c_out, c_in


@functools.lru_cache(maxsize=16)
def lognormal_index_probabilities(sigma_min, sigma_max, rho, p_mean, p_std, num_bins=NUM_NOISE_BINS):
    """Probabilities `(num_bins - 1,)` (numpy float64, read-only) of the discrete noise bins.

    Bin `j` sits at index `j / (num_bins - 1)`; its weight is the normal pdf of `log(sigma)`
    with mean `p_mean` and std `p_std` (official `Diffusion.get_sampling_weights`, normalised).
    """
    if num_bins < 2:
        raise ValueError(f"`num_bins` must be >= 2, got {num_bins}.")
    if p_std <= 0:
        raise ValueError(f"`p_std` must be positive, got {p_std}.")
    index = np.arange(num_bins - 1, dtype=np.float64) / (num_bins - 1)
    logpdf = -0.5 * ((np.log(_karras_sigma(index, sigma_min, sigma_max, rho)) - p_mean) / p_std) ** 2
    prob = np.exp(logpdf - logpdf.max())
    prob /= prob.sum()
    prob.flags.writeable = False
    return prob


def sample_noise_indices(batch_size, seed, sigma_min, sigma_max, rho, p_mean, p_std):
    """Continuous noise indices `(batch_size,)` float32 in `[0, 1)`.

    Official sampler: a bin `j` from `lognormal_index_probabilities`, then
    `(j + u) / (num_bins - 1)` with `u ~ U(0, 1)`. The bin is drawn by inverse CDF
    (same distribution, no `(batch, num_bins)` buffer).
    """
    prob = lognormal_index_probabilities(
        float(sigma_min), float(sigma_max), float(rho), float(p_mean), float(p_std)
    )
    cdf = np.cumsum(prob)
    cdf[-1] = 1.0
    u = krandom.uniform((batch_size,), dtype="float32", seed=seed)
    bins = ops.searchsorted(ops.convert_to_tensor(cdf.astype(np.float32)), u, side="right")
    bins = ops.minimum(ops.cast(bins, "float32"), float(NUM_NOISE_BINS - 2))
    jitter = krandom.uniform((batch_size,), dtype="float32", seed=seed)
    return (bins + jitter) / float(NUM_NOISE_BINS - 1)


def consistency_step_size(step, total_steps, base_step, start_exp, end_exp):
    """Index step size at training `step`: a float32 scalar (official exponential schedule).

    `base_step ** (start_exp + (end_exp - start_exp) * min(step, total_steps) / total_steps)`.
    """
    if base_step <= 0:
        raise ValueError(f"`base_step` must be positive, got {base_step}.")
    if total_steps <= 0:
        raise ValueError(f"`total_steps` must be positive, got {total_steps}.")
    step = ops.minimum(ops.cast(step, "float32"), float(total_steps))
    exponent = start_exp + (end_exp - start_exp) * (step / float(total_steps))
    return ops.exp(exponent * math.log(base_step))


def step_index(index, step_size):
    """`max(index - step_size, 0)`: the teacher's (smaller) noise index, shaped like `index`."""
    index = ops.convert_to_tensor(index)
    return ops.maximum(index - ops.cast(step_size, index.dtype), 0.0)


def consistency_sigmas(index, step_size, sigma_min, sigma_max, rho):
    """`(sigma, sigma_step)` for indices `(batch,)`: student and teacher noise levels."""
    sigma = sigma_from_index(index, sigma_min, sigma_max, rho)
    sigma_step = sigma_from_index(step_index(index, step_size), sigma_min, sigma_max, rho)
    return sigma, sigma_step


def consistency_loss_weight(sigma, sigma_step):
    """Per-example loss weight `1 / (sigma - sigma_step)`, shape `(batch,)`."""
    return 1.0 / (sigma - sigma_step)


def add_noise(x, noise, sigma):
    """`x + sigma * noise`: `sigma` `(batch,)` broadcast over `x` and `noise` `(batch, ...)`."""
    x = ops.convert_to_tensor(x)
    sigma = ops.reshape(ops.cast(sigma, x.dtype), (-1,) + (1,) * (len(x.shape) - 1))
    return x + sigma * noise
