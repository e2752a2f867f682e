"""The embedded synthetic dataset: layout, exact mixtures, determinism, idempotence, atomicity."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from keras_lincae.data import fluidsynth, synth

SECONDS = 0.5
SR = 44100


def make(root, **kwargs):
    kwargs = dict(dict(num_songs=2, num_test_songs=1, seconds=SECONDS, renderer="numpy"), **kwargs)
    return synth.make_synthetic_dataset(root, **kwargs)


def read(path):
    audio, sr = sf.read(path, dtype="float32")
    return audio, sr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make(tmp_path_factory.mktemp("synth") / "ds")


def test_layout(dataset):
    assert sorted(os.listdir(dataset / "train")) == ["song_000", "song_001"]
    assert sorted(os.listdir(dataset / "test")) == ["song_000"]
    for split, song in (("train", "song_000"), ("train", "song_001"), ("test", "song_000")):
        names = sorted(os.listdir(dataset / split / song))
        assert names == ["bass.wav", "drums.wav", "mixture.wav", "other.wav", "vocals.wav"]
        for name in names:
            info = sf.info(str(dataset / split / song / name))
            assert info.samplerate == SR
            assert info.channels == 1
            assert info.frames == int(SECONDS * SR)
            assert info.subtype == "FLOAT"
    manifest = json.loads((dataset / synth.MANIFEST_NAME).read_text())
    assert manifest["renderer"] == "numpy"
    assert manifest["num_songs"] == 2 and manifest["num_test_songs"] == 1
    assert [s["name"] for s in manifest["songs"]["train"]] == ["song_000", "song_001"]


@pytest.mark.parametrize("split,song", [("train", "song_000"), ("train", "song_001"),
                                        ("test", "song_000")])
def test_mixture_is_exact_sum_of_stems_and_peak_normalised(dataset, split, song):
    folder = dataset / split / song
    stems = {name: read(str(folder / f"{name}.wav"))[0] for name in synth.STEMS}
    mixture = read(str(folder / "mixture.wav"))[0]
    assert mixture.dtype == np.float32
    total = np.zeros_like(mixture)
    for name in synth.STEMS:
        total = total + stems[name]
    np.testing.assert_array_equal(mixture, total)  # bit-exact in float32
    assert np.max(np.abs(mixture)) == pytest.approx(0.9, abs=1e-6)
    for name, audio in stems.items():
        assert np.all(np.isfinite(audio))
        rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
        assert rms > 1e-3, name  # every stem is audible


def test_deterministic_with_seed(tmp_path):
    a = make(tmp_path / "a", seed=3, num_songs=1)
    b = make(tmp_path / "b", seed=3, num_songs=1)
    c = make(tmp_path / "c", seed=4, num_songs=1)
    for name in ("mixture", *synth.STEMS):
        rel = f"train/song_000/{name}.wav"
        # (not the bytes: libsndfile stamps float WAVs with the time in a PEAK chunk)
        np.testing.assert_array_equal(read(str(a / rel))[0], read(str(b / rel))[0])
        assert not np.allclose(read(str(a / rel))[0], read(str(c / rel))[0])


def test_test_split_is_held_out(dataset):
    train = read(str(dataset / "train" / "song_000" / "mixture.wav"))[0]
    test = read(str(dataset / "test" / "song_000" / "mixture.wav"))[0]
    assert not np.allclose(train, test)
    manifest = json.loads((dataset / synth.MANIFEST_NAME).read_text())
    assert manifest["songs"]["train"][0]["tempo"] != manifest["songs"]["test"][0]["tempo"]


def test_songs_vary_in_key_and_tempo():
    infos = [synth.generate_song(s, seconds=0.1)[1] for s in range(8)]
    assert len({i["tempo"] for i in infos}) == 8
    assert len({i["root"] for i in infos}) > 1
    for info in infos:
        assert 80 <= info["tempo"] <= 140
        assert info["mode"] in ("major", "minor")


def _centroid(audio, sr):
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / sr)
    return float(np.sum(freqs * spectrum) / np.sum(spectrum))


def test_stems_have_their_own_character():
    stems, info = synth.generate_song(11, seconds=2.0, renderer="numpy")
    assert info["renderer"] == "numpy"
    assert set(stems) == {"mixture", *synth.STEMS}
    centroids = {name: _centroid(stems[name], SR) for name in synth.STEMS}
    assert centroids["bass"] < centroids["other"] < centroids["drums"]
    assert centroids["bass"] < centroids["vocals"]
    # bass energy sits below 400 Hz
    spectrum = np.abs(np.fft.rfft(stems["bass"])) ** 2
    freqs = np.fft.rfftfreq(len(stems["bass"]), 1 / SR)
    assert spectrum[freqs < 400].sum() > 0.8 * spectrum.sum()


def test_other_sample_rates():
    stems, info = synth.generate_song(0, seconds=0.25, sample_rate=22050)
    assert all(a.shape == (int(0.25 * 22050),) and a.dtype == np.float32 for a in stems.values())
    assert info["sample_rate"] == 22050


def test_idempotent(tmp_path):
    root = make(tmp_path / "ds", num_songs=1)
    mixture = root / "train" / "song_000" / "mixture.wav"
    stamp = mixture.stat().st_mtime_ns
    assert make(tmp_path / "ds", num_songs=1) == root
    assert make(tmp_path / "ds", num_songs=1, renderer="auto") == root
    assert mixture.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="ds"):
        make(tmp_path / "ds", num_songs=2)
    assert sorted(os.listdir(tmp_path)) == ["ds"]  # no temporary folders left behind


def test_existing_empty_folder_is_used(tmp_path):
    (tmp_path / "ds").mkdir()
    root = make(tmp_path / "ds", num_songs=1)
    assert (root / "train" / "song_000" / "mixture.wav").exists()


def test_atomic_on_failure(tmp_path, monkeypatch):
    calls = []
    real = synth.generate_song

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(synth, "generate_song", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        make(tmp_path / "ds")
    assert os.listdir(tmp_path) == []  # neither the dataset nor a temporary folder


def test_default_dataset_dir_and_ensure(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_LINCAE_CACHE", str(tmp_path / "cache"))
    assert synth.default_dataset_dir() == tmp_path / "cache" / "synthetic_v1"
    root = synth.ensure_default_dataset(num_songs=1, num_test_songs=1, seconds=0.2,
                                        renderer="numpy")
    assert root == synth.default_dataset_dir()
    assert (root / "test" / "song_000" / "vocals.wav").exists()
    assert synth.ensure_default_dataset(num_songs=1, num_test_songs=1, seconds=0.2,
                                        renderer="numpy") == root
    monkeypatch.delenv("KERAS_LINCAE_CACHE")
    assert synth.default_dataset_dir() == (
        __import__("pathlib").Path.home() / ".cache" / "keras_lincae" / "synthetic_v1")


def test_fluidsynth_renderer_needs_fluidsynth(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "fluidsynth_available", lambda soundfont=None: None)
    with pytest.raises(RuntimeError, match="fluidsynth"):
        make(tmp_path / "ds", renderer="fluidsynth")
    assert os.listdir(tmp_path) == []
    root = make(tmp_path / "ds", renderer="auto", num_songs=1)  # falls back to numpy
    assert json.loads((root / synth.MANIFEST_NAME).read_text())["renderer"] == "numpy"
    with pytest.raises(ValueError, match="renderer"):
        synth.generate_song(0, renderer="timidity")


def test_fluidsynth_available_finds_binary_and_soundfont(tmp_path, monkeypatch):
    soundfont = tmp_path / "gm.sf2"
    soundfont.write_bytes(b"RIFF")
    monkeypatch.setattr(fluidsynth.shutil, "which", lambda name: "/usr/bin/" + name)
    assert fluidsynth.fluidsynth_available(str(soundfont)) == ("/usr/bin/fluidsynth", str(soundfont))
    monkeypatch.setenv("KERAS_LINCAE_SOUNDFONT", str(soundfont))
    assert fluidsynth.fluidsynth_available() == ("/usr/bin/fluidsynth", str(soundfont))
    assert fluidsynth.fluidsynth_available(str(tmp_path / "missing.sf2")) is None
    monkeypatch.setattr(fluidsynth.shutil, "which", lambda name: None)
    assert fluidsynth.fluidsynth_available(str(soundfont)) is None


def _parse_midi(data):
    assert data[:4] == b"MThd"
    fmt, ntracks, division = np.frombuffer(data[8:14], ">u2")
    assert data[14:18] == b"MTrk"
    length = int.from_bytes(data[18:22], "big")
    track = data[22:22 + length]
    assert len(track) == length and track.endswith(b"\xff\x2f\x00")
    events, i, tick = [], 0, 0
    while i < len(track):
        delta = 0
        while True:
            byte = track[i]
            i += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        tick += delta
        status = track[i]
        if status == 0xFF:
            kind, size = track[i + 1], track[i + 2]
            events.append((tick, "meta", kind, track[i + 3:i + 3 + size]))
            i += 3 + size
        elif status & 0xF0 == 0xC0:
            events.append((tick, "program", status & 0x0F, track[i + 1]))
            i += 2
        else:
            events.append((tick, status & 0xF0, status & 0x0F, track[i + 1], track[i + 2]))
            i += 3
    return int(fmt), int(ntracks), int(division), events


def test_write_midi(tmp_path):
    notes = [(0.0, 0.5, 60, 0.8), (0.5, 0.25, 64, 1.0), (4.0, 1.0, 67, 0.1)]
    path = fluidsynth.write_midi(tmp_path / "a.mid", notes, tempo=120.0, program=33, channel=2)
    fmt, ntracks, division, events = _parse_midi(open(path, "rb").read())
    assert (fmt, ntracks, division) == (0, 1, 480)
    tempo = [e for e in events if e[1] == "meta" and e[2] == 0x51][0][3]
    assert int.from_bytes(tempo, "big") == 500000  # 120 bpm
    assert [e for e in events if e[1] == "program"] == [(0, "program", 2, 33)]
    ons = [(e[0], e[3], e[4]) for e in events if e[1] == 0x90]
    offs = [(e[0], e[3]) for e in events if e[1] == 0x80]
    assert ons == [(0, 60, 102), (480, 64, 127), (3840, 67, 13)]  # 4 s = 8 beats at 120 bpm
    assert sorted(offs) == [(480, 60), (720, 64), (4800, 67)]
    # drums go to channel 9 with no program change
    _, _, _, events = _parse_midi(open(fluidsynth.write_midi(tmp_path / "d.mid", notes[:1], 100.0,
                                                        channel=9), "rb").read())
    assert not [e for e in events if e[1] == "program"]
    assert [e[2] for e in events if e[1] == 0x90] == [9]
