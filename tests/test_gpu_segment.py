"""The GPU segment rehearsed on the CPU: recipes/tools/make_data_bundle.py and
recipes/tools/gpu_segment.sh.

A tiny collection (two 2 s MUSDB-style synthetic songs with stems, three stereo 22.05 kHz
"recorded" tracks of 3, 20 and 40 s) is packed into a 0.3 MB bundle; the bundle keeps the song
layout and loads with the data pipeline; then `gpu_segment.sh` trains both arms on it end to end
(recipes/tools/train_small_pair.sh -> recipes/train.py, a tiny architecture, the Python input pipeline,
`--max-minutes 1e-6` so that each arm stops after its first step, checkpointed and exported on
the grid of `--checkpoint-every 1`) and ships the common step's presets, which load on the test's
backend. The subprocesses run on JAX with TensorFlow made unimportable, as on the GPU machine
(JAX and torch only), sharing the persistent XLA compilation cache of tests/test_train_recipe.py.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from keras_lincae import entry
from keras_lincae import data
from keras_lincae.data import synth
from keras_lincae.data.clips import source_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "recipes", "tools"))
import make_data_bundle  # noqa: E402

BUDGET_MB = 0.3
TRACK_SECONDS = (3.0, 20.0, 40.0)
PAIR_CONFIG = """\
extends: tiny
batch_size: 2
steps: 4
clip_frames: 8
warmup_steps: 1
log_every: 1
shuffle_buffer: 8
num_log_examples: 0
input_pipeline: python
data_reader: memory
model:
  hop_size: 128
  attention_list: [0, 0, 0, 0, 0]
  attention_list_encoder: [0, 0, 0, 0, 0]
"""


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names)


def bytes_under(folder):
    return sum(os.path.getsize(os.path.join(folder, f)) for f in files_under(folder))


def run_bundle(argv):
    return entry.run(lambda: make_data_bundle.main(argv), make_data_bundle.PROG)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("collection")
    synth.make_synthetic_dataset(root / "synth", num_songs=2, seconds=2.0, num_test_songs=0, renderer="numpy")
    tracks = root / "recorded" / "train"
    tracks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, seconds in enumerate(TRACK_SECONDS):
        t = np.arange(int(seconds * 22050)) / 22050
        tone = 0.3 * np.sin(2 * np.pi * (220 + 55 * k) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
        sf.write(str(tracks / f"track{k}.wav"), np.stack([tone, 0.05 * rng.standard_normal(len(t))], 1), 22050)
    return [str(root / "synth" / "train"), str(tracks)]


@pytest.fixture(scope="module")
def bundle(collection, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bundle") / "bundle")
    assert run_bundle([out, "--budget-mb", str(BUDGET_MB), "--data", *collection, "--quiet"]) == 0
    return out


def test_bundle_respects_the_budget_keeps_the_song_layout_and_loads(bundle, collection):
    import soundfile as sf

    with open(os.path.join(bundle, "bundle.json")) as f:
        manifest = json.load(f)
    assert bytes_under(bundle) == manifest["bytes"] <= BUDGET_MB * 1e6
    assert [s["folder"] for s in manifest["sources"]] == ["synth", "recorded"]  # --data order
    songs, tracks = (os.path.join(bundle, s["folder"]) for s in manifest["sources"])

    # Song folders: every file, whole, at the same relative path; discovered as the originals are.
    original = files_under(collection[0])
    expected = sorted(os.path.splitext(f)[0] + ".ogg" for f in original if f.endswith(".wav"))
    assert files_under(songs) == expected and len(expected) == 10
    relative = lambda paths, root: sorted(os.path.splitext(os.path.relpath(p, root))[0] for p in paths)  # noqa: E731
    assert relative(source_files(songs, True), songs) == relative(source_files(collection[0], True), collection[0])
    assert len(data.find_musdb_songs(songs)) == 2
    for name in expected:
        info = sf.info(os.path.join(songs, name))
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("OGG", "VORBIS", 1, 44100)
        assert info.duration == pytest.approx(2.0, abs=0.01)
    mixture, _ = sf.read(os.path.join(songs, "song_000", "mixture.ogg"), dtype="float32")
    stems = sum(sf.read(os.path.join(songs, "song_000", f"{s}.ogg"), dtype="float32")[0] for s in data.MUSDB_STEMS)
    assert np.sqrt(np.mean((mixture - stems) ** 2)) < 0.1 * np.sqrt(np.mean(mixture ** 2))  # still a mixture

    # Recorded tracks: mono 44.1 kHz, their first seconds, the shortest first, none beyond its own length.
    cuts = manifest["tracks"]
    assert sorted(cuts) == [f"recorded/track{k}.ogg" for k in range(3)]
    for k, seconds in enumerate(TRACK_SECONDS):
        info = sf.info(os.path.join(tracks, f"track{k}.ogg"))
        assert (info.channels, info.samplerate) == (1, 44100)
        assert 1.0 <= info.duration <= seconds + 0.01
        assert info.duration == pytest.approx(cuts[f"recorded/track{k}.ogg"]["seconds"], abs=0.01)
    assert manifest["sources"][1]["cut_tracks"] >= 1  # the budget is tight: the long tracks are cut

    batches = data.audio_batches([songs, tracks], data.clip_samples_for_frames(8, hop=128), 4, seed=0,
                                 reader="memory", musdb_stems=True, prefetch=0)
    batch = next(batches)
    assert batch.shape == (4, data.clip_samples_for_frames(8, hop=128)) and np.all(np.isfinite(batch))


def test_bundle_refusals_are_one_line_errors_and_leave_nothing(collection, bundle, tmp_path, capsys):
    capsys.readouterr()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert run_bundle([str(taken), "--data", *collection]) == 2
    assert "is not empty and is not a data bundle" in capsys.readouterr().err
    assert run_bundle([bundle, "--budget-mb", str(BUDGET_MB), "--data", *collection]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    small = tmp_path / "small"
    assert run_bundle([str(small), "--budget-mb", "0.05", "--data", *collection]) == 2
    err = capsys.readouterr().err
    assert err.startswith("make_data_bundle.py: error: the bundle would exceed --budget-mb 0.05") and err.count("\n") == 1
    assert not small.exists() and sorted(os.listdir(tmp_path)) == ["taken"]  # no temporary folder left
    assert run_bundle([str(tmp_path / "x"), "--data", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err

    # --overwrite replaces a bundle (with a summary on stdout); --wheels are carried within the budget.
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "demo-1.0-py3-none-any.whl").write_bytes(b"\0" * 20_000)
    copy = tmp_path / "copy"
    assert run_bundle([str(copy), "--budget-mb", str(BUDGET_MB), "--data", *collection, "--quiet"]) == 0
    assert run_bundle([str(copy), "--budget-mb", str(BUDGET_MB), "--data", *collection, "--wheels", str(wheels),
                       "--overwrite", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "10 files (2 songs with stems)" in out and "3 files (3 tracks" in out
    assert os.path.getsize(copy / "wheels" / "demo-1.0-py3-none-any.whl") == 20_000
    assert bytes_under(str(copy)) <= BUDGET_MB * 1e6


def test_gpu_segment_trains_both_arms_on_the_bundle_and_ships_the_common_step(bundle, tmp_path):
    from keras_lincae import LinCAE

    (tmp_path / "pair.yaml").write_text(PAIR_CONFIG)
    (tmp_path / "m2l_pair.yaml").write_text("extends: pair\nmodel:\n  mode: m2l\n")
    no_tf = tmp_path / "no_tensorflow" / "tensorflow"
    no_tf.mkdir(parents=True)
    (no_tf / "__init__.py").write_text("raise ImportError('no TensorFlow on the GPU machine')\n")
    cache = os.environ.get("KERAS_LINCAE_JAX_CACHE") or os.path.join(tempfile.gettempdir(), "keras_lincae_jax_cache")
    out, run = tmp_path / "out", tmp_path / "run"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHON=sys.executable, OUT=str(out),
               PYTHONPATH=str(no_tf.parent), JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    out.mkdir()
    done = subprocess.run(
        ["bash", os.path.join(REPO, "recipes", "tools", "gpu_segment.sh"), bundle, "1e-6", "--config",
         str(tmp_path / "pair.yaml"), "--run", str(run), "--set", "init_weights=null",
         "--checkpoint-every", "1", "--export-preset-every", "1"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "installing" not in done.stdout and "PyPI" not in done.stdout  # the environment was there
    assert "common step: 1 (" in done.stdout and "shipped step 1:" in done.stdout
    assert done.stdout.count("stopped by the time limit") == 2

    # What comes back from a device machine's $OUT: 8 files, at most one folder down.
    arm_files = ["config.json", "metadata.json", "model.weights.h5"]
    assert files_under(str(out)) == sorted(
        ["logs.txt", "summary.json"] + [os.path.join(arm, f) for arm in ("lin_cae_small", "m2l_small") for f in arm_files])
    with open(out / "summary.json") as f:
        summary = json.load(f)
    assert summary["common_step"] == 1 and summary["train_small_pair_status"] == 0
    for name, mode in (("lin_cae_small", "lin_cae"), ("m2l_small", "m2l")):
        arm = summary["arms"][name]
        assert (arm["start_step"], arm["end_step"], arm["presets"], arm["finished"]) == (0, 1, [1], False)
        assert np.isfinite(arm["loss_at_common"]["loss"]) and arm["loss_at_common"]["step"] == 1
        model = LinCAE.from_preset(str(out / name))  # trained on JAX, loaded on this test's backend
        assert model.mode == mode and not model.ema_weights
        with open(out / name / "metadata.json") as f:
            meta = json.load(f)
        assert meta["training_step"] == 1 and meta["weights"] == "ema"
        assert meta["training_config"]["data"] == [os.path.join(bundle, "synth"), os.path.join(bundle, "recorded")]
        assert os.path.isdir(run / name / "presets" / "step_1")
    assert "lin_cae_small.log" in (out / "logs.txt").read_text()


def test_gpu_segment_refuses_what_is_not_a_bundle(tmp_path):
    for args, message in (([str(tmp_path), "5"], "is not a data bundle"), ([], "usage:")):
        done = subprocess.run(["bash", os.path.join(REPO, "recipes", "tools", "gpu_segment.sh"), *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr and done.stderr.startswith("gpu_segment.sh: error:")
    (tmp_path / "bundle.json").write_text("{}")
    done = subprocess.run(["bash", os.path.join(REPO, "recipes", "tools", "gpu_segment.sh"), str(tmp_path), "soon"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "MINUTES must be a positive number" in done.stderr
