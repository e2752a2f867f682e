"""Tests for keras_lincae.evaluation.metrics and .linearity against independent references and known cases."""

import numpy as np
import pytest
from scipy import stats

from keras_lincae.evaluation import linearity as L
from keras_lincae.evaluation import metrics as M

SR = 44100
N = 8192  # long enough for the 2048-point FFT of the MR-STFT


def _tone(freq, n=N, amp=0.5, phase=0.0):
    t = np.arange(n) / SR
    return amp * np.sin(2 * np.pi * freq * t + phase)


@pytest.fixture
def audio(rng):
    """A batch of 4 structured + noisy signals, (4, N)."""
    x = np.stack(
        [
            _tone(440) + 0.05 * rng.standard_normal(N),
            _tone(220, amp=0.3) + _tone(1760, amp=0.1),
            0.2 * rng.standard_normal(N),
            np.cumsum(rng.standard_normal(N)) * 0.01,
        ]
    )
    return x


# ---------------------------------------------------------------------------
# SI-SDR and SNR
# ---------------------------------------------------------------------------


def _si_sdr_ref(est, ref):
    """Textbook SI-SDR (no eps, no zero-mean), float64."""
    alpha = np.sum(est * ref, -1, keepdims=True) / np.sum(ref * ref, -1, keepdims=True)
    t = alpha * ref
    return 10 * np.log10(np.sum(t**2, -1) / np.sum((est - t) ** 2, -1))


def _snr_ref(est, ref):
    return 10 * np.log10(np.sum(ref**2, -1) / np.sum((est - ref) ** 2, -1))


def test_si_sdr_snr_match_formula_on_random(rng, audio):
    est = audio + 0.1 * rng.standard_normal(audio.shape)
    np.testing.assert_allclose(M.si_sdr(est, audio), _si_sdr_ref(est, audio), atol=1e-6)
    np.testing.assert_allclose(M.snr(est, audio), _snr_ref(est, audio), atol=1e-6)
    assert M.si_sdr(est, audio).shape == (4,)


def test_si_sdr_matches_fast_bss_eval(rng, audio):
    fbe = pytest.importorskip("fast_bss_eval")
    est = 0.7 * audio + 0.05 * rng.standard_normal(audio.shape)
    expected = fbe.si_sdr(audio[:, None, :], est[:, None, :], zero_mean=False)[:, 0]
    np.testing.assert_allclose(M.si_sdr(est, audio), expected, atol=1e-4)


def test_si_sdr_snr_match_auraloss_official_setting(rng, audio):
    auraloss = pytest.importorskip("auraloss")
    torch = pytest.importorskip("torch")
    est = audio + 0.2 * rng.standard_normal(audio.shape)
    e, r = torch.from_numpy(est), torch.from_numpy(audio)
    for ours, cls in ((M.si_sdr, auraloss.time.SISDRLoss), (M.snr, auraloss.time.SNRLoss)):
        expected = -cls(zero_mean=False, reduction="none")(e, r).numpy()
        np.testing.assert_allclose(ours(est, audio), expected, atol=1e-9)


def test_perfect_copy_scaled_copy_and_noise(rng, audio):
    # perfect copy: very high but finite (eps = 1e-8 as official)
    assert np.all(np.isfinite(M.si_sdr(audio, audio)))
    assert np.all(M.si_sdr(audio, audio) > 60)
    assert np.all(M.snr(audio, audio) > 60)
    # scaled copy: SI-SDR still very high, SNR = -20 log10 |1 - g|
    g = 0.5
    assert np.all(M.si_sdr(g * audio, audio) > 60)
    np.testing.assert_allclose(M.snr(g * audio, audio), -20 * np.log10(abs(1 - g)), atol=1e-6)
    # independent noise: SI-SDR strongly negative, SNR about 0 dB for equal power
    noise = rng.standard_normal(audio.shape) * np.std(audio, -1, keepdims=True)
    assert np.all(M.si_sdr(noise, audio) < -10)
    np.testing.assert_allclose(M.snr(np.zeros_like(audio), audio), 0.0, atol=1e-6)
    assert np.all(M.snr(noise, audio) < -1.0)


def test_si_sdr_is_scale_invariant_snr_is_not(rng, audio):
    est = audio + 0.1 * rng.standard_normal(audio.shape)
    np.testing.assert_allclose(M.si_sdr(3 * est, audio), M.si_sdr(est, audio), atol=1e-6)
    assert np.all(M.snr(3 * est, audio) < M.snr(est, audio) - 5)


def test_one_dimensional_input_gives_scalar(audio):
    out = M.si_sdr(audio[0] * 0.9, audio[0])
    assert np.ndim(out) == 0
    np.testing.assert_allclose(out, M.si_sdr(audio[:1] * 0.9, audio[:1])[0])


@pytest.mark.parametrize("fn", [M.si_sdr, M.snr, M.multi_resolution_stft_distance])
def test_validation_errors(fn, audio):
    with pytest.raises(ValueError, match="same shape"):
        fn(audio[:, :-1], audio)
    bad = audio.copy()
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match="estimate contains non-finite"):
        fn(bad, audio)
    bad[1, 5] = np.inf
    with pytest.raises(ValueError, match="reference contains non-finite"):
        fn(audio, bad)
    with pytest.raises(ValueError, match="shape"):
        fn(audio[None], audio[None])


@pytest.mark.parametrize("fn", [M.si_sdr, M.snr])
def test_silent_reference_raises(fn, audio):
    ref = audio.copy()
    ref[2] = 0.0
    with pytest.raises(ValueError, match=r"silent.*\[2\]"):
        fn(audio, ref)


# ---------------------------------------------------------------------------
# MR-STFT
# ---------------------------------------------------------------------------


def _auraloss_mrstft(est, ref, monkeypatch, per_example):
    """The official metric: auraloss defaults, per-element losses averaged over (F, T)."""
    auraloss = pytest.importorskip("auraloss")
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(
        auraloss.freq, "apply_reduction", lambda losses, reduction: losses.mean(dim=(-1, -2))
    )
    loss = auraloss.freq.MultiResolutionSTFTLoss(reduction="none")
    for f in loss.stft_losses:
        f.window = torch.hann_window(f.win_length, dtype=torch.float64)
    e = torch.from_numpy(est)[:, None, :]
    r = torch.from_numpy(ref)[:, None, :]
    if per_example:
        return np.array([loss(e[i : i + 1], r[i : i + 1]).numpy()[0] for i in range(len(e))])
    return loss(e, r).numpy()


def test_mrstft_matches_auraloss(rng, audio, monkeypatch):
    est = 0.8 * audio + 0.05 * rng.standard_normal(audio.shape)
    ours = M.multi_resolution_stft_distance(est, audio)
    expected = _auraloss_mrstft(est, audio, monkeypatch, per_example=True)
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-9)
    # official batch-pooled spectral convergence
    pooled = M.multi_resolution_stft_distance(est, audio, pool_spectral_convergence=True)
    expected = _auraloss_mrstft(est, audio, monkeypatch, per_example=False)
    np.testing.assert_allclose(pooled, expected, rtol=1e-9, atol=1e-9)


def test_mrstft_known_cases(rng, audio):
    assert np.all(M.multi_resolution_stft_distance(audio, audio) == 0.0)
    # scaled copy of a loud tone: SC = |1 - g|, mean |log X - log Y| = |log g|
    # wherever magnitudes stay above the floor, so the sum is close to that.
    tone = _tone(1000, amp=1.0) + 0.5 * rng.standard_normal(N)
    g = 0.5
    d = M.multi_resolution_stft_distance(g * tone, tone)
    assert abs(d - (abs(1 - g) + abs(np.log(g)))) < 1e-3
    # noise is much further than a mildly noisy copy
    near = M.multi_resolution_stft_distance(audio + 0.01 * rng.standard_normal(audio.shape), audio)
    far = M.multi_resolution_stft_distance(rng.standard_normal(audio.shape), audio)
    assert np.all(far > near + 0.5)


def test_mrstft_too_short_raises():
    x = np.ones(1024)
    with pytest.raises(ValueError, match="too short"):
        M.multi_resolution_stft_distance(x, x)


# ---------------------------------------------------------------------------
# Stand-in models
# ---------------------------------------------------------------------------

FRAME = 64
CH = 16


class LinearStandIn:
    """encode: frames of 64 samples times a fixed (64, 16) matrix -> (batch, frames, 16).

    decode: the pseudo-inverse, then overlap-free framing back to audio. Exactly
    linear, so homogeneity/additivity hold up to rounding (reconstruction does
    not, as 16 < 64).
    """

    def __init__(self, seed=1, nonlinear=False, bias=None, extra_samples=0):
        r = np.random.default_rng(seed)
        self.w = r.standard_normal((FRAME, CH)) / np.sqrt(FRAME)
        self.w_pinv = np.linalg.pinv(self.w)
        self.nonlinear = nonlinear
        self.bias = bias
        self.extra = extra_samples

    def encode(self, x):
        b, n = x.shape
        z = x.reshape(b, n // FRAME, FRAME) @ self.w
        if self.nonlinear:
            z = np.tanh(4.0 * z)
        if self.bias is not None:
            z = z + self.bias
        return z

    def decode(self, z):
        if self.nonlinear:
            z = z + 0.5 * z**2 + z**3
        y = (z @ self.w_pinv).reshape(z.shape[0], -1)
        return np.pad(y, ((0, 0), (0, self.extra)))


@pytest.fixture
def models():
    return LinearStandIn(), LinearStandIn(nonlinear=True)


def test_encoder_homogeneity(models, audio):
    lin, non = models
    gains = (0.25, 0.5, 0.75, 1.1)
    e_lin = L.encoder_homogeneity(lin.encode, audio, gains)
    e_non = L.encoder_homogeneity(non.encode, audio, gains)
    assert e_lin.shape == e_non.shape == (4, 4)
    assert np.all(e_lin < 1e-12)
    assert np.all(e_non[[0, 1, 2]] > 0.05)  # gain 1.1 is close to 1, so smaller
    assert np.all(e_non.mean(0) > 100 * e_lin.mean(0))
    # 1-D audio gives (n_gains,)
    assert L.encoder_homogeneity(lin.encode, audio[0], gains).shape == (4,)


def test_encoder_homogeneity_independent_value(models, audio):
    _, non = models
    a = 0.5
    za, z = non.encode(a * audio), non.encode(audio)
    expected = np.sqrt(np.sum((za - a * z) ** 2, (1, 2))) / np.sqrt(np.sum((a * z) ** 2, (1, 2)))
    got = L.encoder_homogeneity(non.encode, audio, gains=[a])[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_decoder_homogeneity(models, audio):
    lin, non = models
    d_lin = L.decoder_homogeneity(lin.decode, lin.encode(audio))
    d_non = L.decoder_homogeneity(non.decode, non.encode(audio))
    assert d_lin.shape == (4, 4)
    assert np.all(d_lin > 80)  # capped by eps = 1e-8 in the SNR denominator
    assert np.all(d_non < 40)
    assert np.all(d_lin > d_non + 40)


def test_decoder_homogeneity_trims_to_n_samples(audio):
    model = LinearStandIn(extra_samples=100)
    d = L.decoder_homogeneity(model.decode, model.encode(audio), n_samples=N)
    assert np.all(d > 80)
    with pytest.raises(ValueError, match="fewer than"):
        L.decoder_homogeneity(LinearStandIn().decode, model.encode(audio), n_samples=N + 1)


def test_encoder_additivity(models, audio, rng):
    lin, non = models
    u, v = audio, np.roll(audio, 1, axis=0)
    a_lin = L.encoder_additivity(lin.encode, u, v)
    a_non = L.encoder_additivity(non.encode, u, v)
    assert a_lin.shape == (4,)
    assert np.all(a_lin < 1e-12)
    assert np.all(a_non > 0.1)
    with pytest.raises(ValueError, match="u and v must have the same shape"):
        L.encoder_additivity(lin.encode, u, v[:2])


def test_decoder_additivity(models, audio):
    lin, non = models
    u, v = audio, np.roll(audio, 1, axis=0)
    r_lin = L.decoder_additivity(lin.encode, lin.decode, u, v)
    r_non = L.decoder_additivity(non.encode, non.decode, u, v)
    assert set(r_lin) == {"mrstft", "si_sdr"}
    assert r_lin["mrstft"].shape == r_lin["si_sdr"].shape == (4,)
    assert np.all(r_lin["mrstft"] < 1e-6)
    assert np.all(r_non["mrstft"] > 100 * r_lin["mrstft"].max() + 0.1)
    # the linear stand-in projects to 16 of 64 dims, so SI-SDR vs u+v is that of
    # its own reconstruction of u+v
    recon = lin.decode(lin.encode(u + v))
    np.testing.assert_allclose(r_lin["si_sdr"], M.si_sdr(recon, u + v), atol=1e-6)
    assert np.all(r_lin["si_sdr"] > r_non["si_sdr"])


def test_separation_by_subtraction(models, audio):
    lin, non = models
    target, acc = audio, np.roll(audio, 1, axis=0)
    mix = target + acc
    s_lin = L.separation_by_subtraction(lin.encode, lin.decode, mix, acc, target)
    s_non = L.separation_by_subtraction(non.encode, non.decode, mix, acc, target)
    # linear: Dec(z_mix - z_acc) = Dec(z_target), i.e. just the reconstruction
    recon = lin.decode(lin.encode(target))
    np.testing.assert_allclose(s_lin["si_sdr"], M.si_sdr(recon, target), atol=1e-6)
    np.testing.assert_allclose(
        s_lin["mrstft"], M.multi_resolution_stft_distance(recon, target), atol=1e-6
    )
    assert np.all(s_lin["si_sdr"] > s_non["si_sdr"])
    assert np.all(s_lin["mrstft"] < s_non["mrstft"])

    # an identity "model" separates perfectly
    ident = L.separation_by_subtraction(lambda x: x, lambda z: z, mix, acc, target)
    assert np.all(ident["si_sdr"] > 60)
    assert np.all(ident["mrstft"] < 1e-6)


def test_model_output_validation(models, audio):
    lin, _ = models

    def nan_encode(x):
        z = lin.encode(x)
        z[0, 0, 0] = np.nan
        return z

    with pytest.raises(ValueError, match=r"encode\(audio\) contains non-finite"):
        L.encoder_homogeneity(nan_encode, audio)
    with pytest.raises(ValueError, match="batch axis"):
        L.encoder_additivity(lambda x: lin.encode(x)[0], audio, audio)
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        L.decoder_homogeneity(lambda z: z, lin.encode(audio))
    with pytest.raises(ValueError, match="gains"):
        L.encoder_homogeneity(lin.encode, audio, gains=())


# ---------------------------------------------------------------------------
# Latent-space metrics
# ---------------------------------------------------------------------------


def _erank_torch(z2d):
    torch = pytest.importorskip("torch")
    s = torch.linalg.svdvals(torch.from_numpy(z2d))
    p = s / s.sum()
    h = -(p * torch.nan_to_num(torch.log(p), neginf=0.0)).sum()
    return float(torch.exp(h))


def test_effective_rank_vs_independent_svd(rng):
    z = rng.standard_normal((3, 50, 16)) * np.linspace(0.1, 3, 16)
    expected = _erank_torch(z.reshape(-1, 16))
    assert L.effective_rank(z) == pytest.approx(expected, rel=1e-9)
    # official (batch, channels, frames) layout
    assert L.effective_rank(np.moveaxis(z, -1, 1), channel_axis=1) == pytest.approx(expected)
    assert 1.0 <= L.effective_rank(z) <= 16.0


@pytest.mark.parametrize("k", [1, 3, 8])
def test_effective_rank_known_values(rng, k):
    # k equal singular values and the rest zero -> effective rank exactly k
    u, _ = np.linalg.qr(rng.standard_normal((200, k)))
    v, _ = np.linalg.qr(rng.standard_normal((16, k)))
    z = 2.5 * u @ v.T
    assert L.effective_rank(z) == pytest.approx(k, rel=1e-9)


def test_effective_rank_validation():
    with pytest.raises(ValueError, match="all zero"):
        L.effective_rank(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="at least 2 axes"):
        L.effective_rank(np.ones(5))


def test_silence_latent_norm():
    assert L.silence_latent_norm(LinearStandIn().encode, N) == 0.0
    bias = np.linspace(-1, 1, CH)
    model = LinearStandIn(bias=bias)
    n_frames = N // FRAME
    expected = np.sqrt(n_frames) * np.mean(np.abs(bias))
    assert L.silence_latent_norm(model.encode, N) == pytest.approx(expected, rel=1e-12)
    # channels-first latents give the same value with channel_axis=1
    cf = lambda x: np.moveaxis(model.encode(x), -1, 1)  # noqa: E731
    assert L.silence_latent_norm(cf, N, channel_axis=1) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="positive integer"):
        L.silence_latent_norm(model.encode, 0)


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


def test_mean_confidence_interval(rng):
    x = rng.normal(3.0, 2.0, size=37)
    mean, half = M.mean_confidence_interval(x, 0.95)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x))
    assert half == pytest.approx((hi - lo) / 2)
    _, half90 = M.mean_confidence_interval(x, 0.9)
    assert half90 < half
    m1, h1 = M.mean_confidence_interval([2.0])
    assert m1 == 2.0 and np.isnan(h1)
    with pytest.raises(ValueError, match="empty"):
        M.mean_confidence_interval([])
    with pytest.raises(ValueError, match="non-finite"):
        M.mean_confidence_interval([1.0, np.nan])
    with pytest.raises(ValueError, match="confidence"):
        M.mean_confidence_interval(x, 1.5)


def test_magnitude_snr_ignores_phase_and_measures_level():
    t = np.arange(44100) / 44100.0
    tone = np.sin(2 * np.pi * 440.0 * t)
    shifted = np.sin(2 * np.pi * 440.0 * t + 2.0)
    assert M.magnitude_snr(shifted, tone) > 15.0  # only the reflect-padded edges differ
    assert M.si_sdr(shifted, tone) < 0.0  # the waveform metric punishes the phase
    assert M.magnitude_snr(0.5 * tone, tone) == pytest.approx(20 * np.log10(2.0), abs=0.01)
    assert M.magnitude_snr(np.zeros_like(tone), tone) == pytest.approx(0.0, abs=1e-6)


def test_best_gain_magnitude_snr_scores_shape_and_level_db_scores_loudness():
    t = np.arange(44100) / 44100.0
    tone = np.sin(2 * np.pi * 440.0 * t)
    other = np.sin(2 * np.pi * 1250.0 * t)
    assert M.magnitude_snr(0.25 * tone, tone, best_gain=True) > 60.0  # right shape, too quiet
    assert M.magnitude_snr(0.25 * tone, tone) < 3.0
    # a wrong shape gains little from the best gain: |Y| - g|X| keeps |Y| where X is silent
    assert M.magnitude_snr(other, tone, best_gain=True) < 0.5
    np.testing.assert_allclose(M.level_db(0.5 * tone, tone), 20 * np.log10(0.5), atol=1e-6)
    np.testing.assert_allclose(M.level_db(np.stack([tone, 2 * tone]), np.stack([tone, tone])), [0.0, 6.0206], atol=1e-3)
