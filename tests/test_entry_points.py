"""Entry points (`lincae`, `python -m keras_lincae`, the recipes): backend choice, one-line errors.

Most tests run the entry points in subprocesses, as a user would; each fails fast on bad input.
A subprocess inherits the test's KERAS_BACKEND unless a test removes it or passes --backend.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import soundfile as sf

from keras_lincae import entry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_TF = importlib.util.find_spec("tensorflow") is not None
# A small model for the training runs that must fail on their data (see tests/test_train_recipe.py).
TINY_RUN = ["--config", "tiny", "--batch-size", "2", "--steps", "4", "--set", "clip_frames=8",
            "--set", "warmup_steps=1", "--set", "model.hop_size=128", "--set", "model.attention_list=[0,0,0,0,0]",
            "--set", "model.attention_list_encoder=[0,0,0,0,0]", "--set", "shuffle_buffer=8", "--quiet"]


def run(args, tmp_path, fake=(), drop=(), **env):
    """`python ARGS` in `tmp_path`, with fake unimportable packages `fake` on PYTHONPATH; the
    environment variables `drop` are removed (TF_CPP_MIN_LOG_LEVEL always: as a user has it)."""
    fakes = tmp_path / "fake_packages"
    for name in fake:
        (fakes / name).mkdir(parents=True, exist_ok=True)
        (fakes / name / "__init__.py").write_text(f"raise ImportError('{name} is broken here (test)')\n")
    variables = {k: v for k, v in os.environ.items() if k not in (*drop, "TF_CPP_MIN_LOG_LEVEL")}
    variables["PYTHONPATH"] = os.pathsep.join([str(fakes), REPO])
    variables.update(env)
    return subprocess.run([sys.executable, *map(str, args)], cwd=tmp_path, env=variables, capture_output=True,
                          text=True, timeout=600)


def assert_one_line_error(result, prog, match):
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr[-3000:]
    assert re.search(match, lines[0]), lines[0]


# ------------------------------------------------------------------------------- backends


def test_import_has_no_side_effects(tmp_path):
    result = run(["-P", os.path.join(REPO, "keras_lincae", "testing", "import_probe.py"), "--list-presets"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["heavy_modules"] == [] and report["environ_changes"] == {}, report
    assert report["presets"]


def test_help_works_when_keras_cannot_be_imported(tmp_path):
    for args, shown in ((["--help"], "autoencode"), (["autoencode", "--help"], "--overwrite")):
        result = run(["-m", "keras_lincae", *args], tmp_path, fake=["keras"])
        assert result.returncode == 0 and result.stderr == "", result.stderr[-3000:]
        assert "usage: lincae" in result.stdout and shown in result.stdout
        assert "--backend {jax,tensorflow,torch}" in result.stdout and "--debug" in result.stdout
    assert_one_line_error(run(["-m", "keras_lincae", "--version"], tmp_path, fake=["keras"]), "lincae",
                          "keras is broken here")


def test_an_installed_backend_is_chosen_when_the_default_is_unavailable(tmp_path):
    expected = next((b for b in ("jax", "torch") if importlib.util.find_spec(b)), None)
    if expected is None:
        pytest.skip("needs jax or torch")
    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text('{"backend": "tensorflow"}')
    result = run(["-m", "keras_lincae", "--version"], tmp_path, fake=["tensorflow"], drop=["KERAS_BACKEND"],
                 KERAS_HOME=str(home))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"backend {expected}" in result.stdout
    assert result.stderr.strip().splitlines() == [
        f"lincae: Keras' default backend tensorflow is not available; using {expected} "
        "(choose with --backend or KERAS_BACKEND)"]
    # The recipes choose the same way (here before failing on their input).
    result = run([os.path.join(REPO, "recipes", "train.py"), "--out", tmp_path / "run", "--set", "seed=x"], tmp_path,
                 fake=["tensorflow"], drop=["KERAS_BACKEND"], KERAS_HOME=str(home))
    assert result.returncode == 2 and f"using {expected}" in result.stderr, result.stderr[-3000:]
    # --backend chooses explicitly, over KERAS_BACKEND.
    result = run(["-m", "keras_lincae", "--backend", expected, "--version"], tmp_path, KERAS_BACKEND="nonsense")
    assert result.returncode == 0 and f"backend {expected}" in result.stdout and result.stderr == "", result.stderr


def test_no_backend_installed_is_one_line(tmp_path):
    result = run(["-m", "keras_lincae", "--version"], tmp_path, fake=["jax", "torch", "tensorflow"],
                 drop=["KERAS_BACKEND"], KERAS_HOME=str(tmp_path))
    assert_one_line_error(result, "lincae", "no Keras backend is installed: pip install jax")


def test_keras_default_backend_reads_keras_json(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert entry.keras_default_backend() == "tensorflow"  # no keras.json
    (tmp_path / "keras.json").write_text("{not json")
    assert entry.keras_default_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    assert entry.keras_default_backend() == "torch"


def test_backend_cannot_change_once_keras_runs():
    current = keras.backend.backend()
    assert entry.choose_backend("test", None) == current == entry.choose_backend("test", current)
    other = "torch" if current != "torch" else "jax"
    with pytest.raises(ValueError, match=f"--backend {other}: Keras already runs on {current}"):
        entry.choose_backend("test", other)


# --------------------------------------------------------------------------------- errors


def _songs(tmp_path):
    song = tmp_path / "songs" / "song_000"
    song.mkdir(parents=True)
    sf.write(song / "mixture.wav", np.zeros((4410, 2), "float32"), 44_100)
    return str(tmp_path / "songs")


ERRORS = [
    # (id, recipe or -m, arguments (tmp files formatted in), expected message)
    ("lincae sample rate", "-m keras_lincae", ["autoencode", "in.wav", "-o", "o.wav", "--sample-rate", "1000000000"],
     r"--sample-rate: must be a sample rate in \[8000, 384000\] Hz"),
    ("lincae seed", "-m keras_lincae", ["decode", "in.npz", "-o", "o.wav", "--seed", "-1"], "--seed: must be an"),
    ("train learning_rate", "train.py", ["--config", "tiny", "--out", "{tmp}/run", "--set", "learning_rate=abc"],
     "learning_rate must be a positive number, got 'abc'"),
    ("train resume config", "train.py", ["--out", "{tmp}", "--resume", "--config", "tiny"],
     "--config cannot be changed on --resume"),
    ("train out is a file", "train.py", ["--config", "tiny", "--out", "{file}/run"], "is a file, not a folder"),
    ("evaluate no data", "evaluate.py", ["--preset", "lin_cae_tiny", "--data", "{tmp}/nowhere", "--out", "{tmp}/e"],
     "dataset folder not found"),
    ("evaluate bad preset", "evaluate.py", ["--preset", "no_such_preset", "--data", "{songs}", "--out", "{tmp}/e"],
     "Unknown preset 'no_such_preset'"),
    ("export out is a file", "export.py", ["lin_cae_tiny", "{file}"], "OUT_DIR .* is a file, not a folder"),
    ("demo page out is a file", "demo_page.py", ["--preset", "lin_cae_tiny", "--out", "{file}/page"], "is a file"),
    ("tune dir is a file", "tune.py", ["--dir", "{file}"], "--dir .* is a file"),
    ("make dataset root is a file", "make_dataset.py", ["--root", "{file}/music"], "--root .* is a file"),
    ("convert missing release", "convert_checkpoint.py", ["{tmp}/nowhere", "{tmp}/preset"], "not found|missing"),
]


@pytest.mark.parametrize("entry_point, args, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_user_errors_are_one_line_with_status_2(tmp_path, entry_point, args, match):
    if entry_point == "export.py" and not HAVE_TF:
        pytest.skip("export needs TensorFlow")
    (tmp_path / "a_file").write_text("not a folder")
    names = dict(tmp=tmp_path, file=tmp_path / "a_file", songs=_songs(tmp_path) if "{songs}" in args else "")
    args = [a.format(**names) for a in args]
    if entry_point.startswith("-m"):
        command, prog = entry_point.split(), "lincae " + args[0]
    else:
        command, prog = [os.path.join(REPO, "recipes", entry_point)], entry_point
    assert_one_line_error(run(command + args, tmp_path), prog, match)
    assert (tmp_path / "a_file").read_text() == "not a folder"


@pytest.mark.skipif(not HAVE_TF, reason="the tf.data pipeline needs TensorFlow")
def test_training_on_silent_audio_is_one_line(tmp_path):
    """The tf.data pipeline's error (a Python error inside a TensorFlow one) is unwrapped."""
    silent = tmp_path / "silent"
    silent.mkdir()
    for i in range(2):
        sf.write(silent / f"{i}.wav", np.zeros((44_100, 2), "float32"), 44_100)
    result = run([os.path.join(REPO, "recipes", "train.py"), *TINY_RUN, "--out", tmp_path / "run", "--data", silent,
                  "--backend", "tensorflow"], tmp_path)
    assert_one_line_error(result, "train.py", f"audio source {silent} gave no usable clip .* silent")


def test_debug_shows_the_traceback(tmp_path):
    result = run([os.path.join(REPO, "recipes", "train.py"), "--out", tmp_path, "--set", "seed=x", "--debug"],
                 tmp_path)
    assert result.returncode == 2 and "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "train.py: error: seed must be an integer in [0, 4294967295], got 'x'"


def test_run_reports_user_errors_and_lets_bugs_through(monkeypatch, capsys):
    monkeypatch.setattr(entry, "_debug", False)

    def fail(error):
        def main():
            raise error
        return main

    assert entry.run(fail(ValueError("bad\n  value")), "prog") == 2
    assert capsys.readouterr().err == "prog: error: bad value\n"
    assert entry.run(fail(MemoryError()), "prog") == 2
    assert capsys.readouterr().err == "prog: error: out of memory\n"
    assert entry.run(fail(KeyboardInterrupt()), "prog") == 130
    assert capsys.readouterr().err == "prog: interrupted\n"
    assert entry.run(lambda: {"a result": 1}, "prog") == 0 and entry.run(lambda: 3, "prog") == 3
    for bug in (KeyError("x"), NotImplementedError("y")):
        with pytest.raises(type(bug)):
            entry.run(fail(bug), "prog")


@pytest.mark.skipif(not HAVE_TF, reason="needs TensorFlow")
def test_tensorflow_errors_are_unwrapped():
    import tensorflow as tf

    wrapped = tf.errors.UnknownError(None, None, (
        "{{function_node __wrapped__IteratorGetNext}} Error in user-defined function passed to Map: "
        "RuntimeError: audio source x gave no usable clip\nTraceback (most recent call last):\n  File \"d.py\"\n"))
    assert entry.user_error_message(wrapped) == "audio source x gave no usable clip"
    bug = tf.errors.UnknownError(None, None, "Error in user-defined function: KeyError: 'x'\nTraceback ...")
    assert entry.user_error_message(bug) is None
    oom = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [9999]")
    assert entry.user_error_message(oom) == "OOM when allocating tensor with shape [9999]"


def test_check_writable_folder(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert entry.check_writable_folder(tmp_path / "new" / "deeper") == str(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # checked, not created
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        entry.check_writable_folder(tmp_path / "file" / "sub", "--out")
    monkeypatch.setattr(entry.os, "access", lambda path, mode: False)  # a read-only folder (root ignores modes)
    with pytest.raises(PermissionError, match=f"--out {tmp_path}/x: {tmp_path} is not writable"):
        entry.check_writable_folder(tmp_path / "x", "--out")



def test_jax_programs_get_the_memory_saving_xla_flag(monkeypatch):
    """`prepare` adds `JAX_XLA_FLAGS` on jax only, after the user's XLA_FLAGS, never over them."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    backend = entry.prepare("lincae")
    flags = os.environ["XLA_FLAGS"].split()
    assert flags[0] == "--xla_force_host_platform_device_count=1"
    assert (set(entry.JAX_XLA_FLAGS) <= set(flags)) == (backend == "jax")
    user = {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"}
    entry.add_xla_flags(entry.JAX_XLA_FLAGS, user)
    assert user["XLA_FLAGS"] == "--xla_cpu_enable_concurrency_optimized_scheduler=true"


def test_training_commands_get_the_training_xla_flags_where_jaxlib_knows_them(monkeypatch):
    """`prepare(training=True)` adds `JAX_TRAINING_XLA_FLAGS` on jax, for jaxlib >= 0.10 only."""
    assert entry.jax_xla_flags(training=False, jaxlib_version="0.10.2") == entry.JAX_XLA_FLAGS
    assert entry.jax_xla_flags(training=True, jaxlib_version="0.10.2") == (
        entry.JAX_XLA_FLAGS + entry.JAX_TRAINING_XLA_FLAGS)
    for older in ("0.9.1", "0.4.30", "unknown"):
        assert entry.jax_xla_flags(training=True, jaxlib_version=older) == entry.JAX_XLA_FLAGS
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    backend = entry.prepare("train", training=True)
    flags = os.environ["XLA_FLAGS"].split()
    assert (set(entry.JAX_TRAINING_XLA_FLAGS) <= set(flags)) == (backend == "jax" and entry.jax_xla_flags(True) != entry.JAX_XLA_FLAGS)


def test_the_installed_jaxlib_trains_a_convolution_with_the_training_xla_flags():
    """XLA aborts the process on a flag it does not know: a jax process started as the training
    commands start it computes a convolution's gradients (as without the flags)."""
    script = (
        "import jax, jax.numpy as jnp, numpy as np\n"
        "x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 4)), 'float32')\n"
        "k = jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 4, 4)), 'float32')\n"
        "f = lambda x, k: (jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',"
        " dimension_numbers=('NHWC', 'HWIO', 'NHWC')) ** 2).sum()\n"
        "print(repr(np.asarray(jax.jit(jax.grad(f, (0, 1)))(x, k)[1]).sum().item()))\n"
    )
    sums = []
    for training in (False, True):
        environ = entry.command_environment("jax", {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}, training)
        result = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        sums.append(float(result.stdout.strip().splitlines()[-1]))
    assert abs(sums[0] - sums[1]) <= 1e-4 * abs(sums[0])


def test_malloc_tunables_are_added_once_and_only_where_glibc_can_use_them():
    """GLIBC_TUNABLES gains `glibc.malloc.hugetlb=1` (and, for training, the keep-freed-memory
    tunables) after the user's tunables, never over theirs."""
    added = entry.malloc_environment({"A": "1"}, libc="glibc 2.36", thp_mode="madvise")
    assert added == {"A": "1", "GLIBC_TUNABLES": entry.HUGE_PAGE_TUNABLE}
    other = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert entry.malloc_environment(other, libc="glibc 2.39", thp_mode="always")["GLIBC_TUNABLES"] == (
        f"glibc.malloc.arena_max=2:{entry.HUGE_PAGE_TUNABLE}")
    for environ, libc, thp in [({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "glibc 2.36", "madvise"),
                               ({}, "glibc 2.31", "madvise"), ({}, "glibc 2.36", "never"), ({}, "", "always")]:
        assert entry.malloc_environment(environ, libc=libc, thp_mode=thp) is None
    training = entry.malloc_environment({}, training=True, libc="glibc 2.36", thp_mode="madvise")
    assert training["GLIBC_TUNABLES"].split(":") == [entry.HUGE_PAGE_TUNABLE, *entry.TRAINING_MALLOC_TUNABLES]
    old_glibc = entry.malloc_environment({}, training=True, libc="glibc 2.31", thp_mode="madvise")
    assert old_glibc["GLIBC_TUNABLES"].split(":") == list(entry.TRAINING_MALLOC_TUNABLES)
    users = {"GLIBC_TUNABLES": "glibc.malloc.mmap_max=5:glibc.malloc.hugetlb=0"}
    assert entry.malloc_environment(users, training=True, libc="glibc 2.36", thp_mode="always")["GLIBC_TUNABLES"] == (
        f"glibc.malloc.mmap_max=5:glibc.malloc.hugetlb=0:{entry.TRAINING_MALLOC_TUNABLES[1]}")
    assert entry.malloc_environment({}, training=True, libc="", thp_mode="always") is None


def test_commands_restart_themselves_with_malloc_tunables(monkeypatch):
    """`restart_with_malloc_tunables` re-executes the same command line with the tunables, once;
    `lincae` does so as a command (argv None) and never when called with arguments (in-process use)."""
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(entry, "_libc_version", lambda: "glibc 2.36")
    monkeypatch.setattr(entry, "_transparent_huge_pages", lambda: "madvise")
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "keras_lincae", "encode", "a.wav"])
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    entry.restart_with_malloc_tunables()
    (path, argv, env), = calls
    assert (path, argv) == (sys.executable, [sys.executable, "-m", "keras_lincae", "encode", "a.wav"])
    assert env["GLIBC_TUNABLES"] == entry.HUGE_PAGE_TUNABLE
    monkeypatch.setenv("GLIBC_TUNABLES", env["GLIBC_TUNABLES"])
    entry.restart_with_malloc_tunables()  # the restarted process: no second restart
    assert len(calls) == 1

    def refuse(path, argv, env):
        raise PermissionError("exec not allowed here")

    monkeypatch.setattr(os, "execve", refuse)
    monkeypatch.delenv("GLIBC_TUNABLES")
    entry.restart_with_malloc_tunables()  # cannot re-execute: the command runs on as it is
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))

    from keras_lincae import cli

    monkeypatch.setattr(sys, "argv", ["lincae", "--help"])
    assert cli.main(["--help"]) == 0 and len(calls) == 1
    assert cli.main() == 0 and len(calls) == 2


class _Restarted(Exception):
    pass


@pytest.mark.parametrize("recipe, training", [("train", True), ("tune", True), ("evaluate", False),
                                              ("demo_page", False)])
def test_recipes_restart_with_the_tunables_of_their_kind(monkeypatch, recipe, training):
    """Run as scripts, the training recipes restart with the training malloc tunables, the others
    with the huge-page one only (nothing else runs before the restart)."""
    import runpy

    def execve(path, argv, env):
        raise _Restarted(env["GLIBC_TUNABLES"])

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(entry, "_libc_version", lambda: "glibc 2.36")
    monkeypatch.setattr(entry, "_transparent_huge_pages", lambda: "madvise")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with pytest.raises(_Restarted) as restarted:
        runpy.run_path(os.path.join(REPO, "recipes", f"{recipe}.py"), run_name="__main__")
    expected = [entry.HUGE_PAGE_TUNABLE] + (list(entry.TRAINING_MALLOC_TUNABLES) if training else [])
    assert str(restarted.value).split(":") == expected


def test_benchmarks_start_our_backends_as_the_commands_run_them():
    """`command_environment`: XLA flags on jax only, the malloc tunables where they apply."""
    for backend in ("jax", "tensorflow", "torch", None):
        for training in (False, True):
            environ = entry.command_environment(backend, {"KEEP": "1"}, training)
            assert environ["KEEP"] == "1"
            assert ("XLA_FLAGS" in environ) == (backend == "jax")
            expected = entry.malloc_environment({}, training)
            assert environ.get("GLIBC_TUNABLES") == (expected or {}).get("GLIBC_TUNABLES")
