"""Strided-conv downsampling and nearest-neighbour + conv upsampling (2-D, channels last)."""

import keras
from keras import ops

from keras_lincae.layers.conv import PaddedConv
from keras_lincae.layers.norm import group_norm


@keras.saving.register_keras_serializable(package="keras_lincae")
class Resample(keras.layers.Layer):
    """Change the resolution of a `(batch, time, freq, ch)` feature map.

    `frequency_only=True` scales only the frequency axis by 4 (kernel 5 along
    frequency); otherwise both axes by 2 (3x3 kernel). Downsampling is a
    strided conv (padding 2 / 1); upsampling repeats samples then applies a
    stride-1 conv.

    Args:
        in_channels: int.
        out_channels: int or None (same as input).
        direction: "down" or "up".
        frequency_only: bool, False.
        normalize: bool, False. GroupNorm before the conv.
        padding_mode: str, "zeros" (only used by the 3x3 variants, as officially).

    Call arguments:
        x: `(batch, time, freq, in_channels)`.
    """

    def __init__(
        self,
        in_channels,
        out_channels=None,
        direction="down",
        frequency_only=False,
        normalize=False,
        padding_mode="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if direction not in ("down", "up"):
            raise ValueError(f"direction must be 'down' or 'up', got {direction!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels or in_channels)
        self.direction = direction
        self.frequency_only = bool(frequency_only)
        self.normalize = bool(normalize)
        self.padding_mode = padding_mode
        policy = self.dtype_policy
        self.norm = group_norm(in_channels, "norm", policy) if normalize else None
        if frequency_only:
            kernel, factor, mode = (1, 5), (1, 4), "zeros"
        else:
            kernel, factor, mode = (3, 3), (2, 2), padding_mode
        self.factor = factor
        self.conv = PaddedConv(
            self.out_channels,
            kernel,
            strides=factor if direction == "down" else None,
            padding_mode=mode,
            name="conv",
            dtype=policy,
        )

    def build(self, input_shape):
        if self.norm is not None:
            self.norm.build(input_shape)
        self.conv.build(input_shape)
        self.built = True

    def call(self, x):
        if self.norm is not None:
            x = self.norm(x)
        if self.direction == "up":
            for axis, factor in ((1, self.factor[0]), (2, self.factor[1])):
                if factor > 1:
                    x = ops.repeat(x, factor, axis=axis)
        return self.conv(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            direction=self.direction,
            frequency_only=self.frequency_only,
            normalize=self.normalize,
            padding_mode=self.padding_mode,
        )
        return config
