"""`LinCAE`: the linear consistency autoencoder as a Keras model."""

import inspect

import keras
from keras import ops

from keras_lincae import preset_io
from keras_lincae.backend_dispatch import auto_jit_compile, compile_inference_function
from keras_lincae.layers.frontend import ScaledComplexSTFT
from keras_lincae.models import chunking, ema, objective, sampler, validation
from keras_lincae.models.decoder import ConsistencyDecoder
from keras_lincae.models.encoder import LinCAEEncoder

_BASE_ARGUMENTS = ("name", "dtype", "trainable")


@keras.saving.register_keras_serializable(package="keras_lincae")
class LinCAE(keras.Model):
    """Linear consistency autoencoder (Lin-CAE / Music2Latent-style CAE).

    Data flow: audio -> `frontend` -> `encoder` -> x `scale_factor` = latents
    (mix, scale and subtract here) -> / `scale_factor` -> consistency sampler
    (`sigma_max` * noise, 1..k `decoder` calls) -> inverse frontend -> audio.
    The defaults are the official `lin_cae` model (`configs/model/lin_cae.yaml`);
    the architecture arguments keep the names of the official `ScaledComplexSTFT`
    and `UNet` arguments. All arguments are keyword-only.

    Args:
        hop_size: int, 512. Frontend: STFT hop; the representation has `2 * hop_size` bins.
        n_fft_factor: int, 4. Frontend: window length `n_fft = n_fft_factor * hop_size`.
        alpha_rescale: float, 0.65. Frontend: magnitude exponent.
        beta_rescale: float, 0.34. Frontend: magnitude gain.
        sample_rate: int, 44100. Frontend: the sample rate the model expects.
        base_channels: int, 64. U-Net: channels of the first level.
        multipliers_list: list of int, [1, 2, 4, 4, 4]. U-Net: channel multiplier per level.
        freq_downsample_list: list of 0/1, [1, 0, 0, 0]. U-Net: per level transition,
            1 = x4 in frequency only, 0 = x2 in time and frequency.
        data_channels: int, 2. U-Net: real and imaginary parts.
        normalization: bool, True. U-Net: group norm in the residual blocks.
        dropout_rate: float, 0.0. U-Net: dropout in blocks at resolutions >= `min_res_dropout`.
        min_res_dropout: int, 16.
        frequency_scaling: bool, True. U-Net: learned per-frequency input/output scaling.
        init_as_zero: bool, True. U-Net: zero-initialised last convolutions.
        padding_mode: str, "zeros". U-Net: convolution padding ("zeros" or "reflect").
        bottleneck_base_channels: int, 512. Encoder and pyramid: width of the 1-D bottleneck.
        num_bottleneck_layers: int, 4. Encoder and pyramid: residual blocks in the bottleneck.
        bottleneck_channels: int, 64. The latent size.
        layers_list_encoder: list of int, [1, 1, 1, 1, 1]. Encoder and pyramid: blocks per level.
        attention_list_encoder: list of 0/1, [0, 0, 1, 1, 1]. Encoder and pyramid: attention per level.
        pre_normalize_downsampling_encoder: bool, True. Encoder: group norm before downsampling.
        pre_normalize_2d_to_1d: bool, True. Encoder: group norm before flattening frequency.
        activation_bottleneck: str, "tanh". Encoder: "tanh" or "linear" latents.
        layers_list: list of int, [2, 2, 2, 2, 2]. Decoder U-Net: blocks per level.
        attention_list: list of 0/1, [0, 0, 1, 1, 1]. Decoder U-Net: attention per level.
        cond_channels: int, 256. Decoder: width of the noise-level embedding.
        heads: int, 4. Decoder: attention heads.
        use_fourier: bool, False. Decoder: Gaussian Fourier (else sinusoidal) noise embedding.
        fourier_scale: float, 0.2. Decoder: std of the Fourier frequencies.
        sigma_min: float, 0.002. Sampler: the lowest noise level.
        sigma_max: float, 80.0. Sampler: the noise level decoding starts from.
        sigma_data: float, 0.5. Sampler: data std of the preconditioning.
        rho: float, 7.0. Sampler: shape of the Karras noise grid.
        scale_factor: float, 1.0. Latents are the encoder's output times this (33 for the
            official `lin_cae` release).
        mode: str, "lin_cae". Training: "lin_cae" (mixtures, additivity, gains with an
            annealed range), "lin_cae_2" (constant gain range) or "m2l" (Music2Latent baseline).
        total_steps: int, 800000. Training: length of the gain and step-size schedules.
        seed: int, 0. Training: seed of the augmentation and noise draws.
        mix_weight_min: float, 0.5. Training: mixtures `w x + (1 - w) roll(x)`, `w ~ U(min, max)`.
        mix_weight_max: float, 1.0.
        prob_additivity_switch: float, 1.0. Training: probability that a mixture's latent is
            the same mixture of the sources' latents.
        gain_min: float, 0.0. Training: gains `a ~ U(gain_min, gain_max)`, peak-capped.
        gain_max: float, 3.0.
        gain_prob: float, 0.8. Training: probability of a random gain per clip.
        gain_zero_threshold: float, 0.05. Training: gains below it become 0.
        gain_hold_fraction: float, 0.2. Training: the gain range is held for this fraction of
            `total_steps`, then annealed towards [1, 1] ...
        gain_end_fraction: float, 0.1. ... reaching it this fraction before the end.
        mixit_prob: float, 0.5. Training (m2l): probability to average a clip with a partner.
        scale_augmentation: bool, True. Training (m2l): random capped gains on the clips.
        objective: str, "consistency". Training: the official consistency objective, or
            "one_step_spectral" (1-step decode, multi-resolution spectral loss; a warm start).
        spectral_log_weight: float, 1.0. Training: weight of the log-magnitude term of the
            spectral loss (spectral convergence has weight 1).
        spectral_phase_weight: float, 0.0. Training (one_step_spectral): weight of the
            phase-aware complex spectral convergence added to it (`models.losses`).
        spectral_level_weight: float, 0.0. Training (one_step_spectral): weight of the per-clip
            level term added to it, `|ln E(decoded) - ln E(audio)|` of the clips' energies.
        p_mean: float, -1.1. Training: mean of the log-normal over `log(sigma)`.
        p_std: float, 2.0. Training: its std.
        base_step: float, 0.1. Training: consistency step size `base_step ** exponent` ...
        start_exp: float, 1.0. ... with the exponent going from `start_exp` ...
        end_exp: float, 2.0. ... to `end_exp` over `total_steps`.
        huber_c: float, 0.00054. Training: pseudo-Huber constant (per element).
        ema_momentum: float or None, None. Training: EMA of the weights in non-trainable
            shadow variables (None: no EMA).
        ema_every: int, 10. Training: steps between EMA updates.
        ema_warmup: bool, True. Training: EMA decay `min(momentum, (1 + n) / (10 + n))`.
        **kwargs: `name`, `dtype`, `trainable` (Keras). Any other key raises ValueError.

    Examples:
    ```python
    model = keras_lincae.LinCAE.from_preset("lin_cae_tiny", load_weights=False)
    latents = model.encode(audio)                  # (batch, frames, 64)
    audio_out = model.decode(latents, seed=0)      # (batch, samples)
    same_length = model.autoencode(audio, seed=0)  # every input sample back
    ```
    """

    def __init__(
        self,
        *,
        hop_size=512,
        n_fft_factor=4,
        alpha_rescale=0.65,
        beta_rescale=0.34,
        sample_rate=44100,
        base_channels=64,
        multipliers_list=(1, 2, 4, 4, 4),
        freq_downsample_list=(1, 0, 0, 0),
        data_channels=2,
        normalization=True,
        dropout_rate=0.0,
        min_res_dropout=16,
        frequency_scaling=True,
        init_as_zero=True,
        padding_mode="zeros",
        bottleneck_base_channels=512,
        num_bottleneck_layers=4,
        bottleneck_channels=64,
        layers_list_encoder=(1, 1, 1, 1, 1),
        attention_list_encoder=(0, 0, 1, 1, 1),
        pre_normalize_downsampling_encoder=True,
        pre_normalize_2d_to_1d=True,
        activation_bottleneck="tanh",
        layers_list=(2, 2, 2, 2, 2),
        attention_list=(0, 0, 1, 1, 1),
        cond_channels=256,
        heads=4,
        use_fourier=False,
        fourier_scale=0.2,
        sigma_min=0.002,
        sigma_max=80.0,
        sigma_data=0.5,
        rho=7.0,
        scale_factor=1.0,
        mode="lin_cae",
        total_steps=800_000,
        seed=0,
        mix_weight_min=0.5,
        mix_weight_max=1.0,
        prob_additivity_switch=1.0,
        gain_min=0.0,
        gain_max=3.0,
        gain_prob=0.8,
        gain_zero_threshold=0.05,
        gain_hold_fraction=0.2,
        gain_end_fraction=0.1,
        mixit_prob=0.5,
        scale_augmentation=True,
        objective="consistency",
        spectral_log_weight=1.0,
        spectral_phase_weight=0.0,
        spectral_level_weight=0.0,
        p_mean=-1.1,
        p_std=2.0,
        base_step=0.1,
        start_exp=1.0,
        end_exp=2.0,
        huber_c=0.00054,
        ema_momentum=None,
        ema_every=10,
        ema_warmup=True,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - set(_BASE_ARGUMENTS))
        if unknown:
            raise ValueError(f"Unknown LinCAE config fields: {unknown}")
        # === Config ===
        arguments = locals()
        config = {name: arguments[name] for name in (*ARCHITECTURE_DEFAULTS, *TRAINING_DEFAULTS)}
        config = {name: list(v) if isinstance(v, tuple) else v for name, v in config.items()}
        super().__init__(**kwargs)
        self._config = config
        validation.check_architecture(config)
        validation.check_training(config)
        # === Layers ===
        self.frontend = ScaledComplexSTFT(**_arguments_of(ScaledComplexSTFT, config), name="frontend")
        self.encoder = LinCAEEncoder(
            **_arguments_of(
                LinCAEEncoder,
                config,
                hop=hop_size,
                layers_list=config["layers_list_encoder"],
                attention_list=config["attention_list_encoder"],
            ),
            name="encoder",
            dtype=self.dtype_policy,
        )
        self.decoder = ConsistencyDecoder(
            **_arguments_of(ConsistencyDecoder, config, hop=hop_size), name="decoder", dtype=self.dtype_policy
        )
        self._compiled = {}
        self._noise_seed = keras.random.SeedGenerator(0, name="inference_noise_seed")
        self._train_seed = keras.random.SeedGenerator(seed, name="training_seed")

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
        self.training_step = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="training_step"
        )
        self.ema_weights = []
        if self.ema_momentum is not None:
            self.ema_weights = ema.add_shadow_weights(self, self._ema_sources())
        self.built = True

    def call(self, audio, training=None):
        """`(batch, samples)` audio -> scaled latents `(batch, frames, latent_channels)`."""
        representation = self.frontend.to_representation(audio)
        latents = self.encoder(ops.cast(representation, self.compute_dtype), training=training)
        return ops.cast(latents, "float32") * self.scale_factor

    def denoise(self, noisy, sigma, latents, training=None):
        """One consistency-model evaluation on unscaled `latents`; see `ConsistencyDecoder`."""
        return self.decoder(noisy, sigma, latents, training=training)

    # -------------------------------------------------------------- training
    def compile(self, *args, jit_compile="auto", **kwargs):
        """`keras.Model.compile`; `jit_compile="auto"` is resolved by
        `backend_dispatch.auto_jit_compile` (no XLA for TensorFlow on CPU: faster there)."""
        super().compile(*args, jit_compile=auto_jit_compile() if jit_compile == "auto" else jit_compile, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The Lin-CAE objective (`models/objective.py`) on a batch of clips.

        `x`: audio clips `(batch, samples)`; `y_pred`: the scaled latents `call`
        computed from them (the encoder runs once on the sources). Augmentations,
        then consistency training (or the one-step spectral warm start); when
        training, one step of the EMA and of the step counter. Returns a scalar.
        """
        loss = objective.training_loss(self, x, y_pred, training)
        if training:
            if self.ema_weights:
                ema.ema_update(
                    self.ema_weights,
                    [ops.stop_gradient(w) for w in self._ema_sources()],
                    self.training_step,
                    self.ema_momentum,
                    self.ema_every,
                    self.ema_warmup,
                )
            self.training_step.assign(self.training_step + 1)
        return loss

    def gain_range_at(self, step):
        """Gain range `(low, high)` as Python floats at training step `step`."""
        low, high = objective.gain_range(self, ops.convert_to_tensor(step, "int32"))
        return float(ops.convert_to_numpy(low)), float(ops.convert_to_numpy(high))

    def _ema_sources(self):
        return self.encoder.trainable_weights + self.decoder.trainable_weights

    def use_ema_weights(self):
        """Copy the EMA shadows into the model's weights (for inference after training)."""
        if not self.ema_weights:
            raise ValueError("This model keeps no EMA weights (ema_momentum is None)")
        for w, shadow in zip(self._ema_sources(), self.ema_weights):
            w.assign(shadow)

    # ------------------------------------------------------------ public API
    def compiled_function(self, key, fn):
        """`fn(*tensors)` compiled for this backend once per `key` (cached in `_compiled`)."""
        if not self.built:  # variables must exist before tracing
            self.build()
        if key not in self._compiled:
            self._compiled[key] = compile_inference_function(self, fn)
        return self._compiled[key]

    def encode(self, audio, max_chunk_seconds=chunking.MAX_CHUNK_SECONDS):
        """Audio -> latents multiplied by `scale_factor`.

        Args:
            audio: `(batch, samples)` or `(batch, channels, samples)` float audio at
                `sample_rate`, at least `n_fft` samples (`4 * hop_size`).
            max_chunk_seconds: float or None, 20.0. Longer audio is
                encoded in chunks of whole latent frames (as the official model
                does), so memory stays flat in the length; None: one call.
        Returns:
            `(batch, frames, latent_channels)` (or `(batch, channels, frames,
            latent_channels)`), `frames = latent_length(samples)`; 441,000
            samples give 108 frames with the default architecture.
        Raises:
            ValueError: bad audio, or audio so loud that the latents overflow.
        """
        audio, channels = validation.check_audio(audio, min_samples=self.frontend.n_fft)
        chunk = chunking.chunk_frames(self, max_chunk_seconds)
        encode = self.compiled_function("encode", lambda x: self(x, training=False))
        if chunk is None or self.latent_length(audio.shape[-1]) <= chunk:
            latents = encode(audio)
        else:
            latents = chunking.encode_chunked(self, encode, audio, chunk)
        validation.check_finite_output(latents, "encode's latents", "scale the audio into [-1, 1]")
        return validation.restore_channels(latents, channels)

    def decode(self, latents, steps=1, seed=None, noise=None, max_chunk_seconds=chunking.MAX_CHUNK_SECONDS):
        """Latents (multiplied by `scale_factor`) -> audio.

        Args:
            latents: `(batch, frames, latent_channels)` or
                `(batch, channels, frames, latent_channels)`.
            steps: int in [1, `MAX_DECODE_STEPS`], 1. Consistency sampling steps;
                one compiled sampler step serves every step, so memory does not
                grow with `steps`.
            seed: int in [0, 2**32 - 1] or None. Seed of the noise draws
                (reproducible per backend).
            noise: optional standard-normal starting noise
                `(batch, time_downsampling * frames, 2 * hop_size, 2)` (the official
                `initial_noise / sigma_max`, transposed to our layout), or a list of
                up to `steps` such draws (one per step); missing draws come from `seed`.
            max_chunk_seconds: float or None. Longer latents are decoded in chunks
                overlapping by a quarter, crossfaded inside the exact region of
                the inverse STFT (the official scheme); None: one call.
        Returns:
            `(batch, decoded_length(frames))` audio (or `(batch, channels, samples)`).
        Raises:
            ValueError: bad arguments, or NaN/inf audio (latents far out of range).
        """
        latents, channels = validation.check_latents(latents, self.latent_channels)
        steps = validation.check_steps(steps)
        batch, frames = int(latents.shape[0]), int(latents.shape[1])
        shape = (batch, frames * self.time_downsampling, 2 * self.hop_size, self.data_channels)
        seed = self._noise_seed if seed is None else validation.check_seed(seed)
        given = [] if noise is None else list(noise) if isinstance(noise, (list, tuple)) else [noise]
        if len(given) > steps:
            raise ValueError(f"got {len(given)} noise draws for a {steps}-step decode")
        given = [validation.check_noise(n, shape) for n in given]
        draws = [given[k] if k < len(given) else keras.random.normal(shape, seed=seed) for k in range(steps)]
        chunk = chunking.chunk_frames(self, max_chunk_seconds)
        if chunk is None or frames <= chunk:
            audio = sampler.sample_steps(self, latents, draws)
        else:
            audio = chunking.decode_chunked(self, latents, draws, chunk)
        validation.check_finite_output(audio, "decoded audio", "the latents are far outside the range encode gives")
        return validation.restore_channels(audio, channels)

    def sample(self, latents, draws):
        """Consistency sampling traced as one graph (what `decode` runs for 1 step; exports trace it).

        Args: `latents` `(batch, frames, latent_channels)` (scaled); `draws`: a list of
            standard-normal `(batch, time_downsampling * frames, 2 * hop_size, data_channels)`.
        Returns: `(batch, decoded_length(frames))` audio.
        """
        return sampler.sample(self, latents, draws)

    def autoencode(self, audio, steps=1, seed=None, noise=None, max_chunk_seconds=chunking.MAX_CHUNK_SECONDS):
        """Encode and decode, returning exactly the input's samples.

        The audio is padded with `n_fft - hop_size` zeros in front (so the first
        sample lies where the inverse STFT is exact) and with zeros at the end up
        to a whole number of latent frames covering the last sample; the output
        is cropped back to the input length.

        Args: `audio` `(batch, samples)` or `(batch, channels, samples)`; `steps`,
            `seed`, `noise`, `max_chunk_seconds` as in `decode` (noise shaped for
            the padded audio).
        Returns: audio of the input's shape.
        """
        audio, channels = validation.check_audio(audio, min_samples=1)
        num_samples = int(audio.shape[-1])
        front, back = self.autoencode_padding(num_samples)
        padded = ops.pad(audio, ((0, 0), (front, back)))
        latents = self.encode(padded, max_chunk_seconds=max_chunk_seconds)
        decoded = self.decode(latents, steps=steps, seed=seed, noise=noise, max_chunk_seconds=max_chunk_seconds)
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
        return preset_io.load_preset(cls, preset, load_weights=load_weights, **overrides)

    def save_to_preset(self, preset_dir, overwrite=False, **metadata):
        """Write this model as a preset directory (atomically). `overwrite=True` replaces an
        existing preset's own files; a non-empty folder that is not a preset is refused. Extra
        metadata is stored as given."""
        if not self.built:
            self.build()
        return preset_io.save_preset(self, preset_dir, overwrite=overwrite, **metadata)

    # ---------------------------------------------------------------- config
    @classmethod
    def default_config(cls):
        """`{argument: default}` of every constructor argument (architecture, then training)."""
        return dict(ARCHITECTURE_DEFAULTS, **TRAINING_DEFAULTS)

    def get_config(self):
        """Every constructor argument under its own name, plus `name` and `trainable`."""
        return {"name": self.name, "trainable": self.trainable, **self._config}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("dtype", "") is None:
            config.pop("dtype")
        return cls(**config)


def _arguments_of(layer_class, config, **renamed):
    """The constructor arguments of `layer_class` taken from `config` by name, then `renamed`."""
    names = list(inspect.signature(layer_class.__init__).parameters)[1:-1]
    return {name: renamed[name] if name in renamed else config[name] for name in names}


_PARAMETERS = list(inspect.signature(LinCAE.__init__).parameters.values())[1:-1]
_FIRST_TRAINING_ARGUMENT = "mode"
_SPLIT = [p.name for p in _PARAMETERS].index(_FIRST_TRAINING_ARGUMENT)
# The constructor defaults, architecture then training: the one home of every default.
ARCHITECTURE_DEFAULTS = {p.name: p.default for p in _PARAMETERS[:_SPLIT]}
TRAINING_DEFAULTS = {p.name: p.default for p in _PARAMETERS[_SPLIT:]}
