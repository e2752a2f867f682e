"""The one place that knows about backends: compiling inference functions, training inputs.

Distribution engines (one per backend) are in `keras_lincae.backend_dispatch.distribute`.
"""

import contextlib

import keras


def prefers_channels_first_conv():
    """True on torch, whose convolutions copy channels-last inputs to channels-first and back;
    a channels-first *view* of channels-last memory is convolved without copies
    (`channels_first_conv`)."""
    return keras.backend.backend() == "torch"


def has_channels_last_group_norm():
    """True on torch, where `channels_last_group_norm` replaces the generic `keras.ops` maths."""
    return keras.backend.backend() == "torch"


def channels_first_conv(x, kernel, bias, strides, padding):
    """Torch: channels-last `x` `(batch, *spatial, in)` convolved with Keras `kernel`
    `(*k, in, out)`, `bias` `(out,)` and symmetric zero `padding` per spatial axis, as one
    `torch.nn.functional.convNd` on a channels-first *view* (no layout copies; bias and padding
    inside the kernel). Returns `(batch, *spatial', out)`, a channels-last view."""
    import torch.nn.functional as F

    rank = len(strides)
    conv = F.conv1d if rank == 1 else F.conv2d
    weight = kernel.permute(rank + 1, rank, *range(rank))  # (out, in, *k)
    y = conv(x.permute(0, rank + 1, *range(1, rank + 1)), weight, bias, tuple(strides), tuple(padding))
    return y.permute(0, *range(2, rank + 2), 1)


def channels_last_group_norm(x, groups, gamma, beta, epsilon):
    """Torch: group norm of channels-last `x` `(batch, ..., channels)` without layout copies, in
    float32: per-channel reductions over positions (contiguous, fast), two-pass variance (exact
    to ~1e-6, where `F.group_norm`'s channels-last kernel is 1e-3 off on maps with an offset),
    then one fused multiply-add. Returns `x`'s shape and dtype."""
    import torch

    batch, channels = x.shape[0], x.shape[-1]
    flat = x.float().reshape(batch, -1, channels)

    def group_mean(per_channel):  # (batch, 1, channels) -> the mean of each group, per channel
        grouped = per_channel.reshape(batch, 1, groups, -1).mean(dim=-1, keepdim=True)
        return grouped.expand(batch, 1, groups, channels // groups).reshape(batch, 1, channels)

    mean = group_mean(flat.mean(dim=1, keepdim=True))
    variance = group_mean((flat - mean).square_().mean(dim=1, keepdim=True))
    scale = gamma.float() * torch.rsqrt(variance + epsilon)
    return torch.addcmul(beta.float() - mean * scale, flat, scale).reshape(x.shape).to(x.dtype)


def computed_after(tensor, predecessor):
    """`tensor`, used only once `predecessor` exists. In TensorFlow graphs this is a control
    dependency: the executor otherwise computes every branch that is ready (the decoder's
    latent mixes, which depend on the latents alone) at the start and holds them all, 1.1 GB
    more at 10 s of audio. Eager code and XLA's memory-aware scheduler need nothing."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            with tf.control_dependencies([predecessor]):
                return tf.identity(tensor)
    return tensor


def auto_jit_compile():
    """What `LinCAE.compile(jit_compile="auto")` means: False for TensorFlow without a GPU, whose
    own (oneDNN) kernels run the training step 1.7x faster than XLA there and compile in seconds
    (benchmarks/train_step.py); Keras' "auto" elsewhere."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            return False
    return "auto"


def compile_inference_function(model, fn):
    """Compile `fn(*tensors)` that reads `model`'s variables: `jax.jit` (stateless),
    `tf.function`, or eager `torch.inference_mode` on torch (`torch.compile` warms up for minutes
    with no gain: benchmarks/README.md). Returns a callable with the same signature."""
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

        def inference_mode(*args):
            with torch.inference_mode():  # cheaper than no_grad: no view or version tracking
                outputs = fn(*args)
            return keras.tree.map_structure(torch.clone, outputs)  # plain tensors, usable by autograd

        return inference_mode
    return fn


def compile_traced(fn):
    """`fn` traced by the backend's compiler: `jax.jit`, `tf.function`, or eager on torch
    (for stateless functions of tensors, e.g. the training maths in tests)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    return fn


def tensorflow_available():
    """True when TensorFlow imports (tf.data input pipelines, TensorBoard files)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def fit_input(batches, batch, clip_samples):
    """`model.fit` input for a generator of `(batch, clip_samples)` float32 numpy batches: a
    `tf.data.Dataset` on TensorFlow (static batch size, which Keras' generator adapter drops),
    else a generator of `(clips,)` tuples."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec((batch, clip_samples), tf.float32)
        return tf.data.Dataset.from_generator(lambda: batches, output_signature=spec)
    return ((clips,) for clips in batches)


def compiles_per_input_shape():
    """True where each new input shape compiles a new function (`jax.jit`, `tf.function`): batched
    loops then pad their last chunk to the full size so one compiled function serves every chunk
    (eager torch needs no padding)."""
    return keras.backend.backend() in ("jax", "tensorflow")


@contextlib.contextmanager
def persistent_compilation_cache(directory):
    """On JAX, cache XLA compilations in `directory` for this process and yield the environment
    variables that do the same in subprocesses; elsewhere (nothing to cache) yield `{}`."""
    if keras.backend.backend() != "jax":
        yield {}
        return
    import jax

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    old = {name: getattr(jax.config, name) for name in names}
    values = dict(zip(names, (directory, 0.0, 0)))
    for name, value in values.items():
        jax.config.update(name, value)
    _reset_jax_compilation_cache()
    try:
        yield {name.upper(): str(value) for name, value in values.items()}
    finally:
        for name, value in old.items():
            jax.config.update(name, value)
        _reset_jax_compilation_cache()


def _reset_jax_compilation_cache():
    """JAX reads the cache settings once per process; make it read them again (best effort:
    the reset lives in a private module, and the cache is only an optimisation)."""
    try:
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
