"""Does the decoder use its latents? Denoising error of held-out songs with the true latents vs
all-zero latents, at several noise levels, plus 1-step magnitude SNR, on two held-out
numpy-synth songs. Usage: KERAS_BACKEND=jax python docs/evaluation/latent_use.py PRESET ..."""
import os
import sys

import numpy as np
from keras_lincae import LinCAE
from keras_lincae.evaluation import latent_use
from keras_lincae.data.synth import generate_song

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))
from test_shipped_presets import _magnitude_snr  # noqa: E402  (phase-insensitive SNR)

SIGMAS = (0.5, 2.0, 10.0)
songs = [generate_song([0, 1, s], seconds=3.0, renderer="numpy")[0]["mixture"] for s in (1, 2)]
print("| preset | mag. SNR dB | level | " + " | ".join(f"denoise err σ={s} (z / zero z)" for s in SIGMAS) + " |")
print("|---|---:|---:|" + "---:|" * len(SIGMAS))
for p in sys.argv[1:]:
    m = LinCAE.from_preset(p)
    snr, lvl, errs = [], [], {s: [] for s in SIGMAS}
    for k, x in enumerate(songs):
        out = np.asarray(m.autoencode(x[None], seed=0))[0]
        snr.append(_magnitude_snr(x, out))
        lvl.append(np.sqrt(np.mean(out**2) / np.mean(x**2)))
        for s, pair in latent_use(m, x, SIGMAS, seed=k).items():
            errs[s].append(pair)
    cells = [f"{np.mean([e[0] for e in v]):.3f} / {np.mean([e[1] for e in v]):.3f}" for v in errs.values()]
    print(f"| {p} | {np.mean(snr):.2f} | {np.mean(lvl):.2f} | " + " | ".join(cells) + " |")
