import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, randomize_weights, to_numpy

import keras_lincae
from keras_lincae import LinCAE
from keras_lincae import preset_io
from keras_lincae.preset_io import CONFIG_FILE, METADATA_FILE, WEIGHTS_FILE


@pytest.mark.parametrize("name", ["lin_cae", "lin_cae_2", "m2l", "lin_cae_tiny"])
def test_builtin_architectures_build_offline(name):
    model = LinCAE.from_preset(name, load_weights=False)
    expected = {"lin_cae": 33.0, "lin_cae_2": 40.0, "m2l": 15.0, "lin_cae_tiny": 1.0}[name]
    assert model.scale_factor == expected
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    if name == "lin_cae_tiny":
        assert trainable < 1_000_000
    else:
        assert trainable == 58_185_026


def test_list_presets():
    assert set(keras_lincae.list_presets()) >= {"lin_cae", "lin_cae_2", "m2l", "lin_cae_tiny"}


def test_unknown_preset_lists_known_names():
    with pytest.raises(ValueError, match="lin_cae_tiny") as info:
        LinCAE.from_preset("no_such_model")
    assert "hf://" in str(info.value)


def test_save_load_round_trip(tmp_path):
    model = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=3)
    path = model.save_to_preset(str(tmp_path / "p"), training_mode="lin_cae")
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE])
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o777 & ~umask  # not the staging folder's 0700
    import json

    metadata = json.load(open(os.path.join(path, METADATA_FILE)))
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["sample_rate"] == 44100 and metadata["training_mode"] == "lin_cae"
    loaded = LinCAE.from_preset(path)
    audio = music_like(9000, seed=1)
    np.testing.assert_array_equal(to_numpy(loaded.encode(audio)), to_numpy(model.encode(audio)))
    # load_weights=False gives the architecture with a fresh init.
    fresh = LinCAE.from_preset(path, load_weights=False)
    assert fresh.get_config() == loaded.get_config()
    # Overrides apply on top of the stored config.
    assert LinCAE.from_preset(path, scale_factor=7.0).scale_factor == 7.0


def test_overwrite_replaces_atomically(tmp_path):
    first = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=1)
    second = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=2)
    path = str(tmp_path / "p")
    first.save_to_preset(path)
    second.save_to_preset(path, overwrite=True)
    audio = music_like(9000, seed=2)
    np.testing.assert_array_equal(to_numpy(LinCAE.from_preset(path).encode(audio)), to_numpy(second.encode(audio)))
    assert os.listdir(tmp_path) == ["p"]  # no staging or backup directories left behind


_SAVE_SECOND = [sys.executable, "-m", "keras_lincae.testing.save_random_preset", "--seed", "2", "--overwrite"]


@pytest.mark.parametrize("stage", ["staged_weights", "between_renames"])
def test_killed_save_leaves_previous_preset_intact(tmp_path, stage):
    """kill -9 a process in the middle of `save_to_preset` over an existing preset: the
    previous preset still loads with its own weights, and the next save cleans up."""
    import glob
    import signal
    import subprocess
    import sys
    import time

    first = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=1)
    path = str(tmp_path / "p")
    first.save_to_preset(path)
    env = dict(os.environ, KERAS_LINCAE_PRESET_PAUSE=f"{stage}:120")
    child = subprocess.Popen([*_SAVE_SECOND, path], env=env)
    marker = {"staged_weights": f"{tmp_path}/.p.staging-*/{WEIGHTS_FILE}", "between_renames": f"{tmp_path}/.p.old-*/preset"}[stage]
    deadline = time.time() + 300
    while not glob.glob(marker):
        assert child.poll() is None, "the saving process ended before reaching the pause"
        assert time.time() < deadline, "the saving process never reached the pause"
        time.sleep(0.2)
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert (os.path.isdir(path)) == (stage != "between_renames")  # the window the recovery repairs
    audio = music_like(9000, seed=2)
    np.testing.assert_array_equal(to_numpy(LinCAE.from_preset(path).encode(audio)), to_numpy(first.encode(audio)))
    second = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=2)
    second.save_to_preset(path, overwrite=True)
    np.testing.assert_array_equal(to_numpy(LinCAE.from_preset(path).encode(audio)), to_numpy(second.encode(audio)))
    assert os.listdir(tmp_path) == ["p"]


def test_corrupt_and_truncated_weights(tmp_path):
    model = LinCAE.from_preset("lin_cae_tiny", load_weights=False)
    path = model.save_to_preset(str(tmp_path / "p"))
    weights = os.path.join(path, WEIGHTS_FILE)
    data = open(weights, "rb").read()
    open(weights, "wb").write(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt, truncated"):
        LinCAE.from_preset(path)
    open(weights, "wb").write(b"not an hdf5 file")
    with pytest.raises(ValueError, match="corrupt, truncated"):
        LinCAE.from_preset(path)
    os.remove(weights)
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        LinCAE.from_preset(path)
    open(os.path.join(path, CONFIG_FILE), "w").write("{broken")
    with pytest.raises(ValueError, match="unreadable config.json"):
        LinCAE.from_preset(path)


def test_directory_that_is_not_a_preset(tmp_path):
    with pytest.raises(ValueError, match="neither a preset nor an official release"):
        LinCAE.from_preset(str(tmp_path))


def _tree(folder):
    """`{relative path: bytes}` of every file under `folder`."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


def _edit_json(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


def test_save_never_touches_a_folder_of_user_files(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = _tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is not empty and is not a preset; choose an empty or new folder"):
            tiny_model.save_to_preset(str(folder), overwrite=overwrite)
    monkeypatch.chdir(folder)
    with pytest.raises(ValueError, match="not a preset"):
        tiny_model.save_to_preset(".", overwrite=True)
    assert _tree(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["mine"]  # no lock or staging left


def test_save_refuses_a_regular_file(tiny_model, tmp_path):
    target = tmp_path / "model"
    target.write_text("not a folder")
    with pytest.raises(ValueError, match=f"{re.escape(str(target))}: it is a file"):
        tiny_model.save_to_preset(str(target), overwrite=True)
    assert target.read_text() == "not a folder" and os.listdir(tmp_path) == ["model"]


def test_overwrite_is_explicit_and_keeps_the_users_files(tmp_path):
    first = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=1)
    second = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=2)
    (tmp_path / "p").mkdir()  # an empty folder is a fine target
    path = first.save_to_preset(str(tmp_path / "p"))
    (tmp_path / "p" / "README.md").write_text("my card")
    (tmp_path / "p" / "extra").mkdir()
    (tmp_path / "p" / "extra" / "eval.md").write_text("results")
    with pytest.raises(ValueError, match="a preset is already there; pass overwrite=True"):
        second.save_to_preset(path)
    audio = music_like(9000, seed=2)
    np.testing.assert_array_equal(to_numpy(LinCAE.from_preset(path).encode(audio)), to_numpy(first.encode(audio)))
    second.save_to_preset(path, overwrite=True)
    np.testing.assert_array_equal(to_numpy(LinCAE.from_preset(path).encode(audio)), to_numpy(second.encode(audio)))
    assert (tmp_path / "p" / "README.md").read_text() == "my card"
    assert (tmp_path / "p" / "extra" / "eval.md").read_text() == "results"
    assert sorted(os.listdir(path)) == sorted([CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, "README.md", "extra"])
    assert os.listdir(tmp_path) == ["p"]


def test_user_files_survive_a_save_killed_after_its_renames(tiny_model, tmp_path):
    """State of an overwrite killed after the swap: the user's file is still in the old
    preset's backup; the next load moves it into the new preset and removes the backup."""
    path = tiny_model.save_to_preset(str(tmp_path / "p"))
    old = tmp_path / ".p.old-killed" / "preset"
    tiny_model.save_to_preset(str(old))
    (old / "notes.txt").write_text("keep me")
    LinCAE.from_preset(path, load_weights=False)
    assert (tmp_path / "p" / "notes.txt").read_text() == "keep me"
    assert os.listdir(tmp_path) == ["p"]


def test_concurrent_save_gets_a_clear_error(tiny_model, tmp_path):
    lock = tmp_path / ".p.lock"
    lock.write_text(f"{os.getpid()} {socket.gethostname()} held-by-another-save\n")
    with pytest.raises(RuntimeError, match=r"another save of .*p is in progress \(lock file .*\.p\.lock"):
        tiny_model.save_to_preset(str(tmp_path / "p"))
    assert lock.read_text().endswith("held-by-another-save\n") and os.listdir(tmp_path) == [".p.lock"]


def test_stale_lock_of_a_dead_process_is_taken_over(tiny_model, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".p.lock").write_text(f"{dead.pid} {socket.gethostname()} killed-save\n")
    path = tiny_model.save_to_preset(str(tmp_path / "p"))
    assert os.listdir(tmp_path) == ["p"]
    LinCAE.from_preset(path)


def test_load_during_a_saves_renames_waits_and_the_save_succeeds(tmp_path):
    """`from_preset` while another process is between its two renames (previous preset moved
    aside, new one not yet in place): the load waits, the save completes, nothing is lost."""
    import glob
    import time

    first = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=1)
    path = first.save_to_preset(str(tmp_path / "p"))
    env = dict(os.environ, KERAS_LINCAE_PRESET_PAUSE="between_renames:3")
    child = subprocess.Popen([*_SAVE_SECOND, path], env=env)
    deadline = time.time() + 300
    while not glob.glob(f"{tmp_path}/.p.old-*/preset"):
        assert child.poll() is None, "the saving process ended before reaching the pause"
        assert time.time() < deadline, "the saving process never reached the pause"
        time.sleep(0.05)
    loaded = LinCAE.from_preset(path)
    assert child.wait() == 0
    second = randomize_weights(LinCAE.from_preset("lin_cae_tiny", load_weights=False), seed=2)
    audio = music_like(9000, seed=2)
    np.testing.assert_array_equal(to_numpy(loaded.encode(audio)), to_numpy(second.encode(audio)))
    assert os.listdir(tmp_path) == ["p"]


def test_corrupted_weights_fail_the_checksum(tiny_model, tmp_path):
    path = tiny_model.save_to_preset(str(tmp_path / "p"))
    weights = os.path.join(path, WEIGHTS_FILE)
    metadata = json.load(open(os.path.join(path, METADATA_FILE)))
    assert metadata["weights_sha256"] == preset_io.file_sha256(weights)
    data = bytearray(open(weights, "rb").read())
    middle = len(data) // 2
    data[middle : middle + 4] = bytes(255 - b for b in data[middle : middle + 4])
    open(weights, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=f"{re.escape(weights)} are corrupt.*: checksum .* does not match metadata.json"):
        LinCAE.from_preset(path)
    LinCAE.from_preset(path, load_weights=False)  # the architecture alone needs no weights


def test_preset_without_checksum_still_loads(tiny_model, tmp_path):
    path = tiny_model.save_to_preset(str(tmp_path / "p"))
    _edit_json(os.path.join(path, METADATA_FILE), lambda m: m.pop("weights_sha256"))
    audio = music_like(9000, seed=3)
    np.testing.assert_array_equal(to_numpy(LinCAE.from_preset(path).encode(audio)), to_numpy(tiny_model.encode(audio)))


def test_newer_format_version_is_refused(tiny_model, tmp_path):
    path = tiny_model.save_to_preset(str(tmp_path / "p"))
    assert json.load(open(os.path.join(path, METADATA_FILE)))["format_version"] == preset_io.FORMAT_VERSION
    newer = preset_io.FORMAT_VERSION + 1
    _edit_json(os.path.join(path, METADATA_FILE), lambda m: m.update(format_version=newer))
    with pytest.raises(ValueError, match=f"format_version {newer}, newer than this keras_lincae"):
        LinCAE.from_preset(path, load_weights=False)


@pytest.mark.parametrize("source", ["", "..", "../keras_lincae", "lin_cae_small/../../keras_lincae", "a/b"])
def test_bad_preset_arguments_give_a_value_error(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # none of these is a folder here
    with pytest.raises(ValueError, match=r"Accepted: a built-in name \(") as info:
        LinCAE.from_preset(source)
    assert repr(source) in str(info.value) or source == ".."


@pytest.mark.parametrize("field, value", [("base_channels", "8"), ("layers_list", 5), ("use_fourier", 1),
                                          ("sigma_max", None), ("multipliers_list", [1, "2", 4, 4, 4])])
def test_config_field_of_the_wrong_type_is_named(tiny_model, tmp_path, field, value):
    path = tiny_model.save_to_preset(str(tmp_path / "p"))
    _edit_json(os.path.join(path, CONFIG_FILE), lambda c: c["config"].update({field: value}))
    with pytest.raises(ValueError, match=f"config.json field '{field}' is") as info:
        LinCAE.from_preset(path, load_weights=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["lin_cae_small", "m2l_small"])
def test_shipped_presets_record_and_verify_their_checksum(name):
    folder = os.path.join(preset_io.REPO_PRESETS_DIR, name)
    metadata = json.load(open(os.path.join(folder, METADATA_FILE)))
    assert metadata["weights_sha256"] == preset_io.file_sha256(os.path.join(folder, WEIGHTS_FILE))
    LinCAE.from_preset(name)


def _ship_preset():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "tools"))
    import ship_preset

    return ship_preset


def test_ship_preset_out_follows_the_no_overwrite_rule(tiny_model, tmp_path, capsys):
    ship = _ship_preset()
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    preset = tiny_model.save_to_preset(str(tmp_path / "p"))
    run = str(tmp_path / "no_such_run")
    cases = [
        (["--out", str(user), "--overwrite"], "is not empty and is not a preset"),
        (["--out", preset], "a preset is already there; pass --overwrite"),
        (["--out", str(tmp_path / "new"), "--eval", "no_equals_sign"], "must be LABEL=EVAL_DIR"),
        (["--out", preset, "--overwrite"], "config.yaml"),  # the run folder is missing
    ]
    for extra, message in cases:
        assert ship.main([run, "tiny"] + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("ship_preset: error: ") and message in err and err.count("\n") == 1
    assert (user / "notes.txt").read_text() == "keep me" and os.listdir(user) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["mine", "p"]
