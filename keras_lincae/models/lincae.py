"""`LinCAE`: the linear consistency autoencoder as a Keras model."""

import keras
import numpy as np
from keras import ops

from keras_lincae.backend_dispatch import compile_inference_function
from keras_lincae.models.decoder import ConsistencyDecoder
from keras_lincae.models.encoder import LinCAEEncoder
from keras_lincae.layers.frontend import ScaledComplexSTFT
from keras_lincae.models import losses, validation

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


TRAINING_DEFAULTS = dict(
    # Which training step: "lin_cae" (mixtures + additivity + gains, annealed gain range),
    # "lin_cae_2" (same, constant gain range) or "m2l" (Music2Latent baseline).
    mode="lin_cae",
    total_steps=800_000,
    seed=0,
    # Artificial mixtures w * x + (1 - w) * roll(x), w ~ U(mix_weight_min, mix_weight_max).
    mix_weight_min=0.5,
    mix_weight_max=1.0,
    prob_additivity_switch=1.0,
    # Gains a ~ U(range) with probability gain_prob, a < gain_zero_threshold -> 0, peak-capped.
    gain_min=0.0,
    gain_max=3.0,
    gain_prob=0.8,
    gain_zero_threshold=0.05,
    gain_hold_fraction=0.2,
    gain_end_fraction=0.1,
    # M2L baseline augmentations.
    mixit_prob=0.5,
    scale_augmentation=True,
    # Objective: "consistency" (the official one) or "one_step_spectral" (a warm start of the
    # 1-step regime: decode from sigma_max, multi-resolution spectral loss on the waveform).
    objective="consistency",
    # Weight of the log-magnitude term of that spectral loss (spectral convergence has weight 1);
    # below 1 it favours the loud bins that magnitude-SNR counts.
    spectral_log_weight=1.0,
    # Consistency training.
    p_mean=-1.1,
    p_std=2.0,
    base_step=0.1,
    start_exp=1.0,
    end_exp=2.0,
    huber_c=0.00054,
    # EMA of the weights, kept in non-trainable shadow variables (None: no EMA).
    ema_momentum=None,
    ema_every=10,
    ema_warmup=True,
)
TRAINING_MODES = ("lin_cae", "lin_cae_2", "m2l")
MAX_CHUNK_SECONDS = 20.0  # encode / decode / autoencode chunk longer inputs (settable per call)
MAX_DECODE_STEPS = validation.MAX_DECODE_STEPS
OBJECTIVES = ("consistency", "one_step_spectral")


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
        validation.check_training(config, TRAINING_MODES, OBJECTIVES)
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
        self._train_seed = keras.random.SeedGenerator(config["seed"], name="training_seed")

    @staticmethod
    def _extra_defaults():
        return TRAINING_DEFAULTS

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
            sources = self.encoder.trainable_weights + self.decoder.trainable_weights
            self.ema_weights = [
                self.add_weight(
                    shape=w.shape,
                    initializer=keras.initializers.Constant(0.0),
                    trainable=False,
                    name="ema_" + w.path.replace("/", "_"),
                )
                for w in sources
            ]
            for shadow, w in zip(self.ema_weights, sources):
                shadow.assign(np.array(ops.convert_to_numpy(w)))  # a copy: never share buffers
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
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The Lin-CAE objective: consistency training on augmented batches.

        `x` is a batch of audio clips `(batch, samples)`; `y_pred` the scaled
        latents `call` computed from it (so the encoder runs once on the
        sources). Steps, all with the model's seed generator:
        1. m2l: mix-it (some clips averaged with a random partner) and scale
           augmentation (the clips multiplied by capped random gains).
        2. Artificial mixtures `w x + (1 - w) roll(x)` appended (all modes).
        3. lin_cae*: gains `a` per clip (range annealed by the step counter for
           "lin_cae"), capped so `a * peak <= 1`; both branches see
           `frontend(a x)`.
        4. Latents: encoder latents of the sources; lin_cae*: the mixtures'
           latents are `w z + (1 - w) roll(z)` (additivity), then all are
           multiplied by `a` (homogeneity). m2l: the encoder's own latents.
        5. One noise draw, noise index from the discretised log-normal,
           `sigma_step` from the annealed step size; the `sigma_step` branch is a
           stop-gradient target; pseudo-Huber loss weighted by
           `1 / (sigma - sigma_step)`.
           With `objective="one_step_spectral"` instead: a 1-step decode from
           `sigma_max` noise, multi-resolution spectral loss against the audio
           (`models/losses.py`; not in the paper, a warm start for small budgets).
        During evaluation (`training=False`) steps 1-4 are skipped.
        """
        from keras_lincae.models import augment

        audio = ops.cast(x, "float32")
        batch = audio.shape[0]
        seed = self._train_seed
        step = self.training_step
        lin_cae = training and self.mode != "m2l"
        if training and (batch is None or batch < 2):
            raise ValueError(f"Lin-CAE training needs at least 2 clips per batch to form mixtures, got {batch}")
        latents = ops.cast(y_pred, "float32") / self.scale_factor
        if training and self.mode == "m2l":
            audio = augment.mixit_augmentation(audio, seed, prob=self.mixit_prob)
            if self.scale_augmentation:
                lo, hi = self._gain_range(step)
                gains = augment.sample_gains(batch, seed, lo, hi, self.gain_prob, self.gain_zero_threshold)
                audio = augment.scale_augmentation(audio, gains)
            latents = self._encode_unscaled(audio, training)
        if training:
            weights = augment.sample_mix_weights(batch, seed, self.mix_weight_min, self.mix_weight_max)
            audio = ops.concatenate([audio, augment.mix_with_rolled(audio, weights)], axis=0)
            if lin_cae:
                if self.prob_additivity_switch >= 1.0:
                    latents = ops.concatenate([latents, augment.mix_with_rolled(latents, weights)], axis=0)
                else:
                    mixture_latents = self._encode_unscaled(audio[batch:], training)
                    latents = augment.additive_latents(
                        ops.concatenate([latents, mixture_latents], axis=0),
                        weights,
                        self.prob_additivity_switch,
                        seed,
                    )
            else:
                latents = ops.concatenate([latents, self._encode_unscaled(audio[batch:], training)], axis=0)
        if lin_cae:
            lo, hi = self._gain_range(step)
            gains = augment.sample_gains(2 * batch, seed, lo, hi, self.gain_prob, self.gain_zero_threshold)
            gains = augment.cap_gains(gains, audio)
            audio = augment.apply_gain(audio, gains)
            latents = augment.apply_gain(latents, gains)
        representation = self.frontend.to_representation(audio)
        pyramid = self.decoder.latent_pyramid(ops.cast(latents, self.compute_dtype), training=training)
        if self.objective == "one_step_spectral":
            loss = self._one_step_spectral_loss(audio, representation, pyramid, training)
        else:
            loss = self._consistency_loss(representation, pyramid, step, training)
        if training:
            self._advance_training_state()
        return loss

    def _consistency_loss(self, representation, pyramid, step, training):
        """Official consistency training: one noise draw, pseudo-Huber to the `sigma_step` branch."""
        from keras_lincae.models import augment

        seed = self._train_seed
        items = representation.shape[0]
        noise = keras.random.normal(ops.shape(representation), seed=seed)
        index = augment.sample_noise_indices(
            items, seed, sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho,
            p_mean=self.p_mean, p_std=self.p_std,
        )
        step_size = augment.consistency_step_size(
            step, self.total_steps, self.base_step, self.start_exp, self.end_exp
        )
        sigma, sigma_step = augment.consistency_sigmas(index, step_size, self.sigma_min, self.sigma_max, self.rho)
        target = self.decoder.denoise(augment.add_noise(representation, noise, sigma_step), sigma_step, pyramid, training)
        prediction = self.decoder.denoise(augment.add_noise(representation, noise, sigma), sigma, pyramid, training)
        return augment.pseudo_huber_loss(
            ops.stop_gradient(target),
            prediction,
            weights=augment.consistency_loss_weight(sigma, sigma_step),
            c=self.huber_c,
        )

    def _one_step_spectral_loss(self, audio, representation, pyramid, training):
        """1-step decode from `sigma_max` noise, phase-blind spectral loss against `audio`.

        The `n_fft - hop` samples at each end, where the inverse STFT is not exact, are left out.
        """
        noise = keras.random.normal(ops.shape(representation), seed=self._train_seed)
        sigma = ops.full((representation.shape[0],), self.sigma_max)
        decoded = self.frontend.to_waveform(self.decoder.denoise(noise * self.sigma_max, sigma, pyramid, training))
        edge, length = self.frontend.n_fft - self.hop_size, decoded.shape[-1]
        return losses.multi_resolution_spectral_loss(
            decoded[:, edge : length - edge], audio[:, edge : length - edge], log_weight=self.spectral_log_weight
        )

    def _encode_unscaled(self, audio, training):
        representation = self.frontend.to_representation(audio)
        return ops.cast(self.encoder(ops.cast(representation, self.compute_dtype), training=training), "float32")

    def _gain_range(self, step):
        """`(low, high)` gain bounds at `step` (annealed for mode "lin_cae" and "m2l")."""
        from keras_lincae.models import augment

        return augment.gain_range(
            step,
            self.total_steps,
            self.gain_min,
            self.gain_max,
            decay=self.mode != "lin_cae_2",
            start_hold_fraction=self.gain_hold_fraction,
            end_zero_fraction=self.gain_end_fraction,
        )

    def gain_range_at(self, step):
        """Gain range `(low, high)` as Python floats at training step `step`."""
        lo, hi = self._gain_range(ops.convert_to_tensor(step, "int32"))
        return float(ops.convert_to_numpy(lo)), float(ops.convert_to_numpy(hi))

    def _advance_training_state(self):
        """Step hook: EMA of the weights (every `ema_every` steps) and the step counter."""
        from keras_lincae.training.schedules import ema_update

        if self.ema_weights:
            sources = self.encoder.trainable_weights + self.decoder.trainable_weights
            ema_update(
                self.ema_weights,
                [ops.stop_gradient(w) for w in sources],
                self.training_step,
                self.ema_momentum,
                self.ema_every,
                self.ema_warmup,
            )
        self.training_step.assign(self.training_step + 1)

    def use_ema_weights(self):
        """Copy the EMA shadows into the model's weights (for inference after training)."""
        if not self.ema_weights:
            raise ValueError("This model keeps no EMA weights (ema_momentum is None)")
        sources = self.encoder.trainable_weights + self.decoder.trainable_weights
        for w, shadow in zip(sources, self.ema_weights):
            w.assign(shadow)

    # ------------------------------------------------------------ public API
    def _function(self, key, fn):
        if not self.built:  # variables must exist before tracing
            self.build()
        if key not in self._compiled:
            self._compiled[key] = compile_inference_function(self, fn)
        return self._compiled[key]

    def encode(self, audio, max_chunk_seconds=MAX_CHUNK_SECONDS):
        """Audio -> latents multiplied by `scale_factor`.

        Args:
            audio: `(batch, samples)` or `(batch, channels, samples)` float audio at
                `sample_rate`, at least `n_fft` samples (`4 * hop_size`).
            max_chunk_seconds: float or None, `MAX_CHUNK_SECONDS`. Longer audio is
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
        chunk = self._chunk_frames(max_chunk_seconds)
        encode = self._function("encode", lambda x: self(x, training=False))
        if chunk is None or self.latent_length(audio.shape[-1]) <= chunk:
            latents = encode(audio)
        else:
            latents = self._encode_chunked(encode, audio, chunk)
        validation.check_finite_output(latents, "encode's latents", "scale the audio into [-1, 1]")
        return validation.restore_channels(latents, channels)

    def _chunk_frames(self, max_chunk_seconds):
        """Latent frames per chunk for `max_chunk_seconds` (None: no chunking)."""
        if max_chunk_seconds is None:
            return None
        if isinstance(max_chunk_seconds, bool) or not isinstance(max_chunk_seconds, (int, float)) or not (
            0 < max_chunk_seconds < float("inf")
        ):
            raise ValueError(f"max_chunk_seconds must be a positive number or None, got {max_chunk_seconds!r}")
        return max(2, int(round(max_chunk_seconds * self.sample_rate / self.samples_per_latent)))

    def _encode_chunked(self, encode, audio, chunk):
        """Encode `chunk` latent frames at a time on the whole signal's frame grid; concatenate."""
        total = self.latent_length(audio.shape[-1])
        window = self.frontend.num_samples(chunk * self.time_downsampling)
        audio = ops.convert_to_numpy(audio)
        pieces = []
        for first in range(0, total, chunk):
            part = audio[:, first * self.samples_per_latent :][:, :window]
            part = np.pad(part, ((0, 0), (0, window - part.shape[-1])))  # fixed shape: one compilation
            pieces.append(ops.convert_to_numpy(encode(part))[:, : min(chunk, total - first)])
        return ops.convert_to_tensor(np.concatenate(pieces, axis=1))

    def decode(self, latents, steps=1, seed=None, noise=None, max_chunk_seconds=MAX_CHUNK_SECONDS):
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
        chunk = self._chunk_frames(max_chunk_seconds)
        if chunk is None or frames <= chunk:
            audio = self._sample_steps(latents, draws)
        else:
            audio = self._decode_chunked(latents, draws, chunk)
        validation.check_finite_output(audio, "decoded audio", "the latents are far outside the range encode gives")
        return validation.restore_channels(audio, channels)

    def _sample_steps(self, latents, draws):
        """Sampler over `draws` (one per step): 1 step fused, more steps through one compiled step."""
        steps = len(draws)
        sigmas = sampling_sigmas(steps, self.sigma_min, self.sigma_max, self.rho)
        if steps == 1:
            return self._function(("decode", 1), lambda z, n: self.sample(z, [n]))(latents, draws[0])
        pyramid = self._function("latent_pyramid", self._latent_pyramid)(latents)
        step = self._function("sampler_step", self._sampler_step)
        x = None
        for k, draw in enumerate(draws):
            renoise = sigmas[0] if k == 0 else float(np.sqrt(sigmas[k] ** 2 - self.sigma_min**2))
            x = step(x if x is not None else ops.zeros_like(draw), draw, *(
                ops.convert_to_tensor(np.float32(v)) for v in (renoise, sigmas[k])), pyramid)
        return self._function("to_waveform", self.frontend.to_waveform)(x)

    def _latent_pyramid(self, latents):
        return self.decoder.latent_pyramid(ops.cast(latents / self.scale_factor, self.compute_dtype))

    def _sampler_step(self, x, draw, renoise, sigma, pyramid):
        """`denoise(x + renoise * draw)` at noise level `sigma` (scalars as tensors: one trace)."""
        return self.decoder.denoise(x + renoise * draw, sigma, pyramid)

    def sample(self, latents, draws):
        """Consistency sampling traced as one graph (what `decode` runs for 1 step; exports trace it).

        Denoises from `sigma_max`, re-noising to each next level of `sampling_sigmas(len(draws))`.
        Args: `latents` `(batch, frames, latent_channels)` (scaled); `draws`: a list of
            standard-normal `(batch, time_downsampling * frames, 2 * hop_size, data_channels)`.
        Returns: `(batch, decoded_length(frames))` audio.
        """
        sigmas = sampling_sigmas(len(draws), self.sigma_min, self.sigma_max, self.rho)
        pyramid = self._latent_pyramid(latents)
        x = draws[0] * sigmas[0]
        for k in range(len(draws)):
            if k > 0:
                x = x + np.sqrt(sigmas[k] ** 2 - self.sigma_min**2) * draws[k]
            batch_sigma = ops.full((ops.shape(x)[0],), sigmas[k])
            x = self.decoder.denoise(x, batch_sigma, pyramid)
        return self.frontend.to_waveform(x)

    def _decode_chunked(self, latents, draws, chunk):
        """Decode `chunk`-frame windows overlapping by a quarter; crossfade them linearly.

        Inside an overlap, each window's first and last `n_fft - hop` samples (inexact inverse
        STFT) get zero weight; linear ramps summing to one cover the rest of the overlap.
        """
        frames = int(latents.shape[1])
        unit, edge = self.samples_per_latent, self.frontend.n_fft - self.hop_size
        td, step = self.time_downsampling, chunk - max(1, chunk // 4)
        starts = list(range(0, frames - chunk, step)) + [frames - chunk]
        span = self.decoded_length(chunk)
        out = np.zeros((int(latents.shape[0]), self.decoded_length(frames)), np.float32)
        total_weight = np.zeros(out.shape[-1], np.float32)
        t = np.arange(span, dtype=np.float32)
        for i, first in enumerate(starts):
            window = [d[:, first * td : (first + chunk) * td] for d in draws]
            piece = ops.convert_to_numpy(self._sample_steps(latents[:, first : first + chunk], window))
            weight = np.ones(span, np.float32)
            if i > 0:  # fade in over the exact part of the overlap with the previous window
                ramp = (chunk - first + starts[i - 1]) * unit - edge
                weight = np.minimum(weight, np.clip((t - edge) / ramp, 0.0, 1.0))
            if i < len(starts) - 1:
                ramp = (chunk - starts[i + 1] + first) * unit - edge
                weight = np.minimum(weight, np.clip((span - edge - t) / ramp, 0.0, 1.0))
            offset = first * unit
            out[:, offset : offset + span] += piece * weight
            total_weight[offset : offset + span] += weight
        return ops.convert_to_tensor(out / np.maximum(total_weight, 1e-12))

    def autoencode(self, audio, steps=1, seed=None, noise=None, max_chunk_seconds=MAX_CHUNK_SECONDS):
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
        from keras_lincae.preset_io import load_preset

        return load_preset(cls, preset, load_weights=load_weights, **overrides)

    def save_to_preset(self, preset_dir, overwrite=False, **metadata):
        """Write this model as a preset directory (atomically). `overwrite=True` replaces an
        existing preset's own files; a non-empty folder that is not a preset is refused. Extra
        metadata is stored as given."""
        from keras_lincae.preset_io import save_preset

        if not self.built:
            self.build()
        return save_preset(self, preset_dir, overwrite=overwrite, **metadata)

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
