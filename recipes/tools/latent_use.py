"""Does the decoder use its latents? A diagnostic for presets.

For held-out numpy-synth songs: the relative L2 error of the decoder's one-step denoising of the
clean representation at several noise levels, with the encoder's latents and with all-zero
latents (a decoder that ignores its latents scores the same with both), plus the magnitude SNR
and the level (output RMS / input RMS) of a 1-step reconstruction. Prints a Markdown table.

    python recipes/tools/latent_use.py PRESET [PRESET ...] [--sigmas 0.5 2 10] [--backend jax]
"""

import sys

import numpy as np

from keras_lincae import entry

PROG = "latent_use.py"


def denoising_errors(model, audio, sigmas, seed=0):
    """``{sigma: (error with the encoder's latents, error with zero latents)}`` for one clip
    ``audio (samples,)``: ``|denoise(clean + sigma * noise) - clean| / |clean|``."""
    from keras import ops

    audio = np.asarray(audio, np.float32)[None]
    front, back = model.autoencode_padding(audio.shape[1])
    padded = ops.convert_to_tensor(np.pad(audio, ((0, 0), (front, back))))
    clean = model.frontend.to_representation(padded)
    clean_np = np.asarray(ops.convert_to_numpy(clean))
    latents = model(padded) / model.scale_factor
    noise = np.random.default_rng(seed).standard_normal(clean_np.shape).astype(np.float32)
    errors = {}
    for sigma in sigmas:
        noisy = clean + sigma * noise
        level = ops.full((1,), sigma)
        errors[sigma] = tuple(
            float(np.linalg.norm(ops.convert_to_numpy(model.denoise(noisy, level, z)) - clean_np)
                  / np.linalg.norm(clean_np)) for z in (latents, ops.zeros_like(latents)))
    return errors


def main(argv=None):
    parser = entry.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", help="preset names or folders")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 2.0, 10.0],
                        help="noise levels (default 0.5 2 10)")
    parser.add_argument("--seconds", type=float, default=3.0, help="song length (default 3)")
    entry.add_flags(parser)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or min(args.sigmas) <= 0:
        parser.error("--seconds and --sigmas must be positive")
    entry.prepare(PROG, args.backend, args.debug)
    from keras_lincae import LinCAE
    from keras_lincae.data.synth import generate_song
    from keras_lincae.evaluation.metrics import magnitude_snr

    songs = [generate_song([0, 1, s], seconds=args.seconds, renderer="numpy")[0]["mixture"]
             for s in (1, 2)]
    print("| preset | mag. SNR dB | level | "
          + " | ".join(f"denoise err σ={s:g} (z / zero z)" for s in args.sigmas) + " |")
    print("|---|---:|---:|" + "---:|" * len(args.sigmas))
    for preset in args.presets:
        model = LinCAE.from_preset(preset)
        snr, level, errors = [], [], {s: [] for s in args.sigmas}
        for k, x in enumerate(songs):
            out = np.asarray(model.autoencode(x[None], seed=0))[0]
            snr.append(magnitude_snr(out, x))
            level.append(np.sqrt(np.mean(out**2) / np.mean(x**2)))
            for s, pair in denoising_errors(model, x, args.sigmas, seed=k).items():
                errors[s].append(pair)
        cells = [f"{np.mean([e[0] for e in v]):.3f} / {np.mean([e[1] for e in v]):.3f}"
                 for v in errors.values()]
        print(f"| {preset} | {np.mean(snr):.2f} | {np.mean(level):.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(entry.run(main, PROG))
