"""Convolution with PyTorch's explicit padding semantics, channels last."""

import keras
import numpy as np
from keras import ops

from keras_lincae.backend_dispatch import channels_first_conv, pointwise_conv_is_faster, prefers_channels_first_conv

PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_spatial(x, padding, mode):
    """Pad the spatial axes of channels-last `x` by `padding[i]` on both sides, PyTorch `mode`.

    "zeros"/"reflect" use `ops.pad`; "replicate"/"circular" are built from slices, which
    `ops.pad` supports only on jax.
    """
    for axis, p in enumerate(padding, start=1):
        if p == 0:
            continue
        if mode in ("zeros", "reflect"):
            pads = [(0, 0)] * len(x.shape)
            pads[axis] = (p, p)
            x = ops.pad(x, pads, mode=PADDING_MODES[mode])
            continue
        size = x.shape[axis]
        take = lambda start, stop: ops.take(x, ops.arange(start, stop), axis=axis)  # noqa: E731
        if mode == "replicate":
            front = ops.repeat(take(0, 1), p, axis=axis)
            back = ops.repeat(take(size - 1, size), p, axis=axis)
        else:
            front, back = take(size - p, size), take(0, p)
        x = ops.concatenate([front, x, back], axis=axis)
    return x


@keras.saving.register_keras_serializable(package="keras_lincae")
class TorchUniform(keras.initializers.Initializer):
    """PyTorch's default init, drawn with NumPy's global generator (seeded by
    `keras.utils.set_random_seed`) so that building a model does not compile one
    random kernel per weight shape on JAX.

    `mode="fan_in"`: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (conv and linear layers);
    `mode="xavier"`: U(-sqrt(6/(fan_in+fan_out)), ...) (attention input projection).
    """

    def __init__(self, mode="fan_in"):
        if mode not in ("fan_in", "xavier"):
            raise ValueError(f"mode must be 'fan_in' or 'xavier', got {mode!r}")
        self.mode = mode

    def __call__(self, shape, dtype=None):
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else int(shape[0])
        if self.mode == "fan_in":
            limit = 1.0 / np.sqrt(max(fan_in, 1))
        else:
            limit = np.sqrt(6.0 / (fan_in + int(shape[-1])))
        value = np.random.uniform(-limit, limit, size=tuple(shape))
        return ops.convert_to_tensor(value, dtype=dtype or "float32")

    def get_config(self):
        return {"mode": self.mode}


def torch_like_initializer():
    """PyTorch's default conv/linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return TorchUniform("fan_in")


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
        self.conv = conv_class(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="same",  # holds the weights only: `convolve` pads explicitly
            kernel_initializer=initializer,
            bias_initializer="zeros",
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.built = True

    def call(self, x):
        return self.convolve(x, self.conv.kernel, self.conv.bias, self.padding, self.padding_mode)

    def convolve(self, x, kernel, bias, padding, padding_mode):
        """`x` convolved at this layer's strides with any `kernel` `(*k, in, out)` and `bias`
        `(out,)`, padded by `padding[i]` per spatial axis in `padding_mode`. `call` passes the
        layer's own weights; `Resample` passes kernels derived from them."""
        kernel, bias = ops.cast(kernel, self.compute_dtype), ops.cast(bias, self.compute_dtype)
        if prefers_channels_first_conv() and padding_mode == "zeros":
            # Torch: one conv on a channels-first view of the channels-last memory, with bias
            # and padding inside the kernel (no layout copies, no separate bias pass).
            return channels_first_conv(x, kernel, bias, self.strides, padding)
        rank = len(self.strides)
        native_same = (
            padding_mode == "zeros"
            and all(s == 1 for s in self.strides)
            and all(2 * p == k - 1 for p, k in zip(padding, kernel.shape[:rank]))
        )
        if not native_same and any(padding):
            x = pad_spatial(x, padding, padding_mode)
        conv_padding = "same" if native_same else "valid"
        if not prefers_channels_first_conv():
            return ops.conv(x, kernel, strides=self.strides, padding=conv_padding) + bias
        y = ops.conv(
            ops.transpose(x, (0, rank + 1, *range(1, rank + 1))),
            kernel,
            strides=self.strides,
            padding=conv_padding,
            data_format="channels_first",
        )
        return ops.transpose(y, (0, *range(2, rank + 2), 1)) + bias

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


def pointwise_dense(layer, x, training=None):
    """`layer(x)` for a `keras.layers.Dense` (a bias, no activation) applied over the channels of a
    channels-last map `x` `(batch, *spatial, in)` -> `(batch, *spatial, units)`; where that is
    faster (`backend_dispatch.pointwise_conv_is_faster`) as a 1x1 convolution with the layer's
    own weights: on torch of the channels-first view (`channels_first_conv`), else `ops.conv`."""
    rank = len(x.shape) - 2
    if rank not in (1, 2) or not pointwise_conv_is_faster(training):
        return layer(x)
    dtype = layer.compute_dtype
    kernel = ops.cast(ops.reshape(layer.kernel, (1,) * rank + tuple(layer.kernel.shape)), dtype)
    bias = ops.cast(layer.bias, dtype)
    if prefers_channels_first_conv():
        return channels_first_conv(ops.cast(x, dtype), kernel, bias, (1,) * rank, (0,) * rank)
    return ops.conv(ops.cast(x, dtype), kernel) + bias
