"""`LinCAE`: the linear consistency autoencoder as a Keras model."""

import keras
import numpy as np
from keras import ops

from keras_lincae.backend_dispatch import compile_inference_function
from keras_lincae.layers.decoder import ConsistencyDecoder
from keras_lincae.layers.encoder import LinCAEEncoder
from keras_lincae.layers.frontend import ScaledComplexSTFT
from keras_lincae.models import validation

FRONTEND_ARGS = ("hop_size", "n_fft_factor", "alpha_rescale", "beta_rescale", "sample_rate")
ENCODER_ARGS = (
    "multipliers_list", "base_channels", "data_channels", "bottleneck_base_channels",
    "num_bottleneck_layers", "bottleneck_channels", "freq_downsample_list", "normalization",
    "pre_normalize_downsampling_encoder", "pre_normalize_2d_to_1d", "frequency_scaling",
    "dropout_rate", "min_res_dropout", "init_as_zero", "activation_bottleneck", "padding_mode",
)
DECODER_ARGS = (
    "base_channels", "layers_list", "multipliers_list", "attention_list", "freq_downsample_list",
    "layers_list_encoder", "attention_list_encoder", "bottleneck_base_channels",
    "bottleneck_channels", "num_bottleneck_layers", "data_channels", "cond_channels", "heads",
    "use_fourier", "fourier_scale", "normalization", "dropout_rate", "min_res_dropout",
    "frequency_scaling", "sigma_min", "sigma_max", "sigma_data", "init_as_zero", "padding_mode",
)

ARCHITECTURE_DEFAULTS = dict(
    # Frontend (official ScaledComplexSTFT as configured in configs/model/lin_cae.yaml).
    hop_size=512,
    n_fft_factor=4,
    alpha_rescale=0.65,
    beta_rescale=0.34,
    sample_rate=44100,
    # Generator (official UNet arguments).
    base_channels=64,
    layers_list=(2, 2, 2, 2, 2),
    multipliers_list=(1, 2, 4, 4, 4),
    attention_list=(0, 0, 1, 1, 1),
    freq_downsample_list=(1, 0, 0, 0),
    layers_list_encoder=(1, 1, 1, 1, 1),
    attention_list_encoder=(0, 0, 1, 1, 1),
    bottleneck_base_channels=512,
    bottleneck_channels=64,
    num_bottleneck_layers=4,
    data_channels=2,
    cond_channels=256,
    heads=4,
    use_fourier=False,
    fourier_scale=0.2,
    normalization=True,
    dropout_rate=0.0,
    min_res_dropout=16,
    pre_normalize_downsampling_encoder=True,
    pre_normalize_2d_to_1d=True,
    frequency_scaling=True,
    sigma_min=0.002,
    sigma_max=80.0,
    sigma_data=0.5,
    init_as_zero=True,
    activation_bottleneck="tanh",
    padding_mode="zeros",
    # Sampler and latent scaling.
    rho=7.0,
    scale_factor=1.0,
)


def sampling_sigmas(steps, sigma_min, sigma_max, rho):
    """Noise levels visited by a `steps`-step decode, highest first (`steps + 1` values).

    The Karras grid `(s_min^(1/rho) + t (s_max^(1/rho) - s_min^(1/rho)))^rho`
    at `t = 1, (steps-1)/steps, ..., 0`; a 1-step decode uses `[sigma_max, sigma_min]`.
    """
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return [float((lo + (i / steps) * (hi - lo)) ** rho) for i in range(steps, -1, -1)]


@keras.saving.register_keras_serializable(package="keras_lincae")
class LinCAE(keras.Model):
    """Linear consistency autoencoder (Lin-CAE / Music2Latent-style CAE).

    Data flow: audio -> `frontend` -> `encoder` -> x `scale_factor` = latents
    (mix, scale and subtract here) -> / `scale_factor` -> consistency sampler
    (`sigma_max` * noise, 1..k `decoder` calls) -> inverse frontend -> audio.

    Every argument is stored in the config under its own name; the
    architecture arguments are the official `ScaledComplexSTFT` and `UNet`
    arguments (see `ARCHITECTURE_DEFAULTS`, the official `lin_cae` model).
    `bottleneck_channels` is the latent size. `scale_factor` multiplies latents
    after encoding (33 for the official `lin_cae` release). `rho` shapes the
    multi-step noise grid.

    Examples:
    ```python
    model = keras_lincae.LinCAE.from_preset("lin_cae_tiny", load_weights=False)
    latents = model.encode(audio)                  # (batch, frames, 64)
    audio_out = model.decode(latents, seed=0)      # (batch, samples)
    same_length = model.autoencode(audio, seed=0)  # every input sample back
    ```
    """

    def __init__(self, **kwargs):
        base_kwargs = {
            k: kwargs.pop(k) for k in ("name", "dtype", "trainable") if k in kwargs
        }
        unknown = sorted(set(kwargs) - set(ARCHITECTURE_DEFAULTS) - set(self._extra_defaults()))
        if unknown:
            raise ValueError(f"Unknown LinCAE config fields: {unknown}")
        config = dict(ARCHITECTURE_DEFAULTS)
        config.update(self._extra_defaults())
        config.update(kwargs)
        for key, value in config.items():
            if isinstance(value, tuple):
                config[key] = list(value)
        super().__init__(**base_kwargs)
        self._config = config
        validation.check_architecture(config)
        policy = self.dtype_policy
        self.frontend = ScaledComplexSTFT(**{k: config[k] for k in FRONTEND_ARGS}, name="frontend")
        self.encoder = LinCAEEncoder(
            hop=config["hop_size"],
            layers_list=config["layers_list_encoder"],
            attention_list=config["attention_list_encoder"],
            **{k: config[k] for k in ENCODER_ARGS},
            name="encoder",
            dtype=policy,
        )
        self.decoder = ConsistencyDecoder(
            hop=config["hop_size"], **{k: config[k] for k in DECODER_ARGS}, name="decoder", dtype=policy
        )
        self._compiled = {}
        self._noise_seed = keras.random.SeedGenerator(0, name="inference_noise_seed")

    @staticmethod
    def _extra_defaults():
        return {}

    def __getattr__(self, name):
        config = self.__dict__.get("_config")
        if config is not None and name in config:
            return config[name]
        return super().__getattr__(name)

    # ----------------------------------------------------------------- sizes
    @property
    def time_downsampling(self):
        """Spectrogram frames per latent frame (2 per time-downsampling level; 8 by default)."""
        return 2 ** list(self.freq_downsample_list).count(0)

    @property
    def samples_per_latent(self):
        """Audio samples per latent frame (4096 by default: 64x compression of mono audio)."""
        return self.hop_size * self.time_downsampling

    @property
    def latent_channels(self):
        return self.bottleneck_channels

    def latent_length(self, num_samples):
        """Latent frames `encode` returns for `num_samples` samples."""
        frames = self.frontend.num_frames(num_samples)
        for _ in range(list(self.freq_downsample_list).count(0)):
            frames = (frames - 1) // 2 + 1
        return frames

    def decoded_length(self, latent_frames):
        """Samples `decode` returns for `latent_frames` latent frames."""
        return self.frontend.num_samples(latent_frames * self.time_downsampling)

    # ----------------------------------------------------------------- graph
    def build(self, input_shape=None):
        self.frontend.build()
        self.encoder.build((None, None, 2 * self.hop_size, self.data_channels))
        self.decoder.build()
        self.built = True

    def call(self, audio, training=None):
        """`(batch, samples)` audio -> scaled latents `(batch, frames, latent_channels)`."""
        representation = self.frontend.to_representation(audio)
        latents = self.encoder(ops.cast(representation, self.compute_dtype), training=training)
        return ops.cast(latents, "float32") * self.scale_factor

    def denoise(self, noisy, sigma, latents, training=None):
        """One consistency-model evaluation on unscaled `latents`; see `ConsistencyDecoder`."""
        return self.decoder(noisy, sigma, latents, training=training)

    # ------------------------------------------------------------ public API
    def _function(self, key, fn):
        if key not in self._compiled:
            self._compiled[key] = compile_inference_function(self, fn)
        return self._compiled[key]

    def encode(self, audio):
        """Audio -> latents multiplied by `scale_factor`.

        Args:
            audio: `(batch, samples)` or `(batch, channels, samples)` float audio at
                `sample_rate`, at least `n_fft` samples (`4 * hop_size`).
        Returns:
            `(batch, frames, latent_channels)` (or `(batch, channels, frames,
            latent_channels)`), `frames = latent_length(samples)`; 441,000
            samples give 108 frames with the default architecture.
        """
        audio, channels = validation.check_audio(audio, min_samples=self.frontend.n_fft)
        latents = self._function("encode", lambda x: self(x, training=False))(audio)
        return validation.restore_channels(latents, channels)

    def decode(self, latents, steps=1, seed=None, noise=None):
        """Latents (multiplied by `scale_factor`) -> audio.

        Args:
            latents: `(batch, frames, latent_channels)` or
                `(batch, channels, frames, latent_channels)`.
            steps: int, 1. Consistency sampling steps.
            seed: int or None. Seed of the noise draws (reproducible per backend).
            noise: optional standard-normal starting noise
                `(batch, time_downsampling * frames, 2 * hop_size, 2)` (the official
                `initial_noise / sigma_max`, transposed to our layout); later steps
                of a multi-step decode draw their noise from `seed`.
        Returns:
            `(batch, decoded_length(frames))` audio (or `(batch, channels, samples)`).
        """
        latents, channels = validation.check_latents(latents, self.latent_channels)
        steps = validation.check_steps(steps)
        batch, frames = int(latents.shape[0]), int(latents.shape[1])
        shape = (batch, frames * self.time_downsampling, 2 * self.hop_size, self.data_channels)
        seed = self._noise_seed if seed is None else validation.check_seed(seed)
        draws = [keras.random.normal(shape, seed=seed) for _ in range(steps - (noise is not None))]
        if noise is not None:
            draws.insert(0, validation.check_noise(noise, shape))
        sigmas = sampling_sigmas(steps, self.sigma_min, self.sigma_max, self.rho)
        sampler = self._function(("decode", steps), lambda z, *n: self._sample(z, n, sigmas))
        audio = sampler(latents, *draws)
        return validation.restore_channels(audio, channels)

    def _sample(self, latents, draws, sigmas):
        """Consistency sampling: denoise from `sigmas[0]`, re-noise to each next level."""
        pyramid = self.decoder.latent_pyramid(ops.cast(latents / self.scale_factor, self.compute_dtype))
        x = draws[0] * sigmas[0]
        for k in range(len(draws)):
            if k > 0:
                x = x + np.sqrt(sigmas[k] ** 2 - self.sigma_min**2) * draws[k]
            batch_sigma = ops.full((ops.shape(x)[0],), sigmas[k])
            x = self.decoder.denoise(x, batch_sigma, pyramid)
        return self.frontend.to_waveform(x)

    def autoencode(self, audio, steps=1, seed=None, noise=None):
        """Encode and decode, returning exactly the input's samples.

        The audio is padded with `n_fft - hop_size` zeros in front (so the first
        sample lies where the inverse STFT is exact) and with zeros at the end up
        to a whole number of latent frames covering the last sample; the output
        is cropped back to the input length.

        Args: `audio` `(batch, samples)` or `(batch, channels, samples)`; `steps`,
            `seed`, `noise` as in `decode` (noise shaped for the padded audio).
        Returns: audio of the input's shape.
        """
        audio, channels = validation.check_audio(audio, min_samples=1)
        num_samples = int(audio.shape[-1])
        front, back = self.autoencode_padding(num_samples)
        padded = ops.pad(audio, ((0, 0), (front, back)))
        latents = self._function("encode", lambda x: self(x, training=False))(padded)
        decoded = self.decode(latents, steps=steps, seed=seed, noise=noise)
        return validation.restore_channels(decoded[:, front : front + num_samples], channels)

    def autoencode_padding(self, num_samples):
        """`(front, back)` zero padding `autoencode` applies to `num_samples` samples."""
        hop, n_fft = self.hop_size, self.frontend.n_fft
        front = n_fft - hop
        frames = -(-(front + num_samples) // hop)
        frames = -(-frames // self.time_downsampling) * self.time_downsampling
        return front, (frames - 1) * hop + n_fft - front - num_samples

    # --------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, preset, load_weights=True, **overrides):
        """Load a model from a preset.

        Args:
            preset: a built-in name (`keras_lincae.list_presets()`), a preset
                directory (`config.json`, `model.weights.h5`, `metadata.json`), a
                directory under `saved_models/`, an official release directory, or
                `hf://owner/repo[/subdir]`.
            load_weights: bool, True. False builds the architecture from the
                config alone (works offline for every built-in name).
            **overrides: config fields to override (e.g. `dtype`, `scale_factor`).
        """
        from keras_lincae.preset_io import load_preset

        return load_preset(cls, preset, load_weights=load_weights, **overrides)

    def save_to_preset(self, preset_dir, **metadata):
        """Write this model as a preset directory (atomically). Extra metadata is stored as given."""
        from keras_lincae.preset_io import save_preset

        if not self.built:
            self.build()
        return save_preset(self, preset_dir, **metadata)

    # ---------------------------------------------------------------- config
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable}
        config.update(self._config)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("dtype", None) if config.get("dtype") is None else None
        return cls(**config)
