"""Tests for keras_lincae.models.consistency (and the pseudo-Huber loss) against the official
`linear_cae.components.diffusion` and the official trainer's `huber`."""

import math

import keras
import numpy as np
import pytest
import torch
from keras import ops
from linear_cae.components.diffusion import Diffusion
from linear_cae.components.diffusion import get_c as official_get_c

from keras_lincae.backend_dispatch import compile_traced
from keras_lincae.models import consistency as C
from keras_lincae.models import losses

TOTAL = 800000
GRID = (0.002, 80.0, 7.0)  # sigma_min, sigma_max, rho of lin_cae.yaml
OFFICIAL_NOISE = GRID + (-1.1, 2.0)  # and p_mean, p_std


def np_(x):
    return ops.convert_to_numpy(x)


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


def test_noise_bin_probabilities_match_official():
    w = official_diffusion().get_sampling_weights(10000, device="cpu").double().numpy()
    p = C.lognormal_index_probabilities(*OFFICIAL_NOISE)
    assert p.shape == w.shape == (9999,)
    np.testing.assert_allclose(p, w / w.sum(), rtol=1e-4)


def test_noise_index_distribution_matches_official():
    n = 200000
    diff = official_diffusion()
    gen = torch.Generator().manual_seed(0)
    w = diff.get_sampling_weights(10000, device="cpu")
    inds = torch.multinomial(w, n, replacement=True, generator=gen).float()
    ref = ((inds + torch.rand(inds.shape, generator=gen)) / 9999.0).numpy()
    ours = np_(C.sample_noise_indices(n, keras.random.SeedGenerator(0), *OFFICIAL_NOISE))
    assert ours.shape == (n,) and ours.min() >= 0.0 and ours.max() < 1.0
    grid = np.linspace(0, 1, 201)
    ks = np.abs(np.searchsorted(np.sort(ours), grid) - np.searchsorted(np.sort(ref), grid)).max()
    assert ks / n < 0.01  # two-sample KS statistic (99.9 % critical value ~ 0.0062)
    np.testing.assert_allclose(ours.mean(), ref.mean(), atol=0.003)
    np.testing.assert_allclose(ours.std(), ref.std(), atol=0.003)
    # in sigma space too (median of the log-normal around exp(p_mean))
    s_ours = np_(C.sigma_from_index(ours, *GRID))
    s_ref = diff.get_sigma_continuous(torch.from_numpy(ref)).numpy()
    np.testing.assert_allclose(np.median(np.log(s_ours)), np.median(np.log(s_ref)), atol=0.03)


def test_noise_sampling_under_jit():
    fn = compile_traced(lambda: C.sample_noise_indices(64, 1234, *OFFICIAL_NOISE))
    out = np_(fn())
    assert out.shape == (64,) and np.all((out >= 0) & (out < 1))


def test_sigma_step_and_weights_match_official(rng):
    diff = official_diffusion()
    idx = np.concatenate([[0.0, 1e-4, 0.05, 0.5, 0.999, 1.0], rng.uniform(size=20)])
    idx = idx.astype("float32")
    ti = torch.from_numpy(idx)
    np.testing.assert_allclose(np_(C.sigma_from_index(idx, *GRID)),
                               diff.get_sigma_continuous(ti).numpy(), rtol=2e-5)
    for it in [0, 1, 1000, 400000, 799999, TOTAL, TOTAL + 5000]:
        ref_step = diff.get_step_schedule(min(it, TOTAL))
        step = C.consistency_step_size(it, TOTAL, 0.1, 1.0, 2.0)
        np.testing.assert_allclose(np_(step), ref_step, rtol=1e-5)
        sig, sig_step = C.consistency_sigmas(idx, step, *GRID)
        ref_sig = diff.get_sigma_continuous(ti)
        ref_sig_step = diff.get_sigma_continuous(diff.get_step_continuous(ti, ref_step))
        np.testing.assert_allclose(np_(sig), ref_sig.numpy(), rtol=2e-5)
        np.testing.assert_allclose(np_(sig_step), ref_sig_step.numpy(), rtol=2e-4, atol=1e-7)
        mask = np_(sig) > np_(sig_step)
        np.testing.assert_allclose(np_(C.consistency_loss_weight(sig, sig_step))[mask],
                                   diff.get_loss_weight(ref_sig, ref_sig_step).numpy()[mask],
                                   rtol=2e-3)
    with pytest.raises(ValueError):
        C.consistency_step_size(0, 0, 0.1, 1.0, 2.0)


def test_preconditioning_matches_official(rng):
    sigma = np.concatenate([[0.002, 0.01, 0.5, 80.0], rng.uniform(0.002, 80, 12)]).astype("float32")
    ours = C.preconditioning(ops.convert_to_tensor(sigma), 0.002, 0.5)
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
    np.testing.assert_allclose(np_(C.add_noise(x, n, s)), ref, rtol=1e-6, atol=1e-6)


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
    np.testing.assert_allclose(np_(losses.pseudo_huber_loss(x, y, w, 0.00054)), torch_huber(tx, ty, tw).item(),
                               rtol=1e-5)
    per = torch_huber(tx, ty, mean=False).numpy()
    for i in range(4):  # one example at a time: the mean over one-hot weights * batch
        one_hot = np.eye(4, dtype="float32")[i] * 4
        np.testing.assert_allclose(np_(losses.pseudo_huber_loss(x, y, one_hot, 0.00054)), per[i], rtol=1e-5, atol=1e-9)
    assert per[3] == 0.0
    # c scales with sqrt(#elements per example)
    c = 0.00054 * math.sqrt(2 * 16 * 8)
    d = ((x[2] - y[2]) ** 2).sum()
    np.testing.assert_allclose(per[2], math.sqrt(d + c * c) - c, rtol=1e-5)
    with pytest.raises(ValueError):
        losses.pseudo_huber_loss(x, y[:, :1], w, 0.00054)


def test_sampling_sigmas_are_the_official_grid():
    diff = official_diffusion()
    for steps in (1, 2, 5):
        ours = C.sampling_sigmas(steps, *GRID)
        assert len(ours) == steps + 1 and ours[0] == pytest.approx(80.0) and ours[-1] == pytest.approx(0.002)
        index = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        np.testing.assert_allclose(ours, diff.get_sigma_continuous(index).numpy(), rtol=1e-6)
