"""Search Lin-CAE latent sizes (and widths) with keras-tuner, on any Keras backend.

Each trial trains the base architecture (``lin_cae_tiny`` by default) with one set of sizes for
``--steps`` steps and scores it on held-out songs::

    score = val_loss_ratio + lambda_add * (enc_add + dec_add) + lambda_hom * dec_hom

(validation consistency loss relative to the untrained model, encoder and decoder additivity
errors, decoder homogeneity error; lower is better; see ``keras_lincae.training.tuning``).

Usage:
    python recipes/tune.py --dir tune_runs --out saved_models/tuned_tiny
    python recipes/tune.py --tuner bayesian --latent-sizes 8,16,32,64 --max-trials 8 --steps 50
    python recipes/tune.py --tuner hyperband --max-epochs 9 --factor 3 --tune-widths
    KERAS_BACKEND=torch python recipes/tune.py --data musdb18hq --clip-frames 64

Rerunning with the same ``--dir`` resumes the search (finished trials are kept, an interrupted
one is re-run, a larger ``--max-trials`` adds trials); ``--overwrite`` starts over. The trial
table is printed and written to ``DIR/lincae_tune/trials.md`` and ``trials.csv``; the best
trial's trained model is written as a preset to ``--out`` (loadable with
``LinCAE.from_preset(OUT)``). Without ``--data`` the embedded synthetic dataset is used
(generated on first use). Requires ``pip install 'keras-lincae[tune]'`` (keras-tuner, and
tensorboard, which keras-tuner imports on the TensorFlow backend). Errors are one line
``tune.py: error: ...`` with exit status 2 (``--debug``: the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "tune.py"


def _ints(text):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _jit(text):
    return {"auto": "auto", "true": True, "false": False}[text]


def build_parser():
    p = entry.ArgumentParser(
        prog=PROG, description="keras-tuner search over Lin-CAE latent sizes, scored on reconstruction "
                    "and linearity.")
    p.add_argument("--tuner", choices=("random", "bayesian", "hyperband"), default="random",
                   help="search algorithm (default random)")
    p.add_argument("--dir", default="tune_runs",
                   help="tuner folder parent; reruns resume from it (default tune_runs)")
    p.add_argument("--project-name", default="lincae_tune", help="tuner folder name (default lincae_tune)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing search and start over")
    p.add_argument("--out", default=None, help="write the best trial as a preset to this folder")
    p.add_argument("--preset", default="lin_cae_tiny",
                   help="base architecture: built-in name or preset folder (default lin_cae_tiny)")
    p.add_argument("--latent-sizes", type=_ints, default=[8, 16, 32, 64],
                   help="bottleneck_channels choices (default 8,16,32,64)")
    p.add_argument("--tune-widths", action="store_true",
                   help="also search base_channels and bottleneck_base_channels")
    p.add_argument("--base-channels", type=_ints, default=[4, 8, 16],
                   help="base_channels choices with --tune-widths (default 4,8,16)")
    p.add_argument("--bottleneck-base-channels", type=_ints, default=[16, 32, 64],
                   help="bottleneck_base_channels choices with --tune-widths (default 16,32,64)")
    p.add_argument("--max-trials", type=int, default=4,
                   help="trials in total (default 4; a cap for hyperband)")
    p.add_argument("--max-epochs", type=int, default=3,
                   help="hyperband: largest budget, in units of --steps (default 3)")
    p.add_argument("--factor", type=int, default=3, help="hyperband reduction factor (default 3)")
    p.add_argument("--steps", type=int, default=8, help="training steps per trial (default 8)")
    p.add_argument("--batch-size", type=int, default=2, help="clips per training batch, >= 2 (default 2)")
    p.add_argument("--clip-frames", type=int, default=16,
                   help="clip length in STFT frames, a multiple of 8 (default 16 = 9,728 samples, 0.22 s)")
    p.add_argument("--learning-rate", type=float, default=1e-3,
                   help="RAdam peak learning rate, decayed over each trial as in train.py (default 1e-3)")
    p.add_argument("--lambda-add", type=float, default=1.0,
                   help="weight of the additivity errors (default 1)")
    p.add_argument("--lambda-hom", type=float, default=1.0,
                   help="weight of the homogeneity error (default 1)")
    p.add_argument("--gains", type=_floats, default=None,
                   help="homogeneity gains (default 0.25,0.5,0.75,1.1)")
    p.add_argument("--val-clips", type=int, default=4,
                   help="held-out (vocals, accompaniment) clip pairs (default 4)")
    p.add_argument("--data", default=None,
                   help="dataset with train/ and test/ song folders (MUSDB18-HQ layout); "
                        "default: the embedded synthetic dataset")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of weights, clips and decoding noise (default 0)")
    p.add_argument("--jit-compile", type=_jit, choices=("auto", True, False), default="auto",
                   metavar="{auto,true,false}", help="model.compile(jit_compile=...) (default auto)")
    p.add_argument("--run-eagerly", action="store_true",
                   help="no graph compilation (fastest for a few steps on a CPU)")
    p.add_argument("--quiet", action="store_true", help="no keras-tuner progress display")
    entry.add_flags(p)
    return p


def settings_from_args(args):
    from keras_lincae.evaluation import linearity
    from keras_lincae.training.tuning import TuneSettings

    return TuneSettings(
        preset=args.preset, tuner=args.tuner, latent_sizes=args.latent_sizes,
        tune_widths=args.tune_widths, base_channels=args.base_channels,
        bottleneck_base_channels=args.bottleneck_base_channels, max_trials=args.max_trials,
        max_epochs=args.max_epochs, factor=args.factor, steps=args.steps,
        batch_size=args.batch_size, clip_frames=args.clip_frames, learning_rate=args.learning_rate,
        lambda_add=args.lambda_add, lambda_hom=args.lambda_hom,
        gains=args.gains if args.gains else linearity.DEFAULT_GAINS, val_clips=args.val_clips,
        seed=args.seed, data=args.data, jit_compile=args.jit_compile,
        run_eagerly=args.run_eagerly, verbose=0 if args.quiet else 1,
    )


def main(argv=None, data=None):
    """Run the recipe; ``argv`` as on the command line (default ``sys.argv[1:]``).

    ``data``: optional ``keras_lincae.training.tuning.TuningData`` (tests pass one to skip loading).
    Returns the tuner (``tuner.trials_run`` lists the trials this run trained).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    entry.prepare(PROG, args.backend, args.debug, training=True)
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        parser.error(str(e))

    from keras_lincae.training import tuner as lincae_tuner
    from keras_lincae.training import tuning_report

    for folder, what in ((args.dir, "--dir"), (args.out, "--out")):
        if folder:
            entry.check_writable_folder(folder, what)
    try:
        tuner = lincae_tuner.make_tuner(settings, args.dir, data=data, project_name=args.project_name,
                                  overwrite=args.overwrite)
    except (ValueError, FileNotFoundError) as e:
        entry.note(PROG, f"error: {e}")
        raise SystemExit(2) from None
    tuner.search()
    rows = tuning_report.summary_rows(tuner)
    paths = tuning_report.write_summary(tuner, rows)
    print(tuning_report.format_markdown(rows))
    print(f"{len(tuner.trials_run)} trial(s) run now, {len(rows)} in {tuner.project_dir}")
    print(f"summary: {paths['markdown']}, {paths['csv']}")
    best = tuning_report.best_trial(tuner)
    print(f"best trial {best.trial_id}: {best.hyperparameters.values} (score {best.score:.4g})")
    if args.out:
        print(f"best preset: {tuning_report.write_best_preset(tuner, args.out)}")
    return tuner


if __name__ == "__main__":
    entry.restart_with_malloc_tunables(training=True)
    sys.exit(entry.run(main, PROG))
