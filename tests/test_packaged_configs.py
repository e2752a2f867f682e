"""The training configs travel with an installed wheel: `--config tiny` resolves by name there,
and a resolved `TrainConfig` is frozen, typed and takes the model's training defaults."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from keras_lincae.models.lincae import TRAINING_DEFAULTS
from keras_lincae.training import config as tc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = """
import json, keras_lincae
from keras_lincae.training.config import CONFIG_DIR, config_names, resolve_config
tiny, sc = resolve_config("tiny"), resolve_config("m2l_small_warm_sc")
print(json.dumps(dict(package=keras_lincae.__file__, configs=str(CONFIG_DIR), names=config_names(),
                      tiny=[tiny.preset, tiny.steps, tiny.seed], sc=[sc.init_weights, sc.model["mode"]])))
"""


def test_an_installed_wheel_resolves_configs_by_name(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if os.path.exists(os.path.join(REPO, name)):
            shutil.copy(os.path.join(REPO, name), source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("keras_lincae", "saved_models"):
        shutil.copytree(os.path.join(REPO, folder), source / folder, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(tmp_path / "wheel")],
                   check=True, cwd=tmp_path, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("keras_lincae-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                   capture_output=True)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(site)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site)) and found["configs"].startswith(str(site))
    assert {"tiny", "base", "small_warm_sc", "m2l_small_warm_sc"} <= set(found["names"])
    assert found["tiny"] == ["lin_cae_tiny", 300, 42]
    assert found["sc"] == ["m2l_small", "m2l"]


def test_train_config_is_one_frozen_validated_object(tmp_path):
    config = tc.resolve_config("tiny", [tc.parse_override("model.gain_max=2")])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 5
    assert config.replace(steps=50).steps == 50 and config.steps == 300
    assert tc.TrainConfig.from_dict(config.to_dict()) == config  # what a run directory saves reads back
    # The fields shared with the model take its defaults (base.yaml sets the official values).
    defaults = tc.TrainConfig()
    assert (defaults.seed, defaults.steps, defaults.ema_momentum, defaults.ema_every) == (
        TRAINING_DEFAULTS["seed"], TRAINING_DEFAULTS["total_steps"], TRAINING_DEFAULTS["ema_momentum"],
        TRAINING_DEFAULTS["ema_every"])
    fields = config.replace(grad_accum=2, batch_size=4).lincae_fields()
    assert fields["gain_max"] == 2 and fields["total_steps"] == 600 and fields["ema_every"] == 20
    # A YAML file extends a packaged config by name; a sibling file of that name wins.
    (tmp_path / "mine.yaml").write_text("extends: tiny\nsteps: 40\n")
    assert tc.resolve_config(str(tmp_path / "mine.yaml")).preset == "lin_cae_tiny"
    (tmp_path / "tiny.yaml").write_text("preset: lin_cae_small\nwarmup_steps: 1\n")
    assert tc.resolve_config(str(tmp_path / "mine.yaml")).preset == "lin_cae_small"
    with pytest.raises(ValueError, match="Unknown config keys"):
        tc.TrainConfig.from_dict({"stepz": 3})
