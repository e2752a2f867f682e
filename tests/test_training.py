"""The Lin-CAE objective in `compute_loss`, the step counter, EMA and `fit` on every backend."""

import keras
import numpy as np
import pytest
from keras_lincae.testing.helpers import music_like, randomize_weights, to_numpy

from keras_lincae import LinCAE
from keras_lincae.training.optimizers import RAdam

CLIP = (16 - 1) * 512 + 2048  # 16 spectrogram frames -> 2 latent frames


def tiny(**overrides):
    keras.utils.set_random_seed(0)
    return LinCAE.from_preset("lin_cae_tiny", load_weights=False, **overrides)


class Spy:
    """Records what compute_loss hands to the frontend and the latent pyramid."""

    def __init__(self, model, monkeypatch):
        self.audio, self.latents = [], []
        frontend_fn, pyramid_fn = model.frontend.to_representation, model.decoder.latent_pyramid

        def to_representation(audio):
            self.audio.append(to_numpy(audio))
            return frontend_fn(audio)

        def latent_pyramid(latents, training=None):
            self.latents.append(to_numpy(latents))
            return pyramid_fn(latents, training=training)

        monkeypatch.setattr(model.frontend, "to_representation", to_representation)
        monkeypatch.setattr(model.decoder, "latent_pyramid", latent_pyramid)


def run_loss(model, audio, training=True):
    y_pred = model(audio, training=training)
    return float(to_numpy(model.compute_loss(x=audio, y_pred=y_pred, training=training)))


def test_mixture_latents_are_mixtures_of_source_latents(monkeypatch):
    model = randomize_weights(tiny(mix_weight_min=0.7, mix_weight_max=0.7, gain_prob=0.0))
    audio = music_like(CLIP, batch=2, seed=1)
    # in training mode, as the objective encodes (JAX then runs the 1x1 layers as convolutions)
    sources = to_numpy(model(audio, training=True)) / model.scale_factor
    spy = Spy(model, monkeypatch)
    loss = run_loss(model, audio)
    assert np.isfinite(loss) and loss > 0
    latents = spy.latents[-1]
    assert latents.shape[0] == 4
    np.testing.assert_allclose(latents[:2], sources, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(latents[2:], 0.7 * sources + 0.3 * np.roll(sources, 1, axis=0), rtol=1e-5, atol=1e-6)
    mixed_audio = spy.audio[-1]
    np.testing.assert_allclose(mixed_audio[2:], 0.7 * audio + 0.3 * np.roll(audio, 1, axis=0), atol=1e-6)


def test_gains_scale_audio_and_latents_and_are_peak_capped(monkeypatch):
    model = randomize_weights(tiny(gain_min=3.0, gain_max=3.0, gain_prob=1.0, mix_weight_min=1.0, mix_weight_max=1.0))
    audio = music_like(CLIP, batch=2, seed=2)
    audio[0] *= 0.1 / np.abs(audio[0]).max()  # 3 * 0.1 <= 1: gain kept
    audio[1] *= 0.8 / np.abs(audio[1]).max()  # 3 * 0.8 > 1: gain capped at 1 / 0.8
    sources = to_numpy(model(audio, training=True)) / model.scale_factor
    spy = Spy(model, monkeypatch)
    run_loss(model, audio)
    expected_gain = np.array([3.0, 1.0 / 0.8, 3.0, 1.0 / 0.8])
    scaled_audio, latents = spy.audio[-1], spy.latents[-1]
    np.testing.assert_allclose(scaled_audio, expected_gain[:, None] * np.concatenate([audio, audio]), rtol=1e-5, atol=1e-6)
    assert np.abs(scaled_audio).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(latents, expected_gain[:, None, None] * np.concatenate([sources, sources]), rtol=1e-5, atol=1e-6)


def test_small_gains_become_zero(monkeypatch):
    model = tiny(gain_min=0.0, gain_max=0.04, gain_prob=1.0)
    spy = Spy(model, monkeypatch)
    run_loss(model, music_like(CLIP, batch=2, seed=3))
    assert np.abs(spy.audio[-1]).max() == 0.0 and np.abs(spy.latents[-1]).max() == 0.0


def test_m2l_uses_encoder_latents_without_gain_terms(monkeypatch):
    model = randomize_weights(tiny(mode="m2l", mixit_prob=0.0, scale_augmentation=False, gain_prob=1.0))
    audio = music_like(CLIP, batch=2, seed=4)
    spy = Spy(model, monkeypatch)
    run_loss(model, audio)
    fed_audio, latents = spy.audio[-1], spy.latents[-1]
    # Mixtures are appended, but their latents come from the encoder, and no gain is applied.
    np.testing.assert_allclose(fed_audio[:2], audio, atol=1e-6)
    own = to_numpy(model(fed_audio[2:])) / model.scale_factor
    np.testing.assert_allclose(latents[2:], own, rtol=1e-4, atol=1e-5)
    weights = (fed_audio[2:] - np.roll(audio, 1, axis=0)) / (audio - np.roll(audio, 1, axis=0) + 1e-12)
    assert np.all((weights[:, 100:200] > 0.5 - 1e-3) & (weights[:, 100:200] < 1 + 1e-3))


def test_m2l_mixit_and_scale_augmentations(monkeypatch):
    model = tiny(mode="m2l", mixit_prob=1.0, scale_augmentation=True, gain_min=0.5, gain_max=0.5, gain_prob=1.0)
    audio = music_like(CLIP, batch=2, seed=5) * 0.5
    spy = Spy(model, monkeypatch)
    run_loss(model, audio)
    sources = spy.audio[-1][:2]
    # mix-it with probability 1: each clip is (x_i + x_perm(i)) / 2, then scaled by 0.5.
    candidates = [0.5 * (audio[i] + audio[j]) / 2 for i in range(2) for j in range(2)]
    for clip in sources:
        assert min(np.abs(clip - c).max() for c in candidates) < 1e-6


def test_gain_range_schedule_on_the_model():
    annealed = tiny(total_steps=1000)
    constant = tiny(total_steps=1000, mode="lin_cae_2")
    expected = {0: (0.0, 3.0), 200: (0.0, 3.0), 550: (0.5, 2.0), 900: (1.0, 1.0), 1000: (1.0, 1.0)}
    for step, (lo, hi) in expected.items():
        np.testing.assert_allclose(annealed.gain_range_at(step), (lo, hi), atol=1e-6)
        np.testing.assert_allclose(constant.gain_range_at(step), (0.0, 3.0), atol=1e-6)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(mode="vae"), "mode"),
        (dict(gain_min=2.0, gain_max=1.0), "gain range"),
        (dict(gain_prob=1.5), "probability"),
        (dict(prob_additivity_switch=-0.1), "probability"),
        (dict(ema_momentum=1.5), "ema_momentum"),
    ],
)
def test_bad_training_config(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny(**overrides)


def test_batch_too_small_for_mixtures():
    model = tiny()
    audio = music_like(CLIP, batch=1)
    with pytest.raises(ValueError, match="at least 2 clips"):
        run_loss(model, audio)


def fixed_noise_loss(model, audio, seeds=(1234, 99, 7)):
    """Plain consistency loss averaged over fixed noise draws (the same every call: low variance)."""
    state = to_numpy(model._train_seed.state)
    losses = []
    for seed in seeds:
        model._train_seed.state.assign(np.array([seed, 0], dtype=state.dtype))
        losses.append(run_loss(model, audio, training=False))
    model._train_seed.state.assign(state)
    return float(np.mean(losses))


STEPS = 12
TRAIN_CLIP = (8 - 1) * 512 + 2048  # 8 spectrogram frames -> 1 latent frame


@pytest.fixture(scope="module")
def trained():
    """One short training run shared by the tests below (one compile per backend)."""
    model = tiny(total_steps=18, ema_momentum=0.9, ema_every=1)
    model.compile(optimizer=RAdam(1e-2))  # "auto": no XLA for TensorFlow on CPU (auto_jit_compile)
    audio = music_like(TRAIN_CLIP, batch=2, seed=6)
    before = fixed_noise_loss(model, audio)
    sources = model.encoder.trainable_weights + model.decoder.trainable_weights
    watched = model.encoder.conv_inp.conv.kernel
    snapshots, losses = [], []
    for _ in range(STEPS):
        snapshots.append(to_numpy(watched))
        losses += model.fit(audio, batch_size=2, epochs=1, verbose=0).history["loss"]
    after = fixed_noise_loss(model, audio)
    print(f"{keras.backend.backend()}: fixed-noise loss {before:.2f} -> {after:.2f}; fit losses {losses[0]:.2f} ... {losses[-1]:.2f}")
    index = [id(w) for w in sources].index(id(watched))
    return dict(model=model, before=before, after=after, losses=losses, snapshots=snapshots, index=index, watched=watched)


def test_fit_lowers_loss_and_advances_the_step_counter(trained):
    model, losses = trained["model"], trained["losses"]
    assert trained["after"] < 0.95 * trained["before"]
    assert len(set(np.round(losses, 5))) == len(losses)  # fresh noise every step under jit
    assert int(to_numpy(model.training_step)) == STEPS
    assert model.gain_range_at(STEPS)[1] < 3.0  # past 20% of training: the gain range has narrowed


def test_step_counter_and_ema_are_saved_with_the_model(trained, tmp_path):
    model = trained["model"]
    path = model.save_to_preset(str(tmp_path / "mid_training"))
    reloaded = LinCAE.from_preset(path)
    assert int(to_numpy(reloaded.training_step)) == STEPS
    for a, b in zip(reloaded.ema_weights, model.ema_weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


def test_ema_follows_its_formula(trained):
    snapshots = trained["snapshots"]
    # Step s (s = updates so far) blends in the weights after s updates, for s > 0.
    shadow = snapshots[0]
    for s in range(1, STEPS):
        decay = min(0.9, (1 + s) / (10 + s))
        shadow = decay * shadow + (1 - decay) * snapshots[s]
    model, index = trained["model"], trained["index"]
    np.testing.assert_allclose(to_numpy(model.ema_weights[index]), shadow, rtol=1e-4, atol=1e-6)
    assert np.abs(snapshots[-1] - snapshots[0]).max() > 1e-4


def test_use_ema_weights(trained):
    model = LinCAE.from_config(trained["model"].get_config())
    model.build()
    model.set_weights(trained["model"].get_weights())
    model.use_ema_weights()
    index = trained["index"]
    sources = model.encoder.trainable_weights + model.decoder.trainable_weights
    np.testing.assert_array_equal(to_numpy(sources[index]), to_numpy(model.ema_weights[index]))


def test_auto_jit_compile_resolves_per_backend():
    """`compile(jit_compile="auto")`: XLA on jax, TensorFlow's own kernels on a CPU-only TensorFlow
    (faster there), eager torch; an explicit value is kept."""
    model = tiny()
    model.compile(optimizer=RAdam(1e-3))
    expected = {"jax": True, "tensorflow": False, "torch": False}[keras.backend.backend()]
    assert model.jit_compile is expected
    if keras.backend.backend() != "torch":
        model.compile(optimizer=RAdam(1e-3), jit_compile=True)
        assert model.jit_compile is True
