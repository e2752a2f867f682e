"""One model definition, each backend's own distribution engine.

`setup_distribution(kind, ...)` returns a `Distributor` that the training recipe uses the same
way on every backend:

| kind             | backend     | engine                                                          |
|------------------|-------------|-----------------------------------------------------------------|
| `none`           | any         | one device                                                      |
| `data_parallel`  | jax         | `keras.distribution.DataParallel` (one SPMD program, batch split) |
| `model_parallel` | jax         | `keras.distribution.ModelParallel`: mesh (batch, model), big kernels sharded on "model" |
| `mirrored`       | tensorflow  | `tf.distribute.MirroredStrategy` (GPUs, or N logical CPUs)      |
| `tpu`            | tensorflow  | `tf.distribute.TPUStrategy` on `--tpu ADDRESS`                  |
| `ddp`            | torch       | `torch.distributed` process group (launched by `torchrun`): rank-sharded data, weights broadcast from rank 0, gradients all-reduced (mean) before every optimizer update |

Global batch semantics everywhere: `batch_size` is the number of clips per optimizer update
summed over replicas. Per-replica randomness: JAX draws over the global batch (one program), so
every example gets its own draws; under `tf.distribute` and DDP each replica runs the same
program, so `install_replica_hooks` folds the replica index into the seed that the model's
training `SeedGenerator` hands out (its state still advances identically on every replica).
"""

import contextlib
import os
import re

import keras
import numpy as np
from keras import ops

KINDS = ("none", "data_parallel", "model_parallel", "mirrored", "tpu", "ddp")
_BACKEND_OF_KIND = {
    "data_parallel": "jax",
    "model_parallel": "jax",
    "mirrored": "tensorflow",
    "tpu": "tensorflow",
    "ddp": "torch",
}
REPLICA_SEED_STRIDE = 1_000_003  # replica r draws with seed [s + r * stride, counter]


def check_distribution(kind, backend=None, tpu=None):
    """Validate a distribution `kind` for `backend` (default: the current one); raise ValueError."""
    backend = backend or keras.backend.backend()
    if kind not in KINDS:
        raise ValueError(f"Unknown distribution {kind!r}; choose one of {', '.join(KINDS)}")
    needed = _BACKEND_OF_KIND.get(kind)
    if needed and needed != backend:
        hint = {
            "jax": "data_parallel / model_parallel need KERAS_BACKEND=jax",
            "tensorflow": "mirrored / tpu need KERAS_BACKEND=tensorflow",
            "torch": "ddp needs KERAS_BACKEND=torch and a `torchrun --nproc_per_node N` launch",
        }[needed]
        raise ValueError(
            f"Distribution {kind!r} runs on the {needed} backend, but KERAS_BACKEND={backend}: {hint}. "
            f"Per backend: jax -> data_parallel|model_parallel, tensorflow -> mirrored|tpu, torch -> ddp.")
    if kind == "tpu" and not tpu:
        raise ValueError("Distribution 'tpu' needs a TPU address: --tpu grpc://HOST:8470 (or a Cloud TPU name, or 'local')")
    if kind != "tpu" and tpu:
        raise ValueError("--tpu ADDRESS goes with the 'tpu' distribution (KERAS_BACKEND=tensorflow)")
    return kind


class Distributor:
    """What the recipe needs to know about replicas; subclasses per engine."""

    kind = "none"
    num_replicas = 1  # replicas sharing one optimizer update
    rank = 0  # this process (DDP); 0 elsewhere
    world_size = 1  # processes (DDP); 1 elsewhere

    @property
    def is_chief(self):
        return self.rank == 0

    def scope(self):
        """Context in which the model and optimizer are created."""
        return contextlib.nullcontext()

    def per_process_batch(self, global_batch):
        """Clips each process's dataset yields per step (global batch / processes)."""
        return global_batch // self.world_size

    def shard_seed(self, seed):
        """Dataset seed of this process (differs per DDP rank, so ranks read different clips)."""
        return seed if self.world_size == 1 else int(np.random.SeedSequence([seed, self.rank]).generate_state(1)[0] & 0x7FFFFFFF)

    def install_replica_hooks(self, model):
        """Per-replica seed folding and loss scaling where the engine needs them."""

    def after_build(self, model):
        """Called once the model (and optimizer) variables exist."""

    def barrier(self):
        pass

    def shutdown(self):
        pass

    def describe(self):
        return f"{self.kind}: {self.num_replicas} replica(s)"


# --------------------------------------------------------------------------------------- JAX
class JaxDistributor(Distributor):
    def __init__(self, kind, num_devices=None, model_parallel=2):
        import jax

        devices = jax.devices()
        if num_devices:
            if num_devices > len(devices):
                raise ValueError(
                    f"--devices {num_devices} but JAX sees {len(devices)} device(s) ({devices[0].platform}); "
                    "on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before starting")
            devices = devices[:num_devices]
        self.kind = kind
        self.devices = devices
        self.model_parallel = int(model_parallel) if kind == "model_parallel" else 1
        if len(devices) % self.model_parallel:
            raise ValueError(f"{len(devices)} devices cannot form a mesh with model axis {self.model_parallel}")
        self.num_replicas = len(devices) // self.model_parallel
        self.distribution = None

    def configure(self, build_model_fn=None):
        """Set the global `keras.distribution` (before the model is created)."""
        dist = keras.distribution
        if self.kind == "data_parallel":
            self.distribution = dist.DataParallel(devices=self.devices)
        else:
            mesh = dist.DeviceMesh(
                shape=(self.num_replicas, self.model_parallel), axis_names=("batch", "model"), devices=self.devices)
            layout_map = dist.LayoutMap(mesh)
            for path, layout in model_parallel_layouts(build_model_fn(), self.model_parallel).items():
                layout_map[re.escape(path)] = layout
            self.distribution = dist.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
        dist.set_distribution(self.distribution)

    def describe(self):
        return f"{self.kind}: {len(self.devices)} {self.devices[0].platform} device(s), {self.num_replicas} data replica(s)"


def model_parallel_layouts(model, model_axis, min_size=4096):
    """`{variable path: layout}` sharding each large weight's last dim divisible by `model_axis`.

    The optimizer slots follow their variables. Small weights (norm scales, biases, the
    step counter, seed states) stay replicated.
    """
    layouts = {}
    for v in model.variables:
        shape = tuple(v.shape)
        if not shape or int(np.prod(shape)) < min_size or not v.trainable:
            continue
        for axis in range(len(shape) - 1, -1, -1):
            if shape[axis] % model_axis == 0:
                layouts[v.path] = tuple("model" if i == axis else None for i in range(len(shape)))
                break
    return layouts


# -------------------------------------------------------------------------------- TensorFlow
class TFDistributor(Distributor):
    def __init__(self, kind, num_devices=None, cpu_replicas=None, tpu=None):
        import tensorflow as tf

        self.kind = kind
        if kind == "tpu":
            try:
                resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
                tf.config.experimental_connect_to_cluster(resolver)
                tf.tpu.experimental.initialize_tpu_system(resolver)
            except Exception as e:  # noqa: BLE001 - re-raised with the address
                raise RuntimeError(f"Could not connect to the TPU at {tpu!r}: {type(e).__name__}: {e}") from e
            self.strategy = tf.distribute.TPUStrategy(resolver)
        else:
            if cpu_replicas:
                cpus = tf.config.list_physical_devices("CPU")
                try:
                    tf.config.set_logical_device_configuration(
                        cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(cpu_replicas))
                except RuntimeError as e:
                    raise RuntimeError(
                        "--cpu-replicas must take effect before TensorFlow initialises its devices "
                        f"(start a fresh process): {e}") from e
                devices = [d.name for d in tf.config.list_logical_devices("CPU")][: int(cpu_replicas)]
            else:
                devices = [d.name for d in tf.config.list_logical_devices("GPU")]
                if num_devices:
                    devices = devices[:num_devices]
                if not devices:
                    raise RuntimeError(
                        "MirroredStrategy found no GPU; on a CPU-only machine pass --cpu-replicas N "
                        "to mirror over N logical CPU devices")
            self.strategy = tf.distribute.MirroredStrategy(devices)
        self.num_replicas = int(self.strategy.num_replicas_in_sync)

    def scope(self):
        return self.strategy.scope()

    def install_replica_hooks(self, model):
        if self.num_replicas > 1:
            fold_replica_into_seed(model._train_seed, _tf_replica_id)
            if not getattr(type(model), "loss_scaled_for_replicas", False):  # until LinCAE does it itself
                scale_loss_by_replicas(model, self.num_replicas)

    def describe(self):
        return f"{self.kind}: {self.num_replicas} replica(s) {list(self.strategy.extended.worker_devices)}"


def _tf_replica_id():
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None:  # cross-replica context (not inside a step)
        return 0
    return ctx.replica_id_in_sync_group


def scale_loss_by_replicas(model, num_replicas):
    """Make `model.compute_loss` return loss / replicas under `tf.distribute`.

    Keras sums the replicas' gradients and multiplies the logged loss by the replica count
    (`unscale_loss_for_distribution`); its built-in losses pre-divide by the replica count, and
    `LinCAE.compute_loss` returns a plain mean, so without this the update would be
    `num_replicas` times the global-mean gradient.
    """
    original = model.compute_loss

    def compute_loss(*args, **kwargs):
        return original(*args, **kwargs) / float(num_replicas)

    model.compute_loss = compute_loss


# ------------------------------------------------------------------------------------ PyTorch
class TorchDDPDistributor(Distributor):
    kind = "ddp"

    def __init__(self):
        import torch
        import torch.distributed as dist

        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise RuntimeError(
                "--ddp expects to be launched by torchrun (RANK / WORLD_SIZE unset): "
                "torchrun --nproc_per_node N recipes/train.py --ddp ...")
        self.rank = int(os.environ["RANK"])
        self.world_size = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            backend = "nccl"
        else:
            backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        self.backend = backend
        self.num_replicas = self.world_size

    def install_replica_hooks(self, model):
        if self.world_size > 1:
            rank = self.rank
            fold_replica_into_seed(model._train_seed, lambda: rank)

    def after_build(self, model):
        """Broadcast every model variable from rank 0; average gradients before each update."""
        import torch.distributed as dist

        if self.world_size == 1:
            return
        for v in model.variables:
            dist.broadcast(v.value.data, src=0)
        allreduce_gradients(model.optimizer, self.world_size)

    def barrier(self):
        import torch.distributed as dist

        if self.world_size > 1:
            dist.barrier()

    def shutdown(self):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def describe(self):
        return f"ddp: rank {self.rank} of {self.world_size} ({self.backend})"


def allreduce_gradients(optimizer, world_size):
    """Wrap `optimizer.apply` so gradients are averaged over the process group first.

    This is what `DistributedDataParallel` does in its backward hooks; `model.fit` calls the
    Keras model directly (not a DDP wrapper), so the reduction happens at the optimizer, once
    per step, in one flattened buffer.
    """
    import torch
    import torch.distributed as dist

    original = optimizer.apply

    def apply(grads, trainable_variables=None):
        present = [g for g in grads if g is not None]
        if present:
            flat = torch.cat([g.reshape(-1) for g in present])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= world_size
            out, offset = [], 0
            for g in grads:
                if g is None:
                    out.append(None)
                    continue
                n = g.numel()
                out.append(flat[offset : offset + n].view_as(g))
                offset += n
            grads = out
        return original(grads, trainable_variables)

    optimizer.apply = apply


# ------------------------------------------------------------------------------------- shared
def fold_replica_into_seed(seed_generator, replica_id_fn):
    """Make `seed_generator.next()` return `[s + replica * stride, counter]` for this replica.

    The generator's state variable advances exactly as before (identically on every replica,
    so it stays consistent and checkpointable); only the seed handed to each random op
    differs between replicas.
    """
    original = seed_generator.next

    def next(ordered=True):  # noqa: A001 - the SeedGenerator method name
        seed = original(ordered=ordered)
        replica = ops.cast(replica_id_fn(), seed.dtype)
        offset = ops.stack([replica * REPLICA_SEED_STRIDE, ops.zeros_like(replica)])
        return seed + offset

    seed_generator.next = next
    seed_generator._replica_folded = True
    return seed_generator


def setup_distribution(kind="none", num_devices=None, model_parallel=2, cpu_replicas=None, tpu=None):
    """Create the `Distributor` for `kind` on the current backend (see module docstring)."""
    check_distribution(kind, tpu=tpu)
    if kind in ("data_parallel", "model_parallel"):
        return JaxDistributor(kind, num_devices, model_parallel)
    if kind in ("mirrored", "tpu"):
        return TFDistributor(kind, num_devices, cpu_replicas, tpu)
    if kind == "ddp":
        return TorchDDPDistributor()
    return Distributor()
