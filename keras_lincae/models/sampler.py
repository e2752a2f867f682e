"""The consistency sampler behind `LinCAE.decode`: denoise from `sigma_max`, re-noise down
the Karras grid of `consistency.sampling_sigmas`, invert the frontend."""

import numpy as np
from keras import ops

from keras_lincae.models.consistency import sampling_sigmas


def sample(model, latents, draws):
    """Consistency sampling traced as one graph (`LinCAE.sample`).

    Args:
        model: a `LinCAE`.
        latents: `(batch, frames, latent_channels)`, scaled.
        draws: list (one per step) of standard-normal
            `(batch, time_downsampling * frames, 2 * hop_size, data_channels)`.
    Returns `(batch, decoded_length(frames))` audio.
    """
    sigmas = sampling_sigmas(len(draws), model.sigma_min, model.sigma_max, model.rho)
    pyramid = _latent_pyramid(model, latents)
    x = draws[0] * sigmas[0]
    for k in range(len(draws)):
        if k > 0:
            x = x + np.sqrt(sigmas[k] ** 2 - model.sigma_min**2) * draws[k]
        batch_sigma = ops.full((ops.shape(x)[0],), sigmas[k])
        x = model.decoder.denoise(x, batch_sigma, pyramid)
    return model.frontend.to_waveform(x)


def sample_steps(model, latents, draws):
    """`sample` run compiled: 1 step fused; more steps through ONE compiled sampler step,
    so neither memory nor compilations grow with the number of steps. Same shapes as `sample`."""
    steps = len(draws)
    if steps == 1:
        return model.compiled_function(("decode", 1), lambda z, n: model.sample(z, [n]))(latents, draws[0])
    sigmas = sampling_sigmas(steps, model.sigma_min, model.sigma_max, model.rho)
    pyramid = model.compiled_function("latent_pyramid", lambda z: _latent_pyramid(model, z))(latents)
    step = model.compiled_function("sampler_step", lambda *args: _sampler_step(model, *args))
    x = None
    for k, draw in enumerate(draws):
        renoise = sigmas[0] if k == 0 else float(np.sqrt(sigmas[k] ** 2 - model.sigma_min**2))
        x = step(x if x is not None else ops.zeros_like(draw), draw, *(
            ops.convert_to_tensor(np.float32(v)) for v in (renoise, sigmas[k])), pyramid)
    return model.compiled_function("to_waveform", model.frontend.to_waveform)(x)


def _latent_pyramid(model, latents):
    """Scaled latents -> the decoder's conditioning pyramid (list of feature maps)."""
    return model.decoder.latent_pyramid(ops.cast(latents / model.scale_factor, model.compute_dtype))


def _sampler_step(model, x, draw, renoise, sigma, pyramid):
    """`denoise(x + renoise * draw)` at noise level `sigma` (scalars as tensors: one trace)."""
    return model.decoder.denoise(x + renoise * draw, sigma, pyramid)
