"""GroupNorm with the official group rule, statistics computed in two passes."""

import keras
from keras import ops

from keras_lincae.backend_dispatch import channels_last_group_norm, has_channels_last_group_norm


@keras.saving.register_keras_serializable(package="keras_lincae")
class GroupNorm(keras.layers.Layer):
    """Group normalisation over all axes but batch; `(batch, ..., channels)` -> same shape.

    Same weights (`gamma`, `beta`) and results as `keras.layers.GroupNormalization`, but
    the variance is the mean of squared deviations (two passes) in float32. Keras computes
    `E[x^2] - E[x]^2`, which on TensorFlow's float32 reductions loses ~1e-4 relative
    accuracy on large feature maps with a non-zero mean (the cause of the TF parity gap).
    Statistics are reduced per channel over positions first, then per group, and applied as
    one multiply-add per element (about 2x faster than Keras' layer on every backend). On torch, the
    same maths with in-place torch kernels (`backend_dispatch.channels_last_group_norm`).
    """

    def __init__(self, groups, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError(f"{self.name}: {channels} channels are not divisible into {self.groups} groups")
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
        self.built = True

    def call(self, inputs):
        if has_channels_last_group_norm():
            out = channels_last_group_norm(
                inputs, self.groups, ops.convert_to_tensor(self.gamma), ops.convert_to_tensor(self.beta), self.epsilon)
            return ops.cast(out, self.compute_dtype)
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        batch, channels = shape[0], x.shape[-1]
        flat = ops.reshape(x, (batch, -1, channels))  # (batch, positions, channels)

        def group_mean(per_channel):  # (batch, channels) -> (batch, 1, channels) of group means
            groups = ops.mean(ops.reshape(per_channel, (batch, self.groups, -1)), axis=2, keepdims=True)
            return ops.reshape(ops.broadcast_to(groups, (batch, self.groups, channels // self.groups)),
                               (batch, 1, channels))

        mean = group_mean(ops.mean(flat, axis=1))
        centered = flat - mean
        variance = group_mean(ops.mean(centered * centered, axis=1))
        scale = ops.cast(self.gamma, "float32") * ops.rsqrt(variance + self.epsilon)
        out = flat * scale + (ops.cast(self.beta, "float32") - mean * scale)
        return ops.cast(ops.reshape(out, shape), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(groups=self.groups, epsilon=self.epsilon)
        return config


def group_norm(channels, name=None, dtype=None):
    """`GroupNorm` with `min(channels // 4, 32)` groups and eps 1e-5 (PyTorch's), as the official code."""
    return GroupNorm(groups=min(channels // 4, 32), epsilon=1e-5, name=name, dtype=dtype)
