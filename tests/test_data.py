"""Audio loading, songs, and both input pipelines, tf.data and pure Python, on every backend."""

import itertools
import re
import sys
import threading
import time
import warnings

import keras
import numpy as np
import pytest
import soundfile as sf

from keras_lincae import data
from keras_lincae.data import synth

SR = 44100


def tone(seconds, sr=SR, freq=440.0, channels=1, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    mono = amp * np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return mono.astype(np.float32)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def write(path, audio, sr=SR, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sr, **kwargs)
    return path


def as_numpy(ds, n=None):
    ds = ds if n is None else ds.take(n)
    return [np.asarray(b) for b in ds.as_numpy_iterator()]


def make(pipeline):
    """The function that builds ``pipeline``'s stream (same arguments for both)."""
    return {"tf.data": data.audio_dataset, "python": data.audio_batches}[pipeline]


def stream(pipeline, *args, n=None, **kwargs):
    """The first ``n`` (default all) batches of ``pipeline``'s stream, as numpy arrays."""
    if pipeline == "tf.data":
        return as_numpy(data.audio_dataset(*args, **kwargs), n)
    return list(itertools.islice(data.audio_batches(*args, **kwargs), n))


@pytest.fixture(params=["tf.data", "python"])
def pipeline(request):
    return request.param


@pytest.fixture(scope="module")
def musdb(tmp_path_factory):
    return synth.make_synthetic_dataset(tmp_path_factory.mktemp("musdb") / "ds", num_songs=2,
                                        num_test_songs=1, seconds=1.0, renderer="numpy")


@pytest.fixture
def mixed_folder(tmp_path):
    """mono 44.1 kHz, stereo 44.1 kHz, mono 48 kHz, a corrupt and an empty file, a text file."""
    folder = tmp_path / "mixed"
    write(folder / "mono.wav", tone(0.5))
    write(folder / "sub" / "stereo.flac", tone(0.5, channels=2))
    write(folder / "sub" / "deeper" / "hi_rate.wav", tone(1.0, sr=48000, freq=1000.0), sr=48000)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x01\x00\x00WAVEjunkjunkjunk" * 10)
    write(folder / "empty.wav", np.zeros((0, 1), np.float32))
    (folder / "notes.txt").write_text("not audio")
    return folder


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def test_clip_samples_for_frames():
    assert data.clip_samples_for_frames(1) == 2048
    assert data.clip_samples_for_frames(64) == 63 * 512 + 2048
    assert data.clip_samples_for_frames(10, hop=256, n_fft_factor=4) == 9 * 256 + 1024
    for frames in (2, 17, 64):  # an uncentred STFT (n_fft 2048, hop 512) of the clip
        samples = data.clip_samples_for_frames(frames)
        for n, expected in ((samples, frames), (samples - 1, frames - 1)):
            windows = np.lib.stride_tricks.sliding_window_view(np.zeros(n), 2048)[::512]
            assert windows.shape[0] == expected
    with pytest.raises(ValueError):
        data.clip_samples_for_frames(0)


def test_list_audio_files(mixed_folder, tmp_path):
    files = data.list_audio_files(mixed_folder)
    names = [f[len(str(mixed_folder)) + 1:] for f in files]
    assert names == sorted(names)
    assert set(names) == {"corrupt.wav", "empty.wav", "mono.wav", "sub/stereo.flac",
                          "sub/deeper/hi_rate.wav"}
    write(tmp_path / "caps" / "A.WAV", tone(0.1))
    write(tmp_path / "caps" / "b.ogg", tone(0.1), format="OGG", subtype="VORBIS")
    (tmp_path / "caps" / "._A.WAV").write_bytes(b"apple double")
    assert [f.rsplit("/", 1)[1] for f in data.list_audio_files(tmp_path / "caps")] == ["A.WAV",
                                                                                      "b.ogg"]
    assert data.list_audio_files(mixed_folder / "mono.wav") == [str(mixed_folder / "mono.wav")]
    assert data.list_audio_files(mixed_folder / "notes.txt") == []
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.list_audio_files(tmp_path / "nowhere")


def test_load_audio(mixed_folder):
    mono = data.load_audio(mixed_folder / "mono.wav")
    assert mono.shape == (1, SR // 2) and mono.dtype == np.float32
    stereo = data.load_audio(mixed_folder / "sub" / "stereo.flac")
    assert stereo.shape == (2, SR // 2) and stereo.dtype == np.float32
    np.testing.assert_allclose(stereo[1], 2 * stereo[0], atol=1e-4)
    down = data.load_audio(mixed_folder / "sub" / "stereo.flac", mono=True)
    assert down.shape == (1, SR // 2)
    np.testing.assert_allclose(down[0], stereo.mean(axis=0), atol=1e-6)
    # 48 kHz, 1 s -> exactly 1 s at 44.1 kHz, still a 1 kHz tone
    hi = data.load_audio(mixed_folder / "sub" / "deeper" / "hi_rate.wav")
    assert hi.shape == (1, SR) and hi.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(hi[0]))
    assert np.argmax(spectrum) * SR / hi.shape[1] == pytest.approx(1000.0, abs=2.0)
    native = data.load_audio(mixed_folder / "sub" / "deeper" / "hi_rate.wav", sample_rate=None)
    assert native.shape == (1, 48000)
    assert data.load_audio(mixed_folder / "mono.wav", sample_rate=22050).shape == (1, 11025)


def test_load_audio_errors(mixed_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        data.load_audio(tmp_path / "missing.wav")
    with pytest.raises(IsADirectoryError):
        data.load_audio(mixed_folder)
    with pytest.raises(data.AudioDecodeError, match="corrupt.wav"):
        data.load_audio(mixed_folder / "corrupt.wav")
    with pytest.raises(data.AudioDecodeError, match="empty"):
        data.load_audio(mixed_folder / "empty.wav")
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="zero_bytes.wav"):  # AudioDecodeError is a ValueError
        data.load_audio(tmp_path / "zero_bytes.wav")
    bad = tone(0.1)
    bad[100] = np.nan
    write(tmp_path / "nan.wav", bad, subtype="FLOAT")
    with pytest.raises(data.AudioDecodeError, match="non-finite"):
        data.load_audio(tmp_path / "nan.wav")


@pytest.mark.parametrize("fmt,subtype,suffix", [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_24", "flac"),
                                                ("OGG", "VORBIS", "ogg"),
                                                ("MP3", "MPEG_LAYER_III", "mp3")])
def test_formats(tmp_path, fmt, subtype, suffix):
    path = write(tmp_path / f"x.{suffix}", tone(0.5, channels=2), format=fmt, subtype=subtype)
    audio = data.load_audio(path)
    assert audio.shape[0] == 2 and audio.dtype == np.float32
    assert abs(audio.shape[1] - SR // 2) < 0.05 * SR
    assert 0.2 < np.max(np.abs(audio[0])) < 0.8


def test_musdb_helpers(musdb):
    songs = data.find_musdb_songs(musdb)
    assert [s.rsplit("/", 2)[1:] for s in songs] == [["test", "song_000"], ["train", "song_000"],
                                                     ["train", "song_001"]]
    song = data.load_song_clip(songs[0], target="vocals", clip_seconds=None)
    assert list(song.stems) == list(data.MUSDB_STEMS)
    assert all(a.shape == (SR,) for a in (song.mixture, song.target, *song.stems.values()))
    np.testing.assert_allclose(sum(song.stems.values()), song.mixture, atol=1e-6)
    np.testing.assert_allclose(song.target + song.accompaniment, song.mixture, atol=1e-6)
    with pytest.raises(data.SongSkipped, match="karaoke"):
        data.load_song_clip(songs[0], target="karaoke")


# ---------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------


def test_pipeline_shapes_and_dtype(musdb, pipeline):
    clip = data.clip_samples_for_frames(16)
    if pipeline == "tf.data":
        ds = data.audio_dataset(musdb / "train", clip, batch_size=3)
        assert tuple(ds.element_spec.shape) == (3, clip)
        assert ds.element_spec.dtype.name == "float32"
    batches = stream(pipeline, musdb / "train", clip, batch_size=3, n=4)
    assert len(batches) == 4
    for b in batches:
        assert b.shape == (3, clip) and b.dtype == np.float32
        assert np.all(np.isfinite(b)) and np.max(np.abs(b)) <= 1.0
        assert np.all(np.sqrt(np.mean(b ** 2, axis=1)) > 1e-3)


def test_pipeline_deterministic_with_seed(musdb, pipeline):
    kwargs = dict(clip_samples=2048, batch_size=4, musdb_stems=True, n=5)
    a = stream(pipeline, musdb / "train", seed=7, **kwargs)
    b = stream(pipeline, musdb / "train", seed=7, **kwargs)
    c = stream(pipeline, musdb / "train", seed=8, **kwargs)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_memory_reader_keeps_the_stream(musdb, tmp_path, pipeline):
    kwargs = dict(clip_samples=2048, batch_size=4, seed=5, musdb_stems=True, n=4)
    from_files = stream(pipeline, musdb / "train", **kwargs)
    from_memory = stream(pipeline, musdb / "train", reader="memory", **kwargs)
    assert len(from_files) == 4
    np.testing.assert_array_equal(np.stack(from_memory), np.stack(from_files))
    # resampled files: same crop positions; a NaN outside the crops is not looked at by either
    late_nan = tone(2.0, sr=48000, freq=1000.0)
    late_nan[-10:] = np.nan
    write(tmp_path / "hi_rate.wav", late_nan, sr=48000, subtype="FLOAT")
    kwargs = dict(clip_samples=4096, batch_size=2, seed=1, n=3)
    from_files = stream(pipeline, tmp_path, **kwargs)
    np.testing.assert_array_equal(np.stack(stream(pipeline, tmp_path, reader="memory", **kwargs)),
                                  np.stack(from_files))
    assert np.all(np.isfinite(np.stack(from_files)))


def test_python_skip_and_threads_keep_the_stream(musdb):
    kwargs = dict(clip_samples=1024, batch_size=4, weights=[2, 1], seed=2, musdb_stems=True)
    sources = [musdb / "train", musdb / "test"]
    full = np.stack(stream("python", sources, num_workers=4, prefetch=8, n=6, **kwargs))
    serial = stream("python", sources, num_workers=1, prefetch=0, n=6, **kwargs)
    np.testing.assert_array_equal(np.stack(serial), full)
    skipped = stream("python", sources, skip=2, n=4, **kwargs)
    np.testing.assert_array_equal(np.stack(skipped), full[2:])
    assert stream("python", sources, repeat=False, skip=1000, **kwargs) == []
    with pytest.raises(ValueError, match="skip"):
        data.audio_batches(sources, 1024, batch_size=4, skip=-1)


def test_python_stream_closed_early_stops_its_threads(musdb):
    before = threading.active_count()
    for _ in range(3):
        batches = data.audio_batches(musdb / "train", 1024, batch_size=2, prefetch=2, num_workers=3)
        next(batches)
        batches.close()
    deadline = time.time() + 10
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_musdb_layout_uses_mixture_and_optionally_stems(musdb, pipeline):
    def count(**kwargs):
        batches = stream(pipeline, musdb / "train", 1024, batch_size=1, repeat=False,
                         drop_remainder=False, silence_rms_db=None, **kwargs)
        return sum(b.shape[0] for b in batches)  # counts every crop: silence filter off

    assert count() == 2
    assert count(musdb_stems=True) == 10
    assert count(musdb_stems=["vocals"]) == 4
    assert count(musdb_stems="drums") == 4
    assert count(musdb_stems=True, crops_per_file=3) == 30
    # the mixture of a song is the sum of its stems, crops of it are what the pipeline yields
    mixture = data.load_audio(musdb / "train" / "song_000" / "mixture.wav")[0]
    (clip,) = stream(pipeline, musdb / "train" / "song_000", 1024, batch_size=1, repeat=False,
                     shuffle=False)[0]
    windows = np.lib.stride_tricks.sliding_window_view(mixture, 1024)
    assert np.any(np.all(windows == clip, axis=1))


def test_mixed_folder_skips_bad_files(mixed_folder, pipeline):
    clip = SR  # as long as the 48 kHz file once resampled
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clips = np.concatenate(stream(pipeline, mixed_folder, clip, batch_size=1, repeat=False,
                                      shuffle=False, drop_remainder=False, silence_rms_db=None))
    messages = [str(w.message) for w in caught if issubclass(w.category, data.AudioDecodeWarning)]
    assert len(messages) == 2
    assert any("corrupt.wav" in m for m in messages) and any("empty.wav" in m for m in messages)
    # files in sorted order: mono (0.5 s), hi_rate (48 kHz, 1 s), stereo (0.5 s, 2 channels)
    assert clips.shape == (4, clip) and clips.dtype == np.float32
    half = SR // 2
    np.testing.assert_allclose(clips[0, :half], tone(0.5), atol=1e-4)  # 16-bit file
    assert np.all(clips[0, half:] == 0)  # short files are zero-padded
    hi = clips[1]
    assert np.sqrt(np.mean(hi[-2000:] ** 2)) > 0.3  # resampled to fill the whole second
    spectrum = np.abs(np.fft.rfft(hi))
    assert np.argmax(spectrum) * SR / clip == pytest.approx(1000.0, abs=2.0)
    np.testing.assert_allclose(clips[3, :half], 2 * clips[2, :half], atol=1e-3)  # channels
    # several crops of files shorter than a clip: each crop is the whole (padded) file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.AudioDecodeWarning)
        twice = np.concatenate(stream(pipeline, mixed_folder, clip, batch_size=8, repeat=False,
                                      shuffle=False, drop_remainder=False, silence_rms_db=None,
                                      crops_per_file=2))
    np.testing.assert_array_equal(twice, clips[[0, 0, 1, 1, 2, 3, 2, 3]])


def test_mixed_folder_repeats_without_crashing(mixed_folder, pipeline):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.AudioDecodeWarning)
        batches = stream(pipeline, mixed_folder, 4096, batch_size=4, seed=1, n=6)
    assert [b.shape for b in batches] == [(4, 4096)] * 6


def test_resampling_in_pipeline_keeps_pitch(tmp_path, pipeline):
    write(tmp_path / "long48k.wav", tone(3.0, sr=48000, freq=1000.0), sr=48000)
    (batch,) = stream(pipeline, tmp_path, 8192, batch_size=8, seed=0, n=1)
    spectrum = np.abs(np.fft.rfft(batch, axis=1))
    peaks = np.argmax(spectrum, axis=1) * SR / 8192
    np.testing.assert_allclose(peaks, 1000.0, atol=SR / 8192)
    assert np.all(np.sqrt(np.mean(batch ** 2, axis=1)) > 0.3)  # crops inside the file
    assert len({b.tobytes() for b in batch}) > 1  # random positions


def test_no_audio_folder_raises(tmp_path, mixed_folder, pipeline):
    build = make(pipeline)
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.txt").write_text("hi")
    with pytest.raises(ValueError, match="nothing"):
        build(tmp_path / "nothing", 1024, batch_size=2)
    with pytest.raises(ValueError, match="nothing"):
        build([mixed_folder, tmp_path / "nothing"], 1024, batch_size=2)
    with pytest.raises(FileNotFoundError, match="absent"):
        build(tmp_path / "absent", 1024, batch_size=2)
    with pytest.raises(ValueError, match="weights"):
        build([mixed_folder, mixed_folder], 1024, 2, weights=[1.0])


def test_only_bad_files_error_instead_of_hanging(tmp_path, pipeline):
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.AudioDecodeWarning)
        with pytest.raises(Exception, match="no usable clip"):
            stream(pipeline, tmp_path, 1024, batch_size=2, n=1)


def test_python_errors_reach_the_consumer(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"nope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.AudioDecodeWarning)
        for num_workers, prefetch in ((1, 0), (4, 2)):  # raised in a worker / prefetch thread
            batches = data.audio_batches(tmp_path, 1024, batch_size=2, num_workers=num_workers,
                                         prefetch=prefetch)
            with pytest.raises(ValueError, match="no usable clip"):
                next(batches)


def test_all_silent_source_is_a_value_error_naming_folder_and_threshold(tmp_path, pipeline):
    """Through tf.data the ValueError comes wrapped in a TensorFlow error, which `entry` unwraps."""
    from keras_lincae import entry

    folder = tmp_path / "quiet"
    for i in range(2):
        write(folder / f"{i}.wav", np.zeros(SR, np.float32))
    expected = rf"audio source {re.escape(str(folder))} gave no usable clip .*silence_rms_db=-60.0 dBFS"
    with pytest.raises(ValueError if pipeline == "python" else Exception) as caught:
        stream(pipeline, folder, 1024, batch_size=2, n=1)
    if pipeline == "tf.data":
        assert "ValueError: audio source" in str(caught.value)
    assert re.search(expected, entry.user_error_message(caught.value))


def test_silence_filter(tmp_path, pipeline):
    rng = np.random.default_rng(0)
    folder = tmp_path / "s"
    write(folder / "a_silent.wav", np.zeros(SR, np.float32))
    write(folder / "b_quiet.wav", (1e-4 * rng.standard_normal(SR)).astype(np.float32),
          subtype="FLOAT")  # -80 dBFS
    write(folder / "c_loud.wav", (0.1 * rng.standard_normal(SR)).astype(np.float32),
          subtype="FLOAT")
    write(folder / "d_half.wav", np.concatenate([np.zeros(SR), 0.1 * rng.standard_normal(SR)])
          .astype(np.float32), subtype="FLOAT")

    def clips(**kwargs):
        return np.concatenate(stream(pipeline, folder, 4096, batch_size=1, repeat=False,
                                     drop_remainder=False, crops_per_file=20, seed=3, **kwargs))

    everything = clips(silence_rms_db=None)
    assert everything.shape == (80, 4096)
    kept = clips()  # default -60 dBFS
    rms_db = 20 * np.log10(np.sqrt(np.mean(kept.astype(np.float64) ** 2, axis=1)) + 1e-12)
    assert np.all(rms_db > -60)
    assert 20 < len(kept) < 40  # c_loud's 20 and the loud crops of d_half
    assert len(clips(silence_rms_db=-100)) > len(kept)  # keeps the -80 dB noise


def test_weights_across_folders(tmp_path, pipeline):
    rng = np.random.default_rng(0)
    for name, sign in (("pos", 1.0), ("neg", -1.0)):
        for i in range(3):
            audio = sign * (0.3 + 0.1 * rng.random(SR // 4))
            write(tmp_path / name / f"{i}.wav", audio.astype(np.float32), subtype="FLOAT")
    sources = [tmp_path / "pos", tmp_path / "neg"]
    batches = np.concatenate(stream(pipeline, sources, 512, batch_size=50, weights=[3, 1],
                                    seed=0, n=12))
    fraction = np.mean(batches.mean(axis=1) > 0)
    assert fraction == pytest.approx(0.75, abs=0.07)
    equal = np.concatenate(stream(pipeline, sources, 512, batch_size=50, seed=0, n=12))
    assert np.mean(equal.mean(axis=1) > 0) == pytest.approx(0.5, abs=0.07)
    # a zero weight is never drawn, not even once the other sources are used up
    once = np.concatenate(stream(pipeline, sources, 512, batch_size=1, weights=[1, 0], seed=0,
                                 repeat=False))
    assert len(once) == 3 and np.all(once.mean(axis=1) > 0)


def test_callable_reader(tmp_path, pipeline):
    (tmp_path / "fake.ogg").write_bytes(b"whatever")

    def reader(path):
        assert path.endswith("fake.ogg")
        return np.full((3, 22050), 0.25, np.float32), 22050

    with pytest.warns(data.AudioDecodeWarning, match="fake.ogg"):  # soundfile can't read it
        assert stream(pipeline, tmp_path, 1000, batch_size=3, repeat=False, shuffle=False,
                      drop_remainder=False) == []
    (batch,) = stream(pipeline, tmp_path, 1000, batch_size=3, reader=reader, n=1)
    assert batch.shape == (3, 1000)
    np.testing.assert_allclose(batch[:, 100:900], 0.25, atol=1e-3)


def test_tfio_reader_needs_tensorflow_io(tmp_path, monkeypatch, pipeline):
    build = make(pipeline)
    write(tmp_path / "a.wav", tone(0.2))
    monkeypatch.setitem(sys.modules, "tensorflow_io", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="tensorflow-io"):
        build(tmp_path, 1024, batch_size=1, reader="tfio")
    with pytest.raises(ValueError, match="reader"):
        build(tmp_path, 1024, batch_size=1, reader="ffmpeg")


def test_fit_on_current_backend(musdb, pipeline):
    clip = 256
    if pipeline == "tf.data":
        ds = data.audio_dataset(musdb / "train", clip, batch_size=4, seed=0)
        ds = ds.map(lambda x: (x, x))
    else:
        ds = ((b, b) for b in data.audio_batches(musdb / "train", clip, batch_size=4, seed=0))
    inputs = keras.Input((clip,))
    model = keras.Model(inputs, keras.layers.Dense(clip)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][-1])
