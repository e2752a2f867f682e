"""Consistency decoder: latent pyramid + noise-conditioned U-Net with EDM preconditioning."""

import math

import keras
from keras import ops

from keras_lincae.backend_dispatch import computed_after
from keras_lincae.layers.conv import PaddedConv, pointwise_dense, torch_like_initializer
from keras_lincae.layers.noise_embedding import NoiseLevelEmbedding
from keras_lincae.layers.norm import group_norm
from keras_lincae.layers.res_block import ResBlock
from keras_lincae.layers.resample import Resample
from keras_lincae.models.consistency import preconditioning
from keras_lincae.models.latent_pyramid import LatentPyramid


def _mlp(width, out_units, zero_last, name, policy):
    layers = [
        keras.layers.Dense(width, activation="silu", kernel_initializer=torch_like_initializer(), name=f"{name}_0", dtype=policy),
        keras.layers.Dense(width, activation="silu", kernel_initializer=torch_like_initializer(), name=f"{name}_1", dtype=policy),
    ]
    if out_units:
        layers.append(
            keras.layers.Dense(
                out_units,
                kernel_initializer="zeros" if zero_last else torch_like_initializer(),
                name=f"{name}_2",
                dtype=policy,
            )
        )
    return layers


def _run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


@keras.saving.register_keras_serializable(package="keras_lincae")
class ConsistencyDecoder(keras.layers.Layer):
    """Denoise a noisy spectrogram representation given latents and the noise level.

    Holds the latent-to-pyramid conditioning network (`self.pyramid`) and the
    U-Net; every constructor argument is the official `UNet` argument of the
    same name (the encoder-side ones that shape the pyramid included), all required:
    `LinCAE` passes its config (`hop` is its `hop_size`).

    Call arguments:
        noisy: `(batch, frames, 2 * hop, data_channels)`, `frames = 8 * latent_frames`
            for the default three time downsamplings.
        sigma: `(batch,)` noise levels.
        latents: `(batch, latent_frames, bottleneck_channels)` (divided by the scale factor).
    Returns the denoised representation, same shape as `noisy`.
    """

    def __init__(
        self,
        base_channels,
        layers_list,
        multipliers_list,
        attention_list,
        freq_downsample_list,
        layers_list_encoder,
        attention_list_encoder,
        bottleneck_base_channels,
        bottleneck_channels,
        num_bottleneck_layers,
        hop,
        data_channels,
        cond_channels,
        heads,
        use_fourier,
        fourier_scale,
        normalization,
        dropout_rate,
        min_res_dropout,
        frequency_scaling,
        sigma_min,
        sigma_max,
        sigma_data,
        init_as_zero,
        padding_mode,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.base_channels = int(base_channels)
        self.layers_list = list(layers_list)
        self.multipliers_list = list(multipliers_list)
        self.attention_list = list(attention_list)
        self.freq_downsample_list = list(freq_downsample_list)
        self.layers_list_encoder = list(layers_list_encoder)
        self.attention_list_encoder = list(attention_list_encoder)
        self.bottleneck_base_channels = int(bottleneck_base_channels)
        self.bottleneck_channels = int(bottleneck_channels)
        self.num_bottleneck_layers = int(num_bottleneck_layers)
        self.hop = int(hop)
        self.data_channels = int(data_channels)
        self.cond_channels = int(cond_channels)
        self.heads = int(heads)
        self.use_fourier = bool(use_fourier)
        self.fourier_scale = float(fourier_scale)
        self.normalization = bool(normalization)
        self.dropout_rate = float(dropout_rate)
        self.min_res_dropout = int(min_res_dropout)
        self.frequency_scaling = bool(frequency_scaling)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.sigma_data = float(sigma_data)
        self.init_as_zero = bool(init_as_zero)
        self.padding_mode = padding_mode

        policy = self.dtype_policy
        self.pyramid = LatentPyramid(
            layers_list=self.layers_list_encoder,
            attention_list=self.attention_list_encoder,
            multipliers_list=self.multipliers_list,
            base_channels=base_channels,
            bottleneck_base_channels=bottleneck_base_channels,
            bottleneck_channels=bottleneck_channels,
            cond_channels=cond_channels,
            hop=hop,
            freq_downsample_list=self.freq_downsample_list,
            num_bottleneck_layers=num_bottleneck_layers,
            normalization=normalization,
            dropout_rate=dropout_rate,
            min_res_dropout=min_res_dropout,
            init_as_zero=init_as_zero,
            padding_mode=padding_mode,
            name="pyramid",
            dtype=policy,
        )
        self.embedding = NoiseLevelEmbedding(
            cond_channels, use_fourier=use_fourier, fourier_scale=fourier_scale, name="embedding"
        )
        self.emb_proj = _mlp(cond_channels, 0, False, "emb_proj", policy)
        self.scale_inp = _mlp(cond_channels, 2 * hop, init_as_zero, "scale_inp", policy)
        self.scale_out = _mlp(cond_channels, 2 * hop, init_as_zero, "scale_out", policy)
        channels = self.base_channels * self.multipliers_list[0]
        self.conv_inp = PaddedConv(channels, (3, 3), padding_mode=padding_mode, name="conv_inp", dtype=policy)

        def block(ch, attention, name):
            return ResBlock(
                ch,
                ch,
                cond_channels,
                normalize=normalization,
                attention=attention,
                heads=heads,
                use_2d=True,
                dropout_rate=dropout_rate,
                min_res_dropout=min_res_dropout,
                init_as_zero=True,
                padding_mode=padding_mode,
                name=name,
                dtype=policy,
            )

        def mixer(ch, name):
            return keras.layers.Dense(ch, kernel_initializer=torch_like_initializer(), name=name, dtype=policy)

        num_levels = len(self.layers_list)
        self.down_levels, self.downsamples = [], []
        for i, (num_layers, multiplier) in enumerate(zip(self.layers_list, self.multipliers_list)):
            channels = self.base_channels * multiplier
            self.down_levels.append(
                [
                    (mixer(channels, f"down{i}_mix{j}"), block(channels, self.attention_list[i] == 1, f"down{i}_block{j}"))
                    for j in range(num_layers)
                ]
            )
            if i != num_levels - 1:
                self.downsamples.append(
                    Resample(
                        channels,
                        self.base_channels * self.multipliers_list[i + 1],
                        direction="down",
                        frequency_only=self.freq_downsample_list[i] == 1,
                        padding_mode=padding_mode,
                        name=f"down{i}",
                        dtype=policy,
                    )
                )
        up_multipliers = self.multipliers_list[::-1][1:] + self.multipliers_list[::-1][:1]
        freq_upsample_list = self.freq_downsample_list[::-1]
        self.up_levels, self.upsamples = [], []
        channels = self.base_channels * self.multipliers_list[-1]
        for i, (num_layers, multiplier) in enumerate(zip(self.layers_list[::-1], up_multipliers)):
            level = num_levels - 1 - i
            self.up_levels.append(
                [
                    (mixer(channels, f"up{level}_mix{j}"), block(channels, self.attention_list[::-1][i] == 1, f"up{level}_block{j}"))
                    for j in range(num_layers)
                ]
            )
            if i != num_levels - 1:
                out_channels = self.base_channels * multiplier
                self.upsamples.append(
                    Resample(
                        channels,
                        out_channels,
                        direction="up",
                        frequency_only=freq_upsample_list[i] == 1,
                        padding_mode=padding_mode,
                        name=f"up{level}",
                        dtype=policy,
                    )
                )
                channels = out_channels
        self.conv_decoded = mixer(channels, "conv_decoded")
        self.norm_out = group_norm(channels, "norm_out", policy)
        self.conv_out = PaddedConv(
            data_channels, (3, 3), padding_mode=padding_mode, zero_init=init_as_zero, name="conv_out", dtype=policy
        )

    def build(self, input_shape=None):
        bins = 2 * self.hop
        self.pyramid.build((None, None, self.bottleneck_channels))
        self.embedding.build((None,))
        for mlp in (self.emb_proj, self.scale_inp, self.scale_out):
            for layer in mlp:
                layer.build((None, self.cond_channels))
        self.conv_inp.build((None, None, bins, self.data_channels))
        freq = bins
        for i, pairs in enumerate(self.down_levels):
            for mix, block in pairs:
                mix.build((None, None, freq, block.in_channels))
                block.build((None, None, freq, block.in_channels))
            if i < len(self.downsamples):
                self.downsamples[i].build((None, None, freq, self.downsamples[i].in_channels))
                freq = freq // 4 if self.freq_downsample_list[i] == 1 else freq // 2
        freq_upsample_list = self.freq_downsample_list[::-1]
        for i, pairs in enumerate(self.up_levels):
            for mix, block in pairs:
                mix.build((None, None, freq, block.in_channels))
                block.build((None, None, freq, block.in_channels))
            if i < len(self.upsamples):
                self.upsamples[i].build((None, None, freq, self.upsamples[i].in_channels))
                freq = freq * 4 if freq_upsample_list[i] == 1 else freq * 2
        channels = self.conv_decoded.units
        self.conv_decoded.build((None, None, freq, channels))
        self.norm_out.build((None, None, freq, channels))
        self.conv_out.build((None, None, freq, channels))
        self.built = True

    def latent_pyramid(self, latents, training=None):
        """Conditioning feature maps for `(batch, latent_frames, channels)` latents."""
        return self.pyramid(latents, training=training)

    def denoise(self, noisy, sigma, pyramid, training=None):
        """One preconditioned U-Net evaluation: `c_skip * x + c_out * F(c_in * x, sigma, pyramid)`."""
        compute_dtype = self.compute_dtype
        noisy = ops.cast(noisy, "float32")
        sigma = ops.cast(sigma, "float32") * ops.ones((ops.shape(noisy)[0],), "float32")
        embedded = self.embedding(ops.log(sigma) / 4.0)
        time_emb = ops.cast(_run(self.emb_proj, embedded), compute_dtype)
        c_skip, c_out, c_in = (ops.reshape(c, (-1, 1, 1, 1)) for c in preconditioning(sigma, self.sigma_min, self.sigma_data))

        x = self.conv_inp(ops.cast(c_in * noisy, compute_dtype))
        if self.frequency_scaling:
            scale = ops.cast(_run(self.scale_inp, embedded), compute_dtype)
            x = (1.0 + ops.reshape(scale, (-1, 1, 2 * self.hop, 1))) * x
        skips = []
        for i, pairs in enumerate(self.down_levels):
            for mix, block in pairs:
                x = (x + pointwise_dense(mix, computed_after(pyramid[i], x), training)) / math.sqrt(2.0)
                x = block(x, time_emb, training=training)
                skips.append(x)
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        for i, pairs in enumerate(self.up_levels):
            for mix, block in pairs:
                x = (x + skips.pop() + pointwise_dense(mix, computed_after(pyramid[-i - 1], x), training)) / math.sqrt(3.0)
                x = block(x, time_emb, training=training)
            if i < len(self.upsamples):
                x = self.upsamples[i](x)
        x = (x + pointwise_dense(self.conv_decoded, computed_after(pyramid[0], x), training)) / math.sqrt(2.0)
        x = ops.silu(self.norm_out(x))
        if self.frequency_scaling:
            scale = ops.cast(_run(self.scale_out, embedded), compute_dtype)
            x = (1.0 + ops.reshape(scale, (-1, 1, 2 * self.hop, 1))) * x
        x = ops.cast(self.conv_out(x), "float32")
        return c_skip * noisy + c_out * x

    def call(self, noisy, sigma, latents, training=None):
        return self.denoise(noisy, sigma, self.latent_pyramid(latents, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                name: getattr(self, name)
                for name in (
                    "base_channels", "layers_list", "multipliers_list", "attention_list",
                    "freq_downsample_list", "layers_list_encoder", "attention_list_encoder",
                    "bottleneck_base_channels", "bottleneck_channels", "num_bottleneck_layers",
                    "hop", "data_channels", "cond_channels", "heads", "use_fourier",
                    "fourier_scale", "normalization", "dropout_rate", "min_res_dropout",
                    "frequency_scaling", "sigma_min", "sigma_max", "sigma_data",
                    "init_as_zero", "padding_mode",
                )
            }
        )
        return config
