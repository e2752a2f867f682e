"""ScaledComplexSTFT: the standard layer checks, parity with the official frontend, windows, inverse."""

import numpy as np
import pytest
import torch
from linear_cae.components.frontends import ScaledComplexSTFT as OfficialSTFT

from keras_lincae.layers.frontend import ScaledComplexSTFT, inverse_window, periodic_hann
from keras_lincae.testing.helpers import music_like, to_numpy
from keras_lincae.testing.test_case import run_layer_test

TINY = dict(hop_size=32, n_fft_factor=4, alpha_rescale=0.65, beta_rescale=0.34, sample_rate=44100)


def float64_representation(audio, hop, alpha=0.65, beta=0.34):
    """Independent float64 reference of the scaled complex STFT, `(batch, frames, bins, 2)`."""
    n_fft = 4 * hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = (audio.shape[1] - n_fft) // hop + 1
    framed = np.stack([audio[:, k * hop : k * hop + n_fft] for k in range(frames)], 1).astype(np.float64)
    spec = np.fft.rfft(framed * window)[..., : 2 * hop]
    spec = beta * np.abs(spec) ** alpha * np.exp(1j * np.angle(spec))
    return np.stack([spec.real, spec.imag], -1)


def relative_l2(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("hop", [512, 128])
def test_representation_and_inverse_match_official(hop):
    audio = music_like(hop * 40 + 77, batch=2, seed=1)
    ours = ScaledComplexSTFT(**dict(TINY, hop_size=hop))
    official = OfficialSTFT(hop_size=hop, n_fft_factor=4, alpha_rescale=0.65, beta_rescale=0.34)
    rep = to_numpy(ours.to_representation(audio))
    ref = official.to_representation(torch.from_numpy(audio)).numpy().transpose(0, 3, 2, 1)
    exact = float64_representation(audio, hop)
    assert rep.shape == ref.shape == exact.shape == (2, ours.num_frames(audio.shape[1]), 2 * hop, 2)
    # Quiet bins amplify float32 FFT rounding through |X|**0.65, so two float32
    # implementations differ by ~1e-5 here; ours is at least as close to the float64 truth.
    assert relative_l2(rep, exact) <= 1.1 * relative_l2(ref, exact) + 1e-7
    assert relative_l2(rep, ref) <= 2.5e-5
    assert np.abs(rep - ref).max() <= 5e-5 * np.abs(exact).max()
    wave = to_numpy(ours.to_waveform(rep))
    ref_wave = official.to_waveform(torch.from_numpy(ref.transpose(0, 3, 2, 1))).numpy()
    assert wave.shape == ref_wave.shape == (2, ours.num_samples(rep.shape[1]))
    assert np.abs(wave - ref_wave).max() <= 1e-5 * np.abs(ref_wave).max()


def test_broadband_audio_matches_official_to_1e5():
    audio = (0.3 * np.random.default_rng(5).standard_normal((2, 20000))).astype("float32")
    rep = to_numpy(ScaledComplexSTFT(**dict(TINY, hop_size=512)).to_representation(audio))
    official = OfficialSTFT(hop_size=512, n_fft_factor=4, alpha_rescale=0.65, beta_rescale=0.34)
    ref = official.to_representation(torch.from_numpy(audio)).numpy().transpose(0, 3, 2, 1)
    assert np.abs(rep - ref).max() <= 1e-5 * np.abs(ref).max()


def test_round_trip_exact_in_interior_only():
    fe = ScaledComplexSTFT(**dict(TINY, hop_size=512))
    audio = music_like(30000, batch=2, seed=2)
    wave = to_numpy(fe.to_waveform(fe.to_representation(audio)))
    edge = fe.n_fft - fe.hop_size
    interior = slice(edge, wave.shape[1] - edge)
    assert np.abs(wave[:, interior] - audio[:, interior]).max() <= 1e-5
    # The first samples are under-covered by windows, and samples after the last full frame are dropped.
    assert np.abs(wave[:, :edge] - audio[:, :edge]).max() > 1e-3
    assert wave.shape[1] == (fe.num_frames(30000) - 1) * fe.hop_size + fe.n_fft < 30000


def test_windows():
    window = periodic_hann(2048)
    assert window[0] == 0.0 and np.isclose(window[1024], 1.0)
    synthesis = inverse_window(window, 512)
    # Steady-state overlap of analysis * synthesis windows sums to one.
    total = sum(np.roll(window * synthesis, k * 512) for k in range(4))
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_layer_checks_and_frame_count():
    audio = music_like(32 * 9 + 5, batch=2, seed=3)
    layer, rep = run_layer_test(ScaledComplexSTFT, TINY, audio, expected_output_shape=(2, 6, 64, 2))
    assert layer.num_frames(audio.shape[1]) == (audio.shape[1] - layer.n_fft) // layer.hop_size + 1 == 6
    assert layer.compute_output_shape((2, audio.shape[1])) == (2, 6, 64, 2)


def test_config_round_trip():
    fe = ScaledComplexSTFT(**dict(TINY, hop_size=256, alpha_rescale=0.5))
    clone = ScaledComplexSTFT.from_config(fe.get_config())
    audio = music_like(5000, seed=3)
    np.testing.assert_array_equal(to_numpy(fe(audio)), to_numpy(clone(audio)))
