"""Two-replica training with the current backend's engine, in a subprocess:

- jax: `keras.distribution.DataParallel` over 2 host CPU devices (XLA_FLAGS forces them);
- tensorflow: `tf.distribute.MirroredStrategy` over 2 logical CPU devices;
- torch: DDP (gloo) with `torchrun --nproc_per_node 2`.

After 2 steps of the tiny recipe, every replica holds the same weights, EMA shadows and step
counter, the optimizer counted 2 updates, and the replicas' augmentation draws differ.
"""

import json
import os
import subprocess
import sys
import time

import keras

from keras_lincae.testing.compilation_cache import jax_compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "distributed_worker.py")


def test_two_replicas_stay_in_sync_and_draw_differently(tmp_path):
    backend = keras.backend.backend()
    with jax_compilation_cache() as cache_env:
        env = dict(os.environ, KERAS_BACKEND=backend, **cache_env)
    report_path = str(tmp_path / "report.json")
    args = [WORKER, str(tmp_path / "run"), report_path]
    if backend == "jax":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
        command = [sys.executable, *args]
    elif backend == "torch":
        torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
        command = [torchrun, "--standalone", "--nproc_per_node", "2", *args] if os.path.exists(torchrun) else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
        env["OMP_NUM_THREADS"] = "1"
    else:
        command = [sys.executable, *args]
    start = time.time()
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(report_path) as f:
        report = json.load(f)
    print(f"{backend}: {report['describe']} in {time.time() - start:.1f} s")
    assert report["replicas"] == 2
    if backend == "jax":
        assert report["devices_per_variable"] == 2  # each weight lives on both devices
    digests = report["replica_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # weights, EMA shadows, counter
    assert report["training_steps"] == [2, 2] or report["training_steps"] == [2] * len(report["training_steps"])
    assert report["optimizer_iterations"] == 2
    assert report["finite"]
    draws = report["replica_draws"]
    assert len(draws) == 2 and draws[0] != draws[1]
