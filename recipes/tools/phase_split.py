"""Where a preset's 1-step reconstruction error lies: in the magnitude or in the phase.

For held-out songs (generated, never trained on; or your own files), the magnitude-SNR of the
evaluation (STFT 2048/512, dB) of the 1-step decode as it comes out, and of the decoder's output
recombined with the input before the inverse STFT:

    decoded                 the 1-step decode
    decoder mag + true ph   the decoder's magnitudes with the input's phases
    true mag + decoder ph   the input's magnitudes with the decoder's phases
    true mag + random ph    the input's magnitudes with random phases: what exact magnitudes
                            score without any phase information (about 4 dB on music)
    true mag + true ph      the input through the inverse STFT: the check (tens of dB)

A decoder whose phases are no better than random and whose magnitudes are off cannot reach the
random-phase row. Prints a Markdown table.

    python recipes/tools/phase_split.py PRESET [PRESET ...] [--files A.wav ...] [--seconds 3]
"""

import sys

import numpy as np

from keras_lincae import entry

PROG = "phase_split.py"
ROWS = ("decoded", "decoder mag + true ph", "true mag + decoder ph", "true mag + random ph",
        "true mag + true ph")


def recombine(magnitude_of, phase_of):
    """A representation `(..., 2)` (real, imaginary) with the magnitudes of `magnitude_of` and
    the phases of `phase_of` (the representation's compression keeps phases, so this is the
    same recombination as on the STFT)."""
    magnitude = np.linalg.norm(magnitude_of, axis=-1, keepdims=True)
    unit = phase_of / np.maximum(np.linalg.norm(phase_of, axis=-1, keepdims=True), 1e-12)
    return (magnitude * unit).astype(np.float32)


def phase_split(model, audio, seed=0):
    """`{row: (batch,) magnitude-SNR in dB}` (the rows of `ROWS`) for `audio (batch, samples)`,
    decoded in 1 step from `sigma_max` noise drawn with `seed`."""
    from keras import ops

    from keras_lincae.evaluation.metrics import magnitude_snr

    audio = np.asarray(audio, np.float32)
    front, back = model.autoencode_padding(audio.shape[1])
    padded = ops.convert_to_tensor(np.pad(audio, ((0, 0), (front, back))))
    clean = np.asarray(ops.convert_to_numpy(model.frontend.to_representation(padded)))
    latents = model(padded) / model.scale_factor
    rng = np.random.default_rng(seed)
    noise = (rng.standard_normal(clean.shape) * model.sigma_max).astype(np.float32)
    sigma = ops.full((audio.shape[0],), model.sigma_max)
    decoded = np.asarray(ops.convert_to_numpy(model.denoise(noise, sigma, latents)))
    random = rng.standard_normal(clean.shape).astype(np.float32)
    representations = (decoded, recombine(decoded, clean), recombine(clean, decoded),
                       recombine(clean, random), clean)
    scores = {}
    for row, representation in zip(ROWS, representations):
        waveform = np.asarray(ops.convert_to_numpy(model.frontend.to_waveform(representation)))
        scores[row] = np.atleast_1d(magnitude_snr(waveform[:, front: front + audio.shape[1]], audio))
    return scores


def main(argv=None):
    parser = entry.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", help="preset names or folders")
    parser.add_argument("--files", nargs="+", help="audio files to use instead of generated songs "
                                                   "(mono mix; the first --seconds of each)")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length (default 3)")
    entry.add_flags(parser)
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    entry.prepare(PROG, args.backend, args.debug)
    from keras_lincae import LinCAE
    from keras_lincae.data.audio_io import load_audio
    from keras_lincae.data.synth import generate_song

    length = int(args.seconds * 44100)
    if args.files:
        clips = [load_audio(path, mono=True)[0, :length] for path in args.files]
        if min(len(clip) for clip in clips) < length:
            raise ValueError(f"every file must hold at least --seconds {args.seconds:g} of audio")
    else:
        clips = [generate_song([0, 1, s], seconds=args.seconds, renderer="numpy")[0]["mixture"][:length]
                 for s in (1, 2)]
    audio = np.stack(clips).astype(np.float32)
    print("| preset | " + " | ".join(ROWS) + " |")
    print("|---|" + "---:|" * len(ROWS))
    for preset in args.presets:
        scores = phase_split(LinCAE.from_preset(preset), audio)
        print(f"| {preset} | " + " | ".join(f"{scores[row].mean():.2f}" for row in ROWS) + " |")


if __name__ == "__main__":
    sys.exit(entry.run(main, PROG))
