"""Write `shipped_outputs.npz`: what the shipped presets give, written when their weights ship.

Run from the repository root after shipping new weights
(`KERAS_BACKEND=jax python tests/data/make_shipped_outputs.py`; last: 2026-12-01, the step-8200
presets); tests/test_shipped_presets.py checks that today's code still gives these latents and audio.
Input and noise: `keras_lincae.testing.shipped_reference`.
"""

import os

import numpy as np

from keras import ops

from keras_lincae import LinCAE
from keras_lincae.testing.shipped_reference import reference_input, reference_noise

def main():
    audio = reference_input()
    arrays = {}
    for name in ("lin_cae_small", "m2l_small"):
        model = LinCAE.from_preset(name)
        latents = ops.convert_to_numpy(model.encode(audio))
        noise = reference_noise(model, latents.shape[1])
        arrays[f"{name}/latents"] = latents
        arrays[f"{name}/decoded"] = ops.convert_to_numpy(model.decode(latents, noise=noise))
    np.savez_compressed(os.path.join(os.path.dirname(__file__), "shipped_outputs.npz"), **arrays)


if __name__ == "__main__":
    main()
