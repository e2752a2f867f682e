"""Build official `linear_cae` models with random weights in the release layout (tests, benchmarks).

Needs the PyPI package `linear-cae` (installed with `--no-deps`) and torch.
"""

import os

import numpy as np

PARITY_MAX_RELATIVE_ERROR = 1e-4  # ours against the official outputs, float32 on any backend


def max_relative_error(actual, expected):
    """`max |actual - expected| / max |expected|` in float64; NaN when the shapes differ."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("nan")
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


FRONTEND = dict(hop_size=512, n_fft_factor=4, alpha_rescale=0.65, beta_rescale=0.34, sample_rate=44100)
LIN_CAE_GENERATOR = dict(
    base_channels=64, layers_list=[2, 2, 2, 2, 2], multipliers_list=[1, 2, 4, 4, 4],
    attention_list=[0, 0, 1, 1, 1], freq_downsample_list=[1, 0, 0, 0],
    layers_list_encoder=[1, 1, 1, 1, 1], attention_list_encoder=[0, 0, 1, 1, 1],
    bottleneck_base_channels=512, num_bottleneck_layers=4, frequency_scaling=True, heads=4,
    cond_channels=256, use_fourier=False, fourier_scale=0.2, normalization=True, dropout_rate=0.0,
    min_res_dropout=16, bottleneck_channels=64, pre_normalize_2d_to_1d=True,
    pre_normalize_downsampling_encoder=True, init_as_zero=True, hop=512, sigma_max=80.0,
    sigma_min=0.002, sigma_data=0.5, data_channels=2,
)
REDUCED_GENERATOR = dict(
    LIN_CAE_GENERATOR, base_channels=8, layers_list=[1, 2, 1, 1, 1], bottleneck_base_channels=32,
    bottleneck_channels=16, cond_channels=32, num_bottleneck_layers=2,
)
DIFFUSION = dict(sigma_min=0.002, sigma_max=80.0, rho=7.0, sigma_data=0.5)


def build_official(generator=REDUCED_GENERATOR, seed=0, scale_factor=33.0):
    """Official `Autoencoder` with every parameter randomised (no zero-initialised layer left)."""
    import torch
    from linear_cae.inference import Autoencoder

    torch.manual_seed(seed)
    model = Autoencoder(dict(FRONTEND), dict(generator), dict(DIFFUSION), scale_factor=scale_factor)
    with torch.no_grad():
        for name, param in model.named_parameters():
            fan_in = max(1, int(np.prod(param.shape[1:]))) if param.ndim > 1 else 16
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or ".norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            elif name.endswith("gain.scale"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(0.5 * torch.randn_like(param) / np.sqrt(fan_in))
    return model.eval()


def write_release(model, directory, generator):
    """Write `model` (built from the `generator` kwargs) in the official release layout."""
    import torch
    import yaml

    os.makedirs(directory, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(directory, "autoencoder_inference_model_last.pth"))
    for name, data in (("frontend", FRONTEND), ("generator", generator), ("diffusion", DIFFUSION)):
        with open(os.path.join(directory, f"{name}_kwargs_last.yaml"), "w") as f:
            yaml.safe_dump(dict(data), f)
    return directory


def official_encode(model, audio):
    """`(batch, samples)` numpy -> official latents `(batch, frames, channels)` numpy."""
    import torch

    with torch.no_grad():
        z = model.encode(torch.from_numpy(np.asarray(audio, np.float32)))
    return z.numpy().transpose(0, 2, 1)


def official_decode_1step(model, latents, noise):
    """1-step official decode with explicit `noise` in our layout `(batch, frames, bins, 2)`."""
    import torch

    z = torch.from_numpy(np.asarray(latents, np.float32).transpose(0, 2, 1)) / model.scale_factor
    x = torch.from_numpy(np.asarray(noise, np.float32).transpose(0, 3, 2, 1)) * model.generator.sigma_max
    with torch.no_grad():
        out = model.generator.forward_generator(z, x, model.generator.sigma_max)
        return model.frontend.to_waveform(out).numpy()
