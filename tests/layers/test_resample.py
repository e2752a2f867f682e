"""Resample: the standard layer checks, up/down shapes on both axes or frequency only."""

import numpy as np
import pytest

from keras_lincae.layers.resample import Resample
from keras_lincae.testing.helpers import to_numpy
from keras_lincae.testing.test_case import run_layer_test


def resample_kwargs(**overrides):
    return dict(dict(in_channels=8, out_channels=4, direction="down", frequency_only=False, normalize=True,
                     padding_mode="zeros"), **overrides)


@pytest.mark.parametrize("direction,frequency_only,out_shape", [
    ("down", False, (2, 4, 8, 4)),   # 2 x 2 on (time, freq), stride-2 3x3 conv
    ("down", True, (2, 8, 4, 4)),    # x4 on freq only
    ("up", False, (2, 16, 32, 4)),
    ("up", True, (2, 8, 64, 4)),
])
def test_layer_checks_and_shapes(rng, direction, frequency_only, out_shape):
    x = rng.standard_normal((2, 8, 16, 8)).astype("float32")
    kwargs = resample_kwargs(direction=direction, frequency_only=frequency_only)
    layer, _ = run_layer_test(Resample, kwargs, x, expected_output_shape=out_shape,
                              expected_num_trainable_weights=4)
    assert layer.factor == ((1, 4) if frequency_only else (2, 2))
    assert layer.conv.kernel_size == ((1, 5) if frequency_only else (3, 3))


@pytest.mark.parametrize("frequency_only", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_upsampling_is_the_conv_of_the_repeated_map(rng, frequency_only, padding_mode):
    """Up = nearest-neighbour repeat + stride-1 conv (along frequency computed polyphase, without
    the repeated map): the layer's own conv on the `np.repeat`ed input, at every border, in every
    padding mode."""
    x = rng.standard_normal((2, 3, 5, 3)).astype("float32")
    up = Resample(**resample_kwargs(in_channels=3, out_channels=4, direction="up", normalize=False,
                                    frequency_only=frequency_only, padding_mode=padding_mode))
    time_factor, freq_factor = (1, 4) if frequency_only else (2, 2)
    repeated = np.repeat(np.repeat(x, time_factor, axis=1), freq_factor, axis=2)
    upsampled = to_numpy(up(x))
    expected = to_numpy(up.conv(repeated))
    assert upsampled.shape == expected.shape == (2, 3 * time_factor, 5 * freq_factor, 4)
    np.testing.assert_allclose(upsampled, expected, atol=1e-5)


def test_out_channels_default_and_bad_direction():
    assert Resample(**resample_kwargs(out_channels=None)).out_channels == 8
    with pytest.raises(ValueError, match="direction must be 'down' or 'up'"):
        Resample(**resample_kwargs(direction="sideways"))
