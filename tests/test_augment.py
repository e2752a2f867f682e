"""Tests for keras_lincae.models.augment against the official Lin-CAE formulas.

References: ``linear_cae.components.diffusion`` (installed official package) is
used directly; the pieces of the official trainer that the package does not
ship (``linearly_combine``, ``GainScaler``, ``huber``) are re-derived here from
the official ``train.py`` formulas with torch/numpy.
"""

import math

import keras
import numpy as np
import pytest
import torch
from keras import ops
from linear_cae.components.diffusion import Diffusion
from linear_cae.components.diffusion import get_c as official_get_c

from keras_lincae.models import augment as A

BACKEND = keras.backend.backend()
TOTAL = 800000


def np_(x):
    return ops.convert_to_numpy(x)


def compile_fn(fn):
    """Trace ``fn`` with the backend's compiler (torch runs eagerly)."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    return fn


def official_diffusion():
    # lin_cae.yaml diffusion block
    return Diffusion(
        schedule="exponential",
        start_exp=1.0,
        end_exp=2.0,
        base_step=0.1,
        sigma_min=0.002,
        sigma_max=80.0,
        rho=7.0,
        use_lognormal=True,
        p_mean=-1.1,
        p_std=2.0,
        sigma_data=0.5,
        total_iters=TOTAL,
    )


# ----------------------------------------------------------------------------
# mixtures / additivity
# ----------------------------------------------------------------------------
def torch_combine(batch, w):
    """Official CAETrainer.linearly_combine (roll by +1 over the batch axis)."""
    bw = w.view(-1, *([1] * (batch.ndim - 1)))
    return batch * bw + torch.roll(batch, shifts=1, dims=0) * (1 - bw)


@pytest.mark.parametrize("shape", [(6, 1000), (5, 2, 300), (4, 16, 64)])
def test_mix_with_rolled_matches_official_roll(rng, shape):
    x = rng.standard_normal(shape).astype("float32")
    w = rng.uniform(0.5, 1.0, size=shape[0]).astype("float32")
    out = np_(A.mix_with_rolled(x, w))
    ref = torch_combine(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    # explicitly: example i is mixed with example i-1 (0 with the last one)
    for i in range(shape[0]):
        expect = w[i] * x[i] + (1 - w[i]) * x[i - 1]
        np.testing.assert_allclose(out[i], expect, rtol=1e-6, atol=1e-7)


def test_mix_with_scalar_weight(rng):
    x = rng.standard_normal((4, 10)).astype("float32")
    out = np_(A.mix_with_rolled(x, 0.5))
    np.testing.assert_allclose(out, 0.5 * x + 0.5 * np.roll(x, 1, axis=0), rtol=1e-6, atol=1e-7)


def test_sample_mix_weights_range():
    w = np_(A.sample_mix_weights(20000, keras.random.SeedGenerator(1)))
    assert w.shape == (20000,)
    assert w.min() >= 0.5 and w.max() <= 1.0
    assert abs(w.mean() - 0.75) < 0.005
    with pytest.raises(ValueError):
        A.sample_mix_weights(4, 0, minval=1.0, maxval=0.5)


def test_make_artificial_mixtures(rng):
    x = rng.standard_normal((4, 2, 100)).astype("float32")
    seed = keras.random.SeedGenerator(3)
    x_aug, w = A.make_artificial_mixtures(x, seed)
    x_aug, w = np_(x_aug), np_(w)
    assert x_aug.shape == (8, 2, 100) and w.shape == (4,)
    np.testing.assert_array_equal(x_aug[:4], x)
    ref = torch_combine(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(x_aug[4:], ref, rtol=1e-6, atol=1e-7)
    fixed, w_fixed = A.make_artificial_mixtures(x, seed, mix_weights=0.5)
    np.testing.assert_allclose(np_(fixed)[4:], 0.5 * x + 0.5 * np.roll(x, 1, 0), atol=1e-7)
    with pytest.raises(ValueError):
        A.make_artificial_mixtures(x, seed, mix_weights="fixed")


def test_additive_latents(rng):
    z = rng.standard_normal((8, 16, 64)).astype("float32")
    w = rng.uniform(0.5, 1.0, size=4).astype("float32")
    out = np_(A.additive_latents(z, w))
    np.testing.assert_array_equal(out[:4], z[:4])
    ref = torch_combine(torch.from_numpy(z[:4]), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(out[4:], ref, rtol=1e-6, atol=1e-7)
    # never switch: the encoder's own mixture latents stay
    none = np_(A.additive_latents(z, w, switch_prob=0.0, seed=keras.random.SeedGenerator(0)))
    np.testing.assert_array_equal(none, z)
    # per example switch
    zz = rng.standard_normal((400, 3)).astype("float32")
    ww = rng.uniform(0.5, 1.0, size=200).astype("float32")
    half = np_(A.additive_latents(zz, ww, switch_prob=0.5, seed=keras.random.SeedGenerator(0)))
    comb = torch_combine(torch.from_numpy(zz[:200]), torch.from_numpy(ww)).numpy()
    is_comb = np.all(np.isclose(half[200:], comb, atol=1e-6), axis=1)
    is_orig = np.all(half[200:] == zz[200:], axis=1)
    assert np.all(is_comb ^ is_orig)
    assert 0.35 < is_comb.mean() < 0.65
    with pytest.raises(ValueError):
        A.additive_latents(z[:7], w)
    with pytest.raises(ValueError):
        A.additive_latents(z, w, switch_prob=0.5)
    with pytest.raises(ValueError):
        A.additive_latents(z, w, switch_prob=1.5)


# ----------------------------------------------------------------------------
# gain schedule
# ----------------------------------------------------------------------------
class ReferenceGainScaler:
    """Stateful numpy replica of the official GainScaler.update_gain_scaler."""

    def __init__(self, prob, gain_min, gain_max, prob_decay, gain_decay, total_iters):
        self.prob = self.p0 = prob
        self.gain_min = self.lo0 = gain_min
        self.gain_max = self.hi0 = gain_max
        self.prob_decay, self.gain_decay, self.total = prob_decay, gain_decay, total_iters

    def update(self, it):
        if not self.prob_decay and not self.gain_decay:
            return
        start = self.total * 0.2
        end = self.total * (1 - 0.1)
        progress = (it - start) / (end - start)
        if self.prob_decay:
            if it <= start:
                self.prob = self.p0
            elif it >= end:
                self.prob = 0.0
            else:
                self.prob = self.p0 * (0.5 * (1 + np.cos(progress * np.pi)))
        if self.gain_decay:
            if it <= start:
                return
            if it >= end:
                self.gain_min = self.gain_max = 1.0
                return
            f = 0.5 * (1 + np.cos(progress * np.pi))
            self.gain_min = 1.0 - (1.0 - self.lo0) * f
            self.gain_max = 1.0 + (self.hi0 - 1.0) * f


FRACTIONS = [0.0, 0.1, 0.2, 0.2 + 1e-5, 0.3, 0.55, 0.8, 0.9, 0.95, 1.0]


@pytest.mark.parametrize("decay", [True, False])
@pytest.mark.parametrize("total", [TOTAL, 1000])
def test_gain_range_matches_official_schedule(decay, total):
    ref = ReferenceGainScaler(0.8, 0.0, 3.0, prob_decay=False, gain_decay=decay, total_iters=total)
    for frac in FRACTIONS:
        it = int(round(frac * total))
        ref.update(it)
        lo, hi = A.gain_range(it, total, 0.0, 3.0, decay=decay)
        np.testing.assert_allclose([np_(lo), np_(hi)], [ref.gain_min, ref.gain_max], atol=2e-6)
        p = A.gain_probability(it, total, 0.8, decay=False)
        np.testing.assert_allclose(np_(p), ref.prob, atol=1e-7)


def test_gain_range_landmarks():
    # +++range-decay: [0, 3] up to 20 %, mid-way (55 %) the cosine factor is 1/2, [1, 1] from 90 %
    expect = {0.0: (0, 3), 0.2: (0, 3), 0.55: (0.5, 2.0), 0.9: (1, 1), 1.0: (1, 1)}
    for frac, (elo, ehi) in expect.items():
        lo, hi = A.gain_range(int(frac * TOTAL), TOTAL)
        np.testing.assert_allclose([np_(lo), np_(hi)], [elo, ehi], atol=1e-5)
        lo, hi = A.gain_range(int(frac * TOTAL), TOTAL, decay=False)
        np.testing.assert_allclose([np_(lo), np_(hi)], [0, 3], atol=0)


def test_gain_probability_decay_matches_reference():
    ref = ReferenceGainScaler(0.8, 0.5, 1.0, prob_decay=True, gain_decay=False, total_iters=1000)
    for frac in FRACTIONS:
        it = int(round(frac * 1000))
        ref.update(it)
        np.testing.assert_allclose(np_(A.gain_probability(it, 1000, 0.8, decay=True)), ref.prob,
                                   atol=1e-6)


def test_gain_schedule_under_jit():
    fn = compile_fn(lambda s: ops.stack(list(A.gain_range(s, TOTAL)) + [
        A.consistency_step_size(s, TOTAL)]))
    outs = [np_(fn(ops.convert_to_tensor(s, "int32"))) for s in (0, 440000, 720000)]
    np.testing.assert_allclose(outs[0], [0.0, 3.0, 0.1], rtol=1e-5)
    np.testing.assert_allclose(outs[1], [0.5, 2.0, 0.1 ** 1.55], rtol=1e-5)
    np.testing.assert_allclose(outs[2], [1.0, 1.0, 0.1 ** 1.9], rtol=1e-5)


def test_gain_argument_validation():
    with pytest.raises(ValueError):
        A.gain_range(0, TOTAL, gain_min=2.0, gain_max=1.0)
    with pytest.raises(ValueError):
        A.gain_range(0, 0)
    with pytest.raises(ValueError):
        A.gain_range(0, 10, start_hold_fraction=0.95, end_zero_fraction=0.1)
    with pytest.raises(ValueError):
        A.gain_probability(0, 10, prob=1.2)
    with pytest.raises(ValueError):
        A.sample_gains(4, 0, prob=-0.1)
    with pytest.raises(ValueError):
        A.sample_gains(4, 0, gain_min=3.0, gain_max=0.0)
    with pytest.raises(ValueError):
        A.sample_gains(4, 0, zero_threshold=-1.0)


# ----------------------------------------------------------------------------
# gain sampling and capping
# ----------------------------------------------------------------------------
def test_sample_gains_distribution():
    n = 200000
    g = np_(A.sample_gains(n, keras.random.SeedGenerator(0), 0.0, 3.0, prob=0.8))
    assert g.shape == (n,)
    # below the threshold -> exactly 0, never in (0, 0.05)
    assert not np.any((g > 0) & (g < 0.05))
    # official expectations: P(1) = 1 - p, P(0) = p * 0.05 / 3, E = (1 - p) + p * E[U 1{U>=.05}]
    p = 0.8
    np.testing.assert_allclose((g == 1.0).mean(), 1 - p, atol=0.005)
    np.testing.assert_allclose((g == 0.0).mean(), p * 0.05 / 3.0, atol=0.002)
    np.testing.assert_allclose(g.mean(), (1 - p) + p * (9.0 - 0.05**2) / 6.0, atol=0.01)
    assert g.min() >= 0.0 and g.max() <= 3.0
    # narrowed range late in training: [1, 1] -> all ones
    lo, hi = A.gain_range(TOTAL, TOTAL)
    ones = np_(A.sample_gains(1000, keras.random.SeedGenerator(1), lo, hi, prob=0.8))
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)
    # probability 0 -> identity gains
    np.testing.assert_array_equal(np_(A.sample_gains(100, 0, 0.0, 3.0, prob=0.0)), 1.0)


def torch_cap(gain, x):
    """Official GainScaler.cap_gain."""
    peak = torch.amax(torch.abs(x), dim=tuple(range(1, x.ndim)))
    allowed = 1.0 / (peak + 1e-7)
    return torch.copysign(torch.min(torch.abs(gain), allowed), gain)


def test_cap_gains_per_example_peak(rng):
    x = rng.uniform(-1, 1, size=(6, 2, 500)).astype("float32")
    peaks = np.array([0.5, 0.5, 1.0, 0.1, 0.9, 0.333], dtype="float32")
    x = x / np.abs(x).max(axis=(1, 2), keepdims=True) * peaks[:, None, None]
    x[3, 1, 7] = -0.8  # peak in the second channel, negative sign
    gains = np.array([3.0, 1.5, 0.0, 2.0, -2.5, 1.0], dtype="float32")
    out = np_(A.cap_gains(gains, x))
    ref = torch_cap(torch.from_numpy(gains), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    peak = np.abs(x).max(axis=(1, 2))
    assert np.all(np.abs(out) * peak <= 1.0 + 1e-6)
    np.testing.assert_allclose(out[0], 1.0 / (0.5 + 1e-7), rtol=1e-6)  # 3 * 0.5 > 1: capped
    np.testing.assert_allclose(out[1], 1.5, rtol=1e-6)  # 1.5 * 0.5 < 1: untouched
    assert out[2] == 0.0
    np.testing.assert_allclose(out[3], 1.0 / (0.8 + 1e-7), rtol=1e-6)  # peak from channel 2
    assert out[4] < 0 and np.isclose(abs(out[4]), 1.0 / (0.9 + 1e-7), rtol=1e-6)
    scaled = np_(A.apply_gain(x, out))
    assert np.abs(scaled).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(np_(A.remove_gain(scaled, out))[[0, 1, 3, 5]],
                               x[[0, 1, 3, 5]], rtol=1e-5, atol=1e-6)


def test_sample_capped_gains(rng):
    x = rng.uniform(-1, 1, size=(512, 200)).astype("float32")
    x[::2] *= 0.9  # loud examples
    x[1::2] *= 0.2  # quiet examples
    g = np_(A.sample_capped_gains(x, keras.random.SeedGenerator(0), 0.0, 3.0, prob=0.8))
    peak = np.abs(x).max(axis=1)
    assert g.shape == (512,)
    assert np.all(g * peak <= 1.0 + 1e-6)
    assert not np.any((g > 0) & (g < 0.05))
    assert (g[::2] > 1.0).any() and (g[1::2] > 2.0).any()


# ----------------------------------------------------------------------------
# M2L augmentations
# ----------------------------------------------------------------------------
def test_mixit_augmentation(rng):
    x = rng.standard_normal((64, 50)).astype("float32")
    mixed_total = 0
    for s in range(5):
        out = np_(A.mixit_augmentation(x, keras.random.SeedGenerator(s)))
        assert out.shape == x.shape
        partners = []
        for i in range(64):
            if np.allclose(out[i], x[i], atol=1e-6):
                continue  # not mixed (or mixed with itself)
            cand = np.where(np.all(np.isclose(2 * out[i] - x[i], x, atol=1e-5), axis=1))[0]
            assert len(cand) == 1, "row must be (x_i + x_j) / 2"
            partners.append(cand[0])
            mixed_total += 1
        assert len(set(partners)) == len(partners)  # partners come from a permutation
    assert 0.38 < mixed_total / (5 * 64) < 0.62
    np.testing.assert_array_equal(np_(A.mixit_augmentation(x, 0, prob=0.0)), x)
    with pytest.raises(ValueError):
        A.mixit_augmentation(x, 0, prob=2.0)


def test_scale_and_normalize_augmentation(rng):
    x = rng.uniform(-0.5, 0.5, size=(8, 100)).astype("float32")
    gains = np.full((8,), 3.0, "float32")
    out = np_(A.scale_augmentation(x, gains))
    ref_g = torch_cap(torch.from_numpy(gains), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, x * ref_g[:, None], rtol=1e-6)
    assert np.abs(out).max() <= 1.0 + 1e-6
    norm = np_(A.normalize_gain_augmentation(x, keras.random.SeedGenerator(0)))
    peaks = np.abs(norm).max(axis=1)
    assert np.all((peaks >= 0.1 - 1e-6) & (peaks <= 1.0 + 1e-6))
    np.testing.assert_allclose(norm / peaks[:, None], x / np.abs(x).max(1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# consistency training noise
# ----------------------------------------------------------------------------
def test_noise_bin_probabilities_match_official():
    w = official_diffusion().get_sampling_weights(10000, device="cpu").double().numpy()
    p = A.lognormal_index_probabilities()
    assert p.shape == w.shape == (9999,)
    np.testing.assert_allclose(p, w / w.sum(), rtol=1e-4)


def test_noise_index_distribution_matches_official():
    n = 200000
    diff = official_diffusion()
    gen = torch.Generator().manual_seed(0)
    w = diff.get_sampling_weights(10000, device="cpu")
    inds = torch.multinomial(w, n, replacement=True, generator=gen).float()
    ref = ((inds + torch.rand(inds.shape, generator=gen)) / 9999.0).numpy()
    ours = np_(A.sample_noise_indices(n, keras.random.SeedGenerator(0)))
    assert ours.shape == (n,) and ours.min() >= 0.0 and ours.max() < 1.0
    grid = np.linspace(0, 1, 201)
    ks = np.abs(np.searchsorted(np.sort(ours), grid) - np.searchsorted(np.sort(ref), grid)).max()
    assert ks / n < 0.01  # two-sample KS statistic (99.9 % critical value ~ 0.0062)
    np.testing.assert_allclose(ours.mean(), ref.mean(), atol=0.003)
    np.testing.assert_allclose(ours.std(), ref.std(), atol=0.003)
    # in sigma space too (median of the log-normal around exp(p_mean))
    s_ours = np_(A.sigma_from_index(ours))
    s_ref = diff.get_sigma_continuous(torch.from_numpy(ref)).numpy()
    np.testing.assert_allclose(np.median(np.log(s_ours)), np.median(np.log(s_ref)), atol=0.03)
    uni = np_(A.sample_noise_indices(1000, 0, use_lognormal=False))
    assert uni.min() >= 0 and uni.max() < 1


def test_noise_sampling_under_jit():
    fn = compile_fn(lambda: A.sample_noise_indices(64, 1234))
    out = np_(fn())
    assert out.shape == (64,) and np.all((out >= 0) & (out < 1))


def test_sigma_step_and_weights_match_official(rng):
    diff = official_diffusion()
    idx = np.concatenate([[0.0, 1e-4, 0.05, 0.5, 0.999, 1.0], rng.uniform(size=20)])
    idx = idx.astype("float32")
    ti = torch.from_numpy(idx)
    np.testing.assert_allclose(np_(A.sigma_from_index(idx)),
                               diff.get_sigma_continuous(ti).numpy(), rtol=2e-5)
    for it in [0, 1, 1000, 400000, 799999, TOTAL, TOTAL + 5000]:
        ref_step = diff.get_step_schedule(min(it, TOTAL))
        step = A.consistency_step_size(it, TOTAL)
        np.testing.assert_allclose(np_(step), ref_step, rtol=1e-5)
        sig, sig_step = A.consistency_sigmas(idx, step)
        ref_sig = diff.get_sigma_continuous(ti)
        ref_sig_step = diff.get_sigma_continuous(diff.get_step_continuous(ti, ref_step))
        np.testing.assert_allclose(np_(sig), ref_sig.numpy(), rtol=2e-5)
        np.testing.assert_allclose(np_(sig_step), ref_sig_step.numpy(), rtol=2e-4, atol=1e-7)
        mask = np_(sig) > np_(sig_step)
        np.testing.assert_allclose(np_(A.consistency_loss_weight(sig, sig_step))[mask],
                                   diff.get_loss_weight(ref_sig, ref_sig_step).numpy()[mask],
                                   rtol=2e-3)
    # constant schedule / no total
    const = Diffusion(schedule="constant", end_exp=2.0)
    np.testing.assert_allclose(np_(A.consistency_step_size(5, TOTAL, schedule="constant")),
                               const.get_step_schedule(5), rtol=1e-6)
    np.testing.assert_allclose(np_(A.consistency_step_size(5, None)), 0.01, rtol=1e-6)
    with pytest.raises(ValueError):
        A.consistency_step_size(0, TOTAL, schedule="linear")


def test_preconditioning_matches_official(rng):
    from keras_lincae.models.decoder import preconditioning

    sigma = np.concatenate([[0.002, 0.01, 0.5, 80.0], rng.uniform(0.002, 80, 12)]).astype("float32")
    ours = preconditioning(ops.convert_to_tensor(sigma))
    refs = official_get_c(torch.from_numpy(sigma), 0.002, 0.5)
    for o, r in zip(ours, refs):
        assert tuple(o.shape) == (16,)
        np.testing.assert_allclose(np_(o), r.numpy().reshape(-1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np_(ours[0])[0], 1.0)
    np.testing.assert_allclose(np_(ours[1])[0], 0.0, atol=1e-7)


def test_add_noise_matches_official(rng):
    x = rng.standard_normal((3, 2, 8, 5)).astype("float32")
    n = rng.standard_normal((3, 2, 8, 5)).astype("float32")
    s = np.array([0.1, 1.0, 10.0], "float32")
    ref = official_diffusion().add_noise(torch.from_numpy(x), torch.from_numpy(n),
                                         torch.from_numpy(s)).numpy()
    np.testing.assert_allclose(np_(A.add_noise(x, n, s)), ref, rtol=1e-6, atol=1e-6)


def torch_huber(x, y, w=None, mean=True, c=0.00054):
    """Official train.huber."""
    diff = torch.flatten((x - y) ** 2, start_dim=1)
    c = c * torch.sqrt(torch.ones((1,)) * diff.shape[-1])
    diff = torch.sqrt(torch.sum(diff, -1) + c**2) - c
    diff = torch.nan_to_num(diff)
    if w is not None:
        diff = diff * w.squeeze()
    return diff.mean() if mean else diff


def test_pseudo_huber_matches_official(rng):
    x = rng.standard_normal((4, 2, 16, 8)).astype("float32")
    y = x + rng.standard_normal(x.shape).astype("float32") * np.array(
        [1e-4, 1e-2, 1.0, 0.0], "float32")[:, None, None, None]
    w = rng.uniform(0.1, 10, 4).astype("float32")
    tx, ty, tw = map(torch.from_numpy, (x, y, w))
    np.testing.assert_allclose(np_(A.pseudo_huber_loss(x, y, w)), torch_huber(tx, ty, tw).item(),
                               rtol=1e-5)
    per = np_(A.pseudo_huber_loss(x, y, reduction=None))
    np.testing.assert_allclose(per, torch_huber(tx, ty, mean=False).numpy(), rtol=1e-5, atol=1e-9)
    assert per[3] == 0.0
    # c scales with sqrt(#elements per example)
    c = 0.00054 * math.sqrt(2 * 16 * 8)
    d = ((x[2] - y[2]) ** 2).sum()
    np.testing.assert_allclose(per[2], math.sqrt(d + c * c) - c, rtol=1e-5)
    with pytest.raises(ValueError):
        A.pseudo_huber_loss(x, y[:, :1])
