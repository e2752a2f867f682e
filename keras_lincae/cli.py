"""The `lincae` command line: encode, decode, autoencode, mix, separate and scale audio files.

    lincae encode song.flac -o song.npz
    lincae decode song.npz -o song.wav --seed 0
    lincae decode song.npz -o song.wav --seed 0 --stream    # written block by block as decoded
    lincae autoencode song.wav -o out.wav --sample-rate 48000
    lincae mix vocals.wav drums.npz --gains 1.0 0.5 -o mix.wav
    lincae separate mixture.wav accompaniment.wav -o vocals.wav
    lincae scale song.npz --gain 0.5 -o quieter.flac

The backend comes from `--backend`, else `KERAS_BACKEND` (jax, tensorflow or torch), else Keras'
default when installed, else the first installed of jax, torch, tensorflow. Audio files (WAV,
FLAC, OGG, MP3; 8 to 384 kHz) are read with `keras_lincae.data.load_audio`; other rates than the
model's (44.1 kHz) are resampled, with a note on stderr. Every channel is encoded separately and long files are processed
in chunks (`--chunk-seconds`, see `keras_lincae.long_audio`). Latent files (`.npz`) hold
`latents` `(channels, chunks, frames, latent_channels)`, `sample_rate`, `length`, `channels`,
`chunk_samples`, `step_samples`, `format_version` and `preset`. `mix`, `separate` and `scale`
accept audio or latent files as inputs, decode once, and write audio, or latents when the output
ends in `.npz` (then nothing is decoded, and `--steps`, `--seed`, `--stream` and `--sample-rate`
are refused rather than ignored). `--dtype bfloat16` runs the model in `mixed_bfloat16`. An output may not be one of the inputs, and an existing output is only replaced
with `--overwrite` (`-y`); the output path is checked before the model runs. Outputs are written to
a temporary file `.lincae-<pid>-<random>.tmp` and renamed, so a failed run never leaves a partial
file (and a killed run's temporary file is removed by the next run writing there). Bad input exits
with status 2 and one line `lincae: error: ...` on stderr (`--debug`: with the traceback).
`--stream` writes the audio block by block while it is decoded (`long_audio.decode_long_blocks`):
the same file, with memory bounded by a few chunks instead of the whole output (audio outputs only).
"""

import argparse
import math
import sys

import numpy as np

from keras_lincae import entry, presets
from keras_lincae.cli_io import (
    AUDIO_OUTPUTS,
    LATENT_SUFFIX,
    PROG,
    SAMPLE_RATES,
    CliError,
    check_paths,
    is_latent_file,
    note,
    read_audio,
    read_latents,
    write_audio,
    write_audio_blocks,
    write_latents,
)

DEFAULT_PRESET = "lin_cae_small"  # shipped trained weights (saved_models/lin_cae_small)
DEFAULT_CHUNK_SECONDS = 10.0  # for presets that recommend no chunk length (presets.recommended_chunk_seconds)
MAX_SEED = 2**32 - 1  # as `LinCAE.decode`
AFFINE_DEFAULT = False  # mix / separate / scale relative to Enc(silence); chosen from docs/evaluation (affine)

_MODELS = {}


# --------------------------------------------------------------------------------- messages

class _Progress:
    """Progress of the chunked encode / decode on stderr: `encode [######------] 3/8 chunks`.

    On a terminal one bar is redrawn after every model call; otherwise (a log file) a line is
    written at every tenth of the work.
    """

    def __init__(self, enabled, width=30):
        self.enabled = enabled
        self.width = width
        self.tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    def __call__(self, stage, done, total):
        if not self.enabled or total < 2:
            return
        if not self.tty and done < total and 10 * done // total == 10 * (done - 1) // total:
            return
        filled = self.width * done // total
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"{PROG}: {stage:<6} [{bar}] {done}/{total} chunks"
        if self.tty:
            print(f"\r{line}", end="\n" if done >= total else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ arguments


def _positive_float_or_zero(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _int_in(low, high, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return parse


_positive_int = _int_in(1, sys.maxsize, "a positive integer")
_seed = _int_in(0, MAX_SEED, f"an integer in [0, {MAX_SEED}]")
_sample_rate = _int_in(*SAMPLE_RATES, f"a sample rate in [{SAMPLE_RATES[0]}, {SAMPLE_RATES[1]}] Hz")


def _overlap(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def build_parser():
    """The argparse parser of `lincae` (one subparser per command); imports no Keras."""
    parser = entry.ArgumentParser(
        prog=PROG,
        description="Lin-CAE linear consistency autoencoder: audio <-> latents, latent mixing, "
        "scaling and separation.",
    )
    parser.add_argument("--version", action="store_true", help="print versions and backend, then exit")
    entry.add_flags(parser)
    model_opts = entry.ArgumentParser(add_help=False)
    model_opts.add_argument(
        "--preset", default=None,
        help=f"preset name or directory (default: the latent file's preset, with a note when it is a "
        f"directory, else {DEFAULT_PRESET}; a built-in preset without shipped weights falls back to "
        "random weights with a warning)",
    )
    model_opts.add_argument("--batch-size", type=_positive_int, default=1, help="chunks per model call (1)")
    model_opts.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32",
        help="float32 (default) or bfloat16 (Keras policy mixed_bfloat16: about 1.3-1.7x faster on "
        "CPUs with bf16 units under tensorflow/torch, slower under jax; decode 35 dB magnitude-SNR "
        "from float32, see benchmarks/README.md)")
    model_opts.add_argument("--quiet", action="store_true", help="no progress bar or notes on stderr (except the "
                            "note that a latent file chose a preset folder)")
    model_opts.add_argument("-y", "--overwrite", action="store_true", help="replace an existing output file")
    entry.add_flags(model_opts, default=argparse.SUPPRESS)
    chunk_opts = entry.ArgumentParser(add_help=False)
    chunk_opts.add_argument(
        "--chunk-seconds", type=_positive_float_or_zero, default=None,
        help=f"chunk length for encoding long audio, rounded to whole latent frames (the preset's: "
             f"{presets.SMALL_CHUNK_SECONDS:g} for lin_cae_small and m2l_small, else "
             f"{DEFAULT_CHUNK_SECONDS:g}; 0: one chunk)",
    )
    chunk_opts.add_argument("--overlap", type=_overlap, default=0.25, help="crossfaded fraction of a chunk (0.25)")
    decode_opts = entry.ArgumentParser(add_help=False)
    decode_opts.add_argument("--steps", type=_positive_int, default=None, help="consistency decoding steps (1)")
    decode_opts.add_argument("--seed", type=_seed, default=None, help="decoder noise seed (0)")
    decode_opts.add_argument(
        "--sample-rate", type=_sample_rate, default=None,
        help="sample rate of the written audio (default: the model's, 44100)",
    )
    decode_opts.add_argument(
        "--stream", action="store_true",
        help="write the audio block by block as it is decoded (same file, bounded memory; the model's "
             "sample rate only; not for .npz outputs)",
    )
    out_help = "output file ({})"
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("encode", parents=[model_opts, chunk_opts], help="audio file -> latent file (.npz)")
    p.add_argument("input", help="audio file (WAV, FLAC, OGG, MP3)")
    p.add_argument("-o", "--output", required=True, help=out_help.format(".npz"))

    p = sub.add_parser("decode", parents=[model_opts, decode_opts], help="latent file (.npz) -> audio file")
    p.add_argument("input", help="latent file written by `lincae encode` (.npz)")
    p.add_argument("-o", "--output", required=True, help=out_help.format(".wav or .flac"))

    p = sub.add_parser("autoencode", parents=[model_opts, chunk_opts, decode_opts],
                       help="audio file -> latents -> audio file")
    p.add_argument("input", help="audio file")
    p.add_argument("-o", "--output", required=True, help=out_help.format(".wav or .flac"))

    arith_opts = argparse.ArgumentParser(add_help=False)
    arith_opts.add_argument(
        "--affine", action=argparse.BooleanOptionalAction, default=AFFINE_DEFAULT,
        help="combine latents relative to Enc(silence) (an encoder that is affine, not linear)"
             f" (default: {'on' if AFFINE_DEFAULT else 'off'})")

    p = sub.add_parser("mix", parents=[model_opts, chunk_opts, decode_opts, arith_opts],
                       help="weighted sum of audio or latent files, decoded once")
    p.add_argument("inputs", nargs="+", help="audio or latent files (shorter audio is zero-padded)")
    p.add_argument("--gains", type=float, nargs="+", default=None, help="one gain per input (default 1 each)")
    p.add_argument("-o", "--output", required=True, help=out_help.format(".wav, .flac or .npz"))

    p = sub.add_parser("separate", parents=[model_opts, chunk_opts, decode_opts, arith_opts],
                       help="mixture minus accompaniment in latent space")
    p.add_argument("mixture", help="audio or latent file of the mixture")
    p.add_argument("accompaniment", help="audio or latent file of what to remove")
    p.add_argument("-o", "--output", required=True, help=out_help.format(".wav, .flac or .npz"))

    p = sub.add_parser("scale", parents=[model_opts, chunk_opts, decode_opts, arith_opts],
                       help="multiply the latents by a gain (volume change)")
    p.add_argument("input", help="audio or latent file")
    p.add_argument("--gain", type=float, required=True, help="gain")
    p.add_argument("-o", "--output", required=True, help=out_help.format(".wav, .flac or .npz"))
    return parser


# ---------------------------------------------------------------------------------- model


def _load_model(preset, quiet, dtype="float32"):
    from keras_lincae import presets
    from keras_lincae.models.lincae import LinCAE

    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16"}[dtype]
    if (preset, policy) in _MODELS:
        return _MODELS[preset, policy]
    try:
        model = LinCAE.from_preset(preset, dtype=policy)
    except RuntimeError as error:
        spec = presets.BUILTIN_PRESETS.get(preset)
        if spec is None or spec["official_folder"] is not None:
            raise CliError(f"cannot load preset {preset!r}: {error}") from error
        import keras

        if not quiet:
            note(f"warning: preset {preset!r} ships no trained weights; using random weights "
                  "(seed 0), so the audio will not resemble the input")
        keras.utils.set_random_seed(0)
        model = LinCAE.from_preset(preset, load_weights=False, dtype=policy)
    except (ValueError, TypeError, OSError, ImportError) as error:
        raise CliError(str(error)) from error
    _MODELS[preset, policy] = model
    return model


# ------------------------------------------------------------------------------- commands


def _chunk_seconds(args, preset):
    """`--chunk-seconds`, else the preset's recommended length, else `DEFAULT_CHUNK_SECONDS`; None: one chunk."""
    seconds = args.chunk_seconds
    if seconds is None:
        seconds = presets.recommended_chunk_seconds(preset) or DEFAULT_CHUNK_SECONDS
    return None if seconds == 0 else seconds


def _encode_audio(model, audio, args, progress, preset, like=None):
    from keras_lincae.long_audio import encode_long

    return encode_long(model, audio[None], _chunk_seconds(args, preset), args.overlap, args.batch_size, progress,
                       like=like)


def _decode_and_write(model, chunked, args, progress):
    from keras_lincae import data
    from keras_lincae.long_audio import decode_long, decode_long_blocks

    steps, seed = (1 if args.steps is None else args.steps), (0 if args.seed is None else args.seed)
    options = dict(steps=steps, seed=seed, batch_size=args.batch_size, progress=progress)
    if args.stream:
        blocks = decode_long_blocks(model, chunked, **options)
        write_audio_blocks(args.output, (block[0] for block in blocks), model.sample_rate, chunked.channels,
                           args.quiet)
        return
    audio = decode_long(model, chunked, **options)[0]
    rate = args.sample_rate or model.sample_rate
    if rate != model.sample_rate:
        audio = data.resample(audio, model.sample_rate, rate)
    write_audio(args.output, audio, rate, args.quiet)


def _cmd_encode(args, progress):
    check_paths(args.output, (LATENT_SUFFIX,), [args.input], args.overwrite)
    preset = args.preset or DEFAULT_PRESET
    model = _load_model(preset, args.quiet, args.dtype)
    audio = read_audio(args.input, model.sample_rate, args.quiet)
    write_latents(args.output, _encode_audio(model, audio, args, progress, preset), preset)


def _cmd_decode(args, progress):
    check_paths(args.output, tuple(AUDIO_OUTPUTS), [args.input], args.overwrite)
    if not is_latent_file(args.input):
        raise CliError(f"decode reads a latent file (.npz), got {args.input}; use `autoencode` for audio")
    chunked, stored = read_latents(args.input)
    preset = _pick_preset(args, [stored])
    model = _load_model(preset, args.quiet, args.dtype)
    _decode_and_write(model, chunked, args, progress)


def _cmd_autoencode(args, progress):
    check_paths(args.output, tuple(AUDIO_OUTPUTS), [args.input], args.overwrite)
    preset = args.preset or DEFAULT_PRESET
    model = _load_model(preset, args.quiet, args.dtype)
    audio = read_audio(args.input, model.sample_rate, args.quiet)
    _decode_and_write(model, _encode_audio(model, audio, args, progress, preset), args, progress)


def _pick_preset(args, stored):
    """--preset, else the preset named in the latent files (a folder one with a note, even with
    --quiet: the file, not the user, chose what is loaded), else the default."""
    from keras_lincae import presets

    names = sorted({s for s in stored if s})
    if args.preset:
        if names and names != [args.preset] and not args.quiet:
            note(f"warning: latents were written with preset(s) {names}, decoding with {args.preset!r}")
        return args.preset
    if len(names) > 1:
        raise CliError(f"inputs were encoded with different presets {names}; choose one with --preset")
    if names and names[0] not in presets.BUILTIN_PRESETS:
        note(f"note: using the preset {names[0]} named in the latent file (not a built-in preset; "
              "choose the model with --preset)")
    return names[0] if names else DEFAULT_PRESET


def _combine(args, paths, gains, progress, first_sets_length=False):
    """Shared body of mix / separate / scale: load inputs, encode audio, mix latents, write."""
    from keras_lincae import arithmetic

    suffix = check_paths(args.output, tuple(AUDIO_OUTPUTS) + (LATENT_SUFFIX,), paths, args.overwrite)
    decoding = ["--stream"] * args.stream + [name for name, value in (
        ("--sample-rate", args.sample_rate), ("--steps", args.steps), ("--seed", args.seed)) if value is not None]
    if suffix == LATENT_SUFFIX and decoding:
        raise CliError(f"{', '.join(decoding)}: only for audio outputs; {args.output} gets latents (nothing is "
                       "decoded)")
    gains = arithmetic._check_gains(gains, len(paths))
    latent_inputs = {p: read_latents(p) for p in paths if is_latent_file(p)}
    preset = _pick_preset(args, [stored for _, stored in latent_inputs.values()])
    model = _load_model(preset, args.quiet, args.dtype)
    audio_inputs = {p: read_audio(p, model.sample_rate, args.quiet) for p in paths if not is_latent_file(p)}
    lengths = {p: latent_inputs[p][0].length if p in latent_inputs else audio_inputs[p].shape[-1] for p in paths}
    channels = {c.channels for c, _ in latent_inputs.values()} | {a.shape[0] for a in audio_inputs.values()}
    length = lengths[paths[0]] if first_sets_length else max(lengths.values())
    for path in paths:
        if lengths[path] > length:
            raise CliError(f"{path} is longer than {paths[0]} ({lengths[path]} > {length} samples)")
    if len(channels) > 1:
        raise CliError(f"inputs have different channel counts {sorted(channels)}")
    for path, (chunked, _) in latent_inputs.items():
        if chunked.length != length:
            raise CliError(
                f"latent file {path} describes {chunked.length} samples, the output needs {length}: "
                "latents can only be combined at equal length"
            )
    # Audio inputs take the chunking of the first latent file, so that they can be combined with it.
    like = next(iter(latent_inputs.values()))[0] if latent_inputs else None
    latents = []
    for path in paths:
        if path in latent_inputs:
            latents.append(latent_inputs[path][0])
        else:
            audio = audio_inputs[path]
            audio = np.pad(audio, ((0, 0), (0, length - audio.shape[-1])))
            latents.append(_encode_audio(model, audio, args, progress, preset, like=like))
    try:
        origin = arithmetic.silence_latents(model, latents[0]) if args.affine else None
        combined = arithmetic.mix(latents, gains, origin)
    except ValueError as error:
        raise CliError(f"{error} (encode latent files with the same --chunk-seconds and --overlap)") from error
    if suffix == LATENT_SUFFIX:
        write_latents(args.output, combined, preset)
    else:
        _decode_and_write(model, combined, args, progress)


def _cmd_mix(args, progress):
    _combine(args, args.inputs, args.gains, progress)


def _cmd_separate(args, progress):
    _combine(args, [args.mixture, args.accompaniment], [1.0, -1.0], progress, first_sets_length=True)


def _cmd_scale(args, progress):
    _combine(args, [args.input], [args.gain], progress)


COMMANDS = {
    "encode": _cmd_encode,
    "decode": _cmd_decode,
    "autoencode": _cmd_autoencode,
    "mix": _cmd_mix,
    "separate": _cmd_separate,
    "scale": _cmd_scale,
}


def _versions():
    import keras

    import keras_lincae

    return f"keras_lincae {keras_lincae.__version__}, keras {keras.__version__}, backend {keras.backend.backend()}"


def main(argv=None):
    """Run `lincae` with `argv` (default `sys.argv[1:]`); returns the exit status (0, 2 on bad input).

    As the command (`argv` None) it first re-executes itself with glibc's malloc on huge pages
    (`entry.restart_with_malloc_tunables`)."""
    if argv is None:
        entry.restart_with_malloc_tunables()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed by argparse
        return int(exit_.code or 0)
    if args.command is None and not args.version:
        print(f"{PROG}: error: choose a command: {', '.join(COMMANDS)} (see --help)", file=sys.stderr)
        return 2
    if getattr(args, "stream", False) and args.sample_rate is not None:
        print(f"{PROG}: error: --stream writes the model's sample rate; drop --sample-rate (see --help)",
              file=sys.stderr)
        return 2
    return entry.run(lambda: _run(args), PROG)


def _run(args):
    entry.prepare(PROG, args.backend, args.debug)
    if args.version:
        print(_versions())
    else:
        COMMANDS[args.command](args, _Progress(enabled=not args.quiet))
