"""The one place that knows about backends: compiling pure inference functions."""

import keras


def prefers_channels_first_conv():
    """True on torch, whose convolutions copy channels-last inputs to channels-first and back;
    a channels-first *view* of channels-last memory is convolved without copies."""
    return keras.backend.backend() == "torch"


def compile_inference_function(model, fn):
    """Compile `fn(*tensors)` that reads `model`'s variables: `jax.jit` (stateless),
    `tf.function`, or `torch.no_grad` eager on torch. Returns a callable with the same signature."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.jit
        def stateless(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(model.variables, values))):
                return fn(*args)

        return lambda *args: stateless([v.value for v in model.variables], *args)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "torch":
        import torch

        def no_grad(*args):
            with torch.no_grad():
                return fn(*args)

        return no_grad
    return fn


def compiles_per_input_shape():
    """True where each new input shape compiles a new function (`jax.jit`, `tf.function`): batched
    loops then pad their last chunk to the full size so one compiled function serves every chunk
    (eager torch needs no padding)."""
    return keras.backend.backend() in ("jax", "tensorflow")
