"""Peak memory of `lincae autoencode` on a long file: the chunked path end to end (read, encode, decode, write).

    KERAS_BACKEND=jax python benchmarks/long_audio_memory.py --preset lin_cae_tiny --seconds 600
    KERAS_BACKEND=jax python benchmarks/long_audio_memory.py --preset lin_cae --seconds 30

The model is built with random weights (`load_weights=False`; memory does not depend on the weight
values) and warmed up on one chunk so that compilation is not counted in the long run. A thread
samples the resident set size (RSS, /proc/self/statm) every 20 ms; `resource.getrusage` gives the
process-lifetime peak as a cross-check. Printed: RSS before the run (model + compiled functions),
peak RSS during the run, their difference, and the size of the float32 input and output arrays;
with chunking the difference should be about the I/O arrays plus one batch of chunk windows,
whatever the duration.
"""

import argparse
import os
import resource
import sys
import tempfile
import threading
import time

import numpy as np


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler(threading.Thread):
    def __init__(self, interval=0.02):
        super().__init__(daemon=True)
        self.interval, self.peak, self.running = interval, rss_bytes(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def stop(self):
        self.running = False
        self.join()
        self.peak = max(self.peak, rss_bytes())
        return self.peak


def synthetic_song(seconds, channels, sample_rate=44100, seed=0):
    """Cheap music-like test signal (decaying notes + soft noise), written block by block."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.empty((n, channels), dtype=np.float32)
    block = sample_rate
    t = np.arange(block) / sample_rate
    for start in range(0, n, block):
        f0 = rng.uniform(80, 800, size=(3, channels))
        piece = sum(0.1 * np.sin(2 * np.pi * f[None, :] * t[:, None]) for f in f0) * np.exp(-2 * t)[:, None]
        piece += 0.003 * rng.standard_normal((block, channels))
        out[start : start + block] = piece[: n - start]
    return out


def mib(b):
    return b / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lin_cae_tiny")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args(argv)

    import keras
    import soundfile as sf

    from keras_lincae import LinCAE, cli

    model = LinCAE.from_preset(args.preset, load_weights=False)
    cli._MODELS[args.preset] = model  # the CLI uses this random-weight model
    with tempfile.TemporaryDirectory() as folder:
        warm_in, song_in, out = (os.path.join(folder, n) for n in ("warm.wav", "song.wav", "out.wav"))
        common = ["--preset", args.preset, "--chunk-seconds", str(args.chunk_seconds),
                  "--batch-size", str(args.batch_size), "--seed", "0"]
        # Warm-up on audio long enough for two chunks: compiles the chunk-window functions.
        sf.write(warm_in, synthetic_song(2.5 * args.chunk_seconds, args.channels), 44100, subtype="FLOAT")
        if cli.main(["autoencode", warm_in, "-o", out, "--quiet", *common]) != 0:
            sys.exit("warm-up failed")
        sf.write(song_in, synthetic_song(args.seconds, args.channels), 44100, subtype="FLOAT")
        io_bytes = int(args.seconds * 44100) * args.channels * 4
        before = rss_bytes()
        sampler = PeakSampler()
        sampler.start()
        start = time.time()
        code = cli.main(["autoencode", song_in, "-o", out, *common])
        elapsed = time.time() - start
        peak = sampler.stop()
        info = sf.info(out)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = model.count_params()
    print(f"backend={keras.backend.backend()} preset={args.preset} params={params / 1e6:.2f}M "
          f"seconds={args.seconds:g} channels={args.channels} chunk_seconds={args.chunk_seconds:g} "
          f"batch_size={args.batch_size} exit={code} output_frames={info.frames} time_s={elapsed:.1f}")
    print(f"rss_before_MiB={mib(before):.0f} peak_rss_MiB={mib(peak):.0f} "
          f"peak_minus_before_MiB={mib(peak - before):.0f} ru_maxrss_MiB={mib(maxrss):.0f} "
          f"one_float32_io_array_MiB={mib(io_bytes):.0f}")


if __name__ == "__main__":
    main()
