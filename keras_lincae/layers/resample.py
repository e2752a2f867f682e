"""Strided-conv downsampling and nearest-neighbour + conv upsampling (2-D, channels last)."""

import keras
import numpy as np
from keras import ops

from keras_lincae.layers.conv import PaddedConv
from keras_lincae.layers.norm import group_norm


def polyphase_taps(kernel_size, factor):
    """For a stride-1, zero-padded conv of size `kernel_size` (padding `(k - 1) // 2`) after
    repeating an axis `factor` times: `(taps, pad)`, `taps[r, o, j] = 1` where output phase `r`'s
    kernel tap `j` reads input offset `o - pad`, a `(factor, 2 * pad + 1, kernel_size)` array."""
    half = (kernel_size - 1) // 2
    offsets = [[(r + j - half) // factor for j in range(kernel_size)] for r in range(factor)]
    pad = max(max(abs(o) for o in row) for row in offsets)
    taps = np.zeros((factor, 2 * pad + 1, kernel_size), "float32")
    for r, row in enumerate(offsets):
        for j, o in enumerate(row):
            taps[r, o + pad, j] = 1.0
    return taps, pad


@keras.saving.register_keras_serializable(package="keras_lincae")
class Resample(keras.layers.Layer):
    """Change the resolution of a `(batch, time, freq, ch)` feature map.

    `frequency_only=True` scales only the frequency axis by 4 (kernel 5 along
    frequency); otherwise both axes by 2 (3x3 kernel). Downsampling is a
    strided conv (padding 2 / 1); upsampling repeats samples then applies a
    stride-1 conv, along frequency computed without the repeated map
    (`polyphase_taps`).

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
        if self.frequency_only and self.direction == "up":
            return self._upsample_frequency(x)
        if self.direction == "up":  # 2x2: the phase trick would cost a time/frequency transpose
            x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
        return self.conv(x)

    def _upsample_frequency(self, x):
        """conv(repeat(x, 4)) along frequency as one 3-tap conv of `x` whose kernel holds the 4
        output phases on its channels, then phases moved to frequency: 12 instead of 20 taps per
        4 outputs, and no 4x repeated map."""
        phases = self.factor[1]
        taps, pad = polyphase_taps(self.conv.kernel_size[1], phases)
        kernel = ops.convert_to_tensor(self.conv.conv.kernel)  # the compute dtype under mixed precision
        kernel = ops.einsum("rbl,tlio->tbiro", ops.cast(taps, kernel.dtype), kernel)
        kernel = ops.reshape(kernel, (1, 2 * pad + 1, self.in_channels, phases * self.out_channels))
        bias = ops.tile(self.conv.conv.bias, (phases,))
        y = self.conv.convolve(x, kernel, bias, (0, pad), "zeros")
        shape = ops.shape(x)
        return ops.reshape(y, (shape[0], shape[1], shape[2] * phases, self.out_channels))

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
