"""The `lincae` command line (`keras_lincae.cli`), run in-process, plus one `python -m` subprocess."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from keras_lincae.testing.helpers import music_like

from keras_lincae import arithmetic, cli, cli_io, presets
from keras_lincae.long_audio import decode_long, encode_long
from keras_lincae.models.lincae import LinCAE

# Short files and 0.2 s chunks: every model call sees 13824-sample windows, batches of 4.
FAST = ["--chunk-seconds", "0.2", "--batch-size", "4", "--seed", "3"]
ENCODE_FAST = ["--chunk-seconds", "0.2", "--batch-size", "4"]


@pytest.fixture
def model(tiny_model, monkeypatch):
    """Make the default preset the shared randomised tiny model (fast; outputs depend on latents)."""
    monkeypatch.setattr(cli, "DEFAULT_PRESET", "lin_cae_tiny")
    monkeypatch.setitem(cli._MODELS, ("lin_cae_tiny", "float32"), tiny_model)
    return tiny_model


def _write(path, audio, rate):
    sf.write(path, np.asarray(audio).T, rate, subtype="FLOAT")
    return str(path)


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _stereo(length, seed):
    return music_like(length, batch=2, seed=seed)


def test_autoencode_stereo_48k_round_trip(model, tmp_path, capsys):
    src = _write(tmp_path / "in.wav", _stereo(12_000, 0), 48_000)
    out = tmp_path / "out.wav"
    code, _, err = _run(capsys, "autoencode", src, "-o", out, *FAST)
    assert code == 0, err
    assert "resampling" in err and "48000 Hz to 44100 Hz" in err
    audio, rate = sf.read(out, always_2d=True)
    assert rate == 44_100 and audio.shape == (int(np.ceil(12_000 * 441 / 480)), 2)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0
    # Requested output rate: back to the input's length.
    out48 = tmp_path / "out48.flac"
    code, _, err = _run(capsys, "autoencode", src, "-o", out48, "--sample-rate", "48000", *FAST)
    assert code == 0, err
    info = sf.info(out48)
    assert (info.samplerate, info.channels, info.frames) == (48_000, 2, 12_000)
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "out.wav", "out48.flac"]  # no temporary files left
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not mkstemp's 0600


def test_encode_decode_matches_api(model, tmp_path, capsys):
    audio = _stereo(12_000, 1)
    src = _write(tmp_path / "in.wav", audio, 44_100)
    code, _, err = _run(capsys, "encode", src, "-o", tmp_path / "z.npz", *ENCODE_FAST)
    assert code == 0, err
    with np.load(tmp_path / "z.npz") as npz:
        assert str(npz["preset"]) == "lin_cae_tiny"
        assert int(npz["sample_rate"]) == 44_100 and int(npz["length"]) == 12_000 and int(npz["channels"]) == 2
        latents = npz["latents"]
    expected = encode_long(model, audio[None], chunk_seconds=0.2, batch_size=4)
    assert latents.shape == expected.latents.shape[1:]
    np.testing.assert_allclose(latents, expected.latents[0], rtol=0, atol=1e-5)
    code, _, err = _run(capsys, "decode", tmp_path / "z.npz", "-o", tmp_path / "dec.wav", *FAST[2:])
    assert code == 0, err
    decoded, rate = sf.read(tmp_path / "dec.wav", always_2d=True, dtype="float32")
    reference = decode_long(model, expected, seed=3, batch_size=4)[0].T
    scale = np.abs(reference).max()
    np.testing.assert_allclose(decoded, reference, rtol=0, atol=1e-4 * scale)


def test_mix_separate_scale_equal_api(model, tmp_path, capsys):
    u, v = _stereo(12_000, 2), 0.5 * _stereo(12_000, 3)
    fu, fv = _write(tmp_path / "u.wav", u, 44_100), _write(tmp_path / "v.wav", v, 44_100)
    code, _, err = _run(capsys, "encode", fv, "-o", tmp_path / "v.npz", *ENCODE_FAST)
    assert code == 0, err
    zu = encode_long(model, u[None], chunk_seconds=0.2, batch_size=4)
    zv = encode_long(model, v[None], chunk_seconds=0.2, batch_size=4)
    # mix of an audio file and a latent file, written as latents: the exact weighted sum.
    code, _, err = _run(capsys, "mix", fu, tmp_path / "v.npz", "--gains", "1.0", "0.5", "-o", tmp_path / "m.npz",
                        *ENCODE_FAST)
    assert code == 0, err
    with np.load(tmp_path / "m.npz") as npz:
        np.testing.assert_allclose(npz["latents"], zu.latents[0] + 0.5 * zv.latents[0], rtol=0, atol=1e-5)
    # separate decodes the difference of the latents once.
    code, _, err = _run(capsys, "separate", fu, tmp_path / "v.npz", "-o", tmp_path / "s.wav", *FAST)
    assert code == 0, err
    separated, _ = sf.read(tmp_path / "s.wav", always_2d=True, dtype="float32")
    reference = decode_long(model, arithmetic.separate(zu, zv), seed=3, batch_size=4)[0].T
    np.testing.assert_allclose(separated, reference, rtol=0, atol=1e-4 * np.abs(reference).max())
    # --stream writes the same audio block by block.
    code, _, err = _run(capsys, "separate", fu, tmp_path / "v.npz", "-o", tmp_path / "ss.wav", "--stream", *FAST)
    assert code == 0, err
    np.testing.assert_array_equal(sf.read(tmp_path / "ss.wav", always_2d=True, dtype="float32")[0], separated)
    # scale from a latent file.
    code, _, err = _run(capsys, "scale", tmp_path / "v.npz", "--gain", "2", "-o", tmp_path / "sc.npz", *ENCODE_FAST)
    assert code == 0, err
    with np.load(tmp_path / "sc.npz") as npz:
        np.testing.assert_allclose(npz["latents"], 2 * zv.latents[0], rtol=0, atol=1e-5)
    # --affine: relative to the encoding of silence with the same chunking.
    origin = arithmetic.silence_latents(model, zv)
    code, _, err = _run(capsys, "scale", tmp_path / "v.npz", "--gain", "2", "--affine", "-o", tmp_path / "sa.npz",
                        *ENCODE_FAST)
    assert code == 0, err
    with np.load(tmp_path / "sa.npz") as npz:
        np.testing.assert_allclose(npz["latents"], 2 * zv.latents[0] - origin.latents[0], rtol=0, atol=1e-5)


def test_missing_weights_fall_back_to_random_with_a_warning(monkeypatch, capsys):
    spec = dict(presets.BUILTIN_PRESETS["lin_cae_tiny"], official_folder=None)
    monkeypatch.setitem(presets.BUILTIN_PRESETS, "tiny_without_weights", spec)
    monkeypatch.setattr(cli, "_MODELS", {})
    model = cli._load_model("tiny_without_weights", quiet=False)
    assert "ships no trained weights" in capsys.readouterr().err
    assert cli._load_model("tiny_without_weights", quiet=False) is model  # loaded once per process
    assert capsys.readouterr().err == ""


def test_dtype_bfloat16_runs_the_model_in_mixed_bfloat16(model, tmp_path, capsys, monkeypatch):
    """`--dtype bfloat16` loads the same weights under `mixed_bfloat16`: close latents, not equal."""
    load = LinCAE.from_preset

    def from_preset(cls, preset, load_weights=True, dtype=None):  # the fixture's weights, any policy
        twin = load("lin_cae_tiny", load_weights=False, dtype=dtype)
        twin.set_weights(model.get_weights())
        return twin

    monkeypatch.setattr(LinCAE, "from_preset", classmethod(from_preset))
    src = _write(tmp_path / "in.wav", _stereo(12_000, 2), 44_100)
    latents = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / f"{dtype}.npz"
        code, _, err = _run(capsys, "encode", src, "-o", out, "--preset", "some_preset", "--dtype", dtype, *ENCODE_FAST)
        assert code == 0, err
        with np.load(out) as npz:
            latents[dtype] = npz["latents"]
    assert cli._MODELS["some_preset", "mixed_bfloat16"].dtype_policy.name == "mixed_bfloat16"
    error = np.linalg.norm(latents["bfloat16"] - latents["float32"]) / np.linalg.norm(latents["float32"])
    assert 1e-4 < error < 0.1, error


@pytest.fixture
def files(tmp_path):
    """Good and bad inputs for the error tests."""
    good = _write(tmp_path / "good.wav", _stereo(12_000, 4), 44_100)
    mono = _write(tmp_path / "mono.wav", music_like(6000, batch=1, seed=5), 44_100)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2)), 44_100)
    (tmp_path / "garbage.wav").write_bytes(b"this is not audio")
    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip file")
    np.savez(tmp_path / "nolatents.npz", x=np.zeros(3))
    np.savez(tmp_path / "objects.npz", latents=np.array([{"a": 1}], dtype=object))
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "nolatents.npz").read_bytes()[:100])
    return dict(good=good, mono=mono, empty=str(empty), garbage=str(tmp_path / "garbage.wav"),
                garbage_npz=str(tmp_path / "garbage.npz"), nolatents=str(tmp_path / "nolatents.npz"),
                objects_npz=str(tmp_path / "objects.npz"), truncated_npz=str(tmp_path / "truncated.npz"),
                missing=str(tmp_path / "missing.wav"), missing_npz=str(tmp_path / "missing.npz"),
                dir=str(tmp_path))


BAD_CALLS = [
    # (argv with {placeholders}, output name, expected message part)
    (["encode", "{missing}"], "o.npz", "not found"),
    (["encode", "{garbage}"], "o.npz", "cannot decode"),
    (["encode", "{empty}"], "o.npz", "empty"),
    (["encode", "{good}", "--preset", "no_such_preset"], "o.npz", "Unknown preset"),
    (["encode", "{good}"], "o.wav", "must end in .npz"),
    (["encode", "{dir}"], "o.npz", "folder"),
    (["decode", "{missing_npz}"], "o.wav", "not found"),
    (["decode", "{garbage_npz}"], "o.wav", "cannot read latent file .*: it is not a .npz archive"),
    (["decode", "{objects_npz}"], "o.wav", "cannot read latent file .*: it holds Python objects, which are not"),
    (["decode", "{truncated_npz}"], "o.wav", "cannot read latent file"),
    (["decode", "{latents_newer}"], "o.wav", r"newer/latents.npz: .* newer keras_lincae \(format_version 2 > 1\)"),
    (["decode", "{nolatents}"], "o.wav", "no 'latents'"),
    (["decode", "{good}"], "o.wav", "latent file"),
    (["decode", "{latents}"], "o.mp3", "must end in"),
    (["decode", "{latents}", "--preset", "no_such_preset"], "o.wav", "Unknown preset"),
    (["autoencode", "{missing}"], "o.wav", "not found"),
    (["autoencode", "{garbage}"], "o.wav", "cannot decode"),
    (["autoencode", "{empty}"], "o.flac", "empty"),
    (["autoencode", "{good}", "--preset", "no_such_preset"], "o.wav", "Unknown preset"),
    (["mix", "{good}", "{missing}"], "o.wav", "not found"),
    (["mix", "{good}", "{garbage}"], "o.wav", "cannot decode"),
    (["mix", "{good}", "{empty}"], "o.wav", "empty"),
    (["mix", "{good}", "{good}", "--gains", "1", "nan"], "o.wav", "finite"),
    (["mix", "{good}", "{good}", "--gains", "1"], "o.wav", "1 gains for 2"),
    (["mix", "{good}", "{mono}"], "o.wav", "channel"),
    (["mix", "{latents}", "{latents_other_chunks}"], "o.wav", "chunked differently|shapes differ"),
    (["mix", "{latents}", "{good}", "--preset", "no_such_preset"], "o.wav", "Unknown preset"),
    (["separate", "{good}", "{missing}"], "o.wav", "not found"),
    (["separate", "{garbage}", "{good}"], "o.wav", "cannot decode"),
    (["separate", "{good}", "{empty}"], "o.wav", "empty"),
    (["separate", "{mono}", "{latents}"], "o.wav", "longer|channel"),
    (["separate", "{good}", "{good}", "--preset", "no_such_preset"], "o.wav", "Unknown preset"),
    (["scale", "{good}", "--gain", "nan"], "o.wav", "finite"),
    (["scale", "{missing}", "--gain", "2"], "o.wav", "not found"),
    (["scale", "{garbage}", "--gain", "2"], "o.wav", "cannot decode"),
    (["scale", "{empty}", "--gain", "2"], "o.wav", "empty"),
    (["scale", "{good}", "--gain", "2", "--preset", "no_such_preset"], "o.wav", "Unknown preset"),
    (["scale", "{latents}", "--gain", "2", "--stream"], "o.npz", "--stream: only for audio outputs"),
    (["mix", "{good}", "{latents}", "--sample-rate", "48000"], "o.npz", "only for audio outputs; .*o.npz gets latents"),
    (["separate", "{latents}", "{latents}", "--steps", "4", "--seed", "0"], "o.npz",
     "--steps, --seed: only for audio outputs; .*nothing is decoded"),
]


@pytest.fixture(scope="module")
def latent_files(tmp_path_factory, tiny_model):
    """Latent files of `good.wav`-like audio, encoded with two chunkings (written via the CLI format)."""
    folder = tmp_path_factory.mktemp("latents")
    audio = _stereo(12_000, 4)[None]
    paths = {}
    for name, extra in (("latents", {"chunk_seconds": 0.2}), ("latents_other_chunks", {"chunk_seconds": None})):
        paths[name] = str(folder / f"{name}.npz")
        cli_io.write_latents(paths[name], encode_long(tiny_model, audio, batch_size=4, **extra), "lin_cae_tiny")
    with np.load(paths["latents"]) as npz:
        newer = dict(npz, format_version=np.int64(2))
    paths["latents_newer"] = str(folder / "newer" / "latents.npz")
    os.makedirs(os.path.dirname(paths["latents_newer"]))
    np.savez(paths["latents_newer"], **newer)
    return paths


@pytest.mark.parametrize("argv, output, match", BAD_CALLS, ids=[" ".join(c[0][:2]) + f" {c[2]}" for c in BAD_CALLS])
def test_bad_input_exits_2_with_one_line_and_no_output(model, files, latent_files, tmp_path, capsys, argv, output,
                                                       match):
    names = dict(files, **latent_files)
    out = tmp_path / output
    before = set(os.listdir(tmp_path))
    code, _, err = _run(capsys, *[a.format(**names) for a in argv], "-o", out, "--batch-size", "4")
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.startswith("lincae: error:")]
    assert len(lines) == 1 and re.search(match, lines[0]), err
    assert "allow_pickle" not in err  # numpy's hint: loading pickles would run code from the file
    assert not out.exists()
    assert set(os.listdir(tmp_path)) == before  # nothing half-written, no temporary file


def test_preset_folder_named_in_a_latent_file_is_used_with_a_note(model, latent_files, tmp_path, capsys,
                                                                  monkeypatch):
    folder = str(tmp_path / "someone_elses_preset")
    monkeypatch.setitem(cli._MODELS, (folder, "float32"), model)  # what loading that folder would give
    latents = str(tmp_path / "z.npz")
    cli_io.write_latents(latents, encode_long(model, _stereo(12_000, 4)[None], chunk_seconds=0.2, batch_size=4), folder)
    code, _, err = _run(capsys, "decode", latents, "-o", tmp_path / "o.wav", "--quiet", "--batch-size", "4")
    assert code == 0 and err == (f"lincae: note: using the preset {folder} named in the latent file (not a "
                                 "built-in preset; choose the model with --preset)\n")
    code, _, err = _run(capsys, "decode", latent_files["latents"], "-o", tmp_path / "p.wav", "--quiet",
                        "--batch-size", "4")
    assert code == 0 and err == "", err  # a built-in preset name


def test_usage_errors_exit_2(capsys):
    for argv in ([], ["mix"], ["scale", "x.wav", "-o", "y.wav"], ["autoencode", "x.wav", "-o", "y.wav", "--steps", "0"],
                 ["encode", "x.wav", "-o", "y.npz", "--chunk-seconds", "-1"], ["nope"]):
        code, _, err = _run(capsys, *argv)
        assert code == 2 and re.search(r"^lincae( \w+)?: error:", err, re.MULTILINE), err


def test_failed_write_leaves_previous_output_intact(model, files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "o.wav"
    out.write_bytes(b"previous")

    def broken_write(self, data):  # the header is on disk already: a partial file
        raise OSError("disk full")

    monkeypatch.setattr(sf.SoundFile, "write", broken_write)
    for stream in ([], ["--stream"]):
        code, _, err = _run(capsys, "autoencode", files["good"], "-o", out, "--overwrite", *stream, *FAST)
        assert code == 2 and "disk full" in err
        assert out.read_bytes() == b"previous"
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_decode_stream_writes_the_same_file_block_by_block(model, tmp_path, capsys, monkeypatch):
    src = _write(tmp_path / "in.wav", music_like(66_000, batch=2, seed=8), 44_100)  # 16 chunks of 0.2 s
    code, _, err = _run(capsys, "encode", src, "-o", tmp_path / "z.npz", *ENCODE_FAST)
    assert code == 0, err
    writes = []
    real_write = sf.SoundFile.write
    monkeypatch.setattr(sf.SoundFile, "write", lambda self, data: writes.append(len(data)) or real_write(self, data))
    for suffix in (".wav", ".flac"):
        whole, streamed = tmp_path / f"whole{suffix}", tmp_path / f"streamed{suffix}"
        code, _, err = _run(capsys, "decode", tmp_path / "z.npz", "-o", whole, *FAST[2:])
        assert code == 0 and writes[-1] == 66_000, err
        del writes[:]
        code, _, err = _run(capsys, "decode", tmp_path / "z.npz", "-o", streamed, "--stream", *FAST[2:])
        assert code == 0, err
        assert len(writes) == 8 and sum(writes) == 66_000  # one block per model call (2 chunks x 2 channels)
        a, rate_a = sf.read(whole, dtype="float32")
        b, rate_b = sf.read(streamed, dtype="float32")
        assert rate_a == rate_b == 44_100 and a.shape == (66_000, 2)
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "streamed.flac", "streamed.wav", "whole.flac", "whole.wav",
                                            "z.npz"]
    code, _, err = _run(capsys, "decode", tmp_path / "z.npz", "-o", tmp_path / "streamed.wav", "--stream")
    assert code == 2 and "exists; pass --overwrite" in err
    code, _, err = _run(capsys, "decode", tmp_path / "z.npz", "-o", tmp_path / "o.wav", "--stream",
                        "--sample-rate", "48000")
    assert code == 2 and err.count("\n") == 1 and "--stream writes the model's sample rate" in err


def test_help_via_python_m():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-m", "keras_lincae", "--help"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    for command in cli.COMMANDS:
        assert command in result.stdout
    assert cli.main(["--version"]) == 0


# ------------------------------------------------------------------------ the user's files


def test_output_that_is_an_input_is_refused_and_the_input_kept(model, files, tmp_path, capsys):
    original = open(files["good"], "rb").read()
    same = os.path.join(str(tmp_path), ".", os.path.basename(files["good"]))  # another spelling
    link = tmp_path / "link.wav"
    link.symlink_to(files["good"])
    for argv in (["autoencode", files["good"], "-o", files["good"]],
                 ["autoencode", files["good"], "-o", same, "--overwrite"],
                 ["scale", files["good"], "--gain", "2", "-o", str(link), "-y"],
                 ["mix", files["mono"], files["good"], "-o", files["good"], "--overwrite"]):
        code, _, err = _run(capsys, *argv, *FAST)
        assert code == 2 and err.count("\n") == 1 and "is the input" in err, err
    assert open(files["good"], "rb").read() == original


def test_existing_output_is_replaced_only_with_overwrite(model, files, tmp_path, capsys):
    out = tmp_path / "o.wav"
    out.write_bytes(b"previous")
    code, _, err = _run(capsys, "autoencode", files["good"], "-o", out, *FAST)
    assert code == 2 and err.count("\n") == 1 and "exists; pass --overwrite (-y)" in err, err
    assert out.read_bytes() == b"previous"
    for flag in ("--overwrite", "-y"):
        out.write_bytes(b"previous")
        code, _, err = _run(capsys, "autoencode", files["good"], "-o", out, flag, *FAST)
        assert code == 0, err
        assert sf.info(out).frames == 12_000


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_files_of_dead_processes_are_removed(model, files, tmp_path, capsys):
    stale = tmp_path / f"{cli_io.TEMP_PREFIX}{_dead_pid()}-k1x_9q.tmp"
    live = tmp_path / f"{cli_io.TEMP_PREFIX}{os.getpid()}-a2b3c4.tmp"  # a run in progress
    other = tmp_path / ".song.wav.x7y8.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"partial")
    code, _, err = _run(capsys, "encode", files["good"], "-o", tmp_path / "z.npz", *ENCODE_FAST)
    assert code == 0, err
    assert not stale.exists() and live.exists() and other.exists()


def test_temporary_name_is_short_so_long_output_names_work(model, files, tmp_path, capsys, monkeypatch):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    if limit < 255:
        pytest.skip(f"file names are limited to {limit} bytes here")
    out = tmp_path / ("n" * 236 + ".wav")  # 240 characters
    code, _, err = _run(capsys, "autoencode", files["good"], "-o", out, *FAST)
    assert code == 0, err
    assert sf.info(out).frames == 12_000
    seen = []
    real_mkstemp = cli_io.tempfile.mkstemp
    monkeypatch.setattr(cli_io.tempfile, "mkstemp", lambda **kw: seen.append(kw) or real_mkstemp(**kw))
    code, _, err = _run(capsys, "encode", files["good"], "-o", tmp_path / ("m" * 240 + ".npz"), *ENCODE_FAST)
    assert code == 0, err
    assert seen[0]["prefix"] == f"{cli_io.TEMP_PREFIX}{os.getpid()}-"


@pytest.mark.parametrize("case", ["no folder", "too long", "not writable", "exists", "bad suffix"])
def test_output_is_checked_before_the_model_runs(files, tmp_path, capsys, monkeypatch, case):
    def no_model(*args):
        raise AssertionError("the model must not be loaded for a bad output")

    monkeypatch.setattr(cli, "_load_model", no_model)
    out = {"no folder": tmp_path / "missing" / "o.wav", "too long": tmp_path / ("x" * 300 + ".wav"),
           "not writable": tmp_path / "o.wav", "exists": tmp_path / "mono.wav", "bad suffix": tmp_path / "o.mp3"}[case]
    if case == "not writable":  # as root, a read-only folder is still writable: ask os.access
        monkeypatch.setattr(cli_io.os, "access", lambda path, mode: False)
    code, _, err = _run(capsys, "autoencode", files["good"], "-o", out, *FAST)
    assert code == 2 and err.count("\n") == 1 and err.startswith("lincae: error:"), err
    assert re.search({"no folder": "does not exist", "too long": "longer than", "not writable": "not writable",
                      "exists": "exists; pass --overwrite", "bad suffix": "must end in"}[case], err), err


def test_bad_numbers_are_refused_before_anything_is_allocated(files, tmp_path, capsys):
    slow = tmp_path / "slow.wav"
    sf.write(slow, np.zeros((100, 1)), 1000, subtype="FLOAT")  # 1 kHz: 44x more samples once resampled
    for argv, match in ((["autoencode", files["good"], "--sample-rate", "1000000000"], "sample rate in"),
                        (["decode", files["good"], "--seed", "-1"], r"integer in \[0, 4294967295\]"),
                        (["autoencode", files["good"], "--chunk-seconds", "abc"], "number >= 0"),
                        (["autoencode", str(slow)], "sample rate 1000 Hz")):
        code, _, err = _run(capsys, *argv, "-o", tmp_path / "o.wav")
        assert code == 2 and err.count("\n") == 1 and re.search(match, err), err
        assert "Traceback" not in err


def test_debug_shows_the_traceback(files, tmp_path, capsys):
    code, _, err = _run(capsys, "encode", files["missing"], "-o", tmp_path / "o.npz", "--debug")
    assert code == 2 and "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1] == f"lincae: error: input file not found: {files['missing']}"
    code, _, err = _run(capsys, "encode", files["missing"], "-o", tmp_path / "o.npz")
    assert code == 2 and "Traceback" not in err


def test_long_input_shows_progress(model, tmp_path, capsys):
    src = _write(tmp_path / "long.wav", music_like(66_000, batch=1, seed=6), 44_100)  # 16 chunks of 0.2 s
    code, _, err = _run(capsys, "autoencode", src, "-o", tmp_path / "o.wav", *FAST)
    assert code == 0, err
    for stage in ("encode", "decode"):
        lines = [line for line in err.splitlines() if line.startswith(f"lincae: {stage}")]
        assert len(lines) >= 3 and lines[-1].endswith("16/16 chunks"), err
    code, _, err = _run(capsys, "autoencode", src, "-o", tmp_path / "q.wav", "--quiet", *FAST)
    assert code == 0 and err == ""


def test_default_chunk_length_is_the_presets_training_context(tmp_path, capsys):
    """Without `--chunk-seconds` the small shipped presets encode in chunks of their training clips
    (`presets.recommended_chunk_seconds`), other presets in 10-s chunks; an explicit value wins."""
    assert presets.recommended_chunk_seconds("lin_cae_small") == presets.SMALL_CHUNK_SECONDS == 0.4
    assert presets.recommended_chunk_seconds("m2l_small") == 0.4
    assert presets.recommended_chunk_seconds("lin_cae") is None and presets.recommended_chunk_seconds("x/y") is None

    def chosen(preset, *flags):
        return cli._chunk_seconds(cli.build_parser().parse_args(["encode", "a.wav", "-o", "z.npz", *flags]), preset)

    assert chosen("lin_cae_small") == 0.4 and chosen("lin_cae_tiny") == cli.DEFAULT_CHUNK_SECONDS == 10.0
    assert chosen("lin_cae_small", "--chunk-seconds", "2") == 2.0
    assert chosen("lin_cae_small", "--chunk-seconds", "0") is None
    src = _write(tmp_path / "in.wav", music_like(44_100, batch=1, seed=5), 44_100)
    code, _, err = _run(capsys, "encode", src, "-o", tmp_path / "z.npz", "--quiet")  # the default preset: lin_cae_small
    assert code == 0, err
    with np.load(tmp_path / "z.npz") as npz:
        assert str(npz["preset"]) == "lin_cae_small" and npz["latents"].shape[1] >= 3  # 1 s in 0.4-s chunks
        assert int(npz["chunk_samples"]) < 0.5 * 44_100
