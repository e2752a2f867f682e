"""The decoder's conditioning network: latents -> one feature map per U-Net level."""

import keras
from keras import ops

from keras_lincae.layers.conv import torch_like_initializer
from keras_lincae.layers.res_block import ResBlock
from keras_lincae.layers.resample import Resample
from keras_lincae.models.encoder import bottleneck_freq_dim


@keras.saving.register_keras_serializable(package="keras_lincae")
class LatentPyramid(keras.layers.Layer):
    """Mirror of the encoder: 1-D bottleneck, unflatten frequency, 2-D upsampling stack.

    Args: as `LinCAEEncoder` (`layers_list`/`attention_list` are the encoder's
        lists), plus `cond_channels` (size of the unused noise-embedding
        projection that the official bottleneck blocks carry; kept so the
        parameter count and checkpoints match).

    Call arguments:
        latents: `(batch, latent_frames, bottleneck_channels)` (unscaled).
    Returns a list, finest level first, of `(batch, frames_i, freq_i, channels_i)`.
    """

    def __init__(
        self,
        layers_list,
        attention_list,
        multipliers_list,
        base_channels,
        bottleneck_base_channels,
        bottleneck_channels,
        cond_channels,
        hop,
        freq_downsample_list,
        num_bottleneck_layers,
        normalization,
        dropout_rate,
        min_res_dropout,
        init_as_zero,
        padding_mode,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.layers_list = list(layers_list)
        self.attention_list = list(attention_list)
        self.multipliers_list = list(multipliers_list)
        self.base_channels = int(base_channels)
        self.bottleneck_base_channels = int(bottleneck_base_channels)
        self.bottleneck_channels = int(bottleneck_channels)
        self.cond_channels = int(cond_channels)
        self.hop = int(hop)
        self.freq_downsample_list = list(freq_downsample_list)
        self.num_bottleneck_layers = int(num_bottleneck_layers)
        self.normalization = bool(normalization)
        self.dropout_rate = float(dropout_rate)
        self.min_res_dropout = int(min_res_dropout)
        self.init_as_zero = bool(init_as_zero)
        self.padding_mode = padding_mode
        self.freq_dim = bottleneck_freq_dim(self.hop, self.freq_downsample_list)

        policy = self.dtype_policy
        width = self.bottleneck_base_channels
        channels = self.base_channels * self.multipliers_list[-1]
        self.top_channels = channels
        self.conv_inp = keras.layers.Dense(
            width, kernel_initializer=torch_like_initializer(), name="conv_inp", dtype=policy
        )
        self.bottleneck_blocks = [
            ResBlock(
                width,
                width,
                self.cond_channels,
                normalize=normalization,
                use_2d=False,
                dropout_rate=dropout_rate,
                min_res_dropout=min_res_dropout,
                init_as_zero=init_as_zero,
                padding_mode=padding_mode,
                name=f"bottleneck_block{j}",
                dtype=policy,
            )
            for j in range(self.num_bottleneck_layers)
        ]
        self.conv_out = keras.layers.Dense(
            channels * self.freq_dim,
            kernel_initializer=torch_like_initializer(),
            name="conv_out",
            dtype=policy,
        )
        up_multipliers = self.multipliers_list[::-1][1:] + self.multipliers_list[::-1][:1]
        freq_upsample_list = self.freq_downsample_list[::-1]
        self.levels = []
        self.upsamples = []
        num_levels = len(self.layers_list)
        for i, (num_layers, multiplier) in enumerate(zip(self.layers_list[::-1], up_multipliers)):
            self.levels.append(
                [
                    ResBlock(
                        channels,
                        channels,
                        normalize=normalization,
                        attention=self.attention_list[::-1][i] == 1,
                        heads=4,
                        use_2d=True,
                        dropout_rate=dropout_rate,
                        min_res_dropout=min_res_dropout,
                        init_as_zero=init_as_zero,
                        padding_mode=padding_mode,
                        name=f"level{num_levels - 1 - i}_block{j}",
                        dtype=policy,
                    )
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
                        name=f"up{num_levels - 1 - i}",
                        dtype=policy,
                    )
                )
                channels = out_channels

    def build(self, input_shape):
        width = self.bottleneck_base_channels
        self.conv_inp.build((None, None, self.bottleneck_channels))
        for block in self.bottleneck_blocks:
            block.build((None, None, width))
        self.conv_out.build((None, None, width))
        freq, channels = self.freq_dim, self.top_channels
        freq_upsample_list = self.freq_downsample_list[::-1]
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                block.build((None, None, freq, channels))
            if i < len(self.upsamples):
                self.upsamples[i].build((None, None, freq, channels))
                channels = self.upsamples[i].out_channels
                freq = freq * 4 if freq_upsample_list[i] == 1 else freq * 2
        self.built = True

    def call(self, latents, training=None):
        x = self.conv_inp(latents)
        for block in self.bottleneck_blocks:
            x = block(x, training=training)
        x = self.conv_out(x)
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.freq_dim, self.top_channels))
        pyramid = []
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                x = block(x, training=training)
            pyramid.append(x)
            if i < len(self.upsamples):
                x = self.upsamples[i](x)
        return pyramid[::-1]

    def get_config(self):
        config = super().get_config()
        config.update(
            layers_list=self.layers_list,
            attention_list=self.attention_list,
            multipliers_list=self.multipliers_list,
            base_channels=self.base_channels,
            bottleneck_base_channels=self.bottleneck_base_channels,
            bottleneck_channels=self.bottleneck_channels,
            cond_channels=self.cond_channels,
            hop=self.hop,
            freq_downsample_list=self.freq_downsample_list,
            num_bottleneck_layers=self.num_bottleneck_layers,
            normalization=self.normalization,
            dropout_rate=self.dropout_rate,
            min_res_dropout=self.min_res_dropout,
            init_as_zero=self.init_as_zero,
            padding_mode=self.padding_mode,
        )
        return config
