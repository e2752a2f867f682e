"""Pre-normalised multi-head self-attention with a residual connection."""

import keras
from keras import ops

from keras_lincae.layers.conv import TorchUniform, torch_like_initializer
from keras_lincae.layers.norm import group_norm


@keras.saving.register_keras_serializable(package="keras_lincae")
class SelfAttention(keras.layers.Layer):
    """`x + MHA(GroupNorm(x))`; 2-D inputs attend over frequency within each frame.

    Args:
        channels: int. Embedding size (input channels).
        heads: int, 4. Attention heads.
        normalize: bool, True. GroupNorm before attention.
        use_2d: bool. Input is `(batch, time, freq, channels)` (attention over
            `freq` per time frame) rather than `(batch, time, channels)`.
        zero_init: bool, True. Zero-initialise the output projection.

    Call arguments:
        x: `(batch, time, channels)` or `(batch, time, freq, channels)`.
    """

    def __init__(self, channels, heads=4, normalize=True, use_2d=False, zero_init=True, **kwargs):
        super().__init__(**kwargs)
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels = int(channels)
        self.heads = int(heads)
        self.normalize = bool(normalize)
        self.use_2d = bool(use_2d)
        self.zero_init = bool(zero_init)
        policy = self.dtype_policy
        self.norm = group_norm(channels, name="norm", dtype=policy) if normalize else None
        self.qkv = keras.layers.Dense(
            3 * channels, kernel_initializer=TorchUniform("xavier"), name="qkv", dtype=policy
        )
        self.out = keras.layers.Dense(
            channels,
            kernel_initializer="zeros" if zero_init else torch_like_initializer(),
            name="out",
            dtype=policy,
        )

    def build(self, input_shape):
        if self.norm is not None:
            self.norm.build(input_shape)
        self.qkv.build((None, None, self.channels))
        self.out.build((None, None, self.channels))
        self.built = True

    def call(self, x):
        residual = x
        if self.norm is not None:
            x = self.norm(x)
        shape = ops.shape(x)
        if self.use_2d:
            x = ops.reshape(x, (-1, shape[2], self.channels))
        length = ops.shape(x)[1]
        head_dim = self.channels // self.heads
        qkv = ops.reshape(self.qkv(x), (-1, length, 3, self.heads, head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        x = ops.dot_product_attention(q, k, v)
        x = self.out(ops.reshape(x, (-1, length, self.channels)))
        if self.use_2d:
            x = ops.reshape(x, shape)
        return x + residual

    def get_config(self):
        config = super().get_config()
        config.update(
            channels=self.channels,
            heads=self.heads,
            normalize=self.normalize,
            use_2d=self.use_2d,
            zero_init=self.zero_init,
        )
        return config
