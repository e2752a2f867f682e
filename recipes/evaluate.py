"""Evaluate Lin-CAE presets on MUSDB18-HQ-style songs (METHOD.md section 4).

One row per model, one column per metric (mean ± 95 % confidence interval over songs), written
as ``results.md``, ``results.csv`` and ``results.json`` in ``--out``.

Usage:
    python recipes/evaluate.py --preset lin_cae --preset m2l --data musdb18hq/test --out eval
    python recipes/evaluate.py --preset saved_models/my_run            # synthetic test songs

Without ``--data`` the embedded synthetic test split is used (generated on first use, see
``keras_lincae.data.synth.ensure_default_dataset``). The logic lives in ``keras_lincae.evaluation``.
Errors are one line ``evaluate.py: error: ...`` with exit status 2 (``--debug``: the traceback).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "evaluate.py"


def build_parser():
    from keras_lincae.evaluation import METRIC_GROUPS, chunking

    p = entry.ArgumentParser(
        prog=PROG, description="Evaluate Lin-CAE presets: reconstruction, linearity and separation metrics.")
    p.add_argument("--preset", action="append", required=True,
                   help="preset name or folder; repeat to compare several models")
    p.add_argument("--data", default=None,
                   help="folder of song folders (MUSDB18-HQ layout: mixture + one file per stem); "
                        "default: the embedded synthetic test split")
    p.add_argument("--target", default="vocals",
                   help="stem to separate (default vocals); accompaniment = sum of the other stems")
    p.add_argument("--max-songs", type=int, default=None, help="evaluate the first N songs")
    p.add_argument("--clip-seconds", type=float, default=10.0,
                   help="clip length per song in seconds (default 10)")
    p.add_argument("--clip-start", default="auto",
                   help="clip start in seconds, or 'auto' (where the target is loudest; default)")
    chunking.add_chunk_seconds_flag(p)
    p.add_argument("--steps", type=int, default=1, help="decoding steps (default 1)")
    p.add_argument("--seed", type=int, default=0, help="decoding noise seed (default 0)")
    p.add_argument("--batch-size", type=int, default=4, help="clips scored together (default 4)")
    p.add_argument("--call-batch-size", type=int, default=8,
                   help="items per model call (default 8)")
    p.add_argument("--metrics", default="all",
                   help="comma-separated metric or group names (" + ", ".join(METRIC_GROUPS)
                        + "), default all")
    p.add_argument("--out", default="eval_results", help="output folder (default eval_results)")
    p.add_argument("--affine", action="store_true",
                   help="latent arithmetic relative to Enc(silence): homogeneity, additivity and separation "
                        "measured on Enc(x) - Enc(0), decoded as z + Enc(0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    entry.add_flags(p)
    return p


def main(argv=None, models=None):
    """Run the recipe; ``argv`` as on the command line (default ``sys.argv[1:]``).

    ``models``: optional dict ``preset -> LinCAE``, filled and reused, so that a caller running
    several recipes in one process (a notebook, the tests) loads and compiles each model once.
    """
    from keras_lincae import evaluation as E
    from keras_lincae.evaluation import chunking

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        metrics = E.resolve_metrics(args.metrics)
    except ValueError as e:
        parser.error(str(e))
    if args.clip_seconds <= 0:
        parser.error("--clip-seconds must be positive")
    if args.clip_start != "auto":
        try:
            float(args.clip_start)
        except ValueError:
            parser.error(f"--clip-start must be 'auto' or seconds, got {args.clip_start!r}")
    try:
        chunks = [chunking.chunk_seconds_for(p, args.chunk_seconds) for p in args.preset]
    except ValueError as e:
        parser.error(str(e))
    if args.steps < 1 or args.batch_size < 1 or args.call_batch_size < 1:
        parser.error("--steps, --batch-size and --call-batch-size must be >= 1")
    entry.prepare(PROG, args.backend, args.debug)
    entry.check_writable_folder(args.out, "--out")
    if args.data is None:
        from keras_lincae.data.synth import ensure_default_dataset

        data = os.path.join(ensure_default_dataset(), "test")
    else:
        data = args.data
    E.find_songs(data)  # fail before loading any model

    names = [E.model_display_name(p) for p in args.preset]
    names = [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]
    clips_by_rate, skipped, rows = {}, [], []
    for preset, name, chunk in zip(args.preset, names, chunks):
        model = E.load_model(preset, cache=models)
        rate = int(model.sample_rate)
        if rate not in clips_by_rate:
            clips_by_rate[rate], skipped_here = E.load_clips(
                data, target=args.target, sample_rate=rate, clip_seconds=args.clip_seconds,
                max_songs=args.max_songs, clip_start=args.clip_start)
            skipped += [s for s in skipped_here if s not in skipped]
            for s in skipped_here:
                print(f"skipping song {s['song']}: {s['reason']}", file=sys.stderr)
        clips = clips_by_rate[rate]
        rows.append(E.evaluate_model(
            model, clips, name=name, preset=preset, steps=args.steps, seed=args.seed,
            batch_size=args.batch_size, call_batch_size=args.call_batch_size, metrics=metrics,
            progress=not args.no_progress, affine=args.affine, chunk_seconds=chunk))
        rows[-1]["training"] = E.training_summary(preset, name)
    config = dict(data=os.fspath(data), target=args.target, clip_seconds=args.clip_seconds,
                  clip_start=args.clip_start, max_songs=args.max_songs, steps=args.steps,
                  seed=args.seed, presets=list(args.preset), affine=args.affine,
                  chunk_seconds=args.chunk_seconds)
    results = E.make_results(rows, clips, skipped, config, metrics=args.metrics)
    paths = E.write_results(results, args.out)
    command = " ".join(["python recipes/evaluate.py", *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    (Path(args.out) / "command.txt").write_text(f"KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'jax')} {command}\n")
    print(E.format_markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return results


if __name__ == "__main__":
    entry.restart_with_malloc_tunables()
    sys.exit(entry.run(main, PROG))
