"""Streaming decode (`keras_lincae.streaming.LatentStreamer`): speed, seams and memory.

    python benchmarks/streaming.py rtf --chunks 8 16 32          # real-time factor per window size
    python benchmarks/streaming.py seams --chunk 16              # stream vs whole-file decode, same noise
    python benchmarks/streaming.py memory --minutes 1 --chunk 16 # peak RSS (run 1 and 10 in two processes)

Uses the shipped `lin_cae_small` preset. `rtf` and `seams` run on a generated song
(`keras_lincae.data.synth.generate_song`), encoded whole; frames are pushed one at a time. `seams`
also prints the noise floor (two whole-file decodes with different noise) and the difference to
`LinCAE.decode` with the same windows (should be 0).
`memory` streams random latents (memory does not depend on their values) straight into a WAV
file with `cli_io.write_audio_blocks`, as `lincae decode --stream` does. Every result line
starts with the load average, because the machine may be shared.
"""

import argparse
import os
import resource
import time

import numpy as np


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def model_and_song(seconds, seed=0):
    from keras import ops

    from keras_lincae import LinCAE
    from keras_lincae.data.synth import generate_song

    model = LinCAE.from_preset("lin_cae_small")
    audio = generate_song(seed, seconds=seconds)[0]["mixture"][None]
    front, back = model.autoencode_padding(audio.shape[-1])
    latents = ops.convert_to_numpy(model.encode(np.pad(audio, ((0, 0), (front, back))), max_chunk_seconds=None))
    return model, audio, latents, front


def stream(model, latents, chunk, seed=0):
    """Push frames one at a time -> (audio, seconds per push, seconds to the first block)."""
    from keras_lincae.streaming import LatentStreamer

    streamer = LatentStreamer(model, chunk=chunk, seed=seed)
    blocks, times, first = [], [], None
    start = time.perf_counter()
    for frame in range(latents.shape[1]):
        t0 = time.perf_counter()
        blocks.append(streamer.push(latents[:, frame : frame + 1]))
        times.append(time.perf_counter() - t0)
        if first is None and blocks[-1].shape[-1]:
            first = time.perf_counter() - start
    blocks.append(streamer.close())
    return np.concatenate(blocks, axis=-1), times, first


def cmd_rtf(args):
    model, _, latents, _ = model_and_song(args.seconds)
    unit, rate = model.samples_per_latent, model.sample_rate
    for chunk in args.chunks:
        stream(model, latents[:, : chunk + 2], chunk)  # compile the window shape
        _, times, _ = stream(model, latents, chunk)
        audio_seconds = latents.shape[1] * unit / rate
        window = sorted(times)[-len(times) // (chunk - max(1, chunk // 4)) :]  # pushes that decoded a window
        print(f"{load()} | chunk {chunk} frames ({chunk * unit / rate * 1000:.0f} ms) | first block after {chunk} "
              f"frames | RTF {sum(times) / audio_seconds:.3f} | window decode median {np.median(window) * 1000:.0f} ms"
              f" | max push {max(times) * 1000:.0f} ms", flush=True)


def cmd_seams(args):
    from keras import ops

    from keras_lincae.evaluation.metrics import magnitude_snr
    from keras_lincae.long_audio import decode_noise
    from keras_lincae.models.chunking import default_overlap, window_starts

    model, audio, latents, front = model_and_song(args.seconds)
    frames, unit = latents.shape[1], model.samples_per_latent
    edge = model.frontend.n_fft - model.hop_size
    noise = decode_noise(model, 1, frames, args.seed)
    whole = ops.convert_to_numpy(model.decode(latents, noise=noise, max_chunk_seconds=None))
    other_noise = ops.convert_to_numpy(
        model.decode(latents, noise=decode_noise(model, 1, frames, args.seed + 1), max_chunk_seconds=None))
    same_windows = ops.convert_to_numpy(
        model.decode(latents, noise=noise, max_chunk_seconds=args.chunk * unit / model.sample_rate))
    streamed, _, _ = stream(model, latents, args.chunk, seed=args.seed)
    starts = window_starts(frames, args.chunk, default_overlap(args.chunk))
    borders = [(starts[i] * unit + edge + (starts[i - 1] + args.chunk) * unit) // 2 for i in range(1, len(starts))]
    middles = [(a + b) // 2 for a, b in zip(borders, borders[1:])]
    half = args.segment // 2
    original = np.pad(audio, ((0, 0), (front, whole.shape[-1] - front - audio.shape[-1])))

    def snr(estimate, reference, centres):
        centres = [c for c in centres if half <= c <= reference.shape[-1] - half]
        return np.array([float(magnitude_snr(estimate[0, c - half : c + half], reference[0, c - half : c + half]))
                         for c in centres])

    print(f"{load()} | song {args.seconds:.0f} s, chunk {args.chunk}, {len(borders)} borders, "
          f"segments {args.segment} samples")
    for name, estimate, reference in (("stream vs whole decode", streamed, whole),
                                      ("whole, other noise (floor)", other_noise, whole),
                                      ("stream vs original", streamed, original),
                                      ("whole decode vs original", whole, original)):
        at, away = snr(estimate, reference, borders), snr(estimate, reference, middles)
        print(f"  {name:26s} magnitude-SNR dB at borders mean {at.mean():6.2f} median {np.median(at):6.2f} min "
              f"{at.min():6.2f} | elsewhere mean {away.mean():6.2f} median {np.median(away):6.2f} min {away.min():6.2f}")
    full = float(magnitude_snr(streamed[0], whole[0]))
    print(f"  whole signal: stream vs whole decode {full:.2f} dB, max abs difference "
          f"{np.abs(streamed - whole).max():.4f} (peak {np.abs(whole).max():.3f}); stream vs `decode` with the "
          f"same windows: max abs difference {np.abs(streamed - same_windows).max():.1e}")


def cmd_memory(args):
    import tempfile

    from keras_lincae import LinCAE
    from keras_lincae.cli_io import write_audio_blocks
    from keras_lincae.streaming import LatentStreamer

    model = LinCAE.from_preset("lin_cae_small")
    rate, unit = model.sample_rate, model.samples_per_latent
    frames = int(round(args.minutes * 60 * rate / unit))
    rng = np.random.default_rng(0)
    warm = LatentStreamer(model, chunk=args.chunk, seed=0)
    warm.push(rng.uniform(-1, 1, (1, args.chunk + 1, model.latent_channels)).astype("float32"))
    warm.close()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    streamer = LatentStreamer(model, chunk=args.chunk, seed=0)
    held, quarters = [], []  # buffered() after each push; peak RSS after each quarter of the stream

    def blocks():
        for first in range(0, frames, args.packet):
            n = min(args.packet, frames - first)
            yield streamer.push(rng.uniform(-1, 1, (1, n, model.latent_channels)).astype("float32"))[0][None]
            held.append(streamer.buffered())
            if len(held) % max(1, -(-frames // args.packet) // 4) == 0:
                quarters.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        yield streamer.close()[0][None]

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "out.wav")
        write_audio_blocks(path, blocks(), rate, 1, quiet=True)
        written = os.path.getsize(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{load()} | {args.minutes:g} min = {frames} frames, chunk {args.chunk} | peak RSS after warm-up "
          f"{before:.0f} MiB, after each quarter {' '.join(f'{q:.0f}' for q in quarters[:4])}, at the end "
          f"{peak:.0f} MiB | most held: {max(h[0] for h in held)} frames, "
          f"{max(h[1] for h in held)} samples | WAV {written / 2**20:.0f} MiB | {seconds:.0f} s "
          f"(RTF {seconds / (frames * unit / rate):.3f})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("rtf")
    p.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--seconds", type=float, default=30.0)
    p = sub.add_parser("seams")
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--segment", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("memory")
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--packet", type=int, default=16)
    args = parser.parse_args()
    {"rtf": cmd_rtf, "seams": cmd_seams, "memory": cmd_memory}[args.command](args)


if __name__ == "__main__":
    main()
