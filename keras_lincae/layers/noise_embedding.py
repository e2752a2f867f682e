"""Sinusoidal embedding of the (log) noise level."""

import math

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_lincae")
class NoiseLevelEmbedding(keras.layers.Layer):
    """Embed a scalar per example as `[sin(x w), cos(x w)]`.

    `use_fourier=False`: fixed positional frequencies `w_k = 10000 ** (-k / (n/2 - 1))`.
    `use_fourier=True`: random Gaussian Fourier features `w = 2 pi N(0, scale)`
    (a non-trainable weight, as in the official code).

    Args:
        embedding_size: int (even).
        use_fourier: bool.
        fourier_scale: float. Std of the Fourier frequencies (used when `use_fourier`).
        max_positions: int, 10000.

    Call arguments:
        x: `(batch,)`. Returns `(batch, embedding_size)`.
    """

    def __init__(self, embedding_size, use_fourier, fourier_scale, max_positions=10000, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.embedding_size = int(embedding_size)
        self.use_fourier = bool(use_fourier)
        self.fourier_scale = float(fourier_scale)
        self.max_positions = int(max_positions)

    def build(self, input_shape=None):
        half = self.embedding_size // 2
        if self.use_fourier:
            self.fourier_weights = self.add_weight(
                shape=(half,),
                initializer=keras.initializers.RandomNormal(stddev=self.fourier_scale),
                trainable=False,
                name="fourier_weights",
            )
        else:
            exponents = np.arange(half, dtype=np.float32) / (half - 1)
            self._frequencies = ((1.0 / self.max_positions) ** exponents).astype("float32")
        self.built = True

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.use_fourier:
            projected = x[:, None] * self.fourier_weights[None, :] * (2.0 * math.pi)
        else:
            projected = x[:, None] * self._frequencies[None, :]
        return ops.concatenate([ops.sin(projected), ops.cos(projected)], axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            embedding_size=self.embedding_size,
            use_fourier=self.use_fourier,
            fourier_scale=self.fourier_scale,
            max_positions=self.max_positions,
        )
        return config
