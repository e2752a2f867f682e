"""The offline music collection: held-out split and recorded test mixtures."""

import numpy as np
import soundfile as sf

from keras_lincae.data import music_dataset
from keras_lincae.evaluation import load_clips


def test_recorded_split_is_disjoint_and_deterministic():
    tracks = [f"/music/track{i:02d}.ogg" for i in range(12)]
    train, test = music_dataset.split_recorded(tracks)
    assert test == tracks[::music_dataset.TEST_EVERY]
    assert not set(train) & set(test)
    assert sorted(train + test) == tracks
    assert music_dataset.split_recorded(tracks) == (train, test)


def test_recorded_mixes_are_sums_of_held_out_tracks(tmp_path):
    rate, rng = 44100, np.random.default_rng(0)
    tracks = []
    for i in range(3):
        path = tmp_path / f"t{i}.ogg"
        sf.write(str(path), 0.2 * rng.standard_normal((rate * 2, 2)).astype("float32"), rate)
        tracks.append(str(path))
    short = tmp_path / "short.wav"
    sf.write(str(short), np.zeros(rate // 2, "float32"), rate)  # shorter than a clip: skipped
    folder = tmp_path / "mixes"
    music_dataset._write_recorded_mixes(folder, tracks + [str(short)], seconds=1.0, offset_seconds=0.5)
    songs = sorted(p.name for p in folder.iterdir())
    assert songs == ["mix_000", "mix_001", "mix_002"]
    for song in songs:
        mix, _ = sf.read(str(folder / song / "mixture.wav"), dtype="float32")
        lead, _ = sf.read(str(folder / song / "lead.wav"), dtype="float32")
        backing, _ = sf.read(str(folder / song / "backing.wav"), dtype="float32")
        assert mix.shape == (rate,)
        np.testing.assert_allclose(mix, lead + backing, atol=1e-7)
        assert np.max(np.abs(mix)) <= 0.9 + 1e-6
        assert not np.allclose(lead, backing)
    clips, skipped = load_clips(str(folder), target="lead", clip_seconds=1.0)
    assert len(clips) == 3 and not skipped
