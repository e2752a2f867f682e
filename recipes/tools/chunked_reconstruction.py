"""Whole-clip vs chunked 1-step reconstruction of held-out music: does the decode depend on length?

For each held-out set of the offline collection (`python recipes/make_dataset.py`), `--songs`
mixtures, a `--clip-seconds` clip from a third of the way in, mono. Each clip is reconstructed
once whole (`LinCAE.autoencode`) and once per `--chunk-seconds` value with
`long_audio.encode_long` / `decode_long` (chunks overlapping by a quarter, linear crossfade: what
`lincae autoencode` does). Prints a Markdown table per preset: magnitude SNR (STFT 2048/512, dB),
the same at the best gain (shape only), level (dB against the input) and MR-STFT, means over songs.

    KERAS_BACKEND=torch python recipes/tools/chunked_reconstruction.py lin_cae_small m2l_small --chunk-seconds 0.4 0.75
"""

import argparse
import glob
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script from a checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

SETS = ("synth_numpy", "synth_fluidsynth", "recorded_mixes", "orchestral_mixes")


def held_out_clips(root, name, songs, seconds):
    """Up to `songs` mono `(1, samples)` float32 clips of the set's test mixtures."""
    import soundfile as sf

    clips = []
    for path in sorted(glob.glob(os.path.join(root, name, "test", "*", "mixture.*")))[:songs]:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
        if rate != 44_100:
            raise ValueError(f"{path}: {rate} Hz, expected 44100 Hz")
        audio = audio.mean(axis=1)
        start = len(audio) // 3
        clips.append(audio[start : start + int(seconds * 44_100)][None])
    return clips


def scores(reconstruction, clip):
    """(mag-SNR, mag-SNR at best gain, level dB, MR-STFT) of a `(1, samples)` reconstruction."""
    from keras_lincae.evaluation import metrics

    y, x = reconstruction[0], clip[0]
    return (metrics.magnitude_snr(y, x), metrics.magnitude_snr(y, x, best_gain=True), metrics.level_db(y, x),
            float(metrics.multi_resolution_stft_distance(reconstruction, clip)[0]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+")
    parser.add_argument("--chunk-seconds", type=float, nargs="+", default=[0.4])
    parser.add_argument("--songs", type=int, default=4)
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--data", default=os.path.expanduser("~/.cache/keras_lincae/music_v1"))
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data):
        print(f"chunked_reconstruction: error: no collection at {args.data} (python recipes/make_dataset.py)",
              file=sys.stderr)
        return 2
    from keras_lincae import LinCAE
    from keras_lincae.long_audio import decode_long, encode_long

    clips = {name: held_out_clips(args.data, name, args.songs, args.clip_seconds) for name in SETS}
    for preset in args.presets:
        model = LinCAE.from_preset(preset)
        print(f"\n{preset}: {args.clip_seconds:g}-s clips, {args.songs} songs per set; "
              "mag-SNR / at best gain / level / MR-STFT\n")
        print("| set | whole | " + " | ".join(f"chunks of {c:g} s" for c in args.chunk_seconds) + " |")
        print("|---|---|" + "---|" * len(args.chunk_seconds))
        for name, items in clips.items():
            rows = {c: [] for c in [None, *args.chunk_seconds]}
            for clip in items:
                rows[None].append(scores(np.asarray(model.autoencode(clip, seed=0)), clip))
                for c in args.chunk_seconds:
                    rows[c].append(scores(decode_long(model, encode_long(model, clip, chunk_seconds=c), seed=0), clip))
            cells = [" / ".join(f"{v:.2f}" for v in np.mean(rows[c], axis=0)) for c in rows]
            print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
