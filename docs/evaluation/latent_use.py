"""Does the decoder use its latents? Denoising error of held-out songs with the true latents vs
all-zero latents, at several noise levels, plus 1-step magnitude SNR, on two held-out
numpy-synth songs. Usage: KERAS_BACKEND=jax python docs/evaluation/latent_use.py PRESET ..."""
import os
import sys

import numpy as np
from keras import ops
from keras_lincae import LinCAE
from keras_lincae.synth import generate_song

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from test_shipped_presets import _magnitude_snr  # noqa: E402  (phase-insensitive SNR)



songs = [generate_song([0, 1, s], seconds=3.0, renderer="numpy")[0]["mixture"] for s in (1, 2)]
print("| preset | mag. SNR dB | level | " + " | ".join(f"denoise err σ={s} (z / zero z)" for s in (0.5, 2.0, 10.0)) + " |")
print("|---|---:|---:|" + "---:|" * 3)
for p in sys.argv[1:]:
    m = LinCAE.from_preset(p)
    snr, lvl, errs = [], [], {s: [] for s in (0.5, 2.0, 10.0)}
    for k, x in enumerate(songs):
        x = x[None]
        out = np.asarray(m.autoencode(x, seed=0))
        snr.append(_magnitude_snr(x[0], out[0])); lvl.append(np.sqrt(np.mean(out**2) / np.mean(x**2)))
        f, b = m.autoencode_padding(x.shape[1]); xp = np.pad(x, ((0, 0), (f, b)))
        rep = m.frontend.to_representation(ops.convert_to_tensor(xp)); r = np.asarray(rep)
        z = m(ops.convert_to_tensor(xp)) / m.scale_factor
        pyr, pyr0 = m.decoder.latent_pyramid(z), m.decoder.latent_pyramid(ops.zeros_like(z))
        noise = np.random.default_rng(k).standard_normal(r.shape).astype("float32")
        for s in errs:
            noisy = rep + s * noise
            e1 = np.linalg.norm(np.asarray(m.decoder.denoise(noisy, ops.full((1,), s), pyr)) - r) / np.linalg.norm(r)
            e0 = np.linalg.norm(np.asarray(m.decoder.denoise(noisy, ops.full((1,), s), pyr0)) - r) / np.linalg.norm(r)
            errs[s].append((e1, e0))
    cells = [f"{np.mean([e[0] for e in v]):.3f} / {np.mean([e[1] for e in v]):.3f}" for v in errs.values()]
    print(f"| {p} | {np.mean(snr):.2f} | {np.mean(lvl):.2f} | " + " | ".join(cells) + " |")
