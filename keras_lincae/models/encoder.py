"""Lin-CAE encoder: spectrogram representation -> latent sequence."""

import keras
from keras import ops

from keras_lincae.layers.conv import PaddedConv, torch_like_initializer
from keras_lincae.layers.norm import group_norm
from keras_lincae.layers.res_block import ResBlock
from keras_lincae.layers.resample import Resample


def bottleneck_freq_dim(hop, freq_downsample_list):
    """Frequency bins left after the encoder's downsamplings (x4 per 1, x2 per 0)."""
    freq = (hop * 2) // (4 ** freq_downsample_list.count(1))
    return freq // (2 ** freq_downsample_list.count(0))


@keras.saving.register_keras_serializable(package="keras_lincae")
class LinCAEEncoder(keras.layers.Layer):
    """2-D residual stack over (time, freq), flatten frequency, 1-D bottleneck, tanh.

    Args:
        layers_list: residual blocks per level.
        attention_list: 1 where a level's blocks end with attention.
        multipliers_list: channel multiplier per level (times `base_channels`).
        base_channels: int.
        data_channels: int. Input channels (2: real and imaginary parts).
        bottleneck_base_channels: int. Width of the 1-D bottleneck.
        num_bottleneck_layers: int.
        bottleneck_channels: int. Latent channels.
        hop: int. Frontend hop; the input has `2 * hop` frequency bins.
        freq_downsample_list: 1 = frequency-only x4 downsampling, 0 = x2 on both axes.
        normalization, pre_normalize_downsampling_encoder, pre_normalize_2d_to_1d,
        frequency_scaling, dropout_rate, min_res_dropout, init_as_zero,
        activation_bottleneck ("tanh" or "linear"), padding_mode: as `LinCAE`'s arguments
        of the same names (every argument is required: the model passes its config).

    Call arguments:
        x: `(batch, frames, 2 * hop, data_channels)`.
    Returns `(batch, latent_frames, bottleneck_channels)`; each time-downsampling
    maps `n` frames to `(n - 1) // 2 + 1`.
    """

    def __init__(
        self,
        layers_list,
        attention_list,
        multipliers_list,
        base_channels,
        data_channels,
        bottleneck_base_channels,
        num_bottleneck_layers,
        bottleneck_channels,
        hop,
        freq_downsample_list,
        normalization,
        pre_normalize_downsampling_encoder,
        pre_normalize_2d_to_1d,
        frequency_scaling,
        dropout_rate,
        min_res_dropout,
        init_as_zero,
        activation_bottleneck,
        padding_mode,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.layers_list = list(layers_list)
        self.attention_list = list(attention_list)
        self.multipliers_list = list(multipliers_list)
        self.base_channels = int(base_channels)
        self.data_channels = int(data_channels)
        self.bottleneck_base_channels = int(bottleneck_base_channels)
        self.num_bottleneck_layers = int(num_bottleneck_layers)
        self.bottleneck_channels = int(bottleneck_channels)
        self.hop = int(hop)
        self.freq_downsample_list = list(freq_downsample_list)
        self.normalization = bool(normalization)
        self.pre_normalize_downsampling_encoder = bool(pre_normalize_downsampling_encoder)
        self.pre_normalize_2d_to_1d = bool(pre_normalize_2d_to_1d)
        self.frequency_scaling = bool(frequency_scaling)
        self.dropout_rate = float(dropout_rate)
        self.min_res_dropout = int(min_res_dropout)
        self.init_as_zero = bool(init_as_zero)
        self.activation_bottleneck = activation_bottleneck
        self.padding_mode = padding_mode
        if activation_bottleneck not in ("tanh", "linear"):
            raise ValueError(f"activation_bottleneck must be 'tanh' or 'linear', got {activation_bottleneck!r}")
        if len(self.freq_downsample_list) != len(self.layers_list) - 1:
            raise ValueError("freq_downsample_list needs one entry per level transition")
        self.freq_dim = bottleneck_freq_dim(self.hop, self.freq_downsample_list)
        if self.freq_dim < 1:
            raise ValueError(f"hop={hop} is too small for freq_downsample_list={freq_downsample_list}")

        policy = self.dtype_policy
        channels = self.base_channels * self.multipliers_list[0]
        self.conv_inp = PaddedConv(channels, (3, 3), padding_mode=padding_mode, name="conv_inp", dtype=policy)
        self.levels = []
        self.downsamples = []
        for i, (num_layers, multiplier) in enumerate(zip(self.layers_list, self.multipliers_list)):
            blocks = []
            out_channels = self.base_channels * multiplier
            for j in range(num_layers):
                blocks.append(
                    ResBlock(
                        channels,
                        out_channels,
                        normalize=normalization,
                        attention=self.attention_list[i] == 1,
                        heads=4,
                        use_2d=True,
                        dropout_rate=dropout_rate,
                        min_res_dropout=min_res_dropout,
                        init_as_zero=init_as_zero,
                        padding_mode=padding_mode,
                        name=f"level{i}_block{j}",
                        dtype=policy,
                    )
                )
                channels = out_channels
            self.levels.append(blocks)
            if i != len(self.layers_list) - 1:
                self.downsamples.append(
                    Resample(
                        channels,
                        direction="down",
                        frequency_only=self.freq_downsample_list[i] == 1,
                        normalize=pre_normalize_downsampling_encoder,
                        padding_mode=padding_mode,
                        name=f"down{i}",
                        dtype=policy,
                    )
                )
        self.top_channels = channels
        self.prenorm = group_norm(channels, "prenorm", policy) if pre_normalize_2d_to_1d else None
        width = self.bottleneck_base_channels
        self.bottleneck_inp = keras.layers.Dense(
            width, kernel_initializer=torch_like_initializer(), name="bottleneck_inp", dtype=policy
        )
        self.bottleneck_blocks = [
            ResBlock(
                width,
                width,
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
        self.norm_out = group_norm(width, "norm_out", policy)
        self.conv_out = keras.layers.Dense(
            self.bottleneck_channels, kernel_initializer=torch_like_initializer(), name="conv_out", dtype=policy
        )

    def build(self, input_shape):
        bins = 2 * self.hop
        self.freq_gain = self.add_weight(shape=(bins, 1), initializer="ones", name="freq_gain")
        self.conv_inp.build((None, None, bins, self.data_channels))
        freq, channels = bins, self.base_channels * self.multipliers_list[0]
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                block.build((None, None, freq, channels))
                channels = block.out_channels
            if i < len(self.downsamples):
                self.downsamples[i].build((None, None, freq, channels))
                freq = freq // 4 if self.freq_downsample_list[i] == 1 else freq // 2
        if self.prenorm is not None:
            self.prenorm.build((None, None, freq, channels))
        self.bottleneck_inp.build((None, None, freq * channels))
        for block in self.bottleneck_blocks:
            block.build((None, None, self.bottleneck_base_channels))
        self.norm_out.build((None, None, self.bottleneck_base_channels))
        self.conv_out.build((None, None, self.bottleneck_base_channels))
        self.built = True

    def call(self, x, training=None):
        x = self.conv_inp(x)
        if self.frequency_scaling:
            x = x * ops.cast(self.freq_gain, x.dtype)
        for i, blocks in enumerate(self.levels):
            for block in blocks:
                x = block(x, training=training)
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        if self.prenorm is not None:
            x = self.prenorm(x)
        shape = ops.shape(x)
        x = ops.reshape(x, (shape[0], shape[1], self.freq_dim * self.top_channels))
        x = self.bottleneck_inp(x)
        for block in self.bottleneck_blocks:
            x = block(x, training=training)
        x = self.conv_out(ops.silu(self.norm_out(x)))
        if self.activation_bottleneck == "tanh":
            x = ops.tanh(x)
        return x

    def compute_output_shape(self, input_shape):
        frames = input_shape[1]
        if frames is not None:
            for flag in self.freq_downsample_list:
                if flag == 0:
                    frames = (frames - 1) // 2 + 1
        return (input_shape[0], frames, self.bottleneck_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            layers_list=self.layers_list,
            attention_list=self.attention_list,
            multipliers_list=self.multipliers_list,
            base_channels=self.base_channels,
            data_channels=self.data_channels,
            bottleneck_base_channels=self.bottleneck_base_channels,
            num_bottleneck_layers=self.num_bottleneck_layers,
            bottleneck_channels=self.bottleneck_channels,
            hop=self.hop,
            freq_downsample_list=self.freq_downsample_list,
            normalization=self.normalization,
            pre_normalize_downsampling_encoder=self.pre_normalize_downsampling_encoder,
            pre_normalize_2d_to_1d=self.pre_normalize_2d_to_1d,
            frequency_scaling=self.frequency_scaling,
            dropout_rate=self.dropout_rate,
            min_res_dropout=self.min_res_dropout,
            init_as_zero=self.init_as_zero,
            activation_bottleneck=self.activation_bottleneck,
            padding_mode=self.padding_mode,
        )
        return config
