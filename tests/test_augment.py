"""Tests for keras_lincae.models.augment against the official Lin-CAE formulas.

The pieces of the official trainer that the package does not ship (``linearly_combine``,
``GainScaler``, ``cap_gain``) are re-derived here from the official ``train.py`` formulas with
torch/numpy. The model's use of them (which batch halves get which gains and latents) is
tested through ``compute_loss`` in test_training.py.
"""

import keras
import numpy as np
import pytest
import torch
from keras import ops

from keras_lincae.backend_dispatch import compile_traced
from keras_lincae.models import augment as A

TOTAL = 800000


def np_(x):
    return ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------
# mixtures / additivity
# ----------------------------------------------------------------------------
def gain_range(step, total, gain_min=0.0, gain_max=3.0, decay=True, start_hold_fraction=0.2,
               end_zero_fraction=0.1):
    """`augment.gain_range` with the official lin_cae arguments unless given."""
    return A.gain_range(step, total, gain_min, gain_max, decay, start_hold_fraction, end_zero_fraction)


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
    w = np_(A.sample_mix_weights(20000, keras.random.SeedGenerator(1), 0.5, 1.0))
    assert w.shape == (20000,)
    assert w.min() >= 0.5 and w.max() <= 1.0
    assert abs(w.mean() - 0.75) < 0.005
    with pytest.raises(ValueError):
        A.sample_mix_weights(4, 0, minval=1.0, maxval=0.5)


def test_additive_latents(rng):
    z = rng.standard_normal((8, 16, 64)).astype("float32")
    w = rng.uniform(0.5, 1.0, size=4).astype("float32")
    out = np_(A.additive_latents(z, w, 1.0, None))
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
        A.additive_latents(z[:7], w, 1.0, None)
    with pytest.raises(ValueError):
        A.additive_latents(z, w, 1.5, None)


# ----------------------------------------------------------------------------
# gain schedule
# ----------------------------------------------------------------------------
class ReferenceGainScaler:
    """Stateful numpy replica of the official GainScaler.update_gain_scaler (gain range only)."""

    def __init__(self, gain_min, gain_max, gain_decay, total_iters):
        self.gain_min = self.lo0 = gain_min
        self.gain_max = self.hi0 = gain_max
        self.gain_decay, self.total = gain_decay, total_iters

    def update(self, it):
        if not self.gain_decay:
            return
        start = self.total * 0.2
        end = self.total * (1 - 0.1)
        progress = (it - start) / (end - start)
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
    ref = ReferenceGainScaler(0.0, 3.0, gain_decay=decay, total_iters=total)
    for frac in FRACTIONS:
        it = int(round(frac * total))
        ref.update(it)
        lo, hi = gain_range(it, total, decay=decay)
        np.testing.assert_allclose([np_(lo), np_(hi)], [ref.gain_min, ref.gain_max], atol=2e-6)


def test_gain_range_landmarks():
    # +++range-decay: [0, 3] up to 20 %, mid-way (55 %) the cosine factor is 1/2, [1, 1] from 90 %
    expect = {0.0: (0, 3), 0.2: (0, 3), 0.55: (0.5, 2.0), 0.9: (1, 1), 1.0: (1, 1)}
    for frac, (elo, ehi) in expect.items():
        lo, hi = gain_range(int(frac * TOTAL), TOTAL)
        np.testing.assert_allclose([np_(lo), np_(hi)], [elo, ehi], atol=1e-5)
        lo, hi = gain_range(int(frac * TOTAL), TOTAL, decay=False)
        np.testing.assert_allclose([np_(lo), np_(hi)], [0, 3], atol=0)


def test_gain_schedule_under_jit():
    fn = compile_traced(lambda s: ops.stack(list(gain_range(s, TOTAL))))
    outs = [np_(fn(ops.convert_to_tensor(s, "int32"))) for s in (0, 440000, 720000)]
    np.testing.assert_allclose(outs[0], [0.0, 3.0], rtol=1e-5)
    np.testing.assert_allclose(outs[1], [0.5, 2.0], rtol=1e-5)
    np.testing.assert_allclose(outs[2], [1.0, 1.0], rtol=1e-5)


def test_gain_argument_validation():
    with pytest.raises(ValueError):
        gain_range(0, TOTAL, gain_min=2.0, gain_max=1.0)
    with pytest.raises(ValueError):
        gain_range(0, 0)
    with pytest.raises(ValueError):
        gain_range(0, 10, start_hold_fraction=0.95, end_zero_fraction=0.1)
    with pytest.raises(ValueError):
        A.sample_gains(4, 0, 0.0, 3.0, -0.1, 0.05)
    with pytest.raises(ValueError):
        A.sample_gains(4, 0, 3.0, 0.0, 0.8, 0.05)
    with pytest.raises(ValueError):
        A.sample_gains(4, 0, 0.0, 3.0, 0.8, -1.0)


# ----------------------------------------------------------------------------
# gain sampling and capping
# ----------------------------------------------------------------------------
def test_sample_gains_distribution():
    n = 200000
    g = np_(A.sample_gains(n, keras.random.SeedGenerator(0), 0.0, 3.0, 0.8, 0.05))
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
    lo, hi = gain_range(TOTAL, TOTAL)
    ones = np_(A.sample_gains(1000, keras.random.SeedGenerator(1), lo, hi, 0.8, 0.05))
    np.testing.assert_allclose(ones, 1.0, atol=1e-6)
    # probability 0 -> identity gains
    np.testing.assert_array_equal(np_(A.sample_gains(100, 0, 0.0, 3.0, 0.0, 0.05)), 1.0)


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
    np.testing.assert_allclose(scaled, x * out[:, None, None], rtol=1e-6)


# ----------------------------------------------------------------------------
# M2L augmentations
# ----------------------------------------------------------------------------
def test_mixit_augmentation(rng):
    x = rng.standard_normal((64, 50)).astype("float32")
    mixed_total = 0
    for s in range(5):
        out = np_(A.mixit_augmentation(x, keras.random.SeedGenerator(s), 0.5))
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


def test_scale_augmentation(rng):
    x = rng.uniform(-0.5, 0.5, size=(8, 100)).astype("float32")
    gains = np.full((8,), 3.0, "float32")
    out = np_(A.scale_augmentation(x, gains))
    ref_g = torch_cap(torch.from_numpy(gains), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, x * ref_g[:, None], rtol=1e-6)
    assert np.abs(out).max() <= 1.0 + 1e-6
