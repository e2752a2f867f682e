"""The Lin-CAE training objective (the body of `LinCAE.compute_loss`).

Each function takes the `LinCAE` whose config, seed generator and parts it uses:
clips -> augmentations -> frontend -> latent mixing and gains -> two noisy branches
from one noise draw -> pseudo-Huber (or the one-step spectral warm start).
"""

import keras
from keras import ops

from keras_lincae.backend_dispatch import no_gradient
from keras_lincae.models import augment, consistency, losses


def training_loss(model, audio, scaled_latents, training):
    """The objective on a batch of clips `(batch, samples)` and their scaled latents.

    `scaled_latents`: `(batch, frames, latent_channels)`, what `model.call` gave for `audio`.
    With `training=False` the augmentations are skipped. Returns a scalar.
    """
    audio = ops.cast(audio, "float32")
    latents = ops.cast(scaled_latents, "float32") / model.scale_factor
    if training:
        audio, latents = augmented_batch(model, audio, latents)
    representation = model.frontend.to_representation(audio)
    pyramid = model.decoder.latent_pyramid(ops.cast(latents, model.compute_dtype), training=training)
    if model.objective == "one_step_spectral":
        return one_step_spectral_loss(model, audio, representation, pyramid, training)
    return consistency_loss(model, representation, pyramid, training)


def augmented_batch(model, audio, latents):
    """Augmented `(2 * batch, samples)` audio and `(2 * batch, frames, channels)` unscaled latents.

    1. m2l: mix-it and scale augmentation, then the encoder's latents of the result.
    2. All modes: artificial mixtures `w x + (1 - w) roll(x)` appended.
    3. lin_cae*: the mixtures' latents are `w z + (1 - w) roll(z)` (additivity; with
       probability `prob_additivity_switch`), then audio and latents are multiplied by the
       same peak-capped gains `a` (homogeneity). m2l: the encoder's latents of the mixtures.
    """
    batch = audio.shape[0]
    if batch is None or batch < 2:
        raise ValueError(f"Lin-CAE training needs at least 2 clips per batch to form mixtures, got {batch}")
    seed = model._train_seed
    if model.mode == "m2l":
        audio = augment.mixit_augmentation(audio, seed, model.mixit_prob)
        if model.scale_augmentation:
            audio = augment.scale_augmentation(audio, _sample_gains(model, batch))
        latents = _encode_unscaled(model, audio)
    weights = augment.sample_mix_weights(batch, seed, model.mix_weight_min, model.mix_weight_max)
    audio = ops.concatenate([audio, augment.mix_with_rolled(audio, weights)], axis=0)
    if model.mode == "m2l":
        return audio, ops.concatenate([latents, _encode_unscaled(model, audio[batch:])], axis=0)
    if model.prob_additivity_switch >= 1.0:
        latents = ops.concatenate([latents, augment.mix_with_rolled(latents, weights)], axis=0)
    else:
        latents = ops.concatenate([latents, _encode_unscaled(model, audio[batch:])], axis=0)
        latents = augment.additive_latents(latents, weights, model.prob_additivity_switch, seed)
    gains = augment.cap_gains(_sample_gains(model, 2 * batch), audio)
    return augment.apply_gain(audio, gains), augment.apply_gain(latents, gains)


def consistency_loss(model, representation, pyramid, training):
    """Official consistency training on `(items, frames, bins, 2)` representations.

    One noise draw; the noise index from the discretised log-normal; `sigma_step` from the
    annealed step size; the `sigma_step` branch is a stop-gradient target; pseudo-Huber
    weighted by `1 / (sigma - sigma_step)`. Returns a scalar.
    """
    seed = model._train_seed
    noise = keras.random.normal(ops.shape(representation), seed=seed)
    index = consistency.sample_noise_indices(
        representation.shape[0], seed, model.sigma_min, model.sigma_max, model.rho, model.p_mean, model.p_std
    )
    step_size = consistency.consistency_step_size(
        model.training_step, model.total_steps, model.base_step, model.start_exp, model.end_exp
    )
    sigma, sigma_step = consistency.consistency_sigmas(index, step_size, model.sigma_min, model.sigma_max, model.rho)
    denoise = model.decoder.denoise
    with no_gradient():
        target = denoise(consistency.add_noise(representation, noise, sigma_step), sigma_step, pyramid, training)
    prediction = denoise(consistency.add_noise(representation, noise, sigma), sigma, pyramid, training)
    weights = consistency.consistency_loss_weight(sigma, sigma_step)
    return losses.pseudo_huber_loss(ops.stop_gradient(target), prediction, weights, model.huber_c)


def one_step_spectral_loss(model, audio, representation, pyramid, training):
    """1-step decode from `sigma_max` noise, spectral loss against `audio`.

    Phase-blind multi-resolution loss, plus `spectral_phase_weight` times the phase-aware
    complex spectral convergence (2048/512) and `spectral_level_weight` times the per-clip
    log-energy distance, each when its weight is not 0.

    The `n_fft - hop` samples at each end, where the inverse STFT is not exact, are left out.
    Not in the paper: a warm start of the 1-step regime for small budgets. Returns a scalar.
    """
    noise = keras.random.normal(ops.shape(representation), seed=model._train_seed)
    sigma = ops.full((representation.shape[0],), model.sigma_max)
    denoised = model.decoder.denoise(noise * model.sigma_max, sigma, pyramid, training)
    decoded = model.frontend.to_waveform(denoised)
    edge, length = model.frontend.n_fft - model.hop_size, decoded.shape[-1]
    decoded, audio = decoded[:, edge : length - edge], audio[:, edge : length - edge]
    loss = losses.multi_resolution_spectral_loss(decoded, audio, log_weight=model.spectral_log_weight)
    if model.spectral_phase_weight:
        loss = loss + model.spectral_phase_weight * losses.complex_spectral_convergence(decoded, audio)
    if model.spectral_level_weight:
        loss = loss + model.spectral_level_weight * losses.log_energy_distance(decoded, audio)
    return loss


def gain_range(model, step):
    """`(low, high)` float32 gain bounds at `step` (annealed unless mode is "lin_cae_2")."""
    return augment.gain_range(
        step,
        model.total_steps,
        model.gain_min,
        model.gain_max,
        decay=model.mode != "lin_cae_2",
        start_hold_fraction=model.gain_hold_fraction,
        end_zero_fraction=model.gain_end_fraction,
    )


def _sample_gains(model, count):
    """`(count,)` random gains in the range of the model's current training step."""
    low, high = gain_range(model, model.training_step)
    return augment.sample_gains(count, model._train_seed, low, high, model.gain_prob, model.gain_zero_threshold)


def _encode_unscaled(model, audio):
    """`(batch, samples)` -> the encoder's `(batch, frames, latent_channels)` float32 latents."""
    representation = model.frontend.to_representation(audio)
    return ops.cast(model.encoder(ops.cast(representation, model.compute_dtype), training=True), "float32")
