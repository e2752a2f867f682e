"""recipes/tune.py and keras_lincae.training.tuning: a 2-trial search on the tiny config, resumed.

One search is shared by the tests (module fixture): it runs with ``--max-trials 1`` (as if
interrupted after one trial), is resumed with ``--max-trials 2`` (one more trial) and rerun
unchanged (nothing to do). Trials train 2 steps eagerly on 0.13 s clips of a 1-song synthetic
dataset, so the whole file stays short on every backend.
"""

import contextlib
import csv
import io
import json
import os

import numpy as np
import pytest
import yaml
from keras_lincae.testing.helpers import to_numpy
from eval_helpers import load_recipe

from keras_lincae import LinCAE
from keras_lincae.training import tuning

LATENT_SIZES = (4, 8)


def search_args(directory, data, out, max_trials, **changes):
    options = {
        "--tuner": "bayesian", "--dir": directory, "--data": data, "--out": out,
        "--max-trials": max_trials, "--latent-sizes": ",".join(map(str, LATENT_SIZES)),
        "--steps": 2, "--batch-size": 2, "--clip-frames": 8, "--val-clips": 2, "--gains": "0.5",
    }
    options.update(changes)
    argv = [str(x) for item in options.items() for x in item]
    return argv + ["--run-eagerly", "--quiet"]


def run_recipe(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tuner = load_recipe("tune").main(argv)
    return tuner, out.getvalue()


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    from keras_lincae.data.synth import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tune")
    data = make_synthetic_dataset(root / "data", num_songs=1, seconds=1.0, num_test_songs=1,
                                  renderer="numpy")
    paths = {"dir": str(root / "runs"), "data": str(data), "out": str(root / "best_preset")}
    runs = []
    for max_trials in (1, 2, 2):  # interrupted after 1 trial, resumed to 2, rerun unchanged
        runs.append(run_recipe(search_args(paths["dir"], paths["data"], paths["out"], max_trials)))
        if max_trials == 1:
            trial_zero = os.path.join(runs[0][0].trial_preset_dir("0"), "model.weights.h5")
            paths["trial_zero_mtime"] = os.stat(trial_zero).st_mtime_ns
    paths["trial_zero_mtime_after"] = os.stat(trial_zero).st_mtime_ns
    return paths, runs


def test_search_writes_the_trial_table(search):
    paths, runs = search
    tuner, printed = runs[1]
    project = os.path.join(paths["dir"], "lincae_tune")
    with open(os.path.join(project, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert {r["status"] for r in rows} == {"COMPLETED"}
    assert sorted(int(r["bottleneck_channels"]) for r in rows) == sorted(LATENT_SIZES)
    scores = [float(r["score"]) for r in rows]
    assert all(np.isfinite(scores)) and scores == sorted(scores)  # best first
    for r in rows:  # the score is the documented combination of its terms
        terms = {k: float(r[k]) for k in tuning.SCORE_TERMS}
        assert float(r["score"]) == pytest.approx(tuning.trial_score(terms, 1.0, 1.0), rel=1e-9)
        assert 0 < float(r["val_loss_ratio"]) < 10
    with open(os.path.join(project, "trials.md")) as f:
        markdown = f.read()
    assert "| trial | status | bottleneck_channels | score |" in markdown
    assert markdown.count("| COMPLETED |") == 2
    assert "| trial | status | bottleneck_channels | score |" in printed  # printed too
    assert "best trial" in printed


def test_best_preset_loads_with_the_chosen_latent_size(search):
    paths, runs = search
    with open(os.path.join(paths["dir"], "lincae_tune", "best.json")) as f:
        best = json.load(f)
    chosen = best["hyperparameters"]["bottleneck_channels"]
    assert chosen in LATENT_SIZES
    with open(os.path.join(paths["dir"], "lincae_tune", "trials.csv")) as f:
        assert int(next(csv.DictReader(f))["bottleneck_channels"]) == chosen
    model = LinCAE.from_preset(paths["out"])
    assert model.latent_channels == chosen == model.bottleneck_channels
    with open(os.path.join(paths["out"], "metadata.json")) as f:
        metadata = json.load(f)
    assert metadata["tuning"]["trial"] == best["trial"]
    assert metadata["tuning"]["hyperparameters"]["bottleneck_channels"] == chosen
    # Trained weights: the same as the best trial's own preset.
    trial_model = LinCAE.from_preset(best["preset"])
    for a, b in zip(model.weights, trial_model.weights):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    assert int(to_numpy(model.training_step)) == 2
    # The trial trained through the training recipe's Trainer: its run folder is the trial folder.
    with open(os.path.join(os.path.dirname(best["preset"]), "config.yaml")) as f:
        run = yaml.safe_load(f)
    assert (run["steps"], run["batch_size"], run["clip_frames"], run["seed"]) == (2, 2, 8, 0)
    assert (run["learning_rate"], run["lr_decay"], run["warmup_steps"]) == (1e-3, "cosine", 0)
    assert run["model"] == {"bottleneck_channels": chosen}
    with open(os.path.join(best["preset"], "metadata.json")) as f:
        assert json.load(f)["training_config"] == run


def test_rerun_resumes_without_redoing_trials(search):
    paths, runs = search
    assert [tuner.trials_run for tuner, _ in runs] == [["0"], ["1"], []]
    assert "0 trial(s) run now, 2 in" in runs[2][1]
    assert paths["trial_zero_mtime_after"] == paths["trial_zero_mtime"]  # trial 0 never retrained


def test_resuming_with_other_settings_is_refused(search, capsys):
    paths, _ = search
    argv = search_args(paths["dir"], paths["data"], paths["out"], 2, **{"--steps": 3})
    with pytest.raises(SystemExit) as info:
        load_recipe("tune").main(argv)
    assert info.value.code == 2
    assert "steps: 2 -> 3" in capsys.readouterr().err


def test_trial_score_and_settings_checks():
    terms = {"val_loss_ratio": 0.5, "enc_add": 0.25, "dec_add": 0.125, "dec_hom": 0.1}
    assert tuning.trial_score(terms, lambda_add=2.0, lambda_hom=3.0) == pytest.approx(0.5 + 0.75 + 0.3)
    with pytest.raises(ValueError, match="batch_size"):
        tuning.TuneSettings(batch_size=1)
    with pytest.raises(ValueError, match="tuner"):
        tuning.TuneSettings(tuner="grid")
    with pytest.raises(ValueError, match="latent_sizes"):
        tuning.TuneSettings(latent_sizes=(8, 8))
