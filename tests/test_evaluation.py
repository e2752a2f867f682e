"""Tests of keras_lincae.evaluation and recipes/evaluate.py (run per backend via KERAS_BACKEND)."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from keras_lincae.testing.helpers import music_like
from eval_helpers import MODELS, LinearStandIn, NonLinearStandIn, load_recipe, shared_tiny_setup
from keras_lincae import evaluation as E

ALL_NAMES = [s.name for s in E.metric_specs()]


@pytest.fixture(scope="module")
def tiny_setup():
    return shared_tiny_setup()


# ----------------------------------------------------------------------------------------------
# The recipe, end to end
# ----------------------------------------------------------------------------------------------


def _check_tables(out, models, songs, skipped=()):
    """The three files hold every metric column, one row per model, mean ± ci95."""
    doc = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in doc["metrics"]] == ALL_NAMES
    assert [r["name"] for r in doc["models"]] == models
    assert [s["song"] for s in doc["songs"]] == songs
    assert [s["song"] for s in doc["skipped"]] == list(skipped)
    for row in doc["models"]:
        assert set(row["summary"]) == set(ALL_NAMES)
        for name in ALL_NAMES:
            stat = row["summary"][name]
            assert np.isfinite(stat["mean"]), (row["name"], name)
            assert stat["n"] == (1 if name == "silence_norm" else len(songs))
            if name != "silence_norm":
                assert np.isfinite(stat["ci95"]) and stat["ci95"] >= 0
            assert len(row["per_song"][name]) == stat["n"]

    md = (out / "results.md").read_text()
    headline, full = md.split("## Every metric")
    head_lines = [ln for ln in headline.splitlines() if ln.startswith("|")]
    assert [c.strip() for c in head_lines[0].strip("|").split("|")][2] == "Rec. mag-SNR (dB) ↑"
    assert len(head_lines) == 2 + len(models)
    assert ("Verdict: " in headline) == (len(models) > 1)
    assert "- **Rec. mag-SNR (dB)**: magnitude-spectrogram SNR" in headline  # the legend
    lines = [ln for ln in full.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:2] == ["Model", "Songs"]
    assert header[2:] == [spec.label + spec.arrow for spec in E.metric_specs()]
    assert set(lines[1].replace("|", "")) <= set("-: ")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [r[0] for r in rows] == models
    for r in rows:
        assert len(r) == len(header) and r[1] == str(len(songs))
        # A confidence interval only from MIN_SONGS_FOR_CI songs on; the silence norm is one number.
        assert all((" ± " in c) == (len(songs) >= E.MIN_SONGS_FOR_CI) for c in r[2:-1])
    for song in skipped:
        assert song in md

    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["model"] for r in table] == models
    for row, model in zip(table, doc["models"]):
        for name in ALL_NAMES:
            assert float(row[f"{name}_mean"]) == pytest.approx(model["summary"][name]["mean"])
            assert int(row[f"{name}_n"]) == model["summary"][name]["n"]
            assert f"{name}_ci95" in row
    return doc


def test_evaluate_recipe_writes_every_metric(tiny_setup, tmp_path, capsys):
    preset, data = tiny_setup
    out = tmp_path / "out"
    evaluate = load_recipe("evaluate")
    evaluate.main(["--preset", str(preset), "--data", str(data), "--clip-seconds", "0.5",
                   "--call-batch-size", "16", "--out", str(out)], models=MODELS)
    err = capsys.readouterr().err
    assert "evaluate tiny_preset [" in err and "2/2" in err  # the progress bar
    assert "skipping song song_zz_no_vocals: no 'vocals' stem" in err
    doc = _check_tables(out, ["tiny_preset"], ["song_000", "song_001"], ["song_zz_no_vocals"])
    assert doc["config"]["seed"] == 0 and doc["config"]["steps"] == 1
    tiny = doc["models"][0]["summary"]
    assert tiny["enc_add"]["mean"] > 0 and tiny["silence_norm"]["mean"] >= 0
    assert 1.0 <= tiny["eff_rank"]["mean"] <= 16.0


@pytest.fixture(scope="module")
def stand_in_rows(tiny_setup):
    """Both stand-ins evaluated on the tiny songs: ``(rows, clips, skipped)``."""
    _, data = tiny_setup
    clips, skipped = E.load_clips(data, clip_seconds=0.5)
    rows = [E.evaluate_model(m, clips, name=name, progress=False)
            for name, m in (("linear", LinearStandIn()), ("non-linear", NonLinearStandIn()))]
    return rows, clips, skipped


def test_tables_one_row_per_model(stand_in_rows, tmp_path):
    rows, clips, skipped = stand_in_rows
    results = E.make_results(rows, clips, skipped, config={"data": "songs"})
    E.write_results(results, tmp_path)
    _check_tables(tmp_path, ["linear", "non-linear"], ["song_000", "song_001"],
                  ["song_zz_no_vocals"])
    assert E.load_results(tmp_path)["models"] == results["models"]


def test_evaluate_recipe_bad_arguments(tiny_setup, tmp_path, capsys):
    preset, data = tiny_setup
    evaluate = load_recipe("evaluate")
    with pytest.raises(SystemExit):
        evaluate.main(["--preset", str(preset), "--data", str(data), "--metrics", "nope",
                       "--out", str(tmp_path)])
    assert "unknown metric 'nope'" in capsys.readouterr().err
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            evaluate.main(["--preset", str(preset), "--data", str(data), "--chunk-seconds", bad,
                           "--out", str(tmp_path)])
        assert "--chunk-seconds must be" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no songs found"):
        evaluate.main(["--preset", str(preset), "--data", str(empty), "--out", str(tmp_path)])


# ----------------------------------------------------------------------------------------------
# The metric functions tell a linear model from a non-linear one
# ----------------------------------------------------------------------------------------------


def test_linear_stand_in_beats_non_linear_stand_in(stand_in_rows):
    (lin, non), _, _ = stand_in_rows
    lin, non = lin["summary"], non["summary"]
    m = {k: v["mean"] for k, v in lin.items()}
    n = {k: v["mean"] for k, v in non.items()}
    # A linear map: perfect additivity and homogeneity, exact separation by subtraction.
    assert m["enc_add"] < 1e-9 and m["enc_homog_mean"] < 1e-9
    assert m["dec_homog_mean"] > 100 and m["dec_add_mrstft"] < 1e-6
    assert m["recon_si_sdr"] > 60 and m["dec_add_si_sdr"] > 60 and m["sep_si_sdr"] > 60
    assert m["silence_norm"] == 0.0
    # Every linearity, separation and reconstruction figure orders the two.
    lower = ["enc_add", "enc_homog_mean", "dec_add_mrstft", "sep_mrstft", "recon_mrstft",
             "silence_norm"] + [k for k in m if k.startswith("enc_homog_")]
    higher = ["dec_homog_mean", "dec_add_si_sdr", "sep_si_sdr", "recon_si_sdr", "recon_snr"]
    higher += [k for k in m if k.startswith("dec_homog_")]
    for k in lower:
        assert m[k] < n[k], k
    for k in higher:
        assert m[k] > n[k], k
    assert n["enc_add"] > 0.05 and n["dec_homog_mean"] < 40


def test_evaluate_batch_selected_metrics_and_silent_target():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 4096)) * 0.1
    u[1] = 0.0  # a silent target: separation cannot be scored there
    v = rng.standard_normal((2, 4096)) * 0.1
    out = E.evaluate_batch(LinearStandIn(), u + v, u, v, metrics=["separation", "enc_add"])
    assert set(out) == {"sep_si_sdr", "sep_mrstft", "enc_add"}
    assert np.isfinite(out["sep_si_sdr"][0]) and np.isnan(out["sep_si_sdr"][1])
    summary = E.summarize(out)
    assert summary["sep_si_sdr"]["n"] == 1 and summary["sep_si_sdr"]["ci95"] is None
    assert summary["enc_add"]["n"] == 2


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_resolve_metrics():
    assert [s.name for s in E.resolve_metrics(None)] == ALL_NAMES
    assert [s.name for s in E.resolve_metrics("all")] == ALL_NAMES
    sel = [s.name for s in E.resolve_metrics("separation, eff_rank")]
    assert sel == ["sep_si_sdr", "sep_mrstft", "eff_rank"]
    with pytest.raises(ValueError, match="unknown metric 'sdr'.*recon_si_sdr.*separation"):
        E.resolve_metrics(["sdr"])


def _write_song(folder, lengths, rates=None, names=("mixture", "vocals", "bass")):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        n = lengths[i] if isinstance(lengths, (list, tuple)) else lengths
        sr = rates[i] if rates else 44100
        sf.write(str(folder / f"{name}.wav"), 0.1 * rng.standard_normal(n), sr, subtype="FLOAT")


def test_load_clips_reports_bad_songs(tmp_path):
    root = tmp_path / "songs"
    _write_song(root / "a_good", 8192, names=("mixture", "vocals", "guitar", "keys"))
    _write_song(root / "b_lengths", [8192, 8000, 8192])
    _write_song(root / "c_rates", 8192, rates=[44100, 22050, 44100])
    _write_song(root / "d_no_target", 8192, names=("mixture", "bass", "drums"))
    _write_song(root / "e_no_accompaniment", 8192, names=("mixture", "vocals"))
    _write_song(root / "f_short", 1000)
    silent = root / "g_silent"
    silent.mkdir()
    for name in ("mixture", "vocals", "bass"):
        sf.write(str(silent / f"{name}.wav"), np.zeros(8192), 44100)
    clips, skipped = E.load_clips(root, clip_seconds=1.0)
    assert [c.song for c in clips] == ["a_good"]
    clip = clips[0]
    assert sorted(clip.stems) == ["guitar", "keys", "vocals"]
    np.testing.assert_allclose(clip.accompaniment, clip.stems["guitar"] + clip.stems["keys"],
                               atol=1e-7)
    reasons = {s["song"]: s["reason"] for s in skipped}
    assert "different lengths" in reasons["b_lengths"]
    assert "different sample rates" in reasons["c_rates"]
    assert "no 'vocals' stem" in reasons["d_no_target"]
    assert "no accompaniment stem" in reasons["e_no_accompaniment"]
    assert "too short" in reasons["f_short"]
    assert "silent" in reasons["g_silent"]
    # Another target stem name works the same way.
    clips, _ = E.load_clips(root, target="guitar", clip_seconds=1.0)
    assert [c.song for c in clips] == ["a_good"]


def test_load_clips_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        E.load_clips(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no songs found"):
        E.load_clips(tmp_path / "empty")
    _write_song(tmp_path / "bad" / "song", 8192, names=("mixture", "bass", "drums"))
    with pytest.raises(ValueError, match="no song .* could be loaded.*no 'vocals' stem"):
        E.load_clips(tmp_path / "bad")


def test_clip_start_auto_picks_the_loudest_target(tmp_path):
    song = tmp_path / "songs" / "s"
    song.mkdir(parents=True)
    sr, n = 8000, 8000 * 6
    vocals = np.zeros(n)
    vocals[4 * sr : 5 * sr] = 0.5 * np.sin(np.arange(sr) * 0.3)
    bass = 0.1 * np.sin(np.arange(n) * 0.01)
    for name, x in (("mixture", vocals + bass), ("vocals", vocals), ("bass", bass)):
        sf.write(str(song / f"{name}.wav"), x, sr, subtype="FLOAT")
    clips, _ = E.load_clips(tmp_path / "songs", sample_rate=sr, clip_seconds=2.0)
    assert clips[0].start_seconds in (3.0, 4.0)
    assert clips[0].num_samples == 2 * sr
    clips, _ = E.load_clips(tmp_path / "songs", sample_rate=sr, clip_seconds=2.0, clip_start=1)
    assert clips[0].start_seconds == 1.0


def test_summary_and_tables():
    per_clip = {"recon_si_sdr": np.array([1.0, 3.0, np.nan]), "silence_norm": np.array([0.5])}
    s = E.summarize(per_clip)
    assert s["recon_si_sdr"]["mean"] == 2.0 and s["recon_si_sdr"]["n"] == 2
    assert s["recon_si_sdr"]["ci95"] == pytest.approx(12.7062047 * 1.0)  # t(0.975, 1) * sem
    assert s["silence_norm"] == {"mean": 0.5, "ci95": None, "n": 1}


# ----------------------------------------------------------------------------------------------
# ModelFunctions: padding, shared noise, batching and the cache
# ----------------------------------------------------------------------------------------------


class _FakeLinCAE:
    """The slice of the LinCAE API ModelFunctions uses, as a linear map whose decode adds a
    multiple of the starting noise (so the noise handling is visible in the output)."""

    hop_size, time_downsampling, data_channels = 16, 4, 1

    def __init__(self):
        self.stand_in = LinearStandIn(hop=64)
        self.noise_seen = []

    def autoencode_padding(self, n):
        front = 48
        return front, -(front + n) % 64 + 64

    def encode(self, audio):
        return self.stand_in.encode(np.asarray(audio))

    def decode(self, latents, steps=1, seed=None, noise=None):
        z = np.asarray(latents, np.float64)
        assert noise.shape == (z.shape[0], z.shape[1] * 4, 32, 1)
        self.noise_seen.append(noise)
        y = self.stand_in.decode(z)
        return y + 1e-3 * noise.reshape(z.shape[0], -1)[:, : y.shape[1]]


def test_model_functions_batches_once_and_keeps_clips_independent():
    rng = np.random.default_rng(1)
    u, v = 0.1 * rng.standard_normal((2, 3, 2000))
    fns = E.ModelFunctions(_FakeLinCAE(), seed=3, batch_size=64)
    batched = E.evaluate_batch(fns, u + v, u, v)
    # One encode call and one decode call for every metric of the batch.
    assert fns.calls == {"encode": 1, "decode": 1}
    # Same values clip by clip, whatever the batch (every clip gets the same starting noise).
    for i in range(3):
        single = E.evaluate_batch(E.ModelFunctions(_FakeLinCAE(), seed=3, batch_size=1),
                                  (u + v)[i : i + 1], u[i : i + 1], v[i : i + 1])
        for k, val in single.items():
            np.testing.assert_allclose(val[0], batched[k][i], rtol=1e-9, atol=1e-12, err_msg=k)
    # Reconstruction is sample-aligned (padding as LinCAE.autoencode): only the noise remains.
    y = fns.decode(fns.encode(u + v))[:, :2000]
    assert np.max(np.abs(y - (u + v))) < 1e-2
    assert batched["recon_snr"].min() > 20
    # Another seed, other noise.
    other = E.evaluate_batch(E.ModelFunctions(_FakeLinCAE(), seed=4, batch_size=64), u + v, u, v)
    assert not np.allclose(other["recon_snr"], batched["recon_snr"])


def test_chunked_model_functions_score_what_long_audio_decodes(tiny_model):
    from keras_lincae.long_audio import ChunkedLatents, decode_long, encode_long

    x = music_like(30000, batch=2, seed=4).astype(np.float64)
    fns = E.ModelFunctions(tiny_model, seed=5, batch_size=3, chunk_seconds=0.2)
    z = fns.encode(x)
    reference = encode_long(tiny_model, x.astype(np.float32), 0.2)
    assert z.shape == reference.latents.shape and z.shape[1] > 2
    np.testing.assert_allclose(z, reference.latents, atol=1e-5)
    y = fns.decode(z)
    first = ChunkedLatents(reference.latents[:1], 30000, reference.chunk_samples, reference.step_samples,
                           reference.sample_rate)
    np.testing.assert_allclose(y[0], decode_long(tiny_model, first, seed=5)[0], atol=1e-5)
    # Every item decodes from the same noise, whatever its place in the batch.
    np.testing.assert_allclose(y[1], fns.decode(z[1:])[0], atol=1e-5)
    # Chunking changes the decode: the whole-clip scoring is a different measurement.
    whole = E.ModelFunctions(tiny_model, seed=5, batch_size=3)
    assert np.max(np.abs(whole.decode(whole.encode(x))[:, :30000] - y)) > 1e-3
    affine = E.ModelFunctions(tiny_model, seed=5, batch_size=3, chunk_seconds=0.2, affine=True)
    np.testing.assert_allclose(affine.encode(np.zeros_like(x)), 0.0, atol=1e-5)
    np.testing.assert_allclose(affine.decode(affine.encode(x)), y, atol=1e-5)


def test_evaluate_recipe_records_the_chunking(tiny_setup, tmp_path):
    preset, data = tiny_setup
    evaluate = load_recipe("evaluate")
    for chunk, expected, text in (("0.2", 0.2, "decoded in crossfaded 0.2-s chunks"), ("auto", None, "decoded whole")):
        out = tmp_path / chunk
        evaluate.main(["--preset", str(preset), "--data", str(data), "--clip-seconds", "0.5",
                       "--metrics", "reconstruction", "--chunk-seconds", chunk, "--no-progress",
                       "--out", str(out)], models=MODELS)
        doc = json.loads((out / "results.json").read_text())
        assert doc["models"][0]["chunk_seconds"] == expected
        assert text in (out / "results.md").read_text()


def test_results_say_how_each_shipped_model_was_trained(stand_in_rows):
    from keras_lincae import preset_io

    with open(f"{preset_io.resolve_preset('lin_cae_small')}/metadata.json") as f:
        steps = json.load(f)["provenance"]["training_steps"]
    line = E.training_summary("lin_cae_small", "lin_cae_small")
    assert line.startswith(f"lin_cae_small: {steps} training steps in ") and line.endswith("mode lin_cae")
    assert E.training_summary("lin_cae_tiny", "lin_cae_tiny") is None  # a built-in config: no training
    rows, clips, skipped = stand_in_rows
    rows = [dict(rows[0], training=line), rows[1]]
    md = E.format_markdown(E.make_results(rows, clips, skipped, config={"data": "songs"}))
    assert f"Models: {line}." in md.split("## Every metric")[0]


def test_affine_model_functions_measure_relative_to_silence(tiny_model):
    plain = E.ModelFunctions(tiny_model, seed=0, batch_size=2)
    affine = E.ModelFunctions(tiny_model, seed=0, batch_size=2, affine=True)
    x = music_like(8192, batch=2, seed=3).astype(np.float64)
    np.testing.assert_allclose(affine.encode(np.zeros_like(x)), 0.0, atol=1e-5)  # silence is the origin
    z, z_affine = plain.encode(x), affine.encode(x)
    np.testing.assert_allclose(z_affine, z - affine.origin(z.shape[1]), atol=1e-5)
    np.testing.assert_allclose(affine.decode(z_affine), plain.decode(z), atol=1e-5)  # same reconstruction
