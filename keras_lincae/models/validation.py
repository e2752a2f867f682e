"""Input checks that turn bad input into errors naming the problem."""

import keras
import numpy as np
from keras import ops


def _as_float_tensor(value, what):
    if value is None or isinstance(value, (str, bytes, dict, bool, int, float)):
        raise TypeError(f"{what} must be a float array or tensor, got {type(value).__name__}")
    if isinstance(value, (list, tuple, np.ndarray, np.generic)):
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"{what} must be floating point, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(f"{what} contains NaN or infinite values")
        return ops.convert_to_tensor(array.astype("float32", copy=False))
    tensor = ops.convert_to_tensor(value)
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if "float" not in dtype:
        raise TypeError(f"{what} must be floating point, got dtype {dtype}")
    if not bool(ops.convert_to_numpy(ops.all(ops.isfinite(tensor)))):
        raise ValueError(f"{what} contains NaN or infinite values")
    return ops.cast(tensor, "float32")


def _flatten_channels(tensor, rank, what, layout):
    if tensor.ndim not in (rank, rank + 1):
        raise ValueError(
            f"{what} must have shape {layout} or with a channels axis after batch; "
            f"got rank {tensor.ndim} with shape {tuple(tensor.shape)}"
        )
    if tensor.ndim == rank:
        return tensor, None
    shape = tuple(int(d) for d in tensor.shape)
    return ops.reshape(tensor, (shape[0] * shape[1],) + shape[2:]), shape[1]


def check_audio(audio, min_samples):
    """`(batch, samples)` or `(batch, channels, samples)` -> float32 `(items, samples)`, channels."""
    tensor = _as_float_tensor(audio, "audio")
    tensor, channels = _flatten_channels(tensor, 2, "audio", "(batch, samples)")
    if tensor.shape[0] == 0:
        raise ValueError("audio has an empty batch")
    num_samples = int(tensor.shape[-1])
    if num_samples == 0:
        raise ValueError("audio is empty: 0 samples")
    if num_samples < max(1, min_samples):
        raise ValueError(
            f"audio is too short: {num_samples} samples, at least {max(1, min_samples)} needed"
        )
    return tensor, channels


def check_latents(latents, latent_channels):
    """`(batch, frames, C)` or `(batch, channels, frames, C)` -> float32 `(items, frames, C)`, channels."""
    tensor = _as_float_tensor(latents, "latents")
    tensor, channels = _flatten_channels(tensor, 3, "latents", "(batch, frames, latent_channels)")
    if int(tensor.shape[-1]) != latent_channels:
        raise ValueError(
            f"latents have {int(tensor.shape[-1])} channels on the last axis, "
            f"this model expects {latent_channels}"
        )
    if int(tensor.shape[1]) < 1 or int(tensor.shape[0]) < 1:
        raise ValueError(f"latents are empty: shape {tuple(tensor.shape)}")
    return tensor, channels


def restore_channels(tensor, channels):
    """Undo `_flatten_channels`: `(batch * channels, ...)` -> `(batch, channels, ...)`."""
    if channels is None:
        return tensor
    shape = tuple(int(d) for d in tensor.shape)
    return ops.reshape(tensor, (shape[0] // channels, channels) + shape[1:])


TRAINING_MODES = ("lin_cae", "lin_cae_2", "m2l")
OBJECTIVES = ("consistency", "one_step_spectral")
MAX_DECODE_STEPS = 100  # the official sampler stops gaining long before; bounds time per call
MAX_SEED = 2**32 - 1


def check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= MAX_DECODE_STEPS:
        raise ValueError(f"steps must be an integer in [1, {MAX_DECODE_STEPS}], got {steps!r}")
    return int(steps)


def check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}] or None, got {seed!r}")
    return int(seed)


def check_finite_output(tensor, what, hint):
    """Raise ValueError when the model produced NaN or infinite values (`what` names them)."""
    if not bool(ops.convert_to_numpy(ops.all(ops.isfinite(tensor)))):
        raise ValueError(f"{what} contains NaN or infinite values: {hint}")
    return tensor


def check_noise(noise, shape):
    tensor = _as_float_tensor(noise, "noise")
    if tuple(int(d) for d in tensor.shape) != tuple(shape):
        raise ValueError(f"noise must have shape {tuple(shape)}, got {tuple(tensor.shape)}")
    return tensor


def check_architecture(config):
    """Raise ValueError for inconsistent architecture fields."""
    levels = len(config["layers_list"])
    for key in ("multipliers_list", "attention_list", "layers_list_encoder", "attention_list_encoder"):
        if len(config[key]) != levels:
            raise ValueError(f"{key} has {len(config[key])} entries, layers_list has {levels}")
    if len(config["freq_downsample_list"]) != levels - 1:
        raise ValueError("freq_downsample_list needs len(layers_list) - 1 entries")
    for key in ("hop_size", "base_channels", "bottleneck_base_channels", "bottleneck_channels", "cond_channels"):
        if int(config[key]) < 1:
            raise ValueError(f"{key} must be positive, got {config[key]}")
    for multiplier in config["multipliers_list"]:
        channels = config["base_channels"] * multiplier
        if channels < 4:
            raise ValueError(f"every level needs at least 4 channels for GroupNorm, got {channels}")
    if not config["sigma_min"] < config["sigma_max"]:
        raise ValueError("sigma_min must be smaller than sigma_max")
    if not float(config["scale_factor"]) > 0 or not np.isfinite(config["scale_factor"]):
        raise ValueError(f"scale_factor must be positive and finite, got {config['scale_factor']}")


def check_training(config):
    """Raise ValueError for inconsistent training fields."""
    if config["mode"] not in TRAINING_MODES:
        raise ValueError(f"mode must be one of {list(TRAINING_MODES)}, got {config['mode']!r}")
    if config["objective"] not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {config['objective']!r}")
    if not 0 <= config["gain_min"] <= config["gain_max"]:
        raise ValueError(f"gain range must satisfy 0 <= gain_min <= gain_max, got [{config['gain_min']}, {config['gain_max']}]")
    if not 0 <= config["mix_weight_min"] <= config["mix_weight_max"] <= 1:
        raise ValueError("mixture weights must satisfy 0 <= mix_weight_min <= mix_weight_max <= 1")
    for key in ("prob_additivity_switch", "gain_prob", "mixit_prob", "gain_hold_fraction", "gain_end_fraction"):
        if not 0.0 <= float(config[key]) <= 1.0:
            raise ValueError(f"{key} must be a probability in [0, 1], got {config[key]}")
    if config["gain_hold_fraction"] + config["gain_end_fraction"] > 1.0:
        raise ValueError("gain_hold_fraction + gain_end_fraction must not exceed 1")
    for key in ("spectral_log_weight", "spectral_phase_weight", "spectral_level_weight"):
        if not 0.0 <= float(config[key]) < float("inf"):
            raise ValueError(f"{key} must be finite and >= 0, got {config[key]}")
    if int(config["total_steps"]) < 1:
        raise ValueError(f"total_steps must be positive, got {config['total_steps']}")
    if config["ema_momentum"] is not None and not 0.0 < float(config["ema_momentum"]) < 1.0:
        raise ValueError(f"ema_momentum must be in (0, 1) or None, got {config['ema_momentum']}")
    if int(config["ema_every"]) < 1:
        raise ValueError(f"ema_every must be >= 1, got {config['ema_every']}")
