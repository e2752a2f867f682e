"""Subprocess body of tests/test_distributed.py: a 2-replica tiny training run on the current
backend's distribution engine, then a JSON report of what each replica holds.

Run by the test (not collected by pytest): JAX with 2 forced host devices, TensorFlow
MirroredStrategy over 2 logical CPUs, PyTorch DDP under `torchrun --nproc_per_node 2`.
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
backend = os.environ["KERAS_BACKEND"]
if backend == "torch":
    import torch  # noqa: F401  (before tensorflow)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_lincae.models import augment  # noqa: E402
from keras_lincae.training import config as tc  # noqa: E402
from keras_lincae.training.trainer import Trainer  # noqa: E402


def digest(values):
    h = hashlib.sha256()
    for v in values:
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def main(run_dir, report_path, overrides):
    kind = {"jax": "data_parallel", "tensorflow": "mirrored", "torch": "ddp"}[backend]
    config = tc.load_config("tiny")
    config.update(steps=2, batch_size=4, checkpoint_every=2, log_every=1, warmup_steps=1, clip_frames=8,
                  num_log_examples=0, shuffle_buffer=8, distribution=kind)
    config["model"] = dict(config["model"], hop_size=128, attention_list=[0] * 5, attention_list_encoder=[0] * 5)
    if kind == "mirrored":
        config["cpu_replicas"] = 2
    config = tc.TrainConfig.from_dict(tc.apply_overrides(config, [tc.parse_override(o) for o in overrides]))
    trainer = Trainer(config, run_dir, verbose=False)
    trainer.fit()
    model, dist = trainer.model, trainer.dist
    report = {"kind": kind, "replicas": dist.num_replicas, "describe": dist.describe()}
    variables = model.trainable_variables + [model.training_step] + list(model.ema_weights)
    if backend == "jax":
        replica_digests = [digest([np.asarray(v.value.addressable_shards[r].data) for v in variables])
                           for r in range(2)]
        report["devices_per_variable"] = len(model.trainable_variables[0].value.sharding.device_set)
        import jax

        draws = augment.sample_gains(4, model._train_seed, 0.0, 3.0, 1.0, 0.05)  # the global batch
        sharding = keras.distribution.distribution().get_data_layout((4,)).backend_layout
        draws = jax.device_put(draws, sharding)
        replica_draws = [np.asarray(s.data).tolist() for s in sorted(draws.addressable_shards, key=lambda s: s.index[0].start)]
        steps = [int(np.asarray(s.data)) for s in model.training_step.value.addressable_shards]
    elif backend == "tensorflow":
        replica_digests = [digest([np.asarray(v.value.values[r]) for v in variables]) for r in range(2)]
        strategy = dist.strategy
        with strategy.scope():
            per_replica = strategy.run(lambda: augment.sample_gains(2, model._train_seed, 0.0, 3.0, 1.0, 0.05))
        replica_draws = [np.asarray(t).tolist() for t in strategy.experimental_local_results(per_replica)]
        steps = [int(np.asarray(v)) for v in model.training_step.value.values]
    else:
        import torch.distributed as tdist

        mine = digest([ops.convert_to_numpy(v) for v in variables])
        replica_digests = [None] * dist.world_size
        tdist.all_gather_object(replica_digests, mine)
        draw = ops.convert_to_numpy(augment.sample_gains(2, model._train_seed, 0.0, 3.0, 1.0, 0.05)).tolist()
        replica_draws = [None] * dist.world_size
        tdist.all_gather_object(replica_draws, draw)
        step = int(ops.convert_to_numpy(model.training_step))
        steps = [None] * dist.world_size
        tdist.all_gather_object(steps, step)
    report.update(replica_digests=replica_digests, replica_draws=replica_draws, training_steps=steps,
                  optimizer_iterations=int(ops.convert_to_numpy(model.optimizer.iterations)),
                  finite=bool(all(np.isfinite(ops.convert_to_numpy(v)).all() for v in model.trainable_variables)))
    if dist.is_chief:
        with open(report_path, "w") as f:
            json.dump(report, f)
    dist.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
