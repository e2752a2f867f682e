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


def pointwise_conv_is_faster(training):
    """True where a Dense over the channels of a map runs faster as a 1x1 convolution
    (`layers.conv.pointwise_dense`): torch always (oneDNN, 2-3x), JAX when `training` (XLA:CPU's
    matmul gradient copies the map transposed; the training step is 1.3x faster, but its 1x1
    convolution decodes 17 % slower in 0.5 GB more); TensorFlow never (no difference)."""
    backend = keras.backend.backend()
    return backend == "torch" or (backend == "jax" and bool(training))


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
    then one fused multiply-add; the gradient is computed in closed form (five passes over the
    map where autograd of these ops takes about fifteen). Returns `x`'s shape and dtype."""
    import torch

    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    if torch.is_grad_enabled() and (x.requires_grad or gamma.requires_grad or beta.requires_grad):
        out = _group_norm_function()(flat, gamma, beta, groups, epsilon)
    else:
        out = _group_norm_forward(flat, groups, gamma, beta, epsilon)[0]
    return out.reshape(x.shape).to(x.dtype)


def _group_means(per_channel, groups):
    """`(batch, 1, channels)` -> the mean over each group of channels, broadcast per channel."""
    batch, _, channels = per_channel.shape
    grouped = per_channel.reshape(batch, 1, groups, -1).mean(dim=-1, keepdim=True)
    return grouped.expand(batch, 1, groups, channels // groups).reshape(batch, 1, channels)


def _group_norm_forward(flat, groups, gamma, beta, epsilon):
    """Torch: `(batch, positions, channels)` -> (normalised float32 map, per-channel mean,
    per-channel 1 / std), each statistic `(batch, 1, channels)`."""
    import torch

    flat = flat.float()
    mean = _group_means(flat.mean(dim=1, keepdim=True), groups)
    variance = _group_means((flat - mean).square_().mean(dim=1, keepdim=True), groups)
    inv_std = torch.rsqrt(variance + epsilon)
    scale = gamma.float() * inv_std
    return torch.addcmul(beta.float() - mean * scale, flat, scale), mean, inv_std


def _group_norm_function():
    """The `torch.autograd.Function` of `channels_last_group_norm` (built once, on first use)."""
    global _GROUP_NORM_FUNCTION
    if _GROUP_NORM_FUNCTION is None:
        import torch

        class ChannelsLastGroupNorm(torch.autograd.Function):
            @staticmethod
            def forward(ctx, flat, gamma, beta, groups, epsilon):
                out, mean, inv_std = _group_norm_forward(flat, groups, gamma, beta, epsilon)
                ctx.save_for_backward(flat, gamma, mean, inv_std)
                ctx.groups, ctx.gamma_dtype, ctx.beta_dtype = groups, gamma.dtype, beta.dtype
                return out

            @staticmethod
            def backward(ctx, grad):
                # dx = inv_std * (g - mean_group(g) - x_hat * mean_group(g * x_hat)), g = grad * gamma
                flat, gamma, mean, inv_std = ctx.saved_tensors
                x, gamma = flat.float(), gamma.float()
                grad_sum = grad.sum(dim=1, keepdim=True)  # (batch, 1, channels)
                grad_x_hat = ((grad * x).sum(dim=1, keepdim=True) - mean * grad_sum) * inv_std
                per_group = x.shape[1]  # positions; _group_means averages the channels
                g_mean = _group_means(gamma * grad_sum, ctx.groups) / per_group
                gx_mean = _group_means(gamma * grad_x_hat, ctx.groups) / per_group
                x_coef = -inv_std.square() * gx_mean
                offset = -inv_std * g_mean - mean * x_coef
                grad_flat = torch.addcmul(torch.addcmul(offset, x, x_coef), grad, gamma * inv_std)
                return (grad_flat.to(flat.dtype), grad_x_hat.sum(dim=(0, 1)).to(ctx.gamma_dtype),
                        grad_sum.sum(dim=(0, 1)).to(ctx.beta_dtype), None, None)

        _GROUP_NORM_FUNCTION = ChannelsLastGroupNorm.apply
    return _GROUP_NORM_FUNCTION


_GROUP_NORM_FUNCTION = None


def updates_variables_in_bulk():
    """True on torch, where an eager optimizer step pays a dispatch per op and variable: RAdam
    there updates every variable at once (`bulk_radam_update`)."""
    return keras.backend.backend() == "torch"


def bulk_radam_update(variables, grads, momentums, velocities, *, learning_rate, beta_1, beta_2, epsilon,
                      weight_decay, decoupled, bias_correction1, bias_correction2, rectification):
    """Torch: one RAdam step (`training.optimizers.RAdam`) on all `variables` with `torch._foreach_*`
    kernels. The step's scalars come from the caller: `bias_correction{1,2}` = `1 - beta^t`,
    `rectification` = `r_t`, or None while `rho_t <= 5` (the momentum-only step)."""
    import torch

    with torch.no_grad():
        params, m, v = ([x.value for x in xs] for xs in (variables, momentums, velocities))
        grads = [g.to(p.dtype) for g, p in zip(grads, params)]
        if weight_decay and decoupled:
            torch._foreach_mul_(params, 1.0 - learning_rate * weight_decay)
        elif weight_decay:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_lerp_(m, grads, 1.0 - beta_1)
        torch._foreach_mul_(v, beta_2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta_2)
        if rectification is None:
            torch._foreach_add_(params, m, alpha=-learning_rate / bias_correction1)
            return
        denominator = torch._foreach_sqrt(v)
        torch._foreach_add_(denominator, epsilon)
        step = learning_rate * rectification * bias_correction2 ** 0.5 / bias_correction1
        torch._foreach_addcdiv_(params, m, denominator, value=-step)


def value_if_known(tensor):
    """`tensor` as numpy where its value exists already (eager execution: torch, eager TensorFlow
    or JAX), or None inside a trace (`jax.jit`, `tf.function`, `torch.compile`), where Python
    cannot branch on it."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if isinstance(tensor, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
    return keras.ops.convert_to_numpy(tensor)


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


def no_gradient():
    """A context for computations whose result is a stop-gradient target: torch's `no_grad`
    (eager torch otherwise records the graph and keeps its activations alive for nothing);
    elsewhere nothing (`ops.stop_gradient` on the result is enough for traced gradients)."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


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
