"""Convolution with PyTorch's explicit padding semantics, channels last."""

import keras
from keras import ops

PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def torch_like_initializer():
    """PyTorch's default conv/linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


@keras.saving.register_keras_serializable(package="keras_lincae")
class PaddedConv(keras.layers.Layer):
    """1-D or 2-D convolution padded explicitly (as `torch.nn.ConvNd(padding=p)`).

    Spatial axes are `(time,)` or `(time, freq)`, channels last.

    Args:
        filters: int. Output channels.
        kernel_size: tuple of ints, one per spatial axis.
        strides: tuple of ints, one per spatial axis (default 1).
        padding: tuple of ints, symmetric padding per spatial axis
            (default `(k - 1) // 2`, i.e. "same" for odd kernels).
        padding_mode: "zeros" (default), "reflect", "replicate" or "circular".
        zero_init: bool, False. Initialise kernel and bias to zero.

    Call arguments:
        x: `(batch, time, channels)` or `(batch, time, freq, channels)`.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=None,
        padding=None,
        padding_mode="zeros",
        zero_init=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"padding_mode must be one of {sorted(PADDING_MODES)}, got {padding_mode!r}"
            )
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        rank = len(self.kernel_size)
        self.strides = tuple(int(s) for s in (strides or (1,) * rank))
        self.padding = tuple(
            int(p) for p in (padding or [(k - 1) // 2 for k in self.kernel_size])
        )
        self.padding_mode = padding_mode
        self.zero_init = bool(zero_init)
        conv_class = keras.layers.Conv1D if rank == 1 else keras.layers.Conv2D
        initializer = "zeros" if self.zero_init else torch_like_initializer()
        self._native_same = (
            padding_mode == "zeros"
            and all(s == 1 for s in self.strides)
            and all(2 * p == k - 1 for p, k in zip(self.padding, self.kernel_size))
        )
        self.conv = conv_class(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same" if self._native_same else "valid",
            kernel_initializer=initializer,
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.built = True

    def call(self, x):
        if not self._native_same and any(self.padding):
            pads = [(0, 0)] + [(p, p) for p in self.padding] + [(0, 0)]
            x = ops.pad(x, pads, mode=PADDING_MODES[self.padding_mode])
        return self.conv(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            padding_mode=self.padding_mode,
            zero_init=self.zero_init,
        )
        return config
