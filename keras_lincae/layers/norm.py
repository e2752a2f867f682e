"""GroupNorm with the official group rule."""

import keras


def group_norm(channels, name=None, dtype=None):
    """`GroupNormalization` with `min(channels // 4, 32)` groups and eps 1e-5 (PyTorch's)."""
    return keras.layers.GroupNormalization(
        groups=min(channels // 4, 32), epsilon=1e-5, name=name, dtype=dtype
    )
