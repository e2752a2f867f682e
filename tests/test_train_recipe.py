"""recipes/train.py on the current backend: a fresh tiny run, kill -9 + resume, configs, flags.

The runs use the tiny config on the embedded synthetic songs, shrunk further for speed
(hop 128, no attention, 8-frame clips, batch 2, 4 steps, a checkpoint every 2 steps). On JAX the
runs share a persistent XLA compilation cache (`jax_cache` fixture), which cuts each repeated
compilation from about a minute to seconds on a loaded 2-core machine.
"""

import errno
import gc
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import yaml

from keras_lincae.training import config as tc
from keras_lincae.training.builders import build_model
from keras_lincae.training.checkpoint import Checkpointer
from keras_lincae.backend_dispatch.distribute import check_distribution
from keras_lincae.training.trainer import Trainer
from keras_lincae.testing.compilation_cache import jax_compilation_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "recipes"))
import train as train_recipe  # noqa: E402

FAST = ["--config", "tiny", "--batch-size", "2", "--checkpoint-every", "2", "--steps", "4",
        "--set", "clip_frames=8", "--set", "warmup_steps=1", "--set", "log_every=1",
        "--set", "model.hop_size=128", "--set", "model.attention_list=[0,0,0,0,0]",
        "--set", "model.attention_list_encoder=[0,0,0,0,0]", "--set", "shuffle_buffer=8", "--quiet"]
RESUME_ATOL = 1e-6  # measured difference: 0 (bit-identical) on jax, tensorflow and torch


def live_tf_data_iterators():
    """`tf.data` iterators still alive (left for a later garbage-collection pass)."""
    return [o for o in gc.get_objects() if type(o).__name__ == "OwnedIterator"]


def checkpoint_arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "meta"}


def latest_arrays(run):
    return checkpoint_arrays(Checkpointer(os.path.join(run, "checkpoints")).latest()[1])


def assert_same_arrays(finished, reference):
    for key in reference:
        np.testing.assert_allclose(finished[key], reference[key], rtol=0, atol=RESUME_ATOL, err_msg=key)


@pytest.fixture(scope="module", autouse=True)
def jax_cache():
    with jax_compilation_cache() as env:
        yield env


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, jax_cache):
    """An uninterrupted 4-step run (also the fresh-run smoke test's subject)."""
    run = str(tmp_path_factory.mktemp("recipe") / "reference")
    start = time.time()
    assert train_recipe.main(FAST + ["--out", run, "--set", "num_log_examples=1"]) == 0
    print(f"{keras.backend.backend()}: reference run {time.time() - start:.1f} s")
    return run


def test_fresh_run_writes_checkpoints_logs_and_an_ema_preset(reference_run):
    from keras_lincae import LinCAE

    ckpts = Checkpointer(os.path.join(reference_run, "checkpoints")).list()
    assert [step for step, _ in ckpts] == [2, 4]
    meta = Checkpointer.read_meta(ckpts[-1][1])
    assert meta["step"] == 4 and meta["batches_consumed"] == 4
    arrays = checkpoint_arrays(ckpts[-1][1])
    index = [p.endswith("/training_step") for p in meta["model_paths"]].index(True)  # model name varies
    assert int(arrays[f"model/{index:05d}"]) == 4
    assert any("ema_" in p for p in meta["model_paths"]) and any("seed_generator_state" in p for p in meta["model_paths"])
    assert any("momentum" in p for p in meta["optimizer_paths"])
    # The preset holds the EMA weights (not the raw ones) and the step counter.
    model = LinCAE.from_preset(os.path.join(reference_run, "preset"))
    with open(os.path.join(reference_run, "preset", "metadata.json")) as f:
        assert json.load(f)["weights"] == "ema"
    assert int(keras.ops.convert_to_numpy(model.training_step)) == 4
    sources = model.encoder.trainable_weights + model.decoder.trainable_weights
    for w, shadow in zip(sources, model.ema_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), keras.ops.convert_to_numpy(shadow))
    # EMA (updated every 10 steps: still the initial weights) != the trained weights.
    raw = [arrays[f"model/{meta['model_paths'].index(w.path):05d}"] for w in sources]
    assert any(not np.array_equal(r, keras.ops.convert_to_numpy(w)) for r, w in zip(raw, sources))
    # TensorBoard: losses, learning rate, gain range and audio examples.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(reference_run, "logs"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"loss/consistency", "learning_rate", "gain/min", "gain/max", "audio/reconstruction"} <= tags
    assert len(acc.Tensors("loss/consistency")) == 4
    # A second fresh start into the same folder is refused with a hint.
    assert train_recipe.main(FAST + ["--out", reference_run]) == 2


def test_init_weights_fine_tunes_from_a_preset(reference_run, tmp_path):
    """`init_weights` starts a fresh run (step 0, EMA = weights) from a preset's weights; a preset
    of another architecture is refused with the field that differs."""
    from keras_lincae import LinCAE

    preset = os.path.join(reference_run, "preset")
    args = train_recipe.build_parser().parse_args(FAST + ["--out", str(tmp_path / "ft"), "--seed", "5"])
    config = tc.resolve_config("tiny", train_recipe.explicit_overrides(args))
    fresh = build_model(config.preset, config.lincae_fields())
    config = config.replace(init_weights=preset)
    model = Trainer(config, str(tmp_path / "ft"), verbose=False).model
    source = LinCAE.from_preset(preset)
    weights = model.frontend.weights + model.encoder.weights + model.decoder.weights
    source_weights = source.frontend.weights + source.encoder.weights + source.decoder.weights
    for w, s in zip(weights, source_weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), keras.ops.convert_to_numpy(s))
    own_init = fresh.encoder.weights + fresh.decoder.weights
    assert any(not np.array_equal(keras.ops.convert_to_numpy(w), keras.ops.convert_to_numpy(f))
               for w, f in zip(model.encoder.weights + model.decoder.weights, own_init))
    assert int(keras.ops.convert_to_numpy(model.training_step)) == 0
    for w, shadow in zip(model.encoder.trainable_weights + model.decoder.trainable_weights, model.ema_weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), keras.ops.convert_to_numpy(shadow))
    config = config.replace(model=dict(config.model, base_channels=4))
    with pytest.raises(ValueError, match="init_weights .*base_channels is 8.* has 4"):
        Trainer(config, str(tmp_path / "other"), verbose=False)


def test_kill_mid_checkpoint_then_resume_matches_uninterrupted_run(reference_run, tmp_path, jax_cache):
    """kill -9 while checkpoint 4 is being written (after checkpoint 2 is complete): checkpoint 2
    stays usable, and resuming from it ends with the same weights, optimizer state, EMA shadows,
    step counter and seed states as the uninterrupted run."""
    run = str(tmp_path / "killed")
    env = dict(os.environ, KERAS_LINCAE_CKPT_PAUSE_BEFORE_RENAME="600", KERAS_LINCAE_CKPT_PAUSE_FROM_STEP="4",
               **jax_cache)
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "recipes", "train.py"), *FAST, "--out", run],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_dir = os.path.join(run, "checkpoints")
    deadline = time.time() + 540
    try:
        while not glob.glob(os.path.join(ckpt_dir, "ckpt-00000004.npz.tmp-*")):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the training subprocess never reached checkpoint 4"
            time.sleep(0.5)
        time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    checkpointer = Checkpointer(ckpt_dir)
    assert [step for step, _ in checkpointer.list()] == [2]  # the half-written one is not listed
    assert Checkpointer.read_meta(checkpointer.latest()[1])["batches_consumed"] == 2

    assert train_recipe.main(["--out", run, "--resume", "--quiet"]) == 0
    assert not glob.glob(os.path.join(ckpt_dir, "*.tmp-*"))  # leftovers cleaned
    resumed, reference = latest_arrays(run), latest_arrays(reference_run)
    assert resumed.keys() == reference.keys()
    worst = max(float(np.max(np.abs(resumed[k].astype("float64") - reference[k].astype("float64"))))
                for k in reference if reference[k].size)
    print(f"{keras.backend.backend()}: resumed vs uninterrupted, max abs difference {worst:.3g}")
    assert_same_arrays(resumed, reference)


def test_resume_with_more_steps_extends_the_run_and_records_it(reference_run, tmp_path):
    run = str(tmp_path / "extended")
    shutil.copytree(reference_run, run)
    assert train_recipe.main(["--out", run, "--resume", "--steps", "6", "--quiet"]) == 0
    assert Checkpointer(os.path.join(run, "checkpoints")).latest()[0] == 6
    with open(os.path.join(run, "config.yaml")) as f:
        assert yaml.safe_load(f)["steps"] == 6  # what ship_preset reports as the run's length


def test_time_limited_segments_end_like_an_uninterrupted_run(reference_run, tmp_path):
    """--max-minutes stops at a step boundary with a checkpoint and no final preset, its input
    stream's iterator freed; resumed segments finish bit-identical to the uninterrupted run (how to
    train within a per-command limit)."""
    run = str(tmp_path / "segmented")
    checkpointer = Checkpointer(os.path.join(run, "checkpoints"))
    assert train_recipe.main(FAST + ["--out", run, "--max-minutes", "1e-6", "--export-preset-every", "2"]) == 0
    assert checkpointer.latest()[0] == 1 and not os.path.exists(os.path.join(run, "preset"))
    # the stopped stream's iterator is gone: none left for a GC sweep that frees its dataset too
    assert not live_tf_data_iterators()
    assert train_recipe.main(["--out", run, "--resume", "--max-minutes", "60", "--quiet"]) == 0
    assert checkpointer.latest()[0] == 4 and os.path.isdir(os.path.join(run, "preset"))
    # checkpoints and presets stay on multiples of checkpoint_every (2) after the mid-interval resume
    assert [step for step, _ in checkpointer.list()] == [1, 2, 4]
    assert sorted(os.listdir(os.path.join(run, "presets"))) == ["step_2", "step_4"]
    assert_same_arrays(latest_arrays(run), latest_arrays(reference_run))
    for bad in (0, -1, "soon", True):
        with pytest.raises(ValueError, match="max_minutes must be a positive number"):
            tc.resolve_config("tiny").replace(max_minutes=bad)


def test_python_input_pipeline_trains_without_tensorflow(tmp_path, jax_cache):
    """`input_pipeline: python` (numpy batches, in-memory reader) trains, checkpoints and exports
    with TensorFlow unimportable (on the tensorflow backend, where Keras needs it, with TF present);
    a run time-limited after one step and resumed ends like the uninterrupted run."""
    python_pipeline = FAST + ["--set", "input_pipeline=python", "--set", "data_reader=memory"]
    whole = str(tmp_path / "whole")
    block_tf = ["--block", "tensorflow"] if keras.backend.backend() != "tensorflow" else []
    command = [sys.executable, "-m", "keras_lincae.testing.run_blocked", *block_tf,
               os.path.join(REPO, "recipes", "train.py"), *python_pipeline, "--out", whole]
    done = subprocess.run(command, cwd=REPO, env=dict(os.environ, **jax_cache),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert os.path.isdir(os.path.join(whole, "preset"))
    assert [step for step, _ in Checkpointer(os.path.join(whole, "checkpoints")).list()] == [2, 4]
    with open(os.path.join(whole, "loss_history.json")) as f:
        assert all(np.isfinite(loss) for _, loss in json.load(f))

    segmented = str(tmp_path / "segmented")
    assert train_recipe.main(python_pipeline + ["--out", segmented, "--max-minutes", "1e-6"]) == 0
    assert train_recipe.main(["--out", segmented, "--resume", "--max-minutes", "60", "--quiet"]) == 0
    assert_same_arrays(latest_arrays(segmented), latest_arrays(whole))
    for key, bad in (("input_pipeline", "tfdata"), ("data_reader", "ram")):
        with pytest.raises(ValueError, match=key):
            tc.resolve_config("tiny").replace(**{key: bad})


def test_official_configs():
    lin = tc.resolve_config("lin_cae")
    assert (lin.batch_size, lin.clip_frames, lin.steps, lin.seed) == (20, 64, 800_000, 42)
    assert (lin.learning_rate, lin.final_learning_rate, lin.warmup_steps, lin.lr_decay) == (1e-4, 1e-6, 10_000, "cosine")
    assert (lin.ema_momentum, lin.ema_every, lin.beta_1, lin.beta_2) == (0.9999, 10, 0.9, 0.999)
    assert lin.model["mode"] == "lin_cae" and lin.preset == "lin_cae"
    assert tc.resolve_config("lin_cae_2").model["mode"] == "lin_cae_2"
    assert tc.resolve_config("m2l").model["mode"] == "m2l"
    tiny = tc.resolve_config("tiny")
    assert tiny.preset == "lin_cae_tiny" and tiny.model["mode"] == "lin_cae" and tiny.learning_rate == 1e-3
    config = tc.resolve_config("tiny", [tc.parse_override("model.gain_max=2"), tc.parse_override("steps=70")])
    assert config.model["gain_max"] == 2 and config.steps == 70
    with pytest.raises(ValueError, match="Unknown config key"):
        tc.resolve_config("tiny", [tc.parse_override("stepz=3")])
    with pytest.raises(ValueError, match="Unknown config"):
        tc.resolve_config("nonsense")
    with pytest.raises(ValueError, match="warmup_steps"):
        tc.resolve_config("lin_cae").replace(steps=100)
    with pytest.raises(ValueError, match="divisible"):
        tiny.replace(batch_size=5, grad_accum=2)
    with pytest.raises(ValueError, match="only .* may change"):
        tc.merge_resumed_config(tiny.to_dict(), {"batch_size": 8})
    assert tc.merge_resumed_config(tiny.to_dict(), {"steps": 900})["steps"] == 900


BAD_CONFIG_VALUES = [
    ("model.gain_max=abc", "model.gain_max must be a number, got 'abc'"),
    ("model.hop_size=12.5", "model.hop_size must be an integer, got 12.5"),
    ("model.layers_list=[1,x]", r"model.layers_list must be a list of integers, got \[1, 'x'\]"),
    ("model.normalization=1", "model.normalization must be true or false"),
    ("model.mode=3", "model.mode must be a string"),
    ("model.nope=1", r"Unknown model keys \['nope'\]"),
    ("learning_rate=abc", "learning_rate must be a positive number, got 'abc'"),
    ("learning_rate=.inf", "learning_rate must be a positive number, got inf"),
    ("final_learning_rate=-1e-6", "final_learning_rate must be a number >= 0"),
    ("steps=1.5", "steps must be a positive integer, got 1.5"),
    ("batch_size=true", "batch_size must be a positive integer, got True"),
    ("clip_frames=0", "clip_frames must be a positive integer"),
    ("warmup_steps=-1", "warmup_steps must be an integer >= 0"),
    ("beta_1=1", r"beta_1 must be a number in \[0, 1\)"),
    ("beta_2=x", r"beta_2 must be a number in \[0, 1\)"),
    ("ema_momentum=1", r"ema_momentum must be a number in \(0, 1\) or null"),
    ("ema_every=0", "ema_every must be a positive integer"),
    ("grad_accum=[2]", "grad_accum must be a positive integer"),
    ("checkpoint_every=0", "checkpoint_every must be a positive integer"),
    ("keep_checkpoints=-1", "keep_checkpoints must be an integer >= 0"),
    ("export_preset_every=2.5", "export_preset_every must be an integer >= 0"),
    ("max_minutes=0", "max_minutes must be a positive number or null"),
    ("log_every=0", "log_every must be a positive integer"),
    ("data_skip_limit=-1", "data_skip_limit must be an integer >= 0"),
    ("silence_rms_db=.nan", "silence_rms_db must be a level in dBFS or null"),
    ("shuffle_buffer=many", "shuffle_buffer must be an integer >= 0"),
    ("seed=-1", r"seed must be an integer in \[0, 4294967295\]"),
    ("data_weights=[1, -1]", "data_weights must be a list of numbers >= 0"),
    ("lr_decay=exp", "lr_decay must be one of cosine, linear, inverse_sqrt, None"),
]


@pytest.mark.parametrize("override, match", BAD_CONFIG_VALUES, ids=[o for o, _ in BAD_CONFIG_VALUES])
def test_check_config_checks_types_and_ranges_naming_the_key(override, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        tc.resolve_config("tiny", [tc.parse_override(override)])


def test_yaml_numbers_in_overrides_and_one_line_errors(tmp_path, capsys):
    """`3e-4` is a float (PyYAML alone reads a string); a bad value is one line before any model."""
    assert tc.parse_override("learning_rate=3e-4") == (["learning_rate"], 3e-4)
    config = tc.resolve_config("tiny", [tc.parse_override("steps=1e3")])
    assert config.steps == 1000 and isinstance(config.steps, int)
    with pytest.raises(ValueError, match="steps.x: steps has no sub-keys"):
        tc.apply_overrides({}, [tc.parse_override("steps.x=1")])
    run = tmp_path / "run"
    assert train_recipe.main(["--config", "tiny", "--out", str(run), "--set", "model.gain_max=abc"]) == 2
    assert capsys.readouterr().err == "train.py: error: model.gain_max must be a number, got 'abc'\n"
    assert not run.exists()


def test_full_disk_while_checkpointing_is_one_line(tmp_path, capsys, monkeypatch):
    """ENOSPC from the checkpoint writer: one line naming the step and folder, no partial file left."""
    def full_disk(self, model, step, meta):
        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, f"ckpt-{step:08d}.npz.tmp-{os.getpid()}"), "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Checkpointer, "save", full_disk)
    run = str(tmp_path / "full")
    assert train_recipe.main(FAST + ["--out", run]) == 2
    ckpt_dir = os.path.join(run, "checkpoints")
    assert capsys.readouterr().err == (
        f"train.py: error: [Errno {errno.ENOSPC}] cannot write the checkpoint of step 2 in {ckpt_dir}: No space "
        "left on device; free some space, then continue with --resume\n")
    assert os.listdir(ckpt_dir) == []


def test_distribution_flags_are_checked_per_backend():
    assert check_distribution("none") == "none"
    own = {"jax": "data_parallel", "tensorflow": "mirrored", "torch": "ddp"}[keras.backend.backend()]
    assert check_distribution(own) == own
    for kind, backend in (("data_parallel", "torch"), ("mirrored", "jax"), ("ddp", "tensorflow"), ("tpu", "jax")):
        with pytest.raises(ValueError, match=f"runs on the {'jax' if kind == 'data_parallel' else 'tensorflow' if kind in ('mirrored', 'tpu') else 'torch'} backend"):
            check_distribution(kind, backend=backend, tpu="local" if kind == "tpu" else None)
    with pytest.raises(ValueError, match="needs a TPU address"):
        check_distribution("tpu", backend="tensorflow")
    with pytest.raises(ValueError, match="Unknown distribution"):
        check_distribution("horovod")
    if keras.backend.backend() == "torch":
        with pytest.raises(RuntimeError, match="torchrun"):
            from keras_lincae.backend_dispatch.distribute import setup_distribution

            env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
            try:
                setup_distribution("ddp")
            finally:
                os.environ.update(env)


def test_mixed_precision_and_gradient_accumulation(tmp_path):
    """bfloat16 compute with float32 weights; 2 micro-batches per update: the optimizer counts
    updates, the model's counter counts micro-batches, checkpoints count updates."""
    run = str(tmp_path / "accum")
    args = [a for a in FAST if a not in ()] + ["--out", run, "--steps", "2", "--batch-size", "4", "--grad-accum", "2",
                                              "--dtype-policy", "mixed_bfloat16", "--set", "num_log_examples=0"]
    trainer_args = train_recipe.build_parser().parse_args(args)
    config = tc.resolve_config("tiny", train_recipe.explicit_overrides(trainer_args))
    trainer = Trainer(config, run, verbose=False)
    trainer.fit()
    model = trainer.model
    assert model.dtype_policy.name == "mixed_bfloat16" and model.encoder.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2
    assert int(keras.ops.convert_to_numpy(model.training_step)) == 4
    assert model.total_steps == 4 and model.ema_every == 20
    assert all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.trainable_variables)
    assert [s for s, _ in trainer.checkpointer.list()] == [2]
    assert Checkpointer.read_meta(trainer.checkpointer.latest()[1])["batches_consumed"] == 4
