"""Copy a trained run's preset into `saved_models/<name>` and write its model card.

    python recipes/tools/ship_preset.py RUN_DIR NAME --eval LABEL=EVAL_DIR [--eval ...] \
        [--step N] [--hardware TEXT] [--notes FILE] [--out DIR] [--overwrite]

RUN_DIR is a `recipes/train.py` run (its final EMA preset in RUN_DIR/preset, or with `--step N`
the preset it exported at step N, RUN_DIR/presets/step_N; its config in RUN_DIR/config.yaml); each EVAL_DIR is a `recipes/evaluate.py --out` folder whose
`results.md` goes into the card under LABEL, with the command that produced it
(`EVAL_DIR/command.txt` when present). The preset is re-saved atomically with provenance
metadata (name, training config, steps, wall time, hardware). The output folder must be new or
empty; replacing a preset already there needs `--overwrite` (other files in it are kept).
User errors print one line to stderr and exit with status 2.
"""

import argparse
import datetime
import glob
import json
import math
import os
import platform
import re
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _wall_time_hours(run_dir, preset_dir):
    """Hours the run trained: the sum over its sessions (a resumed run writes one TensorBoard
    event file per session), each from its file's creation stamp to its last write; the last
    session ends at the final preset's date. Pauses between sessions are not counted."""
    paths = glob.glob(os.path.join(run_dir, "logs", "**", "events.out.tfevents.*"), recursive=True)
    if not paths:
        return None
    sessions = sorted((float(os.path.basename(p).split(".")[3]), p) for p in paths)  # (start, file)
    with open(os.path.join(preset_dir, "metadata.json")) as f:
        end = datetime.datetime.fromisoformat(json.load(f)["date"]).timestamp()
    seconds = 0.0
    for i, (start, event) in enumerate(sessions):
        stop = max(os.path.getmtime(event), end) if i == len(sessions) - 1 else os.path.getmtime(event)
        seconds += max(stop - start, 0.0)
    return seconds / 3600.0


def _shipped_preset_dir(run_dir, step=None):
    """The run's final preset, or the one it exported at `step`; a missing one is a ValueError."""
    if not os.path.isfile(os.path.join(run_dir, "config.yaml")):
        raise ValueError(f"{run_dir} is not a training run: no config.yaml")
    preset_dir = os.path.join(run_dir, "preset" if step is None else os.path.join("presets", f"step_{step}"))
    if not os.path.isfile(os.path.join(preset_dir, "metadata.json")):
        raise ValueError(f"no preset at {preset_dir}")
    return preset_dir


def _phases(run_dir, preset_dir=None):
    """Training phases `[(run_dir, config, preset_dir)]`, first to last, the last ending at
    `preset_dir` (default: the run's final preset): a run started with `init_weights` pointing
    into another run's presets continues that run's phases."""
    import yaml

    phases, preset_dir = [], preset_dir or os.path.join(run_dir, "preset")
    while run_dir:
        with open(os.path.join(run_dir, "config.yaml")) as f:
            config = yaml.safe_load(f)
        phases.insert(0, (run_dir, config, preset_dir))
        init = config.get("init_weights")
        run_dir = None
        if init and os.path.isdir(init):
            preset_dir = os.path.abspath(init)
            parent = os.path.dirname(preset_dir)
            parent = os.path.dirname(parent) if os.path.basename(parent) == "presets" else parent
            run_dir = parent if os.path.isfile(os.path.join(parent, "config.yaml")) else None
    return phases


def _earlier_phases(init_weights):
    """Phases recorded in the provenance of the preset a run started from (`init_weights` naming
    a shipped or saved preset rather than a run's), so a card keeps the whole history."""
    from keras_lincae.preset_io import resolve_preset

    if not init_weights:
        return []
    folder = resolve_preset(init_weights)
    if folder is None or not os.path.isfile(os.path.join(folder, "metadata.json")):
        return []
    with open(os.path.join(folder, "metadata.json")) as f:
        provenance = json.load(f).get("provenance") or {}
    phases = [dict(p, earlier=True, preset=init_weights) for p in provenance.get("phases", [])]
    if phases and "hardware" not in phases[-1] and provenance.get("hardware"):
        # the card's hardware line was the last phase's ("phase 3: 1 core of ...")
        phases[-1]["hardware"] = re.sub(r"^phase \d+: ", "", provenance["hardware"])
    return phases


def _phase_line(k, phase):
    """The card's line for training phase `k` (1-based): its recipe, steps, hardware and hours."""
    hours = phase.get("hours") or phase.get("wall_time_hours")
    source = f" (from the provenance of `{phase['preset']}`)" if phase.get("earlier") else ""
    if isinstance(phase["config"], str):  # recorded by hand: a packaged config name
        return (f"  {k}. {phase['steps']} steps with `--config {phase['config']}`"
                + (f" from {phase['init_weights']}" if phase.get("init_weights") else " from a random initialisation")
                + f" on {phase.get('hardware', 'unrecorded hardware')}" + (f"; {hours:.2f} h" if hours else "") + source)
    c, m = phase["config"], phase["config"].get("model", {})
    objective = (
        "objective `one_step_spectral` (1-step decode from sigma_max noise, multi-resolution spectral "
        "loss on the waveform; not the paper's), " if m.get("objective") == "one_step_spectral" else "")
    return (
        f"  {k}. {phase['steps']} steps"
        + (f" from the EMA weights of phase {k - 1} (`init_weights`, step counter restarted)" if k > 1 else
           " from a random initialisation")
        + f", clips of {c['clip_frames']} frames: RAdam lr {c['learning_rate']:g} ({c['warmup_steps']} warm-up steps, "
        f"cosine to {c['final_learning_rate']:g}), EMA {c['ema_momentum']} every {c['ema_every']} steps, {objective}"
        f"consistency step size {m.get('base_step', 0.1):g}^({m.get('start_exp', 1.0):g} -> {m.get('end_exp', 2.0):g})"
        + (f" over {c['steps']} steps" if phase["steps"] == c["steps"] else
           f" (schedules set for {c['steps']} steps, see docs/training.md)")
        + (f"; on {phase['hardware']}" if phase.get("hardware") else "")
        + (f"; {hours:.2f} h" if hours else "") + source)


def _steps_of(preset_dir):
    with open(os.path.join(preset_dir, "metadata.json")) as f:
        return int(json.load(f)["training_step"])


def _without_ema_shadows(model):
    """A copy of `model` without its EMA shadow variables (its live weights are already the EMA
    ones in a run's final preset), so the shipped weights file is half the size."""
    from keras_lincae import LinCAE

    copy = LinCAE.from_config(dict(model.get_config(), ema_momentum=None))
    copy.build()
    shadows = {id(w) for w in model.ema_weights}
    sources = [w for w in model.weights if id(w) not in shadows]
    if len(sources) != len(copy.weights):
        raise RuntimeError(f"{len(sources)} weights to copy but the copy has {len(copy.weights)}")
    for target, source in zip(copy.weights, sources):
        if tuple(target.shape) != tuple(source.shape):
            raise RuntimeError(f"shape mismatch copying {source.path} -> {target.path}")
        target.assign(source)
    return copy


def _card(name, model, config, meta, evals, notes):
    from keras_lincae import presets

    spec = presets.BUILTIN_PRESETS.get(name, {})
    trainable = int(sum(math.prod(w.shape) for w in model.trainable_weights))
    data = config.get("data") or []
    weights = config.get("data_weights") or [1.0] * len(data)
    lines = [
        f"# {name}",
        "",
        spec.get("description", ""),
        "",
        "```python",
        "from keras_lincae import LinCAE",
        f'model = LinCAE.from_preset("{name}")   # offline: weights ship in saved_models/{name}',
        "latents = model.encode(audio)              # (batch, samples) at 44.1 kHz -> (batch, frames, 64)",
        "audio_hat = model.decode(latents, seed=0)",
        "```",
        "",
        "## Model",
        f"- Training mode: `{model.mode}`"
        + (" (Lin-CAE: artificial mixtures with latent additivity, random gains annealed from [0, 3] to [1, 1])"
           if model.mode == "lin_cae" else " (Music2Latent baseline: mix-it and scale augmentation, no latent terms)"),
        f"- Trainable parameters: {trainable:,}; latents: {model.latent_channels} channels per "
        f"{model.time_downsampling * model.hop_size} samples (64x compression), scale factor {model.scale_factor:g}",
        "- Architecture (`keras_lincae.presets.SMALL_ARCHITECTURE`, the official structure with fewer "
        "channels/layers): " + ", ".join(f"`{k}={v}`" for k, v in presets.SMALL_ARCHITECTURE.items()),
        "",
        "## Training",
        f"- Recipe: `python recipes/train.py --config {meta['config_name']} --out runs/{name}` "
        f"(after `python recipes/make_dataset.py`); the exact commands of every phase are in docs/training.md",
        f"- {meta['training_steps']} optimizer steps in {len(meta['phases'])} phase(s), batch {config['batch_size']} "
        f"clips of {config['clip_frames']} spectrogram frames ({(config['clip_frames'] * 512 + 1536) / 44100:.2f} s), "
        f"seed {config['seed']} (weights shipped: the EMA weights, without the training-time shadow copies):",
    ]
    lines += [_phase_line(k, phase) for k, phase in enumerate(meta["phases"], 1)]
    lines += [
        "- Data (mono clips, each channel of the stereo recordings a separate example; MUSDB-style "
        "songs contribute their mixture and stems):",
    ]
    for folder, weight in zip(data, weights):
        lines.append(f"  - `{folder}` (sampling weight {weight})")
    lines += [
        "  Held out, never trained on: the `test` split of each (synthetic songs from other seeds, "
        "every 5th recorded track), see `keras_lincae/music_dataset/ (package)`.",
        f"- Hardware: {meta['hardware']}",
        f"- Wall time: {meta['wall_time_hours']:.2f} h" if meta.get("wall_time_hours") else "- Wall time: unknown",
        "",
        "## Evaluation (held-out music; 1-step decoding, seed 0; means over songs, ± a 95% CI from 5 songs on)",
        "",
    ]
    for label, folder in evals:
        with open(os.path.join(folder, "results.md")) as f:
            table = f.read().strip()
        if table.startswith("# "):  # the results file's own title
            table = table.split("\n", 1)[1].strip()
        lines += [f"### {label}", ""]
        command = os.path.join(folder, "command.txt")
        if os.path.isfile(command):
            with open(command) as f:
                lines += ["```bash", f.read().strip(), "```", ""]
        lines += [table, ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("name")
    parser.add_argument("--eval", action="append", default=[], metavar="LABEL=EVAL_DIR")
    parser.add_argument("--config-name", default=None, help="recipe config name shown in the card")
    parser.add_argument("--hardware", default=f"CPU ({platform.machine()}, {os.cpu_count()} cores)")
    parser.add_argument("--notes", default=None, help="Markdown file appended to the card")
    parser.add_argument("--step", type=int, default=None,
                        help="ship the preset exported at this step (RUN_DIR/presets/step_N), not the final one")
    parser.add_argument("--out", default=None, help="default saved_models/NAME in this checkout")
    parser.add_argument("--overwrite", action="store_true", help="replace the preset already in --out")
    args = parser.parse_args(argv)
    try:
        return _ship(args)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"ship_preset: error: {error}", file=sys.stderr)
        return 2


def _ship(args):
    from keras_lincae import LinCAE
    from keras_lincae.preset_io import check_save_target

    out = args.out or os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "saved_models", args.name)
    check_save_target(os.path.abspath(out), args.overwrite, flag="--overwrite")  # before the slow part
    evals = [tuple(item.split("=", 1)) for item in args.eval]
    for item, pair in zip(args.eval, evals):
        if len(pair) != 2 or not os.path.isfile(os.path.join(pair[1], "results.md")):
            raise ValueError(f"--eval {item!r} must be LABEL=EVAL_DIR with an EVAL_DIR/results.md")
    notes = open(args.notes).read() if args.notes else ""
    preset_dir = _shipped_preset_dir(args.run_dir, args.step)
    phases = [dict(run=os.path.basename(os.path.abspath(run)), config=c, steps=_steps_of(p),
                   hours=_wall_time_hours(run, p), hardware=args.hardware)
              for run, c, p in _phases(args.run_dir, preset_dir)]
    phases = _earlier_phases(phases[0]["config"].get("init_weights")) + phases
    config = phases[-1]["config"]
    trained = LinCAE.from_preset(preset_dir)
    meta = dict(
        name=args.name,
        config_name=args.config_name or args.name,
        hardware=args.hardware,
        # each phase's own step counter (a resumed run may have changed `steps` on its way;
        # `init_weights` restarts the counter)
        wall_time_hours=sum(p.get("hours") or p.get("wall_time_hours") or 0.0 for p in phases) or None,
        training_steps=sum(p["steps"] for p in phases),
        phases=phases,
        training_data=config.get("data"),
        training_mode=config.get("model", {}).get("mode"),
    )
    model = _without_ema_shadows(trained)
    card = _card(args.name, model, config, meta, evals, notes)
    model.save_to_preset(out, overwrite=args.overwrite, provenance=meta)
    tmp = os.path.join(out, ".README.md.tmp")
    with open(tmp, "w") as f:
        f.write(card)
    os.replace(tmp, os.path.join(out, "README.md"))
    print(f"{out}: preset + README.md ({os.path.getsize(os.path.join(out, 'model.weights.h5')) / 1e6:.1f} MB weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
