"""recipes/tools/ship_preset.py: a fine-tuned run's card lists the run it started from."""

import json
import os
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "recipes", "tools"))
import ship_preset  # noqa: E402


def _run(root, name, steps, preset="preset", **config):
    run = os.path.join(root, name)
    os.makedirs(os.path.join(run, preset))
    with open(os.path.join(run, "config.yaml"), "w") as f:
        yaml.safe_dump(dict(config, steps=steps), f)
    with open(os.path.join(run, preset, "metadata.json"), "w") as f:
        json.dump({"training_step": steps}, f)
    return run


def test_phases_follow_init_weights_back_to_the_first_run(tmp_path):
    first = _run(str(tmp_path), "first", 30, preset=os.path.join("presets", "step_30"))
    second = _run(str(tmp_path), "second", 20, init_weights=os.path.join(first, "presets", "step_30"))
    third = _run(str(tmp_path), "third", 10, init_weights=os.path.join(second, "preset"))
    phases = ship_preset._phases(third)
    assert [run for run, _, _ in phases] == [first, second, third]
    assert [ship_preset._steps_of(preset) for _, _, preset in phases] == [30, 20, 10]
    assert phases[0][2] == os.path.join(first, "presets", "step_30")


def test_a_built_in_init_preset_is_not_a_phase(tmp_path):
    run = _run(str(tmp_path), "ft", 10, init_weights="lin_cae")
    assert [r for r, _, _ in ship_preset._phases(run)] == [run]


def test_a_shipped_init_preset_contributes_its_recorded_phases(tmp_path):
    earlier = ship_preset._earlier_phases("lin_cae_small")
    with open(os.path.join(REPO, "saved_models", "lin_cae_small", "metadata.json")) as f:
        recorded = json.load(f)["provenance"]["phases"]
    assert [p["steps"] for p in earlier] == [p["steps"] for p in recorded] and earlier
    assert all(p["earlier"] and p["preset"] == "lin_cae_small" for p in earlier)
    assert ship_preset._earlier_phases("lin_cae_tiny") == []  # a built-in config has no history
    assert ship_preset._earlier_phases(None) == []


def test_step_ships_an_exported_preset_and_a_missing_one_is_refused(tmp_path, capsys):
    run = _run(str(tmp_path), "run", 40, preset=os.path.join("presets", "step_30"), init_weights="lin_cae")
    preset = ship_preset._shipped_preset_dir(run, 30)
    assert preset == os.path.join(run, "presets", "step_30")
    assert [(r, p) for r, _, p in ship_preset._phases(run, preset)] == [(run, preset)]
    assert ship_preset.main([run, "x", "--step", "20", "--out", str(tmp_path / "out")]) == 2
    assert "no preset at" in capsys.readouterr().err and not os.path.exists(tmp_path / "out")


def test_every_phase_line_names_its_recipe_and_hardware():
    """Earlier phases recorded by hand (a config name) or by this tool (a run's config) both
    render with their hardware, and the shipped presets' history renders without gaps."""
    run_config = dict(clip_frames=64, learning_rate=3e-4, warmup_steps=50, final_learning_rate=1e-5,
                      ema_momentum=0.99, ema_every=10, steps=1500, model={"objective": "one_step_spectral"})
    line = ship_preset._phase_line(4, dict(config=run_config, steps=1500, hours=1.25, hardware="1 CPU core",
                                           earlier=True, preset="lin_cae_small"))
    assert line.startswith("  4. 1500 steps from the EMA weights of phase 3") and "clips of 64 frames" in line
    assert "one_step_spectral" in line and "on 1 CPU core; 1.25 h (from the provenance of `lin_cae_small`)" in line
    hand = ship_preset._phase_line(1, dict(config="small", steps=3800, hardware="an H200"))
    assert hand == "  1. 3800 steps with `--config small` from a random initialisation on an H200"
    for k, phase in enumerate(ship_preset._earlier_phases("lin_cae_small"), 1):
        text = ship_preset._phase_line(k, phase)
        assert "unrecorded hardware" not in text and not text.split(" on ", 1)[-1].startswith("phase"), text
