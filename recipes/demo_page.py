"""Build a static listening page comparing Lin-CAE presets (no network needed to open it).

For a few song excerpts and each model: original mix vs reconstruction, the decoded sum of the
stems' latents vs the true mix, the target separated by latent subtraction vs the true target,
and latent scaling at several gains, each with a spectrogram; the results table on top.

Usage:
    python recipes/demo_page.py --preset lin_cae --preset m2l --data musdb18hq/test \
        --results eval_results --out demo
    python recipes/demo_page.py --preset lin_cae_tiny --out demo       # synthetic songs

Without ``--results`` the table is computed on the page's own excerpts. Open
``demo/index.html`` in a browser (media are in ``demo/media/``; ``--embed`` writes one file).
The logic lives in ``keras_lincae.demo`` and ``keras_lincae.evaluation``. Errors are one line
``demo_page.py: error: ...`` with exit status 2 (``--debug``: the traceback).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from keras_lincae import entry  # noqa: E402  (imports no Keras)

PROG = "demo_page.py"


def build_parser():
    from keras_lincae.demo import AUDIO_FORMATS
    from keras_lincae.evaluation import chunking

    p = entry.ArgumentParser(prog=PROG, description="Build a static Lin-CAE listening page.")
    p.add_argument("--preset", action="append", required=True,
                   help="preset name or folder; repeat to compare several models")
    p.add_argument("--data", default=None,
                   help="folder of song folders (MUSDB18-HQ layout); default: the embedded "
                        "synthetic test split")
    p.add_argument("--target", default="vocals", help="stem to separate (default vocals)")
    p.add_argument("--songs", type=int, default=2, help="number of songs shown (default 2)")
    p.add_argument("--excerpt-seconds", type=float, default=5.0,
                   help="excerpt length in seconds (default 5)")
    p.add_argument("--clip-start", default="auto",
                   help="excerpt start in seconds, or 'auto' (where the target is loudest)")
    p.add_argument("--gains", default="0.25,0.5,2", help="latent gains (default 0.25,0.5,2)")
    chunking.add_chunk_seconds_flag(p)
    p.add_argument("--steps", type=int, default=1, help="decoding steps (default 1)")
    p.add_argument("--seed", type=int, default=0, help="decoding noise seed (default 0)")
    p.add_argument("--call-batch-size", type=int, default=8, help="items per model call")
    p.add_argument("--results", default=None,
                   help="results.json (or its folder) from recipes/evaluate.py for the table; "
                        "default: evaluate the page's excerpts")
    p.add_argument("--embed", action="store_true",
                   help="embed media as data: URIs in a single index.html")
    p.add_argument("--audio-format", choices=sorted(AUDIO_FORMATS), default="ogg",
                   help="ogg (Vorbis, default: ~10x smaller page) or wav (16-bit PCM)")
    p.add_argument("--out", default="demo_page", help="output folder (default demo_page)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    entry.add_flags(p)
    return p


def main(argv=None, models=None):
    """Run the recipe; ``argv`` as on the command line (default ``sys.argv[1:]``).

    ``models``: optional dict ``preset -> LinCAE``, filled and reused, so that a caller running
    several recipes in one process (a notebook, the tests) loads and compiles each model once.
    """
    from keras_lincae import demo as D
    from keras_lincae import evaluation as E
    from keras_lincae.evaluation import chunking

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        gains = [float(g) for g in args.gains.replace(",", " ").split()]
    except ValueError:
        parser.error(f"--gains must be numbers, got {args.gains!r}")
    if not gains or args.songs < 1 or args.excerpt_seconds <= 0 or args.steps < 1:
        parser.error("--gains, --songs, --excerpt-seconds and --steps must be positive")
    try:
        chunks = [chunking.chunk_seconds_for(p, args.chunk_seconds) for p in args.preset]
    except ValueError as e:
        parser.error(str(e))
    entry.prepare(PROG, args.backend, args.debug)
    entry.check_writable_folder(args.out, "--out")
    if args.data is None:
        from keras_lincae.data.synth import ensure_default_dataset

        data = os.path.join(ensure_default_dataset(), "test")
    else:
        data = args.data
    E.find_songs(data)  # fail before loading any model
    results = E.load_results(args.results) if args.results else None

    names = [E.model_display_name(p) for p in args.preset]
    names = [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]
    compared, clips, rows = [], None, []
    for preset, name, chunk in zip(args.preset, names, chunks):
        model = E.load_model(preset, cache=models)
        if clips is None:
            clips, skipped = E.load_clips(
                data, target=args.target, sample_rate=int(model.sample_rate),
                clip_seconds=args.excerpt_seconds, max_songs=args.songs,
                clip_start=args.clip_start)
            for s in skipped:
                print(f"skipping song {s['song']}: {s['reason']}", file=sys.stderr)
        elif int(model.sample_rate) != clips[0].sample_rate:
            parser.error("all presets on one page must share a sample rate")
        fns = E.ModelFunctions(model, steps=args.steps, seed=args.seed,
                               batch_size=args.call_batch_size, chunk_seconds=chunk)
        compared.append((name, fns))
        if results is None:
            rows.append(E.evaluate_model(fns, clips, name=name, preset=preset,
                                         batch_size=len(clips), progress=not args.no_progress,
                                         clear_cache=False, chunk_seconds=chunk))
    if results is None:
        config = dict(data=os.fspath(data), target=args.target, clip_seconds=args.excerpt_seconds,
                      clip_start=args.clip_start, max_songs=args.songs, steps=args.steps,
                      seed=args.seed, presets=list(args.preset), chunk_seconds=args.chunk_seconds)
        results = E.make_results(rows, clips, skipped, config)

    about = "; ".join(filter(None, (E.training_summary(preset, name) for preset, (name, _) in zip(args.preset, compared))))
    bar = E.ProgressBar(len(compared), desc="demo page", enabled=not args.no_progress)
    index = D.build_demo_page(compared, clips, args.out, results=results, gains=gains,
                              target=args.target, embed=args.embed, audio_format=args.audio_format,
                              progress=lambda info: bar.update(1, info), about=about or None)
    bar.close()
    sizes = D.page_summary(index)
    print(f"wrote {index} ({sizes['html_bytes'] / 1e6:.2f} MB page, {sizes['media_files']} media "
          f"files, {sizes['media_bytes'] / 1e6:.2f} MB)", file=sys.stderr)
    return index


if __name__ == "__main__":
    entry.restart_with_malloc_tunables()
    sys.exit(entry.run(main, PROG))
