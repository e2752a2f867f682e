"""Residual block of the encoder, decoder and U-Net (GroupNorm, SiLU, conv, optional attention)."""

import keras
from keras import ops

from keras_lincae.layers.conv import PaddedConv, pointwise_dense, torch_like_initializer
from keras_lincae.layers.norm import group_norm
from keras_lincae.layers.self_attention import SelfAttention


@keras.saving.register_keras_serializable(package="keras_lincae")
class ResBlock(keras.layers.Layer):
    """`res(x) + conv2(act(norm2(conv1(act(norm1(x))) + proj(emb))))`, then attention.

    Args:
        in_channels: int. Input channels.
        out_channels: int. Output channels (a 1x1 conv maps the residual when different).
        cond_channels: int or None. Size of the noise-level embedding added after conv1.
        kernel_size: int, 3.
        normalize: bool, True. GroupNorm before each activation.
        leaky: bool, False. LeakyReLU(0.2) instead of SiLU.
        attention: bool, False. Self-attention after the residual sum.
        heads: int, 4. Attention heads.
        use_2d: bool. `(batch, time, freq, ch)` inputs instead of `(batch, time, ch)`.
        normalize_residual: bool, False. Take the residual after norm1.
        min_res_dropout: int, 16. Dropout only when the time axis is at most this long.
        dropout_rate: float, 0.
        init_as_zero: bool, True. Zero-init conv2, the embedding projection and
            the attention output.
        padding_mode: str, "zeros".

    Call arguments:
        x: `(batch, time, [freq,] in_channels)`.
        emb: `(batch, cond_channels)` or None.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        cond_channels=None,
        kernel_size=3,
        normalize=True,
        leaky=False,
        attention=False,
        heads=4,
        use_2d=False,
        normalize_residual=False,
        min_res_dropout=16,
        dropout_rate=0.0,
        init_as_zero=True,
        padding_mode="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.cond_channels = None if cond_channels is None else int(cond_channels)
        self.kernel_size = int(kernel_size)
        self.normalize = bool(normalize)
        self.leaky = bool(leaky)
        self.attention = bool(attention)
        self.heads = int(heads)
        self.use_2d = bool(use_2d)
        self.normalize_residual = bool(normalize_residual)
        self.min_res_dropout = int(min_res_dropout)
        self.dropout_rate = float(dropout_rate)
        self.init_as_zero = bool(init_as_zero)
        self.padding_mode = padding_mode

        policy = self.dtype_policy
        kernel = (self.kernel_size,) * (2 if use_2d else 1)
        self.norm1 = group_norm(in_channels, "norm1", policy) if normalize else None
        self.norm2 = group_norm(out_channels, "norm2", policy) if normalize else None
        self.conv1 = PaddedConv(
            out_channels, kernel, padding_mode=padding_mode, name="conv1", dtype=policy
        )
        self.conv2 = PaddedConv(
            out_channels,
            kernel,
            padding_mode=padding_mode,
            zero_init=init_as_zero,
            name="conv2",
            dtype=policy,
        )
        self.res_conv = (
            keras.layers.Dense(
                out_channels,
                kernel_initializer=torch_like_initializer(),
                name="res_conv",
                dtype=policy,
            )
            if in_channels != out_channels
            else None
        )
        self.proj_emb = (
            keras.layers.Dense(
                out_channels,
                kernel_initializer="zeros" if init_as_zero else torch_like_initializer(),
                name="proj_emb",
                dtype=policy,
            )
            if cond_channels is not None
            else None
        )
        self.dropout = keras.layers.Dropout(dropout_rate, dtype=policy) if dropout_rate else None
        self.att = (
            SelfAttention(
                out_channels, heads, use_2d=use_2d, zero_init=init_as_zero, name="att", dtype=policy
            )
            if attention
            else None
        )

    def build(self, input_shape):
        out_shape = tuple(input_shape[:-1]) + (self.out_channels,)
        if self.normalize:
            self.norm1.build(input_shape)
            self.norm2.build(out_shape)
        self.conv1.build(input_shape)
        self.conv2.build(out_shape)
        if self.res_conv is not None:
            self.res_conv.build(input_shape)
        if self.proj_emb is not None:
            self.proj_emb.build((None, self.cond_channels))
        if self.att is not None:
            self.att.build(out_shape)
        self.built = True

    def _activation(self, x):
        return ops.leaky_relu(x, 0.2) if self.leaky else ops.silu(x)

    def call(self, x, emb=None, training=None):
        residual = x
        if self.normalize:
            x = self.norm1(x)
        if self.normalize_residual:
            residual = x
        x = self.conv1(self._activation(x))
        if emb is not None:
            bias = self.proj_emb(emb)
            x = x + ops.reshape(bias, (-1,) + (1,) * (x.ndim - 2) + (self.out_channels,))
        if self.normalize:
            x = self.norm2(x)
        x = self._activation(x)
        time_steps = x.shape[1]
        if self.dropout is not None and time_steps is not None and time_steps <= self.min_res_dropout:
            x = self.dropout(x, training=training)
        x = self.conv2(x)
        if self.res_conv is not None:
            residual = pointwise_dense(self.res_conv, residual, training)
        x = x + residual
        if self.att is not None:
            x = self.att(x)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            cond_channels=self.cond_channels,
            kernel_size=self.kernel_size,
            normalize=self.normalize,
            leaky=self.leaky,
            attention=self.attention,
            heads=self.heads,
            use_2d=self.use_2d,
            normalize_residual=self.normalize_residual,
            min_res_dropout=self.min_res_dropout,
            dropout_rate=self.dropout_rate,
            init_as_zero=self.init_as_zero,
            padding_mode=self.padding_mode,
        )
        return config
