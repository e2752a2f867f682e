"""recipes/tools/phase_split.py: the magnitude / phase split of a preset's 1-step reconstruction."""

import os
import sys

import numpy as np
import pytest

from keras_lincae.testing.helpers import music_like

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "recipes", "tools"))
import phase_split  # noqa: E402


def test_recombine_takes_magnitudes_from_one_and_phases_from_the_other(rng):
    magnitude_of, phase_of = rng.standard_normal((2, 3, 5, 2))
    mixed = phase_split.recombine(magnitude_of, phase_of)
    np.testing.assert_allclose(np.linalg.norm(mixed, axis=-1), np.linalg.norm(magnitude_of, axis=-1), rtol=1e-5)
    angle = lambda r: np.angle(r[..., 0] + 1j * r[..., 1])  # noqa: E731
    np.testing.assert_allclose(np.cos(angle(mixed) - angle(phase_of)), 1.0, atol=1e-5)


def test_phase_split_scores_each_recombination(tiny_model):
    """The exact representation comes back through the inverse STFT (the check row); random
    phases lose to the true ones; every row is one score per clip."""
    audio = np.asarray(music_like(2 * 8192, batch=2, seed=3))
    scores = phase_split.phase_split(tiny_model, audio)
    assert set(scores) == set(phase_split.ROWS)
    assert all(v.shape == (2,) and np.all(np.isfinite(v)) for v in scores.values())
    assert np.all(scores["true mag + true ph"] > 40.0)
    assert np.all(scores["true mag + random ph"] < scores["true mag + true ph"] - 20.0)


def test_command_scores_presets_on_your_files(tmp_path, capsys):
    """`phase_split.py PRESET --files ...` prints one table row per preset; a file shorter than
    --seconds is one clear error."""
    import soundfile as sf

    from keras_lincae.testing.save_random_preset import save_random_preset

    preset = save_random_preset(str(tmp_path / "preset"))
    song = tmp_path / "song.wav"
    sf.write(song, np.asarray(music_like(30000, seed=1))[0], 44100)
    assert phase_split.main([preset, "--files", str(song), "--seconds", "0.5"]) is None
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| preset | decoded |") and len(table) == 3
    cells = table[2].strip("|").split("|")
    assert cells[0].strip() == preset and float(cells[-1]) > 40.0
    with pytest.raises(ValueError, match="at least --seconds 2"):
        phase_split.main([preset, "--files", str(song), "--seconds", "2"])
