"""PaddedConv and TorchUniform: the standard layer checks, PyTorch padding modes and strides."""

import keras
import numpy as np
import pytest

from keras_lincae.layers.conv import PADDING_MODES, PaddedConv, TorchUniform, pointwise_dense
from keras_lincae.testing.helpers import to_numpy
from keras_lincae.testing.test_case import run_layer_test


def conv_kwargs(**overrides):
    return dict(dict(filters=4, kernel_size=(3,), strides=(1,), padding=(1,), padding_mode="zeros",
                     zero_init=False), **overrides)


def reference_conv1d(x, kernel, bias, stride, padding, mode):
    """float64 `torch.nn.Conv1d(padding=padding, padding_mode=mode)` on channels-last `x`."""
    padded = np.pad(x.astype("float64"), ((0, 0), (padding, padding), (0, 0)), mode=PADDING_MODES[mode])
    k = kernel.shape[0]
    steps = range(0, padded.shape[1] - k + 1, stride)
    return np.stack([np.einsum("bkc,kco->bo", padded[:, t : t + k], kernel) for t in steps], 1) + bias


@pytest.mark.parametrize("rank", [1, 2])
def test_layer_checks(rng, rank):
    shape = (2, 9, 6, 3)[: rank + 1] + (3,)
    kwargs = conv_kwargs(kernel_size=(3,) * rank, strides=(1,) * rank, padding=(1,) * rank)
    x = rng.standard_normal(shape).astype("float32")
    _, outputs = run_layer_test(PaddedConv, kwargs, x, expected_output_shape=shape[:-1] + (4,),
                   expected_num_trainable_weights=2)
    outputs = to_numpy(outputs)  # randomized weights: a non-trivial function of the input
    assert outputs.shape == shape[:-1] + (4,) and np.all(np.isfinite(outputs)) and outputs.std() > 0


@pytest.mark.parametrize("mode", sorted(PADDING_MODES))
@pytest.mark.parametrize("stride,padding", [(1, 1), (1, 2), (2, 2), (3, 0)])
def test_padding_modes_and_strides_match_torch_semantics(rng, mode, stride, padding):
    x = rng.standard_normal((2, 11, 3)).astype("float32")
    layer = PaddedConv(**conv_kwargs(kernel_size=(3,), strides=(stride,), padding=(padding,), padding_mode=mode))
    y = to_numpy(layer(x))
    assert y.shape == (2, (11 + 2 * padding - 3) // stride + 1, 4)
    kernel, bias = (to_numpy(w) for w in layer.conv.weights)
    np.testing.assert_allclose(y, reference_conv1d(x, kernel, bias, stride, padding, mode), atol=1e-5)


def test_default_padding_is_same_for_odd_kernels_and_zero_init(rng):
    x = rng.standard_normal((1, 8, 5, 2)).astype("float32")
    layer = PaddedConv(filters=3, kernel_size=(5, 3), strides=None, padding=None, padding_mode="zeros",
                       zero_init=True)
    assert to_numpy(layer(x)).shape == (1, 8, 5, 3) and layer.padding == (2, 1)
    assert not np.any(to_numpy(layer(x)))


def test_unknown_padding_mode():
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        PaddedConv(**conv_kwargs(padding_mode="mirror"))


@pytest.mark.parametrize("mode", ["fan_in", "xavier"])
def test_torch_uniform_bounds(mode):
    value = to_numpy(TorchUniform(mode)((3, 3, 8, 16)))
    fan_in, fan_out = 3 * 3 * 8, 16
    limit = 1 / np.sqrt(fan_in) if mode == "fan_in" else np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(value).max() <= limit and np.abs(value).max() > 0.9 * limit
    assert TorchUniform.from_config(TorchUniform(mode).get_config()).mode == mode
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'xavier'"):
        TorchUniform("normal")


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("shape", [(2, 7, 9, 6), (3, 11, 6)])
def test_pointwise_dense_is_the_dense_layer_over_channels(rng, shape, training):
    """`pointwise_dense(layer, x)` (a 1x1 convolution with the layer's weights where that is
    faster) equals `layer(x)` and `x @ kernel + bias`, in float32 and under mixed_bfloat16."""
    x = rng.standard_normal(shape).astype("float32")
    for dtype, tolerance in (("float32", 1e-5), ("mixed_bfloat16", 2e-2)):
        layer = keras.layers.Dense(5, bias_initializer="random_normal", dtype=dtype)
        layer.build(shape)
        ours = pointwise_dense(layer, x, training)
        assert tuple(ours.shape) == shape[:-1] + (5,)
        assert keras.backend.standardize_dtype(ours.dtype) == layer.compute_dtype
        expected = x @ to_numpy(layer.kernel) + to_numpy(layer.bias)
        for result in (ours, layer(x)):
            np.testing.assert_allclose(to_numpy(result).astype("float32"), expected, atol=tolerance, rtol=tolerance)
