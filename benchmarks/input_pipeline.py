"""Training-input throughput: tf.data vs the Python pipeline, reading from disk vs from RAM.

    python benchmarks/input_pipeline.py [--data FOLDER ...] [--batch-size 32] [--frames 64]

Batches per second of `keras_lincae.data.audio_dataset` (tf.data) and `audio_batches` (Python
generator) with `reader="soundfile"` and `reader="memory"`, in one process, same sources, seed,
clip length and batch size. Each stream is first drawn for `--warmup` batches (the memory reader
decodes every file then), then timed over `--batches` batches; ratios are against tf.data +
soundfile in the same run. No model runs: this is the rate a training step must not wait for.
Default data: the embedded synthetic train split (generated on first use). The load average is
printed, since the machine may be shared.
"""
import argparse
import itertools
import os
import time

from keras_lincae import data
from keras_lincae.data.synth import ensure_default_dataset


def rate(batches, warmup, count):
    for _ in itertools.islice(batches, warmup):
        pass
    start = time.perf_counter()
    for _ in itertools.islice(batches, count):
        pass
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=None, help="audio folders (default: embedded synthetic train)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=64, help="spectrogram frames per clip")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    sources = args.data or [str(ensure_default_dataset() / "train")]
    clip = data.clip_samples_for_frames(args.frames)
    print(f"sources {sources}, batch {args.batch_size} x {clip} samples, load average {os.getloadavg()[0]:.2f}")
    rows = []
    for pipeline, build in (("tf.data", data.audio_dataset), ("python", data.audio_batches)):
        for reader in ("soundfile", "memory"):
            stream = build(sources, clip, args.batch_size, seed=0, reader=reader, musdb_stems=True)
            batches = stream.as_numpy_iterator() if pipeline == "tf.data" else stream
            rows.append((pipeline, reader, rate(iter(batches), args.warmup, args.batches)))
    base = rows[0][2]
    print("| pipeline | reader | batches/s | clips/s | vs tf.data + soundfile |")
    print("|---|---|---:|---:|---:|")
    for pipeline, reader, r in rows:
        print(f"| {pipeline} | {reader} | {r:.1f} | {r * args.batch_size:.0f} | {r / base:.2f}x |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
