"""`run_layer_test`: the standard checks of one Keras layer on the current backend.

In the spirit of KerasHub's `TestCase.run_layer_test`, as a plain function for pytest
test functions: build and call, output shapes and dtypes, `get_config`/`from_config`,
a `.keras` save/load of a model wrapping the layer, and a mixed-precision call.
"""

import os
import tempfile

import keras
import numpy as np

from keras_lincae.testing.helpers import randomize_weights, to_numpy


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    call_kwargs=None,
    expected_output_dtype="float32",
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    mixed_precision_policy="mixed_bfloat16",
    mixed_precision_tolerance=0.05,
    expected_mixed_output_dtype=None,
    randomize=True,
    seed=0,
):
    """Run the standard layer checks; returns `(layer, outputs)` for layer-specific checks.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict, every constructor argument (no `dtype`).
        input_data: one array, or a tuple of arrays passed positionally to `call`;
            the first axis of each is the batch.
        expected_output_shape: a shape tuple, or a list of them for a list output.
        call_kwargs: dict of extra (non-tensor) call arguments, e.g. `training=False`.
        expected_output_dtype: dtype of every float32-policy output.
        expected_num_trainable_weights, expected_num_non_trainable_weights: int or None.
        mixed_precision_policy: the policy of the mixed-precision call (None to skip it).
        mixed_precision_tolerance: largest relative L2 distance of each mixed-precision
            output from the float32 output (same weights).
        expected_mixed_output_dtype: dtype of the mixed-precision outputs; None: the
            layer's compute dtype under that policy (e.g. "bfloat16").
        randomize: give every weight a non-trivial value first (`randomize_weights`),
            so zero-initialised output layers do not hide anything.
        seed: the seed of `randomize_weights`.

    The checks: the symbolic output shape (a functional model around the layer) and the
    eager one equal `expected_output_shape` (symbolic batch `None`); outputs are finite;
    a layer rebuilt `from_config(get_config())` with the same weights, and the model
    reloaded from a `.keras` file, give identical outputs; the mixed-precision layer
    keeps float32 variables, computes in its policy's compute dtype and stays close.
    """
    call_kwargs = dict(call_kwargs or {})
    inputs = tuple(input_data) if isinstance(input_data, (tuple, list)) else (input_data,)
    inputs = tuple(np.asarray(x) for x in inputs)

    layer = layer_cls(**init_kwargs)
    outputs = layer(*inputs, **call_kwargs)
    if randomize:
        randomize_weights(layer, seed=seed)
        outputs = layer(*inputs, **call_kwargs)
    expected = _as_list(expected_output_shape, is_leaf=_is_shape)
    _check_outputs(outputs, expected, expected_output_dtype, f"{layer_cls.__name__} output")
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, len(layer.trainable_weights)
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, len(
            layer.non_trainable_weights
        )

    config = layer.get_config()
    clone = layer_cls.from_config(config)
    clone(*inputs, **call_kwargs)
    clone.set_weights(layer.get_weights())
    assert clone.get_config() == config, "get_config() changes after from_config"
    _assert_identical(clone(*inputs, **call_kwargs), outputs, "from_config(get_config()) output")

    model = _wrap_in_model(layer, inputs, call_kwargs)
    symbolic = [tuple(t.shape) for t in _as_list(model.outputs)]
    assert symbolic == [(None, *shape[1:]) for shape in expected], f"symbolic output shapes {symbolic}"
    reference = model(list(inputs))
    _assert_identical(reference, outputs, "the functional model's output")
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "layer_test.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
    _assert_identical(restored(list(inputs)), reference, "the reloaded .keras model's output")

    if mixed_precision_policy:
        _check_mixed_precision(layer_cls, init_kwargs, layer, inputs, call_kwargs, outputs,
                               mixed_precision_policy, mixed_precision_tolerance, expected_mixed_output_dtype)
    return layer, outputs


def _is_shape(x):
    return isinstance(x, tuple) and all(d is None or isinstance(d, int) for d in x)


def _as_list(x, is_leaf=None):
    """`x` as a list: a list/tuple of outputs (or of shapes) as is, a single one in a list."""
    if is_leaf is not None and is_leaf(x):
        return [x]
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _check_outputs(outputs, expected_shapes, dtype, what):
    outputs = _as_list(outputs)
    assert len(outputs) == len(expected_shapes), f"{what}: {len(outputs)} outputs, expected {len(expected_shapes)}"
    for i, (output, shape) in enumerate(zip(outputs, expected_shapes)):
        assert tuple(output.shape) == tuple(shape), f"{what} {i}: shape {tuple(output.shape)}, expected {shape}"
        actual = keras.backend.standardize_dtype(output.dtype)
        assert actual == dtype, f"{what} {i}: dtype {actual}, expected {dtype}"
        assert np.isfinite(to_numpy(output).astype("float32")).all(), f"{what} {i} is not finite"


def _assert_identical(actual, expected, what):
    for i, (a, b) in enumerate(zip(_as_list(actual), _as_list(expected))):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=f"{what} {i} differs")


def _wrap_in_model(layer, inputs, call_kwargs):
    """A functional `keras.Model` whose only layer is `layer` (batch axis `None`)."""
    symbolic = [keras.Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in inputs]
    return keras.Model(symbolic, layer(*symbolic, **call_kwargs))


def _check_mixed_precision(layer_cls, init_kwargs, layer, inputs, call_kwargs, outputs, policy, tolerance,
                           expected_dtype):
    """The layer built under `policy` (same weights) against the float32 outputs."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        mixed = layer_cls(**init_kwargs)
    finally:
        keras.config.set_dtype_policy(previous)
    mixed(*inputs, **call_kwargs)
    mixed.set_weights(layer.get_weights())
    for variable in mixed.weights:
        assert keras.backend.standardize_dtype(variable.dtype) == "float32", variable.path
    mixed_outputs = _as_list(mixed(*inputs, **call_kwargs))
    expected_dtype = expected_dtype or mixed.compute_dtype
    for i, (low, full) in enumerate(zip(mixed_outputs, _as_list(outputs))):
        dtype = keras.backend.standardize_dtype(low.dtype)
        assert dtype == expected_dtype, f"{policy} output {i}: dtype {dtype}, expected {expected_dtype}"
        low, full = to_numpy(low).astype("float64"), to_numpy(full).astype("float64")
        assert np.isfinite(low).all(), f"{policy} output {i} is not finite"
        error = np.linalg.norm(low - full) / max(np.linalg.norm(full), 1e-12)
        assert error <= tolerance, f"{policy} output {i}: relative L2 error {error:.3g} > {tolerance}"
