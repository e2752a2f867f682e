"""The trained presets shipped in saved_models/: offline loading, provenance, reconstruction."""

import json
import os
import shutil
import sys
import tomllib

import numpy as np
import pytest

from keras_lincae.testing.helpers import to_numpy
from keras_lincae import LinCAE, cli, preset_io, presets
from keras_lincae.evaluation import linearity as L
from keras_lincae.evaluation import metrics as M
from keras_lincae.long_audio import decode_long, encode_long
from keras_lincae.preset_io import REPO_PRESETS_DIR, WEIGHTS_FILE
from keras_lincae.data.synth import generate_song
from keras_lincae.testing.shipped_reference import reference_input, reference_noise

SHIPPED = ["lin_cae_small", "m2l_small"]


@pytest.fixture(scope="module")
def held_out_stems():
    # Test-split seed of the synthetic collections (never trained on), numpy renderer.
    stems, _ = generate_song([0, 1, 1], seconds=3.0, renderer="numpy")
    return stems


@pytest.fixture(scope="module")
def held_out_song(held_out_stems):
    return held_out_stems["mixture"][None]


@pytest.mark.parametrize("name", SHIPPED)
def test_loads_offline_with_provenance(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = LinCAE.from_preset(name)
    assert model.mode == presets.BUILTIN_PRESETS[name]["config"]["mode"]
    assert model.latent_channels == 64
    folder = os.path.join(REPO_PRESETS_DIR, name)
    # Only the (EMA) weights ship, not the training-time EMA shadow copies (half the size).
    assert model.ema_weights == [] and model.ema_momentum is None
    assert os.path.getsize(os.path.join(folder, WEIGHTS_FILE)) < 12e6
    assert all(str(w.dtype).endswith("float32") for w in model.weights if "training_step" not in w.path)
    with open(os.path.join(folder, "metadata.json")) as f:
        provenance = json.load(f)["provenance"]
    assert provenance["name"] == name and provenance["training_steps"] > 0
    assert provenance["training_mode"] == model.mode
    with open(os.path.join(folder, "README.md")) as f:
        card = f.read()
    for section in ("## Training", "## Evaluation", "Rec. SI-SDR", "Hardware", "Wall time"):
        assert section in card


def test_same_architecture_different_training():
    lin, m2l = (LinCAE.from_preset(n) for n in SHIPPED)
    drop = {"name", "mode"}
    assert {k: v for k, v in lin.get_config().items() if k not in drop} == {
        k: v for k, v in m2l.get_config().items() if k not in drop}
    assert any(not np.array_equal(to_numpy(a), to_numpy(b)) for a, b in zip(lin.weights, m2l.weights))


@pytest.mark.parametrize("name", SHIPPED)
def test_trained_weights_reconstruct_better_than_untrained(name, held_out_song):
    trained = LinCAE.from_preset(name)
    untrained = LinCAE.from_preset(name, load_weights=False)
    scores, levels = {}, {}
    for label, model in (("trained", trained), ("untrained", untrained)):
        out = to_numpy(model.autoencode(held_out_song, seed=0))
        assert out.shape == held_out_song.shape and np.all(np.isfinite(out))
        scores[label] = float(M.magnitude_snr(out[0], held_out_song[0]))
        levels[label] = np.sqrt(np.mean(out**2) / np.mean(held_out_song**2))
    # Measured (jax, 8200 steps, decoded whole): magnitude SNR lin_cae_small 1.46 dB, m2l_small
    # 1.02 dB (MR-STFT 1.87 / 1.83), output levels 0.73 / 0.84 of the input; untrained
    # (zero-initialised output layers) 0.0003 dB, level 2e-4. The shipped models are weak (see their cards): these bounds
    # check that trained weights are what is loaded and used, not that reconstructions are good.
    assert scores["trained"] > scores["untrained"] + 0.3, scores
    assert levels["trained"] > 0.1 > 10 * levels["untrained"], levels


def test_lin_cae_small_reconstructs_its_input_not_any_music(held_out_song):
    """The 1-step decode follows the song it encodes: MR-STFT against that song is far below the
    decode of another held-out song's latents. Measured (jax, 8200 steps): 1.87 vs 3.85;
    magnitude SNR 1.46 vs -0.78 dB."""
    model = LinCAE.from_preset("lin_cae_small")
    other = generate_song([0, 1, 2], seconds=3.0, renderer="numpy")[0]["mixture"][None]
    own = to_numpy(model.autoencode(held_out_song, seed=0))
    foreign = to_numpy(model.autoencode(other, seed=0))
    distance = {k: float(M.multi_resolution_stft_distance(y, held_out_song)[0]) for k, y in (("own", own), ("other", foreign))}
    assert distance["own"] < 0.75 * distance["other"], distance
    assert distance["own"] < 2.1, distance


def test_lin_cae_small_reconstructs_closer_at_its_training_context(held_out_song):
    """Encoded and decoded in chunks of its training clips (`presets.recommended_chunk_seconds`,
    the CLI's default for it), a held-out song comes back closer than from one whole decode, whose
    level and spectrum drift with the input's length. Measured (jax, 3-s song, 8200 steps): MR-STFT
    1.61 vs 1.87, magnitude SNR 1.60 vs 1.46 dB (5-s clips of the held-out sets: 2.26-3.29 dB,
    docs/evaluation/). The bar is what the shipped model reaches, not the 3 dB the project wants."""
    model = LinCAE.from_preset("lin_cae_small")
    seconds = presets.recommended_chunk_seconds("lin_cae_small")
    whole = to_numpy(model.autoencode(held_out_song, seed=0))
    chunked = decode_long(model, encode_long(model, held_out_song, chunk_seconds=seconds), seed=0)
    assert chunked.shape == whole.shape == held_out_song.shape
    distance = {k: float(M.multi_resolution_stft_distance(y, held_out_song)[0])
                for k, y in (("whole", whole), ("chunked", chunked))}
    assert distance["chunked"] < 0.9 * distance["whole"], distance
    snr = {k: float(M.magnitude_snr(y[0], held_out_song[0])) for k, y in (("whole", whole), ("chunked", chunked))}
    assert snr["chunked"] > snr["whole"] and snr["chunked"] >= 1.5, snr


def test_lin_cae_small_latents_are_more_additive_than_m2l_small(held_out_stems):
    """The paper's claim on a held-out song: E(u + v) is closer to E(u) + E(v) for Lin-CAE.
    Measured (jax, 8200 steps): relative error 0.72 vs 0.97 (held-out sets, chunked: 0.70-0.76 vs
    0.80-0.92, docs/evaluation/)."""
    u = held_out_stems["vocals"][None]
    v = (held_out_stems["mixture"] - held_out_stems["vocals"])[None]
    errors = {name: float(L.encoder_additivity(lambda x, m=LinCAE.from_preset(name): to_numpy(m.encode(x)), u, v)[0])
              for name in SHIPPED}
    assert errors["lin_cae_small"] < 0.95 * errors["m2l_small"], errors


def test_lin_cae_small_decoder_is_more_homogeneous_than_m2l_small(held_out_song):
    """Dec(a z) against a Dec(z) on a held-out song, mean over the default gains. Measured (jax):
    20.9 dB vs 10.6 dB (held-out sets, chunked: 19.4-25.1 vs 11.6-15.4, docs/evaluation/)."""
    snr = {}
    for name in SHIPPED:
        model = LinCAE.from_preset(name)
        z = to_numpy(model.encode(held_out_song))
        snr[name] = float(L.decoder_homogeneity(lambda q, m=model: to_numpy(m.decode(q, seed=0)), z).mean())
    assert snr["lin_cae_small"] > snr["m2l_small"] + 3.0, snr


def test_cli_default_preset_is_the_shipped_model():
    assert cli.DEFAULT_PRESET == "lin_cae_small"
    assert os.path.isdir(os.path.join(REPO_PRESETS_DIR, cli.DEFAULT_PRESET))


def test_installed_wheel_ships_every_preset_folder():
    """pyproject's data-files carry each folder of saved_models/ into a wheel (under <prefix>/share)."""
    with open(os.path.join(os.path.dirname(REPO_PRESETS_DIR), "pyproject.toml"), "rb") as f:
        data_files = tomllib.load(f)["tool"]["setuptools"]["data-files"]
    installed = os.path.relpath(preset_io.INSTALLED_PRESETS_DIR, sys.prefix)
    assert data_files == {f"{installed}/{name}": [f"saved_models/{name}/*"] for name in sorted(os.listdir(REPO_PRESETS_DIR))}


def test_preset_loads_from_the_installed_copy_without_a_source_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(os.path.join(REPO_PRESETS_DIR, "m2l_small"), tmp_path / "share" / "m2l_small")
    monkeypatch.setattr(preset_io, "REPO_PRESETS_DIR", str(tmp_path / "no_source_tree"))
    monkeypatch.setattr(preset_io, "INSTALLED_PRESETS_DIR", str(tmp_path / "share"))
    assert preset_io.resolve_preset("m2l_small", True) == str(tmp_path / "share" / "m2l_small")
    loaded, shipped = LinCAE.from_preset("m2l_small"), LinCAE.from_preset(os.path.join(REPO_PRESETS_DIR, "m2l_small"))
    assert all(np.array_equal(to_numpy(a), to_numpy(b)) for a, b in zip(loaded.weights, shipped.weights))
    monkeypatch.setattr(preset_io, "INSTALLED_PRESETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="no folder 'm2l_small' in .*no_source_tree or .*nowhere"):
        LinCAE.from_preset("m2l_small")


@pytest.mark.parametrize("name", SHIPPED)
def test_outputs_unchanged_since_the_weights_shipped(name):
    """Latents and 1-step audio match what the code gave when the weights shipped.

    The reference is tests/data/shipped_outputs.npz, written by tests/data/make_shipped_outputs.py
    (jax) with the shipped weights; other backends agree within the cross-backend tolerance.
    """
    reference = np.load(os.path.join(os.path.dirname(__file__), "data", "shipped_outputs.npz"))
    model = LinCAE.from_preset(name)
    latents = to_numpy(model.encode(reference_input()))
    np.testing.assert_allclose(latents, reference[f"{name}/latents"], atol=2e-4, rtol=1e-3)
    decoded = to_numpy(model.decode(reference[f"{name}/latents"], noise=reference_noise(model, latents.shape[1])))
    np.testing.assert_allclose(decoded, reference[f"{name}/decoded"], atol=2e-4, rtol=1e-3)
