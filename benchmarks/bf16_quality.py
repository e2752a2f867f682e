"""Quality cost of bfloat16 inference (`dtype="mixed_bfloat16"`) against float32, on held-out music.

    KERAS_BACKEND=jax python benchmarks/bf16_quality.py --models lin_cae_small,official_full

For each model, the same held-out clips are encoded and 1-step decoded twice, once with the
float32 model and once with the same weights under the `mixed_bfloat16` policy (bfloat16
compute, float32 variables), with the same decode noise. Printed per model (mean over clips,
worst clip in brackets):

- `latent rel err`: `|z_bf16 - z_f32| / |z_f32|` (`metrics.relative_l2_error`);
- `bf16 vs f32`: magnitude-SNR (dB, higher is closer) and MR-STFT distance (lower is closer)
  between the bfloat16 and float32 decodes (each decodes its own latents: the whole pipeline);
- `noise floor`: the same two metrics between two float32 decodes that differ only in the
  decode noise: how far apart two equally valid float32 outputs already are. bfloat16 costs
  nothing audible when its distance is well inside this floor;
- `vs input`: magnitude-SNR of the float32 and bfloat16 reconstructions against the input
  (meaningful for trained weights only).

Models: `lin_cae_small` (shipped preset, trained) and `official_full` / `official_reduced`
(the official architecture with random weights, converted with `convert_official_checkpoint`,
as `benchmarks/inference.py` builds them; needs torch and `linear-cae`). Clips: `--clips`
clips of `--seconds` from the held-out test songs of the offline music collection
(`recorded_mixes/test` and `synth_fluidsynth/test` under `keras_lincae.fs.cache_root()`),
taken from the middle of each song. One backend per run (KERAS_BACKEND).
"""

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import keras  # noqa: E402

from keras_lincae import LinCAE, fs  # noqa: E402
from keras_lincae.data import load_audio  # noqa: E402
from keras_lincae.evaluation import metrics  # noqa: E402

SAMPLE_RATE = 44100
TEST_FOLDERS = ("recorded_mixes/test", "synth_fluidsynth/test")


def held_out_clips(count, seconds):
    """`(count, samples)` float32 mono clips from the middle of the test songs, alternating folders."""
    root = os.path.join(fs.cache_root(), "music_v1")
    lists = [sorted(glob.glob(os.path.join(root, folder, "*", "mixture.wav"))) for folder in TEST_FOLDERS]
    paths = [p for group in zip(*lists) for p in group][:count]
    if len(paths) < count:
        raise SystemExit(f"found {len(paths)} held-out songs under {root}, need {count}")
    n = int(seconds * SAMPLE_RATE)
    clips = []
    for path in paths:
        audio = load_audio(path, SAMPLE_RATE, mono=True)[0]
        start = max(0, (audio.shape[0] - n) // 2)
        clip = np.pad(audio[start : start + n], (0, max(0, n - audio.shape[0])))
        clips.append(clip / max(1.0, float(np.max(np.abs(clip)))))
    return np.stack(clips).astype(np.float32), [os.path.relpath(p, root) for p in paths]


def official_preset(config, workdir):
    """Official-architecture random weights converted to a preset folder (as in inference.py)."""
    from inference import SCALE_FACTOR, generator_kwargs

    from keras_lincae import convert_official_checkpoint
    from keras_lincae.testing import official_oracle

    generator = generator_kwargs(config)
    model = official_oracle.build_official(generator=generator, seed=0, scale_factor=SCALE_FACTOR)
    release = official_oracle.write_release(model, os.path.join(workdir, "release"), generator)
    preset = os.path.join(workdir, "preset")
    convert_official_checkpoint(release, preset, scale_factor=SCALE_FACTOR)
    return preset


def run_pipeline(model, audio, noises):
    """Latents `(batch, frames, channels)` and one decode per noise, all float32 numpy."""
    latents = np.asarray(keras.ops.convert_to_numpy(model.encode(audio)), np.float32)
    decodes = [np.asarray(keras.ops.convert_to_numpy(model.decode(latents, noise=n)), np.float32) for n in noises]
    return latents, decodes


def compare(preset, audio, seed=1):
    """The metrics of the module docstring for one preset, as a dict of `(batch,)` arrays."""
    f32 = LinCAE.from_preset(preset)
    frames = f32.latent_length(audio.shape[-1])
    shape = (audio.shape[0], frames * f32.time_downsampling, 2 * f32.hop_size, f32.data_channels)
    rng = np.random.default_rng(seed)
    noises = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    t0 = time.process_time()
    z32, (y32, y32_other) = run_pipeline(f32, audio, noises)
    cpu32 = time.process_time() - t0
    del f32
    bf16 = LinCAE.from_preset(preset, dtype="mixed_bfloat16")
    t0 = time.process_time()
    z16, (y16,) = run_pipeline(bf16, audio, noises[:1])
    cpu16 = time.process_time() - t0
    n = min(audio.shape[-1], y32.shape[-1])
    y32, y32_other, y16, ref = y32[:, :n], y32_other[:, :n], y16[:, :n], audio[:, :n]
    return {
        "latent_rel_err": metrics.relative_l2_error(z16, z32),
        "bf16_msnr": metrics.magnitude_snr(y16, y32),
        "bf16_mrstft": metrics.multi_resolution_stft_distance(y16, y32),
        "floor_msnr": metrics.magnitude_snr(y32_other, y32),
        "floor_mrstft": metrics.multi_resolution_stft_distance(y32_other, y32),
        "input_msnr_f32": metrics.magnitude_snr(y32, ref),
        "input_msnr_bf16": metrics.magnitude_snr(y16, ref),
        "cpu_s": (cpu32, cpu16),
    }


def summary(values, worst):
    values = np.asarray(values)
    return f"{values.mean():.3g} ({worst(values):.3g})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lin_cae_small,official_full",
                        help="comma-separated: presets (name or folder), official_full, official_reduced")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    audio, names = held_out_clips(args.clips, args.seconds)
    print(f"bf16 quality: backend={keras.backend.backend()} clips={args.clips}x{args.seconds:g}s "
          f"load={'%.2f %.2f %.2f' % os.getloadavg()}")
    print("clips: " + ", ".join(names))
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        with tempfile.TemporaryDirectory(prefix="lincae_bf16_") as workdir:
            preset = official_preset(name.split("_", 1)[1], workdir) if name.startswith("official_") else name
            r = compare(preset, audio)
        low, high = np.min, np.max
        rows.append((name, summary(r["latent_rel_err"], high), summary(r["bf16_msnr"], low),
                     summary(r["bf16_mrstft"], high), summary(r["floor_msnr"], low), summary(r["floor_mrstft"], high),
                     f"{np.mean(r['input_msnr_f32']):.2f} / {np.mean(r['input_msnr_bf16']):.2f}",
                     "%.0f / %.0f" % r["cpu_s"]))
        print(f"  {name}: done (load {'%.2f' % os.getloadavg()[0]})", flush=True)
    head = ("model", "latent rel err", "bf16 vs f32 mag-SNR dB", "bf16 vs f32 MR-STFT", "noise floor mag-SNR dB",
            "noise floor MR-STFT", "vs input mag-SNR f32 / bf16", "CPU s f32 (2 decodes) / bf16")
    print("\nmean over clips (worst clip)")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
